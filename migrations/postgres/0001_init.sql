-- PostgreSQL twin of migrations/sqlite/0001_init.sql (same version numbers in both).
CREATE TABLE events (
    seq          BIGSERIAL PRIMARY KEY,
    id           UUID NOT NULL,
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
CREATE INDEX events_search ON events USING GIN (search);

CREATE TABLE outbox (
    id           BIGSERIAL PRIMARY KEY,
    destination  TEXT NOT NULL,
    notifier     TEXT NOT NULL,
    group_key    TEXT NOT NULL,
    not_before   BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    "user"       TEXT,
    event_seq    BIGINT,
    message      JSONB NOT NULL,
    state        SMALLINT NOT NULL DEFAULT 0,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT,
    lease_until  BIGINT
);
CREATE INDEX outbox_due ON outbox (destination, not_before, id) WHERE state = 0;
CREATE INDEX outbox_group ON outbox (destination, group_key, id) WHERE state = 0;
CREATE INDEX outbox_dead ON outbox (id) WHERE state = 2;
CREATE INDEX outbox_finished ON outbox (updated_at) WHERE state <> 0;

CREATE TABLE alerts (
    fingerprint  TEXT PRIMARY KEY,
    status       SMALLINT NOT NULL,
    started_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    body         JSONB NOT NULL,
    event        JSONB
);
CREATE INDEX alerts_firing ON alerts (started_at, fingerprint) WHERE status = 0;
CREATE INDEX alerts_updated ON alerts (updated_at);

CREATE TABLE silences (
    id          TEXT PRIMARY KEY,
    starts_at   BIGINT NOT NULL,
    ends_at     BIGINT NOT NULL,
    body        JSONB NOT NULL
);
CREATE INDEX silences_ends ON silences (ends_at);
