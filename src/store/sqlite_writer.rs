//! The writer thread: the one connection that applies the event path's writes to SQLite.
//!
//! Every statement of a round runs here, on this thread, without leaving it: a round costs
//! one hand-off in and one reply out. (Through sqlx each statement is a message to the
//! connection's own thread and a wake-up back; a round took a dozen, and on a quiet server
//! those wake-ups were most of the time from an event to its notification.) The thread also
//! fills the full-text index when it has nothing to apply, so the two never wait on each
//! other's write lock.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::{oneshot, watch};

use super::journal::{Durable, Entry, JournalDir, Position};
use super::sqlite::micros;
use super::{Batch, NewDelivery, NewEvent, StoreError};
use crate::alert::Alert;
use crate::silence::Silence;

/// Work for the writer thread; everything in one round shares a transaction.
pub(super) enum WriteOp {
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
    /// Answer once every stored event is indexed for full-text search. The index catches up
    /// in steps between rounds, so ingest goes on meanwhile.
    Index(Done),
    /// A read is waiting for what was acknowledged: apply what is gathered now.
    Flush,
    /// Finish what is queued before it, then stop.
    Stop(Done),
}

pub(super) type Done = oneshot::Sender<Result<(), StoreError>>;

impl WriteOp {
    fn weight(&self) -> usize {
        match self {
            WriteOp::Apply(durable) => durable.weight as usize,
            WriteOp::Direct(entry, _) => entry.weight(),
            _ => 1,
        }
    }

    /// Whether it may wait a little before it is applied: records of plain events, which owe
    /// no message and change no alert. Nothing but a read waits for them, and a read that
    /// finds itself waiting sends a [`WriteOp::Flush`], which ends the wait.
    fn may_wait(&self) -> bool {
        match self {
            WriteOp::Apply(durable) => durable.entries.iter().all(|entry| match entry {
                Entry::Events(events) => events.iter().all(|e| e.deliveries.is_empty() && e.alert.is_none()),
                _ => false,
            }),
            _ => false,
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
            WriteOp::Apply(_) | WriteOp::Flush => return,
            WriteOp::Direct(_, done)
            | WriteOp::Delivered { done, .. }
            | WriteOp::Attempt { done, .. }
            | WriteOp::Dead { done, .. }
            | WriteOp::Index(done)
            | WriteOp::Stop(done) => done,
        };
        let _ = done.send(result);
    }
}

/// Rows per transaction at most: bounds the latency a large round adds to its callers.
const MAX_ROUND: usize = 4096;
/// Rows indexed per index transaction: small, so a round never waits long behind one.
pub(super) const INDEX_STEP: i64 = 250;
/// Under steady ingest, the index still gets a step at least this often.
const INDEX_YIELD: Duration = Duration::from_millis(200);
/// How long the thread lets commits accumulate before indexing them when ingest pauses.
const INDEX_GATHER: Duration = Duration::from_millis(100);
/// How long records of plain events may wait for more to share their transaction, and how
/// many rows end the wait. Each transaction writes the pages it touched (the events table's
/// and its indexes' last leaves) to the WAL again: under a stream of single events, rounds
/// of a few dozen rows wrote the same pages hundreds of times a second.
const APPLY_GATHER: Duration = Duration::from_millis(10);
const GATHER_ROWS: usize = 1024;

/// Opens the write connection. With the commit log in this process a commit need not sync
/// (the log holds what it applies); without it, every commit syncs.
pub(super) fn open(path: &str, syncs_each_commit: bool) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {path}: {e}")))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", if syncs_each_commit { "FULL" } else { "NORMAL" })?;
    // Checkpoints run on their own connection in the background, never inside a commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "cache_size", -4096)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Applies what the log holds past the applied position (a crash left it unapplied), syncs,
/// and returns the segment the log continues in.
pub(super) fn recover(conn: &mut Connection, dir: &JournalDir) -> Result<u64, StoreError> {
    let (segment, offset): (i64, i64) =
        conn.query_row("SELECT segment, byte_offset FROM journal_state WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let applied = Position { segment: segment as u64, offset: offset as u64 };
    let recovered = dir.recover(applied)?;
    let next = dir.next_segment(applied)?;
    if !recovered.entries.is_empty() {
        tracing::info!(
            records = recovered.entries.len(),
            segment = recovered.upto.map(|p| p.segment),
            offset = recovered.upto.map(|p| p.offset),
            "applying the commit log's records left from the last run"
        );
    }
    let upto = Position { segment: next, offset: 0 };
    let weight = recovered.entries.iter().map(|e| e.weight() as u64).sum();
    let round = [WriteOp::Apply(Durable { entries: recovered.entries, upto, weight })];
    commit_round(conn, &round, Some(upto), true)?;
    dir.retire_before(next);
    Ok(next)
}

pub(super) struct Writer {
    pub conn: Connection,
    /// Weight of the log's rounds applied so far (what reads wait for).
    pub applied: watch::Sender<u64>,
    /// The log's directory, when this process owns it.
    pub journal_path: Option<PathBuf>,
    /// Segments before this one are applied and synced, so they are removed.
    pub durable_segment: u64,
    /// Searches waiting for the full-text index to catch up.
    pub index_waiters: Vec<Done>,
}

impl Writer {
    /// Runs until a `Stop` or until every sender is gone.
    pub(super) fn run(mut self, rx: flume::Receiver<WriteOp>) {
        let mut index_behind = true;
        let mut last_index = Instant::now();
        let mut round = Vec::new();
        loop {
            // A waiting search makes the index catch up at full speed, one step between rounds.
            let wait = if !self.index_waiters.is_empty() {
                Duration::ZERO
            } else if index_behind {
                INDEX_GATHER
            } else {
                Duration::from_secs(3600)
            };
            if rx.is_empty() && self.index_waiters.is_empty() {
                crate::idle::going_idle();
            }
            let first = match rx.recv_timeout(wait) {
                Ok(op) => op,
                Err(flume::RecvTimeoutError::Timeout) => {
                    index_behind = self.index_step_logged();
                    last_index = Instant::now();
                    continue;
                }
                Err(flume::RecvTimeoutError::Disconnected) => return,
            };
            let mut weight = first.weight();
            round.push(first);
            while weight < MAX_ROUND && !matches!(round.last(), Some(WriteOp::Stop(_))) {
                match rx.try_recv() {
                    Ok(op) => {
                        weight += op.weight();
                        round.push(op);
                    }
                    Err(_) => break,
                }
            }
            if self.journal_path.is_some() {
                let until = Instant::now() + APPLY_GATHER;
                let mut may_wait = round.iter().all(WriteOp::may_wait);
                while may_wait && weight < GATHER_ROWS {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match rx.recv_timeout(left) {
                        Ok(op) => {
                            may_wait = op.may_wait();
                            weight += op.weight();
                            round.push(op);
                        }
                        Err(_) => break,
                    }
                }
            }
            let stop = matches!(round.last(), Some(WriteOp::Stop(_)));
            if round.iter().flat_map(WriteOp::entries).any(|e| matches!(e, Entry::Events(_))) {
                index_behind = true;
            }
            self.commit_until_applied(&mut round);
            if stop {
                return;
            }
            let hurried = !self.index_waiters.is_empty();
            if hurried || (index_behind && last_index.elapsed() >= INDEX_YIELD) {
                index_behind = self.index_step_logged();
                last_index = Instant::now();
            }
        }
    }

    /// Commits the round and answers it. Records the log acknowledged are never dropped: if
    /// the commit fails they are tried again every second (reads wait meanwhile).
    fn commit_until_applied(&mut self, round: &mut Vec<WriteOp>) {
        loop {
            let result = self.commit(round);
            if let Err(e) = &result {
                tracing::error!(error = %e, ops = round.len(), "store write failed");
            }
            let mut kept = Vec::new();
            for op in round.drain(..) {
                match (&result, op) {
                    (Err(_), op @ WriteOp::Apply(_)) => kept.push(op),
                    (Ok(()), WriteOp::Index(done)) => self.index_waiters.push(done),
                    (Ok(()), op) => op.reply(Ok(())),
                    (Err(e), op) => op.reply(Err(StoreError::Database(e.to_string()))),
                }
            }
            if kept.is_empty() {
                return;
            }
            *round = kept;
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn commit(&mut self, round: &[WriteOp]) -> Result<(), StoreError> {
        if round.iter().all(|op| matches!(op, WriteOp::Flush)) {
            return Ok(());
        }
        let upto = round.iter().filter_map(|op| if let WriteOp::Apply(d) = op { Some(d.upto) } else { None }).max();
        // A full sync once per segment makes every earlier transaction durable too (the WAL is
        // sequential), after which the log no longer needs the segments before this one.
        let new_segment = upto.filter(|p| p.segment > self.durable_segment).map(|p| p.segment);
        let sync_now = self.journal_path.is_some() && new_segment.is_some();
        commit_round(&mut self.conn, round, upto, sync_now)?;
        if let (Some(segment), Some(dir)) = (new_segment, &self.journal_path) {
            super::journal::retire_before(dir, segment);
            self.durable_segment = segment;
        }
        let applied: u64 = round.iter().map(|op| if let WriteOp::Apply(d) = op { d.weight } else { 0 }).sum();
        if applied > 0 {
            self.applied.send_modify(|n| *n += applied);
        }
        Ok(())
    }

    /// One index step; returns whether more is left to index. Once nothing is, or the step
    /// failed, the waiting searches are answered.
    fn index_step_logged(&mut self) -> bool {
        match self.index_step() {
            Ok(n) if n == INDEX_STEP => true,
            Ok(_) => {
                for done in self.index_waiters.drain(..) {
                    let _ = done.send(Ok(()));
                }
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "full-text indexing failed; will retry");
                for done in self.index_waiters.drain(..) {
                    let _ = done.send(Err(StoreError::Database(e.to_string())));
                }
                true
            }
        }
    }

    /// Indexes up to `INDEX_STEP` events past the last indexed one; returns how many.
    fn index_step(&mut self) -> Result<i64, StoreError> {
        // With the commit log behind it, the connection's commits do not sync anyway.
        if self.journal_path.is_some() {
            return index_transaction(&mut self.conn);
        }
        // The index can be rebuilt from the events (its progress marker commits with it), so
        // its transactions need not wait for an fsync.
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let outcome = index_transaction(&mut self.conn);
        // Never go on with weaker durability: if this fails, the thread cannot commit safely.
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        outcome
    }
}

fn index_transaction(conn: &mut Connection) -> Result<i64, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let last: i64 = tx.query_row("SELECT last_seq FROM fts_progress WHERE id = 1", [], |r| r.get(0))?;
    let upto: Option<i64> = tx.query_row(
        "SELECT MAX(seq) FROM (SELECT seq FROM events WHERE seq > ? ORDER BY seq LIMIT ?)",
        params![last, INDEX_STEP],
        |r| r.get(0),
    )?;
    let Some(upto) = upto else { return Ok(0) };
    let n = tx
        .prepare_cached(
            "INSERT INTO events_fts (rowid, title, text, kind, user, fields) \
         SELECT seq, json_extract(body, '$.title'), json_extract(body, '$.text'), kind, user, \
                json_extract(body, '$.fields') FROM events WHERE seq > ? AND seq <= ?",
        )?
        .execute(params![last, upto])?;
    tx.execute("UPDATE fts_progress SET last_seq = ? WHERE id = 1", [upto])?;
    tx.commit()?;
    Ok(n as i64)
}

/// One transaction for the round (and the log position it reaches). IMMEDIATE takes the write
/// lock up front, so the seq numbers read inside stay ours even if another process (a
/// `tocsin check run`) shares the file.
pub(super) fn commit_round(
    conn: &mut Connection,
    round: &[WriteOp],
    upto: Option<Position>,
    sync_now: bool,
) -> Result<(), StoreError> {
    if sync_now {
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    let result = (|| {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        apply_round(&tx, round)?;
        if let Some(p) = upto {
            tx.prepare_cached("UPDATE journal_state SET segment = ?, byte_offset = ? WHERE id = 1")?
                .execute(params![p.segment as i64, p.offset as i64])?;
        }
        tx.commit()?;
        Ok::<(), StoreError>(())
    })();
    if sync_now {
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    result
}

fn apply_round(tx: &Transaction<'_>, round: &[WriteOp]) -> Result<(), StoreError> {
    // Events first, in arrival order: later writes in the round (a tick's alert states) then
    // land on top of what the events did.
    let events: Vec<&NewEvent> = round
        .iter()
        .flat_map(WriteOp::entries)
        .flat_map(|entry| if let Entry::Events(batch) = entry { batch.as_slice() } else { &[] })
        .collect();
    if !events.is_empty() {
        insert_events(tx, &events)?;
    }
    for op in round {
        match op {
            WriteOp::Apply(_) | WriteOp::Direct(..) => {
                for entry in op.entries() {
                    match entry {
                        Entry::Events(_) => {}
                        Entry::Enqueue { deliveries, alerts } => {
                            let now = micros(Utc::now());
                            for d in deliveries {
                                insert_delivery(tx, None, d, now)?;
                            }
                            for alert in alerts {
                                save_alert(tx, alert, None)?;
                            }
                        }
                        Entry::Silence(silence) => save_silence(tx, silence)?,
                    }
                }
            }
            WriteOp::Delivered { batch, at, .. } => finish_batch(
                tx,
                "state = 1, attempts = attempts + 1, updated_at = ?",
                vec![SqlValue::Integer(*at)],
                batch,
            )?,
            WriteOp::Attempt { id, attempts, error, .. } => {
                tx.prepare_cached("UPDATE outbox SET attempts = ?, last_error = ?, updated_at = ? WHERE id = ?")?
                    .execute(params![*attempts as i64, error, micros(Utc::now()), id])?;
            }
            WriteOp::Dead { batch, attempts, error, at, .. } => finish_batch(
                tx,
                "state = 2, attempts = ?, last_error = ?, updated_at = ?",
                vec![SqlValue::Integer(*attempts as i64), SqlValue::Text(error.clone()), SqlValue::Integer(*at)],
                batch,
            )?,
            WriteOp::Index(_) | WriteOp::Flush | WriteOp::Stop(_) => {}
        }
    }
    Ok(())
}

/// Updates the pending rows of a batch: `set` with its values, then the batch's filter.
fn finish_batch(tx: &Transaction<'_>, set: &str, mut values: Vec<SqlValue>, batch: &Batch) -> Result<(), StoreError> {
    let mut sql =
        format!("UPDATE outbox SET {set} WHERE state = 0 AND destination = ? AND not_before <= ? AND id <= ?");
    values.push(SqlValue::Text(batch.destination.clone()));
    values.push(SqlValue::Integer(micros(batch.due_by)));
    values.push(SqlValue::Integer(batch.up_to_id));
    if let Some(group) = &batch.group_key {
        sql.push_str(" AND group_key = ?");
        values.push(SqlValue::Text(group.clone()));
    }
    tx.prepare_cached(&sql)?.execute(params_from_iter(values))?;
    Ok(())
}

fn insert_events(tx: &Transaction<'_>, events: &[&NewEvent]) -> Result<(), StoreError> {
    // Never below what the search index has seen: once retention has emptied the table, MAX
    // alone would hand out seqs the indexer counts as done, and new events would not be found.
    let next: i64 = tx.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(seq) FROM events), 0), (SELECT last_seq FROM fts_progress WHERE id = 1)) + 1",
        [],
        |r| r.get(0),
    )?;
    let now = micros(Utc::now());
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (seq, id, ts, received_at, kind, severity, user, fingerprint, source, body) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?;
    for (i, e) in events.iter().enumerate() {
        let seq = next + i as i64;
        let ev = &e.event;
        insert.execute(params![
            seq,
            &ev.id.as_bytes()[..],
            micros(ev.timestamp),
            micros(ev.received_at),
            ev.kind,
            ev.severity.rank(),
            ev.user,
            ev.fingerprint,
            ev.source,
            e.stored_body().get(),
        ])?;
        for d in &e.deliveries {
            insert_delivery(tx, Some(seq), d, now)?;
        }
    }
    for e in events {
        if let Some(alert) = &e.alert {
            save_alert(tx, alert, Some(e.body().get()))?;
        }
    }
    Ok(())
}

fn insert_delivery(tx: &Transaction<'_>, seq: Option<i64>, d: &NewDelivery, now: i64) -> Result<(), StoreError> {
    let first = d.message.events.first();
    tx.prepare_cached(
        "INSERT INTO outbox (destination, notifier, group_key, not_before, kind, user, event_seq, message, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        d.destination,
        d.notifier,
        d.group_key,
        micros(d.not_before),
        first.map(|e| e.kind.as_str()).unwrap_or(""),
        first.and_then(|e| e.user.as_deref()),
        seq,
        serde_json::to_string(&d.message).expect("messages serialize"),
        now,
    ])?;
    Ok(())
}

fn save_silence(tx: &Transaction<'_>, silence: &Silence) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO silences (id, starts_at, ends_at, body) VALUES (?, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET starts_at = excluded.starts_at, ends_at = excluded.ends_at, body = excluded.body",
    )?
    .execute(params![
        silence.id.to_string(),
        micros(silence.starts_at),
        micros(silence.ends_at),
        serde_json::to_string(silence).expect("silences serialize"),
    ])?;
    Ok(())
}

/// `event`: the JSON of the event that changed the alert, if one did.
fn save_alert(tx: &Transaction<'_>, alert: &Alert, event: Option<&str>) -> Result<(), StoreError> {
    let body = serde_json::to_string(alert).expect("alerts serialize");
    let status = if alert.is_firing() { 0i64 } else { 1 };
    match event {
        Some(event) => tx
            .prepare_cached(
                "INSERT INTO alerts (fingerprint, status, started_at, updated_at, body, event) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (fingerprint) DO UPDATE SET status = excluded.status, started_at = excluded.started_at, \
                 updated_at = excluded.updated_at, body = excluded.body, event = excluded.event",
            )?
            .execute(params![
                alert.fingerprint,
                status,
                micros(alert.started_at),
                micros(alert.updated_at),
                body,
                event,
            ])?,
        None => tx
            .prepare_cached(
                "INSERT INTO alerts (fingerprint, status, started_at, updated_at, body) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (fingerprint) DO UPDATE SET status = excluded.status, started_at = excluded.started_at, \
                 updated_at = excluded.updated_at, body = excluded.body",
            )?
            .execute(params![alert.fingerprint, status, micros(alert.started_at), micros(alert.updated_at), body])?,
    };
    Ok(())
}
