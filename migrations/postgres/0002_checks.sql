-- Index size samples for the Elasticsearch checks (same schema as migrations/sqlite/0002).
CREATE TABLE es_indices (
    id          BIGSERIAL PRIMARY KEY,
    cluster     TEXT NOT NULL,
    index_name  TEXT NOT NULL,
    UNIQUE (cluster, index_name)
);

-- ts is microseconds since the epoch. The primary key serves the baseline query
-- (seek per index, range on ts); CLUSTER es_index_samples USING es_index_samples_pkey
-- keeps it physically ordered after bulk loads.
CREATE TABLE es_index_samples (
    index_id  BIGINT NOT NULL REFERENCES es_indices (id),
    ts        BIGINT NOT NULL,
    bytes     BIGINT NOT NULL,
    docs      BIGINT NOT NULL,
    PRIMARY KEY (index_id, ts)
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
