-- API tokens (PostgreSQL): only the SHA-256 of each token is kept, never the token.
-- A token is live while revoked_at is NULL; a revoked one stays for the record.

-- +goose Up
CREATE TABLE tokens (
    id         BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT        NOT NULL,
    hash       BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);

-- One live token per name; a revoked name can be given a new token.
CREATE UNIQUE INDEX tokens_live_name ON tokens (name) WHERE revoked_at IS NULL;
CREATE UNIQUE INDEX tokens_hash ON tokens (hash);

-- +goose Down
DROP TABLE tokens;
