-- PostgreSQL twin of migrations/sqlite/0004_slack_threads.sql (Slack app threads, issue 6).
CREATE TABLE slack_threads (
    key         TEXT PRIMARY KEY,
    channel     TEXT NOT NULL,
    ts          TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX slack_threads_by_time ON slack_threads (created_at);
