-- Joining by mail (SPEC F5): a request waits for the person's own confirmation (double
-- opt-in). Only the token's SHA-256 is stored, like moderation tokens.
CREATE TABLE joins (
    id          INTEGER PRIMARY KEY,
    list_id     TEXT    NOT NULL,
    email       TEXT    NOT NULL,
    name        TEXT    NOT NULL DEFAULT '',
    token_hash  TEXT    NOT NULL UNIQUE,
    state       TEXT    NOT NULL DEFAULT 'pending',  -- pending | confirmed
    created_at  REAL    NOT NULL,
    expires_at  REAL    NOT NULL
);
CREATE INDEX joins_address ON joins(list_id, email, created_at);
