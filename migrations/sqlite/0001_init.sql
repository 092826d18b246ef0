-- Events: the searchable history. `seq` is the rowid (append order); `ts` is the event's own
-- time in microseconds since the epoch. The whole event is kept as JSON in `body`.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY,
    id           BLOB NOT NULL,
    ts           INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    severity     INTEGER NOT NULL,
    user         TEXT,
    fingerprint  TEXT NOT NULL,
    source       TEXT NOT NULL,
    body         TEXT NOT NULL
);
CREATE INDEX events_by_time ON events (ts, seq);
CREATE INDEX events_by_user ON events (user, ts, seq) WHERE user IS NOT NULL;
CREATE INDEX events_by_kind ON events (kind, ts, seq);

-- Full-text index over the human parts of an event; contentless (the text lives in `events`),
-- rowid = events.seq. It is filled after the commit that stores the events, by the indexer,
-- so indexing never slows down acceptance; `fts_progress` says how far it got.
CREATE VIRTUAL TABLE events_fts USING fts5 (
    title, text, kind, user, fields,
    content = '', contentless_delete = 1, tokenize = 'unicode61'
);
CREATE TABLE fts_progress (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq  INTEGER NOT NULL
);
INSERT INTO fts_progress (id, last_seq) VALUES (1, 0);

-- The outbox: messages to deliver, written in the same transaction as their event.
-- state: 0 pending, 1 delivered, 2 dead (dead letter). A row is due from `not_before`
-- (grouping delays); due rows of one (destination, group_key) are sent as one message.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY,
    destination  TEXT NOT NULL,
    notifier     TEXT NOT NULL,
    group_key    TEXT NOT NULL,
    not_before   INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    user         TEXT,
    event_seq    INTEGER,
    message      TEXT NOT NULL,
    state        INTEGER NOT NULL DEFAULT 0,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER,
    lease_until  INTEGER
);
CREATE INDEX outbox_due ON outbox (destination, not_before, id) WHERE state = 0;
CREATE INDEX outbox_group ON outbox (destination, group_key, id) WHERE state = 0;
CREATE INDEX outbox_dead ON outbox (id) WHERE state = 2;
CREATE INDEX outbox_finished ON outbox (updated_at) WHERE state <> 0;

-- Alerts: the current state of every fingerprint that was ever an alert. `body` holds the
-- whole record (labels, last event, notification bookkeeping) as JSON.
-- status: 0 firing, 1 resolved.
CREATE TABLE alerts (
    fingerprint  TEXT PRIMARY KEY,
    status       INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    body         TEXT NOT NULL,
    event        TEXT
);
CREATE INDEX alerts_firing ON alerts (started_at, fingerprint) WHERE status = 0;
CREATE INDEX alerts_updated ON alerts (updated_at);

-- Silences: created over the API or the command line; expired ones are kept for the record.
CREATE TABLE silences (
    id          TEXT PRIMARY KEY,
    starts_at   INTEGER NOT NULL,
    ends_at     INTEGER NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX silences_ends ON silences (ends_at);
