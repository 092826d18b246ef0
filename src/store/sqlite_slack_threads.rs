//! `SlackThreadStore` for SQLite: single-row writes on the writer connection (each statement is
//! its own durable transaction); timestamps are INTEGER microseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::slack_threads::{SlackThread, SlackThreadStore};
use super::sqlite::{micros, SqliteStore};
use super::StoreError;

#[async_trait]
impl SlackThreadStore for SqliteStore {
    async fn slack_thread(&self, key: &str) -> Result<Option<SlackThread>, StoreError> {
        // The writer connection, not the readers: a thread saved a moment ago must be seen.
        let row = sqlx::query("SELECT channel, ts FROM slack_threads WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.writer_pool)
            .await?;
        row.map(|row| Ok(SlackThread { channel: row.try_get("channel")?, ts: row.try_get("ts")? })).transpose()
    }

    async fn save_slack_thread(&self, key: &str, thread: &SlackThread, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO slack_threads (key, channel, ts, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (key) DO UPDATE SET channel = excluded.channel, ts = excluded.ts, \
             created_at = excluded.created_at",
        )
        .bind(key)
        .bind(&thread.channel)
        .bind(&thread.ts)
        .bind(micros(at))
        .execute(&self.writer_pool)
        .await?;
        Ok(())
    }

    async fn forget_slack_thread(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM slack_threads WHERE key = ?").bind(key).execute(&self.writer_pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn threads_are_saved_replaced_and_forgotten() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("t.db");
        let store = SqliteStore::open_store(path.to_str().unwrap_or_default()).await.expect("opens");
        assert_eq!(store.slack_thread("k").await.expect("reads"), None);
        let t = SlackThread { channel: "C1".into(), ts: "1503435956.000247".into() };
        store.save_slack_thread("k", &t, Utc::now()).await.expect("saves");
        assert_eq!(store.slack_thread("k").await.expect("reads"), Some(t));
        let t2 = SlackThread { channel: "C2".into(), ts: "1.000001".into() };
        store.save_slack_thread("k", &t2, Utc::now()).await.expect("replaces");
        assert_eq!(store.slack_thread("k").await.expect("reads"), Some(t2));
        store.forget_slack_thread("k").await.expect("forgets");
        assert_eq!(store.slack_thread("k").await.expect("reads"), None);
    }
}
