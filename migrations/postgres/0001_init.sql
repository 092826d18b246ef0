-- PostgreSQL twin of migrations/sqlite/0001_init.sql (same version numbers in both).
CREATE TABLE events (
    seq          BIGSERIAL PRIMARY KEY,
    id           UUID NOT NULL UNIQUE,
    ts           BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    severity     SMALLINT NOT NULL,
    "user"       TEXT,
    fingerprint  TEXT NOT NULL,
    source       TEXT NOT NULL,
    body         JSONB NOT NULL,
    search       TSVECTOR
);
CREATE INDEX events_by_time ON events (ts, seq);
CREATE INDEX events_by_user ON events ("user", ts, seq) WHERE "user" IS NOT NULL;
CREATE INDEX events_by_kind ON events (kind, ts, seq);
CREATE INDEX events_by_received ON events (received_at);
CREATE INDEX events_search ON events USING GIN (search);

CREATE TABLE outbox (
    id           BIGSERIAL PRIMARY KEY,
    destination  TEXT NOT NULL,
    notifier     TEXT NOT NULL,
    event_seq    BIGINT,
    message      JSONB NOT NULL,
    state        SMALLINT NOT NULL DEFAULT 0,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT,
    lease_until  BIGINT
);
CREATE INDEX outbox_pending ON outbox (destination, id) WHERE state = 0;
CREATE INDEX outbox_dead ON outbox (id) WHERE state = 2;
CREATE INDEX outbox_finished ON outbox (updated_at) WHERE state <> 0;
