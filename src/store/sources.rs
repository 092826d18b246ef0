//! Storage for the application event sources: Stripe event ids already seen, error issues,
//! small per-source state documents (heartbeats, rate rules) and event counts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StoreError;

/// One error issue: every occurrence of one fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorIssue {
    pub fingerprint: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub count: u64,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Start of the current spike window and the occurrences in it.
    pub window_start: DateTime<Utc>,
    pub window_count: u64,
    pub spike_notified: bool,
}

/// Computes a new issue row from the current one (absent for a new fingerprint).
pub type IssueUpdate = Box<dyn FnOnce(Option<ErrorIssue>) -> ErrorIssue + Send>;
/// Computes a new state document from the current one; `None` leaves it unchanged.
pub type StateUpdate = Box<dyn FnOnce(Option<Value>) -> Option<Value> + Send>;

/// Part of every [`Store`](super::Store).
#[async_trait]
pub trait SourceStore: Send + Sync {
    /// Records a Stripe event id; false when it was already recorded (a retried delivery).
    async fn claim_stripe_event(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Forgets a claimed id, so a delivery that could not be processed can be retried.
    async fn release_stripe_event(&self, id: &str) -> Result<(), StoreError>;

    /// Read-modify-write of one issue in one exclusive transaction; returns the new row.
    async fn update_error_issue(&self, fingerprint: &str, update: IssueUpdate) -> Result<ErrorIssue, StoreError>;

    async fn error_issue(&self, fingerprint: &str) -> Result<Option<ErrorIssue>, StoreError>;

    /// Read-modify-write of one state document in one exclusive transaction; returns the
    /// document as it is afterwards.
    async fn update_source_state(
        &self,
        key: &str,
        update: StateUpdate,
        at: DateTime<Utc>,
    ) -> Result<Option<Value>, StoreError>;

    async fn source_state(&self, key: &str) -> Result<Option<Value>, StoreError>;

    /// Events whose kind matches any of the globs (`*`, `?`), with `since <= ts < until`.
    async fn count_events(
        &self,
        kinds: &[String],
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}
