-- The registry of labs, the audit trail and the orphan stacks seen on the clouds (PostgreSQL).
-- NULL is the zero time.

-- +goose Up
CREATE TABLE labs (
    id                 TEXT        NOT NULL PRIMARY KEY,
    learner            TEXT        NOT NULL,
    course             TEXT        NOT NULL,
    template           TEXT        NOT NULL DEFAULT '',
    cloud              TEXT        NOT NULL DEFAULT '',
    stack_name         TEXT        NOT NULL DEFAULT '',
    stack_id           TEXT        NOT NULL DEFAULT '',
    status             TEXT        NOT NULL,
    stack_status       TEXT        NOT NULL DEFAULT '',
    stack_status_since TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL,
    last_heartbeat     TIMESTAMPTZ,
    last_resumed_at    TIMESTAMPTZ,
    attempts           INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at    TIMESTAMPTZ,
    last_error         TEXT        NOT NULL DEFAULT '',
    outputs            TEXT,
    updated_at         TIMESTAMPTZ NOT NULL,
    deleted_at         TIMESTAMPTZ,
    version            BIGINT      NOT NULL
);

-- One live lab per learner and course.
CREATE UNIQUE INDEX labs_live_learner_course ON labs (learner, course) WHERE status <> 'deleted';
CREATE INDEX labs_created ON labs (created_at, id);
CREATE INDEX labs_cloud_status ON labs (cloud, status);

-- No foreign key on lab_id: events also record orphan stacks and failures of labs with no row.
CREATE TABLE events (
    id          BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lab_id      TEXT        NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    actor       TEXT        NOT NULL DEFAULT '',
    action      TEXT        NOT NULL DEFAULT '',
    from_status TEXT        NOT NULL DEFAULT '',
    to_status   TEXT        NOT NULL DEFAULT '',
    cloud       TEXT        NOT NULL DEFAULT '',
    stack_id    TEXT        NOT NULL DEFAULT '',
    request_id  TEXT        NOT NULL DEFAULT '',
    error       TEXT        NOT NULL DEFAULT '',
    detail      TEXT        NOT NULL DEFAULT ''
);

CREATE INDEX events_at ON events (at, id);
CREATE INDEX events_lab_at ON events (lab_id, at, id);

-- Stacks tagged by labplane that no live lab owns, and when labplane first saw each.
CREATE TABLE orphans (
    cloud      TEXT        NOT NULL,
    stack_id   TEXT        NOT NULL,
    stack_name TEXT        NOT NULL DEFAULT '',
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (cloud, stack_id)
);

-- +goose Down
DROP TABLE orphans;
DROP TABLE events;
DROP TABLE labs;
