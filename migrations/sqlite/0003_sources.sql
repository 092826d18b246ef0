-- Application event sources (issue 5). Timestamps are INTEGER microseconds since the epoch.

-- Stripe event ids already processed: a retried delivery is acknowledged and not posted again.
CREATE TABLE stripe_events (
    id           TEXT PRIMARY KEY,
    received_at  INTEGER NOT NULL
);
CREATE INDEX stripe_events_by_time ON stripe_events (received_at);

-- Error issues: all occurrences of one error fingerprint (type + top in-app frame + route).
CREATE TABLE error_issues (
    fingerprint     TEXT PRIMARY KEY,
    first_seen      INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL,
    count           INTEGER NOT NULL,
    resolved_at     INTEGER,
    window_start    INTEGER NOT NULL,
    window_count    INTEGER NOT NULL,
    spike_notified  INTEGER NOT NULL DEFAULT 0
);

-- Small state documents of the sources (heartbeat runs, rate rule verdicts), as JSON.
CREATE TABLE source_state (
    key         TEXT PRIMARY KEY,
    body        TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);
