-- +goose Up
-- Clouds an operator drained at run time (the console's Drain): placement skips them, as it
-- skips those with drain: true in the configuration. Undraining deletes the row.
CREATE TABLE cloud_drains (
    cloud      TEXT PRIMARY KEY,
    drained_at TIMESTAMPTZ NOT NULL,
    actor      TEXT NOT NULL
);

-- +goose Down
DROP TABLE cloud_drains;
