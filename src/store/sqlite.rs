//! The embedded default store: one SQLite file in WAL mode, with a commit log beside it.
//!
//! Writes that must be durable (events with their outbox rows and alert states, queued
//! messages, silences) are appended to the commit log (`journal.rs`), which gathers whatever
//! concurrent callers have queued into one fsync'd append (group commit). The log hands each
//! durable round to one writer task that applies it to SQLite behind the acknowledgement, in
//! log order, with `synchronous = NORMAL`; reads first wait until what was acknowledged before
//! them is applied, so a caller always reads its own writes. Delivery bookkeeping (delivered,
//! attempts, dead letters) goes to the writer directly: at worst a crash repeats a send.
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
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::journal::{Durable, Entry, Journal, JournalDir, Position};
use super::{
    AlertPage, Batch, BatchSummary, EventQuery, NewDelivery, NewEvent, OutboxCounts, OutboxEntry, Page, Store,
    StoreError,
};
use crate::alert::Alert;
use crate::event::Event;
use crate::message::Message;
use crate::silence::Silence;

/// Work the writer task performs; everything in one round shares a transaction.
enum WriteOp {
    /// Records the commit log made durable; applied in log order, never answered.
    Apply(Durable),
    /// A durable write when another process owns the log: committed here with a full sync.
    Direct(Entry, Done),
    Delivered {
        batch: Batch,
        at: i64,
        done: Done,
    },
    Attempt {
        id: i64,
        attempts: u32,
        error: String,
        done: Done,
    },
    Dead {
        batch: Batch,
        attempts: u32,
        error: String,
        at: i64,
        done: Done,
    },
}

type Done = oneshot::Sender<Result<(), StoreError>>;

impl WriteOp {
    fn weight(&self) -> usize {
        match self {
            WriteOp::Apply(durable) => durable.weight as usize,
            WriteOp::Direct(entry, _) => entry.weight(),
            _ => 1,
        }
    }

    /// The durable writes it carries, in order.
    fn entries(&self) -> &[Entry] {
        match self {
            WriteOp::Apply(durable) => &durable.entries,
            WriteOp::Direct(entry, _) => std::slice::from_ref(entry),
            _ => &[],
        }
    }

    fn reply(self, result: Result<(), StoreError>) {
        let done = match self {
            WriteOp::Apply(_) => return,
            WriteOp::Direct(_, done)
            | WriteOp::Delivered { done, .. }
            | WriteOp::Attempt { done, .. }
            | WriteOp::Dead { done, .. } => done,
        };
        let _ = done.send(result);
    }
}

/// Events per transaction at most: bounds the latency a large round adds to its callers.
const MAX_ROUND: usize = 4096;
/// Rows the log may have acknowledged ahead of SQLite (held in memory until applied).
const MAX_UNAPPLIED: u64 = 8192;
/// Rows per multi-row INSERT: powers of two keep the number of distinct (cached) statements small.
const CHUNKS: [usize; 9] = [256, 128, 64, 32, 16, 8, 4, 2, 1];

pub struct SqliteStore {
    pub(crate) reader: SqlitePool,
    /// One connection: whoever holds it writes alone.
    pub(crate) writer_pool: SqlitePool,
    writes: mpsc::Sender<WriteOp>,
    /// The commit log, when this process owns it.
    journal: Option<Journal>,
    /// What the writer has applied of what the log acknowledged.
    backlog: Option<Backlog>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

/// Rows indexed per indexer transaction: small, so ingest rounds never wait long for the
/// shared write connection.
const INDEX_STEP: i64 = 250;
/// How long the indexer waits for the writer to have nothing acknowledged left to apply
/// before it takes the write connection anyway (so it is never starved).
const INDEX_YIELD: Duration = Duration::from_millis(200);
/// How long the indexer lets commits accumulate before indexing them.
const INDEX_GATHER: Duration = Duration::from_millis(100);
/// How often the WAL is copied back into the database file, off the commit path.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

impl SqliteStore {
    pub async fn open(path: &str) -> Result<super::DynStore, StoreError> {
        Ok(std::sync::Arc::new(Self::open_store(path).await?))
    }

    pub async fn open_store(path: &str) -> Result<SqliteStore, StoreError> {
        let journal_dir = if is_file_path(path) { JournalDir::open(Path::new(path))? } else { None };
        if journal_dir.is_none() && is_file_path(path) {
            tracing::info!(path, "another process owns the commit log; writing to SQLite directly (fsync per commit)");
        }
        // With the log, a commit here need not sync: the log already holds what it applies.
        let writer_sync = if journal_dir.is_some() { SqliteSynchronous::Normal } else { SqliteSynchronous::Full };
        let base = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            // Page caches are per connection and SQLite's memory is outside the Rust allocator:
            // small for readers (indexed lookups), larger for the one writer (index inserts).
            .pragma("cache_size", "-2048")
            .pragma("temp_store", "memory");
        // Checkpoints run on their own connection in the background, never inside a commit.
        let writer_options = base
            .clone()
            .create_if_missing(true)
            .synchronous(writer_sync)
            .pragma("cache_size", "-4096")
            .pragma("wal_autocheckpoint", "0");
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
        let first_segment = match &journal_dir {
            Some(dir) => Some(recover(&writer_pool, dir).await?),
            None => None,
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
        let (writes, rx) = mpsc::channel(1024);
        let (applied_tx, applied) = watch::channel(0u64);
        let indexer = Arc::new(Notify::new());
        let writer = Writer {
            pool: writer_pool.clone(),
            indexer: indexer.clone(),
            applied: applied_tx,
            journal_path: journal_dir.as_ref().map(|d| d.path().to_path_buf()),
            durable_segment: first_segment.unwrap_or(0),
        };
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
                    room.is_ok() && to_writer.blocking_send(WriteOp::Apply(durable)).is_ok()
                })?)
            }
            _ => None,
        };
        let background = vec![
            tokio::spawn(writer_loop(writer, rx)),
            tokio::spawn(index_loop(
                writer_pool.clone(),
                indexer.clone(),
                journal.as_ref().map(|j| Backlog { journaled: j.journaled_counter(), applied: applied.clone() }),
            )),
            tokio::spawn(checkpoint_loop(checkpointer)),
        ];
        let backlog = journal.as_ref().map(|j| Backlog { journaled: j.journaled_counter(), applied });
        Ok(SqliteStore { reader, writer_pool, writes, journal, backlog, background })
    }

    /// Waits until every write acknowledged before this call is applied, so reads see them.
    async fn settle(&self) -> Result<(), StoreError> {
        match &self.backlog {
            Some(backlog) => backlog.applied().await,
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
        while index_step(&self.writer_pool, self.journal.is_none()).await? == INDEX_STEP {}
        Ok(())
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

/// Fills the full-text index behind the commits, in small steps.
/// What the log acknowledged (its weight so far) against what the writer applied.
struct Backlog {
    journaled: Arc<std::sync::atomic::AtomicU64>,
    applied: watch::Receiver<u64>,
}

impl Backlog {
    /// Returns once everything acknowledged before the call is applied.
    async fn applied(&self) -> Result<(), StoreError> {
        let target = self.journaled.load(std::sync::atomic::Ordering::Acquire);
        let mut applied = self.applied.clone();
        applied.wait_for(|n| *n >= target).await.map(|_| ()).map_err(|_| StoreError::Closed)
    }
}

/// With the commit log, `backlog` tells what was acknowledged and what applied: the indexer
/// shares the write connection, so it lets the writer empty its backlog first, and
/// acknowledged events reach SQLite (and their notifications go out) without waiting behind
/// an index step.
async fn index_loop(pool: SqlitePool, nudge: Arc<Notify>, backlog: Option<Backlog>) {
    let writer_syncs = backlog.is_none();
    loop {
        if let Some(backlog) = &backlog {
            let _ = tokio::time::timeout(INDEX_YIELD, backlog.applied()).await;
        }
        match index_step(&pool, writer_syncs).await {
            Ok(INDEX_STEP) => tokio::task::yield_now().await,
            Ok(_) => {
                tokio::select! {
                    _ = nudge.notified() => {
                        // Gather a few rounds first: fewer, larger index transactions leave
                        // the shared write connection to ingest most of the time.
                        tokio::time::sleep(INDEX_GATHER).await;
                    }
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
            Err(StoreError::Closed) => return,
            Err(e) => {
                if pool.is_closed() {
                    return;
                }
                tracing::warn!(error = %e, "full-text indexing failed; will retry");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Indexes up to `INDEX_STEP` events past the last indexed one; returns how many.
async fn index_step(pool: &SqlitePool, writer_syncs: bool) -> Result<i64, StoreError> {
    if pool.is_closed() {
        return Err(StoreError::Closed);
    }
    let mut conn = pool.acquire().await?;
    if !writer_syncs {
        return index_transaction(&mut conn).await;
    }
    // The index can be rebuilt from the events (its progress marker commits with it), so its
    // transactions need not wait for an fsync; the connection is back to FULL before anyone
    // else uses it.
    sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
    let outcome = index_transaction(&mut conn).await;
    if let Err(e) = sqlx::query("PRAGMA synchronous = FULL").execute(&mut *conn).await {
        // Never hand the write connection back with weaker durability.
        conn.close_on_drop();
        return Err(e.into());
    }
    outcome
}

async fn index_transaction(conn: &mut SqliteConnection) -> Result<i64, StoreError> {
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let result: Result<i64, StoreError> = async {
        let last: i64 =
            sqlx::query_scalar("SELECT last_seq FROM fts_progress WHERE id = 1").fetch_one(&mut *conn).await?;
        let upto: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM (SELECT seq FROM events WHERE seq > ? ORDER BY seq LIMIT ?)")
                .bind(last)
                .bind(INDEX_STEP)
                .fetch_one(&mut *conn)
                .await?;
        let Some(upto) = upto else { return Ok(0) };
        let n = sqlx::query(
            "INSERT INTO events_fts (rowid, title, text, kind, user, fields) \
             SELECT seq, json_extract(body, '$.title'), json_extract(body, '$.text'), kind, user, \
                    json_extract(body, '$.fields') FROM events WHERE seq > ? AND seq <= ?",
        )
        .bind(last)
        .bind(upto)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        sqlx::query("UPDATE fts_progress SET last_seq = ? WHERE id = 1").bind(upto).execute(&mut *conn).await?;
        Ok(n as i64)
    }
    .await;
    match result {
        Ok(n) => {
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok(n)
        }
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

async fn checkpoint_loop(pool: SqlitePool) {
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            if pool.is_closed() {
                return;
            }
            tracing::debug!(error = %e, "checkpoint skipped");
        }
    }
}

/// Applies what the log made durable, and the direct writes, one transaction per round.
struct Writer {
    pool: SqlitePool,
    indexer: Arc<Notify>,
    applied: watch::Sender<u64>,
    /// The log's directory, when this process owns it.
    journal_path: Option<PathBuf>,
    /// Segments before this one are applied and synced, so they are removed.
    durable_segment: u64,
}

async fn writer_loop(mut w: Writer, mut rx: mpsc::Receiver<WriteOp>) {
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
        loop {
            let result = w.commit(&round).await;
            if let Err(e) = &result {
                tracing::error!(error = %e, ops = round.len(), "store write failed");
            }
            let mut kept = Vec::new();
            for op in round.drain(..) {
                match (&result, op) {
                    // Acknowledged by the log: applied later rather than lost.
                    (Err(_), op @ WriteOp::Apply(_)) => kept.push(op),
                    (Ok(()), op) => op.reply(Ok(())),
                    (Err(e), op) => op.reply(Err(StoreError::Database(e.to_string()))),
                }
            }
            if kept.is_empty() {
                break;
            }
            round = kept;
            if w.pool.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

impl Writer {
    async fn commit(&mut self, round: &[WriteOp]) -> Result<(), StoreError> {
        let upto = round.iter().filter_map(|op| if let WriteOp::Apply(d) = op { Some(d.upto) } else { None }).max();
        // A full sync once per segment makes every earlier transaction durable too (the WAL is
        // sequential), after which the log no longer needs the segments before this one.
        let new_segment = upto.filter(|p| p.segment > self.durable_segment).map(|p| p.segment);
        let sync_now = self.journal_path.is_some() && new_segment.is_some();
        commit_round(&self.pool, round, upto, sync_now).await?;
        if let (Some(segment), Some(dir)) = (new_segment, &self.journal_path) {
            super::journal::remove_before(dir, segment);
            self.durable_segment = segment;
        }
        if round.iter().flat_map(WriteOp::entries).any(|e| matches!(e, Entry::Events(_))) {
            self.indexer.notify_one();
        }
        let applied: u64 = round.iter().map(|op| if let WriteOp::Apply(d) = op { d.weight } else { 0 }).sum();
        if applied > 0 {
            self.applied.send_modify(|n| *n += applied);
        }
        Ok(())
    }
}

/// Applies what the log holds past the applied position (a crash left it unapplied), syncs,
/// and returns the segment the log continues in.
async fn recover(pool: &SqlitePool, dir: &JournalDir) -> Result<u64, StoreError> {
    let (segment, offset): (i64, i64) =
        sqlx::query_as("SELECT segment, byte_offset FROM journal_state WHERE id = 1").fetch_one(pool).await?;
    let applied = Position { segment: segment as u64, offset: offset as u64 };
    let recovered = dir.recover(applied)?;
    let next = dir.next_segment(applied)?;
    if !recovered.entries.is_empty() {
        tracing::info!(
            records = recovered.entries.len(),
            upto = ?recovered.upto,
            "applying the commit log's records left from the last run"
        );
    }
    let upto = Position { segment: next, offset: 0 };
    let weight = recovered.entries.iter().map(|e| e.weight() as u64).sum();
    let round = [WriteOp::Apply(Durable { entries: recovered.entries, upto, weight })];
    commit_round(pool, &round, Some(upto), true).await?;
    dir.remove_before(next);
    Ok(next)
}

async fn commit_round(
    pool: &SqlitePool,
    round: &[WriteOp],
    upto: Option<Position>,
    sync_now: bool,
) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    if sync_now {
        sqlx::query("PRAGMA synchronous = FULL").execute(&mut *conn).await?;
    }
    let result = commit_transaction(&mut conn, round, upto).await;
    if sync_now {
        if let Err(e) = sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await {
            conn.close_on_drop();
            return Err(e.into());
        }
    }
    result
}

async fn commit_transaction(
    conn: &mut SqliteConnection,
    round: &[WriteOp],
    upto: Option<Position>,
) -> Result<(), StoreError> {
    // IMMEDIATE takes the write lock up front, so the seq numbers read below stay ours even if
    // another process (a `tocsin check run`) shares the file.
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let applied = async {
        apply_round(conn, round).await?;
        if let Some(p) = upto {
            sqlx::query("UPDATE journal_state SET segment = ?, byte_offset = ? WHERE id = 1")
                .bind(p.segment as i64)
                .bind(p.offset as i64)
                .execute(&mut *conn)
                .await?;
        }
        Ok::<(), StoreError>(())
    }
    .await;
    match applied {
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
    // Events first, in arrival order: later writes in the round (a tick's alert states) then
    // land on top of what the events did.
    let events: Vec<&NewEvent> = round
        .iter()
        .flat_map(WriteOp::entries)
        .flat_map(|entry| if let Entry::Events(batch) = entry { batch.as_slice() } else { &[] })
        .collect();
    if !events.is_empty() {
        insert_events(conn, &events).await?;
    }
    for op in round {
        match op {
            WriteOp::Apply(_) | WriteOp::Direct(..) => {
                for entry in op.entries() {
                    match entry {
                        Entry::Events(_) => {}
                        Entry::Enqueue { deliveries, alerts } => enqueue_rows(conn, deliveries, alerts).await?,
                        Entry::Silence(silence) => save_silence(conn, silence).await?,
                    }
                }
            }
            WriteOp::Delivered { batch, at, .. } => {
                let mut qb =
                    QueryBuilder::<Sqlite>::new("UPDATE outbox SET state = 1, attempts = attempts + 1, updated_at = ");
                qb.push_bind(*at);
                push_batch_filter(&mut qb, batch);
                qb.build().execute(&mut *conn).await?;
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
            WriteOp::Dead { batch, attempts, error, at, .. } => {
                let mut qb = QueryBuilder::<Sqlite>::new("UPDATE outbox SET state = 2, attempts = ");
                qb.push_bind(*attempts as i64).push(", last_error = ").push_bind(error.as_str());
                qb.push(", updated_at = ").push_bind(*at);
                push_batch_filter(&mut qb, batch);
                qb.build().execute(&mut *conn).await?;
            }
        }
    }
    Ok(())
}

async fn enqueue_rows(
    conn: &mut SqliteConnection,
    deliveries: &[NewDelivery],
    alerts: &[Alert],
) -> Result<(), StoreError> {
    let rows: Vec<(Option<i64>, &NewDelivery)> = deliveries.iter().map(|d| (None, d)).collect();
    insert_deliveries(conn, &rows).await?;
    for alert in alerts {
        save_alert(conn, alert, None).await?;
    }
    Ok(())
}

async fn save_silence(conn: &mut SqliteConnection, silence: &Silence) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO silences (id, starts_at, ends_at, body) VALUES (?, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET starts_at = excluded.starts_at, ends_at = excluded.ends_at, body = excluded.body",
    )
    .bind(silence.id.to_string())
    .bind(micros(silence.starts_at))
    .bind(micros(silence.ends_at))
    .bind(serde_json::to_string(silence).expect("silences serialize"))
    .execute(&mut *conn)
    .await?;
    Ok(())
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

async fn save_alert(conn: &mut SqliteConnection, alert: &Alert, event: Option<&Event>) -> Result<(), StoreError> {
    let body = serde_json::to_string(alert).expect("alerts serialize");
    let status = if alert.is_firing() { 0i64 } else { 1 };
    match event {
        Some(event) => {
            sqlx::query(
                "INSERT INTO alerts (fingerprint, status, started_at, updated_at, body, event) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (fingerprint) DO UPDATE SET status = excluded.status, started_at = excluded.started_at, \
                 updated_at = excluded.updated_at, body = excluded.body, event = excluded.event",
            )
            .bind(&alert.fingerprint)
            .bind(status)
            .bind(micros(alert.started_at))
            .bind(micros(alert.updated_at))
            .bind(body)
            .bind(serde_json::to_string(event).expect("events serialize"))
            .execute(&mut *conn)
            .await?;
        }
        None => {
            sqlx::query(
                "INSERT INTO alerts (fingerprint, status, started_at, updated_at, body) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (fingerprint) DO UPDATE SET status = excluded.status, started_at = excluded.started_at, \
                 updated_at = excluded.updated_at, body = excluded.body",
            )
            .bind(&alert.fingerprint)
            .bind(status)
            .bind(micros(alert.started_at))
            .bind(micros(alert.updated_at))
            .bind(body)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

struct EventRow {
    seq: i64,
    body: String,
}

async fn insert_events(conn: &mut SqliteConnection, events: &[&NewEvent]) -> Result<(), StoreError> {
    let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM events").fetch_one(&mut *conn).await?;
    let rows: Vec<EventRow> = events
        .iter()
        .enumerate()
        .map(|(i, e)| EventRow {
            seq: next + i as i64,
            body: serde_json::to_string(&e.event).expect("events serialize"),
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

        at += chunk;
    }

    let deliveries: Vec<(Option<i64>, &NewDelivery)> =
        events.iter().zip(&rows).flat_map(|(e, row)| e.deliveries.iter().map(move |d| (Some(row.seq), d))).collect();
    insert_deliveries(conn, &deliveries).await?;
    for e in events {
        if let Some(alert) = &e.alert {
            save_alert(conn, alert, Some(&e.event)).await?;
        }
    }
    Ok(())
}

async fn insert_deliveries(
    conn: &mut SqliteConnection,
    deliveries: &[(Option<i64>, &NewDelivery)],
) -> Result<(), StoreError> {
    let now = micros(Utc::now());
    let messages: Vec<String> =
        deliveries.iter().map(|(_, d)| serde_json::to_string(&d.message).expect("messages serialize")).collect();
    let mut at = 0;
    for chunk in chunked(deliveries.len()) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO outbox (destination, notifier, group_key, not_before, kind, user, event_seq, message, created_at) ",
        );
        qb.push_values(
            deliveries[at..at + chunk].iter().zip(&messages[at..at + chunk]),
            |mut b, ((seq, d), message)| {
                let first = d.message.events.first();
                b.push_bind(d.destination.as_str())
                    .push_bind(d.notifier.as_str())
                    .push_bind(d.group_key.as_str())
                    .push_bind(micros(d.not_before))
                    .push_bind(first.map(|e| e.kind.as_str()).unwrap_or(""))
                    .push_bind(first.and_then(|e| e.user.as_deref()))
                    .push_bind(*seq)
                    .push_bind(message.as_str())
                    .push_bind(now);
            },
        );
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
            self.index_now().await?;
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

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.settle().await?;
        let cutoff = micros(before);
        let mut total = 0u64;
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
        if let Some(journal) = &self.journal {
            journal.close().await;
            // What the log acknowledged is applied now rather than at the next start.
            if tokio::time::timeout(Duration::from_secs(10), self.settle()).await.is_err() {
                tracing::warn!("closing with commit-log records unapplied; they are applied at the next start");
            }
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
