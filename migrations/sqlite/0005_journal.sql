-- How far the commit log (`<db>.journal/`) is applied: records up to this segment and byte
-- offset are in the tables; the ones after it are applied again at start.
CREATE TABLE journal_state (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    segment      INTEGER NOT NULL,
    byte_offset  INTEGER NOT NULL
);
INSERT INTO journal_state (id, segment, byte_offset) VALUES (1, 0, 0);
