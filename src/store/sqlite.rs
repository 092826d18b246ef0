//! The embedded default store: one SQLite file in WAL mode, with a commit log beside it.
//!
//! Writes that must be durable (events with their outbox rows and alert states, queued
//! messages, silences) are appended to the commit log (`journal.rs`), which gathers whatever
//! concurrent callers have queued into one fsync'd append (group commit). The log hands each
//! durable round to the writer thread (`sqlite_writer.rs`), which applies it to SQLite behind
//! the acknowledgement, in log order, with `synchronous = NORMAL`; reads first wait until what
//! was acknowledged before them is applied, so a caller always reads its own writes. Delivery
//! bookkeeping (delivered, attempts, dead letters) goes to the writer directly: at worst a
//! crash repeats a send.
//!
//! When another process owns the log (a `tocsin` command beside the daemon), this process
//! writes to SQLite directly with `synchronous = FULL`, as every write did before the log.
//! Reads use a separate pool of read-only connections, which WAL lets run beside the writer.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use std::sync::Arc;
use tokio::sync::{oneshot, watch};

use super::event_parts;
use super::journal::{Entry, Journal, JournalDir};
use super::sqlite_writer::{self, Done, WriteOp, Writer};
use super::{
    AlertPage, Batch, BatchSummary, EventQuery, NewDelivery, NewEvent, OutboxCounts, OutboxEntry, Page, Pruned, Store,
    StoreError,
};
use crate::alert::Alert;
use crate::event::Event;
use crate::message::Message;
use crate::silence::Silence;

/// Rows the log may have acknowledged ahead of SQLite (held in memory until applied).
const MAX_UNAPPLIED: u64 = 8192;

pub struct SqliteStore {
    pub(crate) reader: SqlitePool,
    /// Writes off the event path (check samples, sources, Slack threads, pruning), each
    /// commit synced. The event path's writes go to the writer thread.
    pub(crate) writer_pool: SqlitePool,
    writes: flume::Sender<WriteOp>,
    /// The commit log, when this process owns it.
    journal: Option<Journal>,
    /// What the writer has applied of what the log acknowledged.
    backlog: Option<Backlog>,
    background: Vec<tokio::task::JoinHandle<()>>,
    /// How long a text search waits for the full-text index (`TEXT_SEARCH_WAIT`).
    text_search_wait: Duration,
}

/// How often the WAL is copied back into the database file, off the commit path. Often, so each
/// checkpoint's fsync has little to write: the log's own fsyncs queue behind it on the disk.
/// Measured at 15,000 req/s: every 500 ms, 9 of 2,807 log fsyncs took over 5 ms (up to 18 ms)
/// and the requests' p99 was 11–13 ms; every 50 ms, 1 of 5,559 and 7–8 ms.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// A WAL file larger than this is truncated once the store is quiet. Under a steady heavy
/// load a passive checkpoint never quite catches up, so the WAL grows until the load pauses
/// (900 MB in 10 s of batches), and SQLite then reuses the file at that size for good.
/// Truncating is not done in the writer's commit (`journal_size_limit`) nor under load (a
/// RESTART checkpoint): both were measured to stall it for 170–220 ms, held up notifications
/// that long.
const WAL_CUT_ABOVE: u64 = 64 * 1024 * 1024;
/// How often at most while nothing is written.
const CHECKPOINT_IDLE_EVERY: Duration = Duration::from_millis(800);
/// How long a text search waits for the full-text index to catch up. Only a large burst
/// leaves it further behind (a million events take ~15 s to index); the search then answers
/// from what is indexed and says how many events it could not see.
const TEXT_SEARCH_WAIT: Duration = Duration::from_secs(2);
/// The writer thread's nice value when it applies the log in the background.
const WRITER_NICE: i32 = 10;

impl SqliteStore {
    pub async fn open(path: &str) -> Result<super::DynStore, StoreError> {
        Ok(std::sync::Arc::new(Self::open_store(path).await?))
    }

    pub async fn open_store(path: &str) -> Result<SqliteStore, StoreError> {
        let journal_dir = if is_file_path(path) { JournalDir::open(Path::new(path))? } else { None };
        if journal_dir.is_none() && is_file_path(path) {
            tracing::info!(path, "another process owns the commit log; writing to SQLite directly (fsync per commit)");
        }
        let base = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            // Page caches are per connection and SQLite's memory is outside the Rust allocator:
            // small ones, for indexed lookups and the occasional write.
            .pragma("cache_size", "-2048")
            .pragma("temp_store", "memory");
        let writer_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            // Checkpoints run on their own connection in the background, never inside a commit.
            .connect_with(
                base.clone()
                    .create_if_missing(true)
                    .synchronous(SqliteSynchronous::Full)
                    .pragma("wal_autocheckpoint", "0"),
            )
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot open {path}: {e}")))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer_pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        let (applied_tx, applied) = watch::channel(0u64);
        let (writer, journal_dir, first_segment) = {
            let path = path.to_string();
            tokio::task::spawn_blocking(move || {
                let mut conn = sqlite_writer::open(&path, journal_dir.is_none())?;
                let first_segment = match &journal_dir {
                    Some(dir) => Some(sqlite_writer::recover(&mut conn, dir)?),
                    None => None,
                };
                let writer = Writer {
                    conn,
                    applied: applied_tx,
                    journal_path: journal_dir.as_ref().map(|d| d.path().to_path_buf()),
                    durable_segment: first_segment.unwrap_or(0),
                    index_waiters: Vec::new(),
                };
                Ok::<_, StoreError>((writer, journal_dir, first_segment))
            })
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))??
        };
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.clone().read_only(true))
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot open {path}: {e}")))?;
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(base.clone().synchronous(SqliteSynchronous::Full).pragma("cache_size", "-256"))
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot open {path}: {e}")))?;
        let (writes, rx) = flume::unbounded();
        let behind_a_log = journal_dir.is_some();
        std::thread::Builder::new()
            .name("tocsin-sqlite".into())
            .spawn(move || {
                if behind_a_log {
                    // Behind the log the writer's rounds are not what a request waits for;
                    // the request threads are. Measured at 15,000 req/s: p99 5.7–8.7 ms
                    // instead of 8.4–11 ms, as the request threads wait less for a core.
                    super::lower_this_threads_priority(WRITER_NICE);
                }
                writer.run(rx)
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        let journal = match (journal_dir, first_segment) {
            (Some(dir), Some(segment)) => {
                let to_writer = writes.clone();
                let mut applied_so_far = applied.clone();
                let runtime = tokio::runtime::Handle::current();
                let mut handed_on = 0u64;
                Some(Journal::start(dir, segment, move |durable| {
                    // Acknowledged rows wait in memory until SQLite has them: keep that bounded.
                    let room = runtime.block_on(applied_so_far.wait_for(|n| handed_on - *n < MAX_UNAPPLIED));
                    handed_on += durable.weight;
                    room.is_ok() && to_writer.send(WriteOp::Apply(durable)).is_ok()
                })?)
            }
            _ => None,
        };
        let wal = is_file_path(path).then(|| PathBuf::from(format!("{path}-wal")));
        let background = vec![tokio::spawn(checkpoint_loop(checkpointer, wal))];
        let backlog = journal.as_ref().map(|j| Backlog { journaled: j.journaled_counter(), applied });
        Ok(SqliteStore {
            reader,
            writer_pool,
            writes,
            journal,
            backlog,
            background,
            text_search_wait: TEXT_SEARCH_WAIT,
        })
    }

    /// Waits until every write acknowledged before this call is applied, so reads see them.
    pub(super) async fn settle(&self) -> Result<(), StoreError> {
        match &self.backlog {
            // Records of plain events may be gathering at the writer: a read that has to wait
            // for them asks it to apply them now (delivery must not wait out the gathering).
            Some(backlog) => backlog.applied(|| drop(self.writes.send(WriteOp::Flush))).await,
            None => Ok(()),
        }
    }

    /// A durable write: through the log when this process owns it, else straight to SQLite.
    async fn write_durable(&self, entry: Entry) -> Result<(), StoreError> {
        match &self.journal {
            Some(journal) => journal.append(entry).await,
            None => self.write(|done| WriteOp::Direct(entry, done)).await,
        }
    }

    /// Indexes every stored event for full-text search now (searches call this so they never
    /// miss what was just accepted).
    async fn index_now(&self) -> Result<(), StoreError> {
        self.write(WriteOp::Index).await
    }

    /// How many stored events the full-text index does not hold yet.
    async fn index_lag(&self) -> Result<u64, StoreError> {
        let lag: i64 = sqlx::query_scalar(
            "SELECT MAX(0, COALESCE((SELECT MAX(seq) FROM events), 0) - (SELECT last_seq FROM fts_progress WHERE id = 1))",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(lag as u64)
    }

    async fn write(&self, op: impl FnOnce(Done) -> WriteOp) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writes.send(op(tx)).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// An event from its row: the columns and the rest of it in `body` (see `event_parts`).
fn stored_event(row: &sqlx::sqlite::SqliteRow) -> Result<Event, StoreError> {
    let corrupt = |what: String| StoreError::Database(format!("corrupt event: {what}"));
    let id: Vec<u8> = row.try_get("id")?;
    let severity: i64 = row.try_get("severity")?;
    let head = event_parts::Head {
        id: uuid::Uuid::from_slice(&id).map_err(|e| corrupt(e.to_string()))?,
        kind: row.try_get("kind")?,
        severity: crate::event::Severity::from_rank(severity).ok_or_else(|| corrupt(format!("severity {severity}")))?,
        user: row.try_get("user")?,
        fingerprint: row.try_get("fingerprint")?,
        source: row.try_get("source")?,
    };
    let body: &str = row.try_get("body")?;
    let rest: event_parts::Rest = serde_json::from_str(body).map_err(|e| corrupt(e.to_string()))?;
    Ok(rest.into_event(head))
}

/// What the log acknowledged (its weight so far) against what the writer applied.
struct Backlog {
    journaled: Arc<std::sync::atomic::AtomicU64>,
    applied: watch::Receiver<u64>,
}

impl Backlog {
    /// Returns once everything acknowledged before the call is applied; `hurry` runs first
    /// when that is not the case yet.
    async fn applied(&self, hurry: impl FnOnce()) -> Result<(), StoreError> {
        let target = self.journaled.load(std::sync::atomic::Ordering::Acquire);
        let mut applied = self.applied.clone();
        if *applied.borrow() < target {
            hurry();
        }
        applied.wait_for(|n| *n >= target).await.map(|_| ()).map_err(|_| StoreError::Closed)
    }
}

/// Whether a passive checkpoint's answer shows a quiet store with an oversized WAL file: all
/// of it copied, nothing written since the last look, no reader in the way.
fn wal_worth_cutting(busy: i64, frames: i64, copied: i64, quiet: bool, wal_bytes: u64) -> bool {
    busy == 0 && frames == copied && quiet && wal_bytes > WAL_CUT_ABOVE
}

async fn checkpoint_loop(pool: SqlitePool, wal: Option<PathBuf>) {
    let mut wait = CHECKPOINT_EVERY;
    let mut last_frames = None;
    loop {
        tokio::time::sleep(wait).await;
        if pool.is_closed() {
            return;
        }
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&pool).await {
            Ok((busy, frames, copied)) => {
                let wal_bytes = wal.as_ref().and_then(|w| std::fs::metadata(w).ok()).map_or(0, |m| m.len());
                if wal_worth_cutting(busy, frames, copied, last_frames == Some(frames), wal_bytes) {
                    match sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await {
                        Ok(_) => tracing::debug!(wal_bytes, "WAL truncated after a busy spell"),
                        Err(e) => tracing::debug!(error = %e, "WAL truncation skipped"),
                    }
                }
                // A WAL nobody wrote to since the last look needs no checkpoint 20 times a
                // second (measured idle: 1 % of a core instead of 0.1 %).
                let quiet = last_frames == Some(frames);
                wait = if quiet { (wait * 2).min(CHECKPOINT_IDLE_EVERY) } else { CHECKPOINT_EVERY };
                last_frames = Some(frames);
            }
            Err(e) => {
                if pool.is_closed() {
                    return;
                }
                tracing::debug!(error = %e, "checkpoint skipped");
            }
        }
    }
}

/// ` WHERE …` selecting the pending rows of a batch.
fn push_batch_filter(qb: &mut QueryBuilder<'_, Sqlite>, batch: &Batch) {
    qb.push(" WHERE state = 0 AND destination = ").push_bind(batch.destination.clone());
    qb.push(" AND not_before <= ").push_bind(micros(batch.due_by));
    qb.push(" AND id <= ").push_bind(batch.up_to_id);
    if let Some(group) = &batch.group_key {
        qb.push(" AND group_key = ").push_bind(group.clone());
    }
}

/// A path SQLite opens as a file of its own (not `:memory:`, not a URI with options).
fn is_file_path(path: &str) -> bool {
    !path.is_empty() && !path.starts_with(':') && !path.contains('?') && !path.starts_with("file:")
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
            // A NUL ends FTS5's query string early ("unterminated string").
            let word: String = t.trim_end_matches('*').chars().filter(|c| *c != '"' && *c != '\0').collect();
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

const OUTBOX_COLUMNS: &str =
    "id, destination, notifier, group_key, not_before, message, attempts, created_at, last_error";

fn outbox_entry(row: &sqlx::sqlite::SqliteRow) -> Result<OutboxEntry, StoreError> {
    let message: String = row.try_get("message")?;
    let message: Message =
        serde_json::from_str(&message).map_err(|e| StoreError::Database(format!("corrupt outbox row: {e}")))?;
    Ok(OutboxEntry {
        id: row.try_get("id")?,
        destination: row.try_get("destination")?,
        notifier: row.try_get("notifier")?,
        group_key: row.try_get("group_key")?,
        not_before: from_micros(row.try_get("not_before")?),
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
        self.write_durable(Entry::Events(events)).await
    }

    async fn search_events(&self, query: &EventQuery) -> Result<Page<Event>, StoreError> {
        self.settle().await?;
        let limit = query.limit.clamp(1, 1000) as i64;
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT seq, ts, id, kind, severity, user, fingerprint, source, body FROM events WHERE 1=1",
        );
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
        let mut index_lag = 0;
        if let Some(q) = query.q.as_deref().and_then(fts_query) {
            if tokio::time::timeout(self.text_search_wait, self.index_now()).await.is_err() {
                index_lag = self.index_lag().await?;
            }
            qb.push(" AND seq IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ").push_bind(q).push(")");
        }
        qb.push(" ORDER BY ts DESC, seq DESC LIMIT ").push_bind(limit + 1);
        let rows = qb.build().fetch_all(&self.reader).await?;
        let mut items = Vec::with_capacity(rows.len().min(limit as usize));
        let mut last = None;
        for row in rows.iter().take(limit as usize) {
            items.push(stored_event(row)?);
            last = Some((row.try_get::<i64, _>("ts")?, row.try_get::<i64, _>("seq")?));
        }
        let next_cursor = if rows.len() as i64 > limit { last.map(|(ts, seq)| encode_cursor(ts, seq)) } else { None };
        Ok(Page { items, next_cursor, index_lag })
    }

    async fn enqueue(&self, deliveries: Vec<NewDelivery>, alerts: Vec<Alert>) -> Result<(), StoreError> {
        if deliveries.is_empty() && alerts.is_empty() {
            return Ok(());
        }
        self.write_durable(Entry::Enqueue { deliveries, alerts }).await
    }

    async fn pending_destinations(&self) -> Result<Vec<String>, StoreError> {
        self.settle().await?;
        Ok(sqlx::query_scalar("SELECT DISTINCT destination FROM outbox WHERE state = 0")
            .fetch_all(&self.reader)
            .await?)
    }

    async fn due_deliveries(
        &self,
        destination: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.settle().await?;
        let rows = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = 0 AND destination = ? AND not_before <= ? \
             ORDER BY not_before, id LIMIT ?"
        ))
        .bind(destination)
        .bind(micros(now))
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(outbox_entry).collect()
    }

    async fn batch_entries(&self, batch: &Batch, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        self.settle().await?;
        let mut qb = QueryBuilder::<Sqlite>::new(format!("SELECT {OUTBOX_COLUMNS} FROM outbox"));
        push_batch_filter(&mut qb, batch);
        qb.push(" ORDER BY id LIMIT ").push_bind(limit as i64);
        let rows = qb.build().fetch_all(&self.reader).await?;
        rows.iter().map(outbox_entry).collect()
    }

    async fn batch_summary(&self, batch: &Batch) -> Result<BatchSummary, StoreError> {
        self.settle().await?;
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT kind, COUNT(*) AS n, MAX(id) AS max_id, MIN(created_at) AS first_at, MAX(created_at) AS last_at FROM outbox",
        );
        push_batch_filter(&mut qb, batch);
        qb.push(" GROUP BY kind ORDER BY n DESC, kind");
        let rows = qb.build().fetch_all(&self.reader).await?;
        let mut summary = BatchSummary::default();
        for row in &rows {
            let n = row.try_get::<i64, _>("n")? as u64;
            summary.count += n;
            summary.max_id = summary.max_id.max(row.try_get("max_id")?);
            let first = from_micros(row.try_get("first_at")?);
            let last = from_micros(row.try_get("last_at")?);
            summary.first_at = Some(summary.first_at.map_or(first, |f| f.min(first)));
            summary.last_at = Some(summary.last_at.map_or(last, |l| l.max(last)));
            summary.by_kind.push((row.try_get("kind")?, n));
        }
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT user, COUNT(*) AS n FROM outbox");
        push_batch_filter(&mut qb, batch);
        qb.push(" AND user IS NOT NULL GROUP BY user ORDER BY n DESC, user LIMIT 5");
        for row in qb.build().fetch_all(&self.reader).await? {
            summary.top_users.push((row.try_get("user")?, row.try_get::<i64, _>("n")? as u64));
        }
        Ok(summary)
    }

    async fn next_due(&self, destination: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.settle().await?;
        let next: Option<i64> =
            sqlx::query_scalar("SELECT MIN(not_before) FROM outbox WHERE state = 0 AND destination = ?")
                .bind(destination)
                .fetch_one(&self.reader)
                .await?;
        Ok(next.map(from_micros))
    }

    async fn mark_delivered(&self, batch: &Batch, at: DateTime<Utc>) -> Result<(), StoreError> {
        let batch = batch.clone();
        self.write(|done| WriteOp::Delivered { batch, at: micros(at), done }).await
    }

    async fn record_attempt(&self, id: i64, attempts: u32, error: &str) -> Result<(), StoreError> {
        let error = error.to_string();
        self.write(|done| WriteOp::Attempt { id, attempts, error, done }).await
    }

    async fn dead_letter(
        &self,
        batch: &Batch,
        attempts: u32,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (batch, error) = (batch.clone(), error.to_string());
        self.write(|done| WriteOp::Dead { batch, attempts, error, at: micros(at), done }).await
    }

    async fn dead_letters(&self, limit: u32, before: Option<i64>) -> Result<Vec<OutboxEntry>, StoreError> {
        self.settle().await?;
        let rows = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = 2 AND id < ? ORDER BY id DESC LIMIT ?"
        ))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit.clamp(1, 1000) as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(outbox_entry).collect()
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        self.settle().await?;
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

    async fn load_alerts(&self, since: DateTime<Utc>) -> Result<Vec<Alert>, StoreError> {
        self.settle().await?;
        let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM alerts WHERE status = 0 OR updated_at >= ?")
            .bind(micros(since))
            .fetch_all(&self.reader)
            .await?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(|e| StoreError::Database(format!("corrupt alert: {e}"))))
            .collect()
    }

    async fn firing_alerts(&self, limit: u32, cursor: Option<&str>) -> Result<AlertPage, StoreError> {
        self.settle().await?;
        let limit = limit.clamp(1, 1000) as i64;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM alerts WHERE status = 0").fetch_one(&self.reader).await?;
        let (after_ts, after_fp) = match cursor {
            Some(c) => {
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c)
                    .map_err(|_| StoreError::InvalidCursor)?;
                let text = String::from_utf8(raw).map_err(|_| StoreError::InvalidCursor)?;
                let (ts, fp) = text.split_once(':').ok_or(StoreError::InvalidCursor)?;
                (ts.parse::<i64>().map_err(|_| StoreError::InvalidCursor)?, fp.to_string())
            }
            None => (i64::MIN, String::new()),
        };
        let rows = sqlx::query(
            "SELECT started_at, fingerprint, body FROM alerts WHERE status = 0 \
             AND (started_at > ? OR (started_at = ? AND fingerprint > ?)) ORDER BY started_at, fingerprint LIMIT ?",
        )
        .bind(after_ts)
        .bind(after_ts)
        .bind(&after_fp)
        .bind(limit + 1)
        .fetch_all(&self.reader)
        .await?;
        let mut alerts = Vec::new();
        let mut last = None;
        for row in rows.iter().take(limit as usize) {
            let body: String = row.try_get("body")?;
            alerts.push(serde_json::from_str(&body).map_err(|e| StoreError::Database(format!("corrupt alert: {e}")))?);
            last = Some((row.try_get::<i64, _>("started_at")?, row.try_get::<String, _>("fingerprint")?));
        }
        let next_cursor = if rows.len() as i64 > limit {
            last.map(|(ts, fp)| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{ts}:{fp}")))
        } else {
            None
        };
        Ok(AlertPage { alerts, total: total as u64, next_cursor })
    }

    async fn alert_event(&self, fingerprint: &str) -> Result<Option<Event>, StoreError> {
        self.settle().await?;
        let body: Option<Option<String>> = sqlx::query_scalar("SELECT event FROM alerts WHERE fingerprint = ?")
            .bind(fingerprint)
            .fetch_optional(&self.reader)
            .await?;
        body.flatten()
            .map(|b| serde_json::from_str(&b).map_err(|e| StoreError::Database(format!("corrupt event: {e}"))))
            .transpose()
    }

    async fn insert_silence(&self, silence: &Silence) -> Result<(), StoreError> {
        self.write_durable(Entry::Silence(silence.clone())).await
    }

    async fn silences(&self, ended_after: DateTime<Utc>) -> Result<Vec<Silence>, StoreError> {
        self.settle().await?;
        let bodies: Vec<String> =
            sqlx::query_scalar("SELECT body FROM silences WHERE ends_at > ? ORDER BY starts_at DESC, id")
                .bind(micros(ended_after))
                .fetch_all(&self.reader)
                .await?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(|e| StoreError::Database(format!("corrupt silence: {e}"))))
            .collect()
    }

    async fn expire_silence(&self, id: uuid::Uuid, at: DateTime<Utc>) -> Result<Silence, StoreError> {
        self.settle().await?;
        let body: Option<String> = sqlx::query_scalar("SELECT body FROM silences WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        let mut silence: Silence = serde_json::from_str(&body.ok_or(StoreError::NotFound)?)
            .map_err(|e| StoreError::Database(format!("corrupt silence: {e}")))?;
        if silence.ends_at > at {
            silence.ends_at = at;
            if silence.starts_at > at {
                silence.starts_at = at;
            }
            self.insert_silence(&silence).await?;
        }
        Ok(silence)
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<Pruned, StoreError> {
        self.settle().await?;
        let cutoff = micros(before);
        let mut pruned = Pruned::default();
        // Small batches keep each write transaction short, so ingest is never held up for long.
        loop {
            let mut conn = self.writer_pool.acquire().await?;
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            let result: Result<u64, StoreError> = async {
                // seq follows arrival, so the oldest events are the lowest seqs: no index on
                // received_at needed.
                let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT seq, received_at FROM events ORDER BY seq LIMIT 5000")
                    .fetch_all(&mut *conn)
                    .await?;
                let seqs: Vec<i64> = rows.iter().take_while(|(_, at)| *at < cutoff).map(|(seq, _)| *seq).collect();
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
                    pruned.events += n;
                    if n < 5000 {
                        break;
                    }
                }
                Err(e) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    return Err(e);
                }
            }
        }
        // Few rows each: resolved alerts quiet since the cutoff (the pipeline forgot them long
        // ago; one firing again starts afresh), silences that ended before it, and error
        // issues not seen since.
        pruned.alerts = sqlx::query("DELETE FROM alerts WHERE status <> 0 AND updated_at < ?")
            .bind(cutoff)
            .execute(&self.writer_pool)
            .await?
            .rows_affected();
        pruned.silences = sqlx::query("DELETE FROM silences WHERE ends_at < ?")
            .bind(cutoff)
            .execute(&self.writer_pool)
            .await?
            .rows_affected();
        pruned.error_issues = sqlx::query("DELETE FROM error_issues WHERE last_seen < ?")
            .bind(cutoff)
            .execute(&self.writer_pool)
            .await?
            .rows_affected();
        Ok(pruned)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        if self.writes.is_disconnected() {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    async fn close(&self) {
        if let Some(journal) = &self.journal {
            journal.close().await;
            // What the log acknowledged is applied now rather than at the next start.
            if tokio::time::timeout(Duration::from_secs(10), self.settle()).await.is_err() {
                tracing::warn!("closing with commit-log records unapplied; they are applied at the next start");
            }
        }
        // Whatever is queued before the stop is committed first (bounded: a writer stuck
        // retrying a failing commit leaves its records to the log and the next start).
        if tokio::time::timeout(Duration::from_secs(10), self.write(WriteOp::Stop)).await.is_err() {
            tracing::warn!("the store's writer did not finish in time; closing without it");
        }
        self.reader.close().await;
        self.writer_pool.close().await;
        for task in &self.background {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests;
