-- Learner activity (PostgreSQL): spans of heartbeats. A lab's open span is on its row, from
-- active_since to last_heartbeat; a heartbeat that comes more than the store's activity gap
-- after the previous one moves the open span into activity and opens a new one (store.Heartbeat,
-- in the same statement). So every span is kept, and used hours are the spans' lengths.

-- +goose Up
ALTER TABLE labs ADD COLUMN active_since TIMESTAMPTZ;

CREATE TABLE activity (
    lab_id     TEXT        NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    ended_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (lab_id, started_at)
);

CREATE INDEX activity_ended ON activity (ended_at);

-- +goose Down
DROP TABLE activity;
ALTER TABLE labs DROP COLUMN active_since;
