//! Storage: one trait, the only place that knows SQL.
//!
//! `Store` is what every other module sees. `sqlite` is the embedded default; a PostgreSQL
//! implementation follows the same trait and the same numbered migrations
//! (`migrations/sqlite/`, `migrations/postgres/`).

mod event_parts;
pub(crate) mod journal;
pub mod samples;
pub mod slack_threads;
pub mod sources;
pub mod sqlite;
mod sqlite_samples;
mod sqlite_slack_threads;
mod sqlite_sources;
mod sqlite_writer;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::alert::Alert;
use crate::event::Event;
use crate::message::Message;
use crate::silence::Silence;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("unsupported store url scheme {0:?}: expected sqlite://PATH")]
    UnsupportedUrl(String),
    #[error("store migration failed: {0}")]
    Migration(String),
    #[error("invalid cursor")]
    InvalidCursor,
    #[error("not found")]
    NotFound,
    #[error("the store is shutting down")]
    Closed,
    #[error("database error: {0}")]
    Database(String),
}

/// The writer thread's connection (`sqlite_writer.rs`).
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            other => StoreError::Database(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(e.to_string())
            }
            sqlx::Error::RowNotFound => StoreError::NotFound,
            other => StoreError::Database(other.to_string()),
        }
    }
}

/// A message to deliver, written in the same transaction as its event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDelivery {
    /// Where it goes: the notifier name, plus `|channel` when the route names one.
    /// Ordering and pauses (Retry-After, rate limits) are per destination.
    pub destination: String,
    pub notifier: String,
    /// Due rows with the same group key are sent together as one message.
    pub group_key: String,
    /// Not sent before this instant (group_wait, group_interval, digests).
    pub not_before: DateTime<Utc>,
    pub message: Message,
}

/// An event, the deliveries it caused, and the alert it updated.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "EventRecord")]
pub struct NewEvent {
    pub event: Event,
    pub deliveries: Vec<NewDelivery>,
    pub alert: Option<Alert>,
    /// The event as JSON in its two stored parts (`event_parts`), made once when the store
    /// first needs them: the commit log's record and the stored row share them. The store
    /// takes a `NewEvent` as final.
    parts: OnceLock<JsonParts>,
    /// The whole event as one JSON object, for an alert's record of its last event.
    body: OnceLock<Box<RawValue>>,
}

#[derive(Debug, Clone)]
struct JsonParts {
    head: Box<RawValue>,
    rest: Box<RawValue>,
}

impl NewEvent {
    pub fn new(event: Event, deliveries: Vec<NewDelivery>, alert: Option<Alert>) -> NewEvent {
        NewEvent { event, deliveries, alert, parts: OnceLock::new(), body: OnceLock::new() }
    }

    pub fn plain(event: Event, deliveries: Vec<NewDelivery>) -> NewEvent {
        NewEvent::new(event, deliveries, None)
    }

    fn parts(&self) -> &JsonParts {
        self.parts.get_or_init(|| JsonParts {
            head: serde_json::value::to_raw_value(&event_parts::head_of(&self.event)).expect("events serialize"),
            rest: serde_json::value::to_raw_value(&event_parts::rest_of(&self.event)).expect("events serialize"),
        })
    }

    /// The stored row's `body`: the event without the fields that are columns.
    pub(crate) fn stored_body(&self) -> &RawValue {
        &self.parts().rest
    }

    /// The whole event as JSON.
    pub fn body(&self) -> &RawValue {
        self.body.get_or_init(|| serde_json::value::to_raw_value(&self.event).expect("events serialize"))
    }

    /// Makes the JSON the writer will need, then frees what only that JSON needs (title, text,
    /// labels, fields, link, error), keeping the stored columns. The commit log calls this
    /// once the record is written, on the thread that allocated the event: the SQLite writer,
    /// which drops the event later, would pay mimalloc's cross-thread free for every string
    /// and map node (5–7 % of batch ingest).
    pub(crate) fn shed(&mut self) {
        self.parts();
        if self.alert.is_some() {
            self.body();
        }
        let event = &mut self.event;
        event.title = None;
        event.text = None;
        event.link = None;
        event.error = None;
        event.labels = BTreeMap::new();
        event.fields = serde_json::Map::new();
    }
}

/// The commit log's record: the event's two parts as they will be stored, its deliveries and
/// its alert.
impl Serialize for NewEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let parts = self.parts();
        let mut record = serializer.serialize_struct("NewEvent", 4)?;
        record.serialize_field("head", &parts.head)?;
        record.serialize_field("rest", &parts.rest)?;
        record.serialize_field("deliveries", &self.deliveries)?;
        record.serialize_field("alert", &self.alert)?;
        record.end()
    }
}

/// A record as read back: the two parts, or (written before the split) the whole event.
#[derive(Deserialize)]
struct EventRecord {
    head: Option<event_parts::Head>,
    rest: Option<event_parts::Rest>,
    event: Option<Event>,
    deliveries: Vec<NewDelivery>,
    alert: Option<Alert>,
}

impl TryFrom<EventRecord> for NewEvent {
    type Error = &'static str;

    fn try_from(record: EventRecord) -> Result<NewEvent, Self::Error> {
        let event = match (record.head, record.rest, record.event) {
            (Some(head), Some(rest), _) => rest.into_event(head),
            (_, _, Some(event)) => event,
            _ => return Err("a logged event needs `head` and `rest`, or `event`"),
        };
        Ok(NewEvent::new(event, record.deliveries, record.alert))
    }
}

/// A row of the outbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxEntry {
    pub id: i64,
    pub destination: String,
    pub notifier: String,
    pub group_key: String,
    pub not_before: DateTime<Utc>,
    pub message: Message,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    /// Set on dead letters: the last error, already free of secrets.
    pub last_error: Option<String>,
}

/// The due rows of one destination (and one group, when set) that one send settles:
/// those with `not_before <= due_by` and `id <= up_to_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub destination: String,
    pub group_key: Option<String>,
    pub due_by: DateTime<Utc>,
    pub up_to_id: i64,
}

/// What a batch holds, counted in the store so a fold of 10,000 rows loads only a few.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchSummary {
    pub count: u64,
    pub max_id: i64,
    /// Kinds by count, largest first.
    pub by_kind: Vec<(String, u64)>,
    /// The most frequent users, largest first (at most 5).
    pub top_users: Vec<(String, u64)>,
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
}

/// A page of firing alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertPage {
    pub alerts: Vec<Alert>,
    pub total: u64,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct EventQuery {
    pub user: Option<String>,
    /// Full-text query over title, text, kind, user and fields.
    pub q: Option<String>,
    /// Exact kind, or a glob with `*` (`user.*`).
    pub kind: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: u32,
    /// Opaque, from a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
    /// For a text search: how many of the newest stored events the full-text index did not
    /// hold yet when the search gave up waiting for it (after a large burst); 0 otherwise.
    pub index_lag: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxCounts {
    pub pending: u64,
    pub dead: u64,
}

/// What one pruning pass deleted, per kind of row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub events: u64,
    pub alerts: u64,
    pub silences: u64,
    pub error_issues: u64,
}

impl Pruned {
    pub fn is_empty(&self) -> bool {
        *self == Pruned::default()
    }
}

#[async_trait]
pub trait Store:
    samples::SampleStore + sources::SourceStore + slack_threads::SlackThreadStore + Send + Sync + 'static
{
    /// Stores events and their deliveries in one durable transaction: when this returns Ok,
    /// the data survives a crash. Concurrent callers may share a transaction (group commit).
    async fn insert_events(&self, events: Vec<NewEvent>) -> Result<(), StoreError>;

    /// Searches the history, newest first.
    async fn search_events(&self, query: &EventQuery) -> Result<Page<Event>, StoreError>;

    /// Queues deliveries and saves alert state outside an ingest (repeats, silence expiry,
    /// flapping that settled).
    async fn enqueue(&self, deliveries: Vec<NewDelivery>, alerts: Vec<Alert>) -> Result<(), StoreError>;

    /// Destinations that have undelivered messages (used at start-up to resume delivery).
    async fn pending_destinations(&self) -> Result<Vec<String>, StoreError>;

    /// Due messages of one destination, earliest due first.
    async fn due_deliveries(
        &self,
        destination: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// The messages of a batch, oldest first, at most `limit`.
    async fn batch_entries(&self, batch: &Batch, limit: u32) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Counts over a batch (every row, however many).
    async fn batch_summary(&self, batch: &Batch) -> Result<BatchSummary, StoreError>;

    /// When the next pending message of a destination becomes due.
    async fn next_due(&self, destination: &str) -> Result<Option<DateTime<Utc>>, StoreError>;

    async fn mark_delivered(&self, batch: &Batch, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Records a failed attempt that will be retried.
    async fn record_attempt(&self, id: i64, attempts: u32, error: &str) -> Result<(), StoreError>;

    /// Gives up on a batch: its rows stay visible as dead letters.
    async fn dead_letter(&self, batch: &Batch, attempts: u32, error: &str, at: DateTime<Utc>)
        -> Result<(), StoreError>;

    /// Dead letters, newest first; `before` is the id to continue below.
    async fn dead_letters(&self, limit: u32, before: Option<i64>) -> Result<Vec<OutboxEntry>, StoreError>;

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError>;

    /// Alerts firing now, or changed since `since` (to rebuild the in-memory state at start).
    async fn load_alerts(&self, since: DateTime<Utc>) -> Result<Vec<Alert>, StoreError>;

    /// Firing alerts, oldest first, with the total count.
    async fn firing_alerts(&self, limit: u32, cursor: Option<&str>) -> Result<AlertPage, StoreError>;

    /// The latest event of an alert, for messages that repeat it.
    async fn alert_event(&self, fingerprint: &str) -> Result<Option<Event>, StoreError>;

    async fn insert_silence(&self, silence: &Silence) -> Result<(), StoreError>;

    /// Every silence that has not ended before `ended_after`, newest first.
    async fn silences(&self, ended_after: DateTime<Utc>) -> Result<Vec<Silence>, StoreError>;

    /// Ends a silence now; returns it as it is after the change.
    async fn expire_silence(&self, id: uuid::Uuid, at: DateTime<Utc>) -> Result<Silence, StoreError>;

    /// Deletes what retention no longer keeps: events received before `before`, delivered or
    /// dead outbox rows, resolved alerts, ended silences and error issues last seen before it.
    async fn prune(&self, before: DateTime<Utc>) -> Result<Pruned, StoreError>;

    /// Answers when the store can serve reads and writes.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Flushes pending writes and closes connections.
    async fn close(&self);
}

pub type DynStore = Arc<dyn Store>;

/// Opens (and migrates) the store named by `url`.
pub async fn open(url: &str) -> Result<DynStore, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        sqlite::SqliteStore::open(path).await
    } else {
        Err(StoreError::UnsupportedUrl(url.split("://").next().unwrap_or("").to_string()))
    }
}

/// Gives the calling thread a higher nice value (a smaller share of a busy CPU). Best effort:
/// where it is refused, the thread runs at the normal priority.
#[allow(unsafe_code)]
fn lower_this_threads_priority(nice: i32) {
    // SAFETY: two syscalls about the calling thread itself; no memory is passed.
    let refused = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) } != 0;
    if refused {
        tracing::debug!(nice, "cannot lower the thread's priority");
    }
}
