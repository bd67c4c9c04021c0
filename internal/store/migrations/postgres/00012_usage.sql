-- +goose Up
-- A learner's time budget in a course (policy.usage_limit) counts the activity of all their
-- labs in it, deleted ones included: an index on every lab's learner and course, not only the
-- live ones'.
CREATE INDEX labs_learner_course ON labs (learner, course);

-- Time operators added to a learner's budget in a course (labplane labs extend), one row each;
-- the lab it was asked through has the event.
CREATE TABLE usage_added (
    id      BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    learner TEXT        NOT NULL,
    course  TEXT        NOT NULL,
    lab_id  TEXT        NOT NULL,
    seconds BIGINT      NOT NULL,
    actor   TEXT        NOT NULL DEFAULT '',
    at      TIMESTAMPTZ NOT NULL
);

CREATE INDEX usage_added_learner_course ON usage_added (learner, course);

-- +goose Down
DROP TABLE usage_added;
DROP INDEX labs_learner_course;
