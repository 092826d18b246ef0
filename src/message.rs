//! The message: what a route decided to tell a destination, independent of the notifier.
//!
//! It is rendered once (from templates) when the event is accepted, stored in the outbox, and
//! turned into each target's own format (Block Kit, JSON, plain text) only by the notifier.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::{Event, Severity};

/// `firing` / `resolved` for alert state changes, `event` for one-off notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Firing,
    Resolved,
    Event,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Firing => "firing",
            MessageStatus::Resolved => "resolved",
            MessageStatus::Event => "event",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub value: String,
}

/// One notification, as rendered for one destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub title: String,
    pub text: String,
    pub severity: Severity,
    pub status: MessageStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// The route's channel, for notifiers that can address one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Stable for one group of one route.
    pub group_key: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_labels: BTreeMap<String, String>,
    /// The events the message speaks for (the first few when there are many).
    pub events: Vec<Event>,
    /// How many more events the group held than `events` lists.
    #[serde(default)]
    pub truncated: u64,
    /// Who to page in a chat notifier (`<!here>`, `<!subteam^S0123>`): the route's `mentions`
    /// entry for this severity, never set for events from browser keys. Trusted config text,
    /// so chat notifiers send it unescaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mention: Option<String>,
}
