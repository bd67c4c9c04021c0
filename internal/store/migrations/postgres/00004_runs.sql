-- +goose Up
-- Platform runs (deploy, rollback): one row per run, inserted when it starts and updated once
-- when it ends. recap, failures and options are JSON.
CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    environment TEXT NOT NULL,
    release     TEXT NOT NULL,
    actor       TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    status      TEXT NOT NULL,
    options     TEXT NOT NULL DEFAULT '{}',
    recap       TEXT NOT NULL DEFAULT '{}',
    failures    TEXT NOT NULL DEFAULT '[]',
    error       TEXT NOT NULL DEFAULT '',
    log_path    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX runs_environment_started ON runs (environment, started_at);
CREATE INDEX runs_started ON runs (started_at);

-- +goose Down
DROP TABLE runs;
