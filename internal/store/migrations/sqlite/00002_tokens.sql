-- API tokens (SQLite): only the SHA-256 of each token is kept, never the token.
-- A token is live while revoked_at is NULL; a revoked one stays for the record.

-- +goose Up
CREATE TABLE tokens (
    id         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    hash       BLOB    NOT NULL,
    created_at TEXT    NOT NULL,
    revoked_at TEXT
) STRICT;

-- One live token per name; a revoked name can be given a new token.
CREATE UNIQUE INDEX tokens_live_name ON tokens (name) WHERE revoked_at IS NULL;
CREATE UNIQUE INDEX tokens_hash ON tokens (hash);

-- +goose Down
DROP TABLE tokens;
