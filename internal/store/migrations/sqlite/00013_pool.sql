-- +goose Up
-- A course's warm pool holds labs with no learner yet (learner ''), as many as its size: one
-- live lab per learner and course still, but any number of the pool's.
DROP INDEX labs_live_learner_course;
CREATE UNIQUE INDEX labs_live_learner_course ON labs (learner, course) WHERE status <> 'deleted' AND learner <> '';

-- +goose Down
DROP INDEX labs_live_learner_course;
CREATE UNIQUE INDEX labs_live_learner_course ON labs (learner, course) WHERE status <> 'deleted';
