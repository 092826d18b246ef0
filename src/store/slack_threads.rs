//! Where each Slack alert message lives, so its follow-ups go into its thread and the
//! original can be updated when the alert resolves (`slack_app` notifier, issue 6).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// A posted parent message: the channel **id** Slack answered with (chat.update needs the id,
/// not a `#name`) and the message's `ts`, stored verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackThread {
    pub channel: String,
    pub ts: String,
}

/// Part of every [`Store`](super::Store).
#[async_trait]
pub trait SlackThreadStore: Send + Sync {
    /// The thread of `key` (`group_key` + channel), if a parent message was posted.
    async fn slack_thread(&self, key: &str) -> Result<Option<SlackThread>, StoreError>;

    /// Records (or replaces) the parent message of `key`.
    async fn save_slack_thread(&self, key: &str, thread: &SlackThread, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Forgets the thread of `key` (after a resolve, so the next firing starts a new message).
    async fn forget_slack_thread(&self, key: &str) -> Result<(), StoreError>;
}
