-- Index size samples for the Elasticsearch checks.
-- `es_indices` names each (cluster, index) once, so the 7.3M-row sample table stores a small
-- integer instead of two strings; its unique key is the (cluster, index_name) lookup.
CREATE TABLE es_indices (
    id          INTEGER PRIMARY KEY,
    cluster     TEXT NOT NULL,
    index_name  TEXT NOT NULL,
    UNIQUE (cluster, index_name)
);

-- One row per index per run. Clustered on (index_id, ts): the baseline query seeks each
-- index's window and reads it in order, with no sort and no table lookups (WITHOUT ROWID
-- makes the primary key the table). ts is microseconds since the epoch.
CREATE TABLE es_index_samples (
    index_id  INTEGER NOT NULL REFERENCES es_indices (id),
    ts        INTEGER NOT NULL,
    bytes     INTEGER NOT NULL,
    docs      INTEGER NOT NULL,
    PRIMARY KEY (index_id, ts)
) WITHOUT ROWID;

-- Alerts raised by checks and not yet resolved (so a later run can say "resolved").
CREATE TABLE check_alerts (
    check_name   TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    cluster      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    title        TEXT NOT NULL,
    labels       TEXT NOT NULL,
    since        INTEGER NOT NULL,
    PRIMARY KEY (check_name, fingerprint)
);

-- The latest run of each check.
CREATE TABLE check_runs (
    check_name  TEXT PRIMARY KEY,
    at          INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    summary     TEXT NOT NULL
);
