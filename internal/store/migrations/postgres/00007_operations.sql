-- +goose Up
-- The operation sent to a cloud in each of its slots (max_in_flight), written before it is
-- sent and removed once it is known to be over. A row whose sender stopped first (it died, or
-- its wait timed out) keeps the slot taken until the cloud is seen done with the stack.
CREATE TABLE operations (
    cloud      TEXT        NOT NULL,
    slot       INTEGER     NOT NULL,
    op         TEXT        NOT NULL,
    stack_name TEXT        NOT NULL,
    stack_id   TEXT        NOT NULL DEFAULT '',
    sent_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (cloud, slot)
);

-- +goose Down
DROP TABLE operations;
