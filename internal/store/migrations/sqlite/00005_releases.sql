-- Times are TEXT in UTC (see 00001_init.sql).
-- +goose Up
-- Promotions of a release from one environment to another: one row per promotion, replaced
-- whole after each step (detail is the JSON of its plan, progress, runs and last health checks).
CREATE TABLE promotions (
    id          TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    target      TEXT NOT NULL,
    release     TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    detail      TEXT NOT NULL
);
CREATE INDEX promotions_target_started ON promotions (target, started_at);

-- Who holds an environment (a deploy or a promotion in progress). The exclusion itself is a
-- registry lock (TryLock "env:ENV") that ends with its process; this row only names the
-- holder, and a row left by a process that died is replaced by the next holder.
CREATE TABLE env_locks (
    environment TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    holder      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    host        TEXT NOT NULL,
    since       TEXT NOT NULL
);

-- +goose Down
DROP TABLE env_locks;
DROP TABLE promotions;
