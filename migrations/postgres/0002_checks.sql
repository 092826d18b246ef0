-- Index size samples for the Elasticsearch checks (same schema as migrations/sqlite/0002).
CREATE TABLE es_indices (
    id          BIGSERIAL PRIMARY KEY,
    cluster     TEXT NOT NULL,
    index_name  TEXT NOT NULL,
    UNIQUE (cluster, index_name)
);

-- ts is microseconds since the epoch. The primary key (ts, index_id) serves the baseline
-- query: one range scan over the window, grouped by index (see the SQLite migration).
CREATE TABLE es_index_samples (
    ts        BIGINT NOT NULL,
    index_id  BIGINT NOT NULL REFERENCES es_indices (id),
    bytes     BIGINT NOT NULL,
    docs      BIGINT NOT NULL,
    PRIMARY KEY (ts, index_id)
);

CREATE TABLE check_alerts (
    check_name   TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    cluster      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    title        TEXT NOT NULL,
    labels       TEXT NOT NULL,
    since        BIGINT NOT NULL,
    PRIMARY KEY (check_name, fingerprint)
);

CREATE TABLE check_runs (
    check_name  TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    summary     TEXT NOT NULL
);
