-- PostgreSQL twin of migrations/sqlite/0003_sources.sql (application event sources, issue 5).
CREATE TABLE stripe_events (
    id           TEXT PRIMARY KEY,
    received_at  BIGINT NOT NULL
);
CREATE INDEX stripe_events_by_time ON stripe_events (received_at);

CREATE TABLE error_issues (
    fingerprint     TEXT PRIMARY KEY,
    first_seen      BIGINT NOT NULL,
    last_seen       BIGINT NOT NULL,
    count           BIGINT NOT NULL,
    resolved_at     BIGINT,
    window_start    BIGINT NOT NULL,
    window_count    BIGINT NOT NULL,
    spike_notified  BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE source_state (
    key         TEXT PRIMARY KEY,
    body        JSONB NOT NULL,
    updated_at  BIGINT NOT NULL
);
