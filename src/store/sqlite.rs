//! The embedded default store: one SQLite file in WAL mode.
//!
//! Writes that must be durable go through one writer task that gathers whatever concurrent
//! callers have queued and commits it in one transaction (group commit): every caller waits for
//! the fsync of `synchronous = FULL`, but many share it, so durability does not cost throughput.
//! Reads use a separate pool of read-only connections, which WAL lets run beside the writer.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::{EventQuery, NewEvent, OutboxCounts, OutboxEntry, Page, Store, StoreError};
use crate::event::Event;
use crate::message::Message;

/// Work the writer task performs; everything in one round shares a transaction.
enum WriteOp {
    Insert(Vec<NewEvent>, oneshot::Sender<Result<(), StoreError>>),
    Delivered { id: i64, at: i64, done: oneshot::Sender<Result<(), StoreError>> },
    Attempt { id: i64, attempts: u32, error: String, done: oneshot::Sender<Result<(), StoreError>> },
    Dead { id: i64, attempts: u32, error: String, at: i64, done: oneshot::Sender<Result<(), StoreError>> },
}

impl WriteOp {
    fn weight(&self) -> usize {
        match self {
            WriteOp::Insert(events, _) => events.len(),
            _ => 1,
        }
    }

    fn reply(self, result: Result<(), StoreError>) {
        let done = match self {
            WriteOp::Insert(_, done)
            | WriteOp::Delivered { done, .. }
            | WriteOp::Attempt { done, .. }
            | WriteOp::Dead { done, .. } => done,
        };
        let _ = done.send(result);
    }
}

/// Events per transaction at most: bounds the latency a large round adds to its callers.
const MAX_ROUND: usize = 4096;
/// Rows per multi-row INSERT: powers of two keep the number of distinct (cached) statements small.
const CHUNKS: [usize; 9] = [256, 128, 64, 32, 16, 8, 4, 2, 1];

pub struct SqliteStore {
    pub(crate) reader: SqlitePool,
    /// One connection: whoever holds it writes alone.
    pub(crate) writer_pool: SqlitePool,
    writes: mpsc::Sender<WriteOp>,
}

impl SqliteStore {
    pub async fn open(path: &str) -> Result<super::DynStore, StoreError> {
        Ok(std::sync::Arc::new(Self::open_store(path).await?))
    }

    pub async fn open_store(path: &str) -> Result<SqliteStore, StoreError> {
        let base = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-4096")
            .pragma("temp_store", "memory");
        let writer_options = base
            .clone()
            .create_if_missing(true)
            .synchronous(SqliteSynchronous::Full)
            .pragma("wal_autocheckpoint", "4000");
        let writer_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(writer_options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot open {path}: {e}")))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer_pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.read_only(true))
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot open {path}: {e}")))?;
        let (writes, rx) = mpsc::channel(1024);
        tokio::spawn(writer_loop(writer_pool.clone(), rx));
        Ok(SqliteStore { reader, writer_pool, writes })
    }

    async fn write(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<(), StoreError>>) -> WriteOp,
    ) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writes.send(op(tx)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

async fn writer_loop(pool: SqlitePool, mut rx: mpsc::Receiver<WriteOp>) {
    let mut round = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut weight = first.weight();
        round.push(first);
        while weight < MAX_ROUND {
            match rx.try_recv() {
                Ok(op) => {
                    weight += op.weight();
                    round.push(op);
                }
                Err(_) => break,
            }
        }
        let result = commit_round(&pool, &round).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, ops = round.len(), "store write failed");
        }
        for op in round.drain(..) {
            op.reply(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Database(e.to_string())),
            });
        }
    }
}

async fn commit_round(pool: &SqlitePool, round: &[WriteOp]) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    // IMMEDIATE takes the write lock up front, so the seq numbers read below stay ours even if
    // another process (a `tocsin check run`) shares the file.
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    match apply_round(&mut conn, round).await {
        Ok(()) => {
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok(())
        }
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

async fn apply_round(conn: &mut SqliteConnection, round: &[WriteOp]) -> Result<(), StoreError> {
    let events: Vec<&NewEvent> =
        round.iter().filter_map(|op| if let WriteOp::Insert(e, _) = op { Some(e) } else { None }).flatten().collect();
    if !events.is_empty() {
        insert_events(conn, &events).await?;
    }
    for op in round {
        match op {
            WriteOp::Insert(..) => {}
            WriteOp::Delivered { id, at, .. } => {
                sqlx::query("UPDATE outbox SET state = 1, updated_at = ?, attempts = attempts + 1 WHERE id = ?")
                    .bind(at)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
            WriteOp::Attempt { id, attempts, error, .. } => {
                sqlx::query("UPDATE outbox SET attempts = ?, last_error = ?, updated_at = ? WHERE id = ?")
                    .bind(*attempts as i64)
                    .bind(error)
                    .bind(micros(Utc::now()))
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
            WriteOp::Dead { id, attempts, error, at, .. } => {
                sqlx::query("UPDATE outbox SET state = 2, attempts = ?, last_error = ?, updated_at = ? WHERE id = ?")
                    .bind(*attempts as i64)
                    .bind(error)
                    .bind(at)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}

struct EventRow {
    seq: i64,
    body: String,
    fields_text: String,
}

async fn insert_events(conn: &mut SqliteConnection, events: &[&NewEvent]) -> Result<(), StoreError> {
    let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM events").fetch_one(&mut *conn).await?;
    let rows: Vec<EventRow> = events
        .iter()
        .enumerate()
        .map(|(i, e)| EventRow {
            seq: next + i as i64,
            body: serde_json::to_string(&e.event).expect("events serialize"),
            fields_text: e
                .event
                .fields
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k} {s}"),
                    other => format!("{k} {other}"),
                })
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect();

    let mut at = 0;
    for chunk in chunked(events.len()) {
        let slice = &events[at..at + chunk];
        let meta = &rows[at..at + chunk];
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (seq, id, ts, received_at, kind, severity, user, fingerprint, source, body) ",
        );
        qb.push_values(slice.iter().zip(meta), |mut b, (e, row)| {
            let ev = &e.event;
            b.push_bind(row.seq)
                .push_bind(ev.id.as_bytes().to_vec())
                .push_bind(micros(ev.timestamp))
                .push_bind(micros(ev.received_at))
                .push_bind(ev.kind.as_str())
                .push_bind(ev.severity as i64)
                .push_bind(ev.user.as_deref())
                .push_bind(ev.fingerprint.as_str())
                .push_bind(ev.source.as_str())
                .push_bind(row.body.as_str());
        });
        qb.build().execute(&mut *conn).await?;

        let mut qb = QueryBuilder::<Sqlite>::new("INSERT INTO events_fts (rowid, title, text, kind, user, fields) ");
        qb.push_values(slice.iter().zip(meta), |mut b, (e, row)| {
            let ev = &e.event;
            b.push_bind(row.seq)
                .push_bind(ev.title.as_deref())
                .push_bind(ev.text.as_deref())
                .push_bind(ev.kind.replace(['.', '_', '-'], " "))
                .push_bind(ev.user.as_deref())
                .push_bind(row.fields_text.as_str());
        });
        qb.build().execute(&mut *conn).await?;
        at += chunk;
    }

    let now = micros(Utc::now());
    let deliveries: Vec<(i64, String, &super::NewDelivery)> = events
        .iter()
        .zip(&rows)
        .flat_map(|(e, row)| {
            e.deliveries
                .iter()
                .map(move |d| (row.seq, serde_json::to_string(&d.message).expect("messages serialize"), d))
        })
        .collect();
    let mut at = 0;
    for chunk in chunked(deliveries.len()) {
        let mut qb =
            QueryBuilder::<Sqlite>::new("INSERT INTO outbox (destination, notifier, event_seq, message, created_at) ");
        qb.push_values(&deliveries[at..at + chunk], |mut b, (seq, message, d)| {
            b.push_bind(d.destination.as_str())
                .push_bind(d.notifier.as_str())
                .push_bind(*seq)
                .push_bind(message.as_str())
                .push_bind(now);
        });
        qb.build().execute(&mut *conn).await?;
        at += chunk;
    }
    Ok(())
}

/// Splits `n` rows into chunk sizes from [`CHUNKS`].
fn chunked(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for size in CHUNKS {
        while n >= size {
            out.push(size);
            n -= size;
        }
    }
    out
}

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

/// FTS5 query syntax is rich and easy to trip over; user text becomes a conjunction of quoted
/// terms, with a trailing `*` kept as a prefix search.
fn fts_query(q: &str) -> Option<String> {
    let terms: Vec<String> = q
        .split_whitespace()
        .filter_map(|t| {
            let prefix = t.ends_with('*');
            let word: String = t.trim_end_matches('*').replace('"', "");
            if word.is_empty() {
                return None;
            }
            Some(if prefix { format!("\"{word}\"*") } else { format!("\"{word}\"") })
        })
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

fn encode_cursor(ts: i64, seq: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{ts}:{seq}"))
}

fn decode_cursor(cursor: &str) -> Result<(i64, i64), StoreError> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| StoreError::InvalidCursor)?;
    let text = String::from_utf8(raw).map_err(|_| StoreError::InvalidCursor)?;
    let (ts, seq) = text.split_once(':').ok_or(StoreError::InvalidCursor)?;
    Ok((ts.parse().map_err(|_| StoreError::InvalidCursor)?, seq.parse().map_err(|_| StoreError::InvalidCursor)?))
}

fn outbox_entry(row: &sqlx::sqlite::SqliteRow) -> Result<OutboxEntry, StoreError> {
    let message: String = row.try_get("message")?;
    let message: Message =
        serde_json::from_str(&message).map_err(|e| StoreError::Database(format!("corrupt outbox row: {e}")))?;
    Ok(OutboxEntry {
        id: row.try_get("id")?,
        destination: row.try_get("destination")?,
        notifier: row.try_get("notifier")?,
        message,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        created_at: from_micros(row.try_get("created_at")?),
        last_error: row.try_get("last_error")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_events(&self, events: Vec<NewEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.write(|done| WriteOp::Insert(events, done)).await
    }

    async fn search_events(&self, query: &EventQuery) -> Result<Page<Event>, StoreError> {
        let limit = query.limit.clamp(1, 1000) as i64;
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT seq, ts, body FROM events WHERE 1=1");
        if let Some(user) = &query.user {
            qb.push(" AND user = ").push_bind(user.clone());
        }
        if let Some(kind) = &query.kind {
            if kind.contains('*') {
                qb.push(" AND kind GLOB ").push_bind(kind.clone());
            } else {
                qb.push(" AND kind = ").push_bind(kind.clone());
            }
        }
        if let Some(since) = query.since {
            qb.push(" AND ts >= ").push_bind(micros(since));
        }
        if let Some(until) = query.until {
            qb.push(" AND ts < ").push_bind(micros(until));
        }
        if let Some(cursor) = &query.cursor {
            let (ts, seq) = decode_cursor(cursor)?;
            qb.push(" AND (ts < ")
                .push_bind(ts)
                .push(" OR (ts = ")
                .push_bind(ts)
                .push(" AND seq < ")
                .push_bind(seq)
                .push("))");
        }
        if let Some(q) = query.q.as_deref().and_then(fts_query) {
            qb.push(" AND seq IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ").push_bind(q).push(")");
        }
        qb.push(" ORDER BY ts DESC, seq DESC LIMIT ").push_bind(limit + 1);
        let rows = qb.build().fetch_all(&self.reader).await?;
        let mut items = Vec::with_capacity(rows.len().min(limit as usize));
        let mut last = None;
        for row in rows.iter().take(limit as usize) {
            let body: String = row.try_get("body")?;
            items.push(serde_json::from_str(&body).map_err(|e| StoreError::Database(format!("corrupt event: {e}")))?);
            last = Some((row.try_get::<i64, _>("ts")?, row.try_get::<i64, _>("seq")?));
        }
        let next_cursor = if rows.len() as i64 > limit { last.map(|(ts, seq)| encode_cursor(ts, seq)) } else { None };
        Ok(Page { items, next_cursor })
    }

    async fn pending_destinations(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT DISTINCT destination FROM outbox WHERE state = 0")
            .fetch_all(&self.reader)
            .await?)
    }

    async fn pending_deliveries(&self, destination: &str, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, destination, notifier, message, attempts, created_at, last_error FROM outbox \
             WHERE state = 0 AND destination = ? ORDER BY id LIMIT ?",
        )
        .bind(destination)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(outbox_entry).collect()
    }

    async fn mark_delivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.write(|done| WriteOp::Delivered { id, at: micros(at), done }).await
    }

    async fn record_attempt(&self, id: i64, attempts: u32, error: &str) -> Result<(), StoreError> {
        let error = error.to_string();
        self.write(|done| WriteOp::Attempt { id, attempts, error, done }).await
    }

    async fn dead_letter(&self, id: i64, attempts: u32, error: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let error = error.to_string();
        self.write(|done| WriteOp::Dead { id, attempts, error, at: micros(at), done }).await
    }

    async fn dead_letters(&self, limit: u32, before: Option<i64>) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, destination, notifier, message, attempts, created_at, last_error FROM outbox \
             WHERE state = 2 AND id < ? ORDER BY id DESC LIMIT ?",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit.clamp(1, 1000) as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(outbox_entry).collect()
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM outbox WHERE state = 0) AS pending, \
                    (SELECT COUNT(*) FROM outbox WHERE state = 2) AS dead",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(OutboxCounts {
            pending: row.try_get::<i64, _>("pending")? as u64,
            dead: row.try_get::<i64, _>("dead")? as u64,
        })
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let cutoff = micros(before);
        let mut total = 0u64;
        // Small batches keep each write transaction short, so ingest is never held up for long.
        loop {
            let mut conn = self.writer_pool.acquire().await?;
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            let result: Result<u64, StoreError> = async {
                let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM events WHERE received_at < ? LIMIT 5000")
                    .bind(cutoff)
                    .fetch_all(&mut *conn)
                    .await?;
                if let (Some(first), Some(last)) = (seqs.first(), seqs.last()) {
                    sqlx::query("DELETE FROM events_fts WHERE rowid BETWEEN ? AND ? AND rowid IN (SELECT value FROM json_each(?))")
                        .bind(first.min(last))
                        .bind(first.max(last))
                        .bind(serde_json::to_string(&seqs).expect("ints serialize"))
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("DELETE FROM events WHERE seq IN (SELECT value FROM json_each(?))")
                        .bind(serde_json::to_string(&seqs).expect("ints serialize"))
                        .execute(&mut *conn)
                        .await?;
                }
                sqlx::query("DELETE FROM outbox WHERE state <> 0 AND updated_at < ?").bind(cutoff).execute(&mut *conn).await?;
                Ok(seqs.len() as u64)
            }
            .await;
            match result {
                Ok(n) => {
                    sqlx::query("COMMIT").execute(&mut *conn).await?;
                    total += n;
                    if n < 5000 {
                        return Ok(total);
                    }
                }
                Err(e) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    return Err(e);
                }
            }
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        if self.writes.is_closed() {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    async fn close(&self) {
        self.reader.close().await;
        self.writer_pool.close().await;
    }
}

#[cfg(test)]
mod tests;
