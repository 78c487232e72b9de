-- The first schema. Applied by store.migrate() when PRAGMA user_version < 1.
-- Times are UNIX seconds (REAL). States are the StrEnum values in models.py.

-- Every accepted SMTP transaction: committed before the 250.
CREATE TABLE inbound (
    id           INTEGER PRIMARY KEY,
    received_at  REAL    NOT NULL,
    route        TEXT    NOT NULL,
    target       TEXT    NOT NULL,          -- list ids, a token's row id, ... (route-specific)
    mail_from    TEXT    NOT NULL,
    rcpt_tos     TEXT    NOT NULL,          -- JSON array
    client_ip    TEXT    NOT NULL,
    helo         TEXT    NOT NULL,
    author       TEXT    NOT NULL DEFAULT '',
    auth         TEXT    NOT NULL DEFAULT '',
    message_id   TEXT    NOT NULL DEFAULT '',
    facts        TEXT    NOT NULL DEFAULT '{}',  -- JSON: what the session stages found
    raw          BLOB    NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'received',
    error        TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX inbound_state ON inbound(state, id);
CREATE INDEX inbound_author_msgid ON inbound(author, message_id);

CREATE TABLE members (
    id          INTEGER PRIMARY KEY,
    list_id     TEXT NOT NULL,
    email       TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL DEFAULT 'active',
    created_at  REAL NOT NULL,
    UNIQUE (list_id, email)
);

-- Held agency mail, one row per target list.
CREATE TABLE submissions (
    id           INTEGER PRIMARY KEY,
    inbound_id   INTEGER NOT NULL REFERENCES inbound(id),
    list_id      TEXT    NOT NULL,
    agency_id    TEXT    NOT NULL,
    sender       TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    state        TEXT    NOT NULL DEFAULT 'held',
    created_at   REAL    NOT NULL,
    expires_at   REAL    NOT NULL,
    remind_at    REAL    NOT NULL,
    reminded_at  REAL,
    decided_at   REAL,
    decided_by   TEXT    NOT NULL DEFAULT '',
    reason       TEXT    NOT NULL DEFAULT '',
    note         TEXT    NOT NULL DEFAULT '',
    UNIQUE (inbound_id, list_id)
);
CREATE INDEX submissions_state ON submissions(state, expires_at);

-- Further tokens of a held item (the reminder carries a fresh one): SHA-256 only.
CREATE TABLE moderation_tokens (
    token_hash     TEXT    PRIMARY KEY,
    submission_id  INTEGER NOT NULL REFERENCES submissions(id)
);

CREATE TABLE bulletins (
    id             INTEGER PRIMARY KEY,
    list_id        TEXT    NOT NULL,
    inbound_id     INTEGER NOT NULL REFERENCES inbound(id),
    submission_id  INTEGER UNIQUE REFERENCES submissions(id),
    sender_name    TEXT    NOT NULL,
    origin         TEXT    NOT NULL,        -- who wrote it: agency sender or coordinator
    note           TEXT    NOT NULL DEFAULT '',
    subject        TEXT    NOT NULL,
    created_at     REAL    NOT NULL,
    member_count   INTEGER NOT NULL,
    UNIQUE (inbound_id, list_id)
);

-- Mail the gateway writes itself (notices): stored whole, signed, once per source_key.
CREATE TABLE outbound (
    id             INTEGER PRIMARY KEY,
    kind           TEXT    NOT NULL,
    source_key     TEXT    NOT NULL UNIQUE,
    envelope_from  TEXT    NOT NULL,
    message        BLOB    NOT NULL,
    created_at     REAL    NOT NULL
);

-- One row per message x recipient: the durable queue.
CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY,
    bulletin_id      INTEGER REFERENCES bulletins(id),
    outbound_id      INTEGER REFERENCES outbound(id),
    member_id        INTEGER REFERENCES members(id),
    recipient        TEXT    NOT NULL,
    token            TEXT    NOT NULL UNIQUE,  -- VERP bounce and reply address token
    state            TEXT    NOT NULL DEFAULT 'queued',
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       REAL    NOT NULL,
    next_attempt_at  REAL    NOT NULL,
    sent_at          REAL,
    last_code        INTEGER NOT NULL DEFAULT 0,
    last_reply       TEXT    NOT NULL DEFAULT '',
    CHECK ((bulletin_id IS NULL) <> (outbound_id IS NULL)),
    UNIQUE (bulletin_id, member_id)
);
CREATE INDEX deliveries_due ON deliveries(state, next_attempt_at);

CREATE TABLE bounces (
    id           INTEGER PRIMARY KEY,
    delivery_id  INTEGER NOT NULL REFERENCES deliveries(id),
    inbound_id   INTEGER REFERENCES inbound(id),
    at           REAL    NOT NULL,
    permanent    INTEGER NOT NULL,
    detail       TEXT    NOT NULL DEFAULT ''
);

-- Human decisions and admin actions.
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    at      REAL NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT ''
);
