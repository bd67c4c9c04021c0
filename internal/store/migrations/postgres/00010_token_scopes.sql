-- +goose Up
-- What a token may do (auth.Scope): the tokens made before scopes were the LMS's.
ALTER TABLE tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'lms';

-- The tokens' own audit trail: every creation and revocation, by whom.
CREATE TABLE token_events (
    id     BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     TIMESTAMPTZ NOT NULL,
    action TEXT        NOT NULL,
    name   TEXT        NOT NULL,
    scope  TEXT        NOT NULL,
    actor  TEXT        NOT NULL
);

-- +goose Down
DROP TABLE token_events;
ALTER TABLE tokens DROP COLUMN scope;
