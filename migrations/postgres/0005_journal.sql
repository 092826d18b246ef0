-- PostgreSQL twin of migrations/sqlite/0005_journal.sql (the commit log).
-- How far the commit log (`<db>.journal/`) is applied: records up to this segment and byte
-- offset are in the tables; the ones after it are applied again at start.
CREATE TABLE journal_state (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    segment      BIGINT NOT NULL,
    byte_offset  BIGINT NOT NULL
);
INSERT INTO journal_state (id, segment, byte_offset) VALUES (1, 0, 0);
