-- Times are TEXT in UTC (see 00001_init.sql).
-- +goose Up
-- Clouds an operator drained at run time (the console's Drain): placement skips them, as it
-- skips those with drain: true in the configuration. Undraining deletes the row.
CREATE TABLE cloud_drains (
    cloud      TEXT PRIMARY KEY,
    drained_at TEXT NOT NULL,
    actor      TEXT NOT NULL
);

-- +goose Down
DROP TABLE cloud_drains;
