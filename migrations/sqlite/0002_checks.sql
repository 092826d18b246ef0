-- Index size samples for the Elasticsearch checks.
-- `es_indices` names each (cluster, index) once, so the 7.3M-row sample table stores a small
-- integer instead of two strings; its unique key is the (cluster, index_name) lookup.
CREATE TABLE es_indices (
    id          INTEGER PRIMARY KEY,
    cluster     TEXT NOT NULL,
    index_name  TEXT NOT NULL,
    UNIQUE (cluster, index_name)
);

-- One row per index per run; ts is microseconds since the epoch. Clustered on
-- (ts, index_id) (WITHOUT ROWID makes the primary key the table): a run's 20,000 new rows
-- land together at the end of the tree (a few hundred pages), and the baseline window is one
-- contiguous range scan aggregated in a single grouped query. Clustering on
-- (index_id, ts) instead makes that query ~2x faster but dirties one page per index on
-- every run (80 MB of WAL for 20,000 indices), which measured slower overall.
CREATE TABLE es_index_samples (
    ts        INTEGER NOT NULL,
    index_id  INTEGER NOT NULL REFERENCES es_indices (id),
    bytes     INTEGER NOT NULL,
    docs      INTEGER NOT NULL,
    PRIMARY KEY (ts, index_id)
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
