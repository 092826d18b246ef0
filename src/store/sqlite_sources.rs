//! `SourceStore` for SQLite: writes take the single writer connection in an exclusive
//! (IMMEDIATE) transaction; timestamps are INTEGER microseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::sources::{ErrorIssue, IssueUpdate, SourceStore, StateUpdate};
use super::sqlite::{from_micros, micros, SqliteStore};
use super::StoreError;

/// Stripe retries for three days; ids are kept a while longer.
const STRIPE_ID_KEEP_DAYS: i64 = 30;

async fn exclusive<T, F>(store: &SqliteStore, work: F) -> Result<T, StoreError>
where
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> futures_util::future::BoxFuture<'c, Result<T, StoreError>>,
{
    let mut conn = store.writer_pool.acquire().await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    match work(&mut conn).await {
        Ok(v) => {
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok(v)
        }
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

fn issue_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<ErrorIssue, StoreError> {
    Ok(ErrorIssue {
        fingerprint: row.try_get("fingerprint")?,
        first_seen: from_micros(row.try_get("first_seen")?),
        last_seen: from_micros(row.try_get("last_seen")?),
        count: row.try_get::<i64, _>("count")? as u64,
        resolved_at: row.try_get::<Option<i64>, _>("resolved_at")?.map(from_micros),
        window_start: from_micros(row.try_get("window_start")?),
        window_count: row.try_get::<i64, _>("window_count")? as u64,
        spike_notified: row.try_get::<i64, _>("spike_notified")? != 0,
    })
}

const ISSUE_COLUMNS: &str =
    "fingerprint, first_seen, last_seen, count, resolved_at, window_start, window_count, spike_notified";

#[async_trait]
impl SourceStore for SqliteStore {
    async fn claim_stripe_event(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let id = id.to_string();
        exclusive(self, move |conn| {
            Box::pin(async move {
                let cutoff = micros(at - chrono::Duration::days(STRIPE_ID_KEEP_DAYS));
                sqlx::query("DELETE FROM stripe_events WHERE received_at < ?").bind(cutoff).execute(&mut *conn).await?;
                let done =
                    sqlx::query("INSERT INTO stripe_events (id, received_at) VALUES (?, ?) ON CONFLICT DO NOTHING")
                        .bind(&id)
                        .bind(micros(at))
                        .execute(&mut *conn)
                        .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    async fn release_stripe_event(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        exclusive(self, move |conn| {
            Box::pin(async move {
                sqlx::query("DELETE FROM stripe_events WHERE id = ?").bind(&id).execute(&mut *conn).await?;
                Ok(())
            })
        })
        .await
    }

    async fn update_error_issue(&self, fingerprint: &str, update: IssueUpdate) -> Result<ErrorIssue, StoreError> {
        let fp = fingerprint.to_string();
        exclusive(self, move |conn| {
            Box::pin(async move {
                let row = sqlx::query(&format!("SELECT {ISSUE_COLUMNS} FROM error_issues WHERE fingerprint = ?"))
                    .bind(&fp)
                    .fetch_optional(&mut *conn)
                    .await?;
                let current = row.as_ref().map(issue_from_row).transpose()?;
                let next = update(current);
                sqlx::query(&format!(
                    "INSERT INTO error_issues ({ISSUE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (fingerprint) DO UPDATE SET first_seen = excluded.first_seen, \
                     last_seen = excluded.last_seen, count = excluded.count, resolved_at = excluded.resolved_at, \
                     window_start = excluded.window_start, window_count = excluded.window_count, \
                     spike_notified = excluded.spike_notified"
                ))
                .bind(&fp)
                .bind(micros(next.first_seen))
                .bind(micros(next.last_seen))
                .bind(next.count as i64)
                .bind(next.resolved_at.map(micros))
                .bind(micros(next.window_start))
                .bind(next.window_count as i64)
                .bind(next.spike_notified as i64)
                .execute(&mut *conn)
                .await?;
                Ok(next)
            })
        })
        .await
    }

    async fn error_issue(&self, fingerprint: &str) -> Result<Option<ErrorIssue>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ISSUE_COLUMNS} FROM error_issues WHERE fingerprint = ?"))
            .bind(fingerprint)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(issue_from_row).transpose()
    }

    async fn update_source_state(
        &self,
        key: &str,
        update: StateUpdate,
        at: DateTime<Utc>,
    ) -> Result<Option<Value>, StoreError> {
        let key = key.to_string();
        exclusive(self, move |conn| {
            Box::pin(async move {
                let body: Option<String> = sqlx::query_scalar("SELECT body FROM source_state WHERE key = ?")
                    .bind(&key)
                    .fetch_optional(&mut *conn)
                    .await?;
                let current = body
                    .map(|b| serde_json::from_str::<Value>(&b))
                    .transpose()
                    .map_err(|e| StoreError::Database(format!("corrupt source state {key:?}: {e}")))?;
                match update(current.clone()) {
                    None => Ok(current),
                    Some(next) => {
                        sqlx::query(
                            "INSERT INTO source_state (key, body, updated_at) VALUES (?, ?, ?) \
                             ON CONFLICT (key) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                        )
                        .bind(&key)
                        .bind(next.to_string())
                        .bind(micros(at))
                        .execute(&mut *conn)
                        .await?;
                        Ok(Some(next))
                    }
                }
            })
        })
        .await
    }

    async fn source_state(&self, key: &str) -> Result<Option<Value>, StoreError> {
        let body: Option<String> = sqlx::query_scalar("SELECT body FROM source_state WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.reader)
            .await?;
        body.map(|b| serde_json::from_str(&b))
            .transpose()
            .map_err(|e| StoreError::Database(format!("corrupt source state {key:?}: {e}")))
    }

    async fn count_events(
        &self,
        kinds: &[String],
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if kinds.is_empty() {
            return Ok(0);
        }
        // Events reach SQLite behind their acknowledgement: count what was accepted so far.
        self.settle().await?;
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM events WHERE ts >= ");
        qb.push_bind(micros(since)).push(" AND ts < ").push_bind(micros(until)).push(" AND (");
        for (i, k) in kinds.iter().enumerate() {
            if i > 0 {
                qb.push(" OR ");
            }
            qb.push("kind GLOB ").push_bind(k.clone());
        }
        qb.push(")");
        let n: i64 = qb.build_query_scalar().fetch_one(&self.reader).await?;
        Ok(n as u64)
    }
}
