-- Slack app threads (issue 6): the parent message of each alert group per channel, so
-- follow-ups go into its thread and the original is updated on resolve.
-- Timestamps are INTEGER microseconds since the epoch.
CREATE TABLE slack_threads (
    key         TEXT PRIMARY KEY,   -- message group_key + "|" + channel
    channel     TEXT NOT NULL,      -- the channel id Slack answered with
    ts          TEXT NOT NULL,      -- the parent message's ts, verbatim
    created_at  INTEGER NOT NULL
);
CREATE INDEX slack_threads_by_time ON slack_threads (created_at);
