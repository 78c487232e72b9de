-- Anonymised member replies (SPEC F4). Applied when PRAGMA user_version < 2.

-- One conversation per member x bulletin. Two addresses stand for it, neither revealing
-- anyone: the member writes to ``reactie+<member_token>@`` (their bulletin copy's reply
-- token), the agency or coordinator answers ``reactie+<token>@``.
CREATE TABLE reply_threads (
    id            INTEGER PRIMARY KEY,
    bulletin_id   INTEGER NOT NULL REFERENCES bulletins(id),
    member_id     INTEGER REFERENCES members(id) ON DELETE SET NULL,  -- NULL: member left
    list_id       TEXT    NOT NULL,
    pseudonym     TEXT    NOT NULL,
    token         TEXT    NOT NULL UNIQUE,   -- the agency side's address
    member_token  TEXT    NOT NULL UNIQUE,   -- the member side's address
    answerer      TEXT    NOT NULL DEFAULT '',  -- the last agency or coordinator who answered
    created_at    REAL    NOT NULL,
    expires_at    REAL    NOT NULL,
    UNIQUE (bulletin_id, member_id),
    UNIQUE (bulletin_id, pseudonym)
);
CREATE INDEX reply_threads_member ON reply_threads(list_id, member_id);

-- Every reply that went through the thread, in either direction; the rate limit and
-- the statistics count these. ``relay`` is the anonymised entity (no identity in it),
-- kept while a coordinator reviews it.
CREATE TABLE replies (
    id          INTEGER PRIMARY KEY,
    inbound_id  INTEGER NOT NULL UNIQUE REFERENCES inbound(id),
    thread_id   INTEGER NOT NULL REFERENCES reply_threads(id),
    direction   TEXT    NOT NULL,            -- 'member' (to the agency) | 'answer' (to the member)
    state       TEXT    NOT NULL,            -- ReplyState
    created_at  REAL    NOT NULL,
    report      TEXT    NOT NULL DEFAULT '{}',  -- what the anonymiser removed (JSON, counts only)
    relay       BLOB
);
CREATE INDEX replies_thread ON replies(thread_id, created_at);

-- A held item may be a member reply waiting for a coordinator (review_replies, or over
-- the hourly limit) instead of agency mail.
ALTER TABLE submissions ADD COLUMN reply_id INTEGER REFERENCES replies(id);
