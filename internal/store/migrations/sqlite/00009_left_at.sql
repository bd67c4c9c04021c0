-- Times are TEXT in UTC (see 00001_init.sql).
-- +goose Up
-- When the learner last left the lab (POST /v1/labs/{id}/leave: the LMS saw its page closed).
ALTER TABLE labs ADD COLUMN left_at TEXT;

-- +goose Down
ALTER TABLE labs DROP COLUMN left_at;
