//! Alerts: the state of a condition, keyed by fingerprint, that fires and resolves.
//!
//! Events with a `status` and every check finding update an alert. The record also keeps the
//! bookkeeping that makes notifications trustworthy across restarts: when each destination
//! was last told, whether a resolve is owed, flapping history and why it is muted.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{AlertStatus, Severity};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub fingerprint: String,
    pub kind: String,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    pub status: AlertStatus,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub last_event_id: Uuid,
    /// State changes within the flapping window, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<DateTime<Utc>>,
    #[serde(default)]
    pub flapping: bool,
    /// When a notification about this alert was last queued, per destination.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub notified: BTreeMap<String, DateTime<Utc>>,
    /// A firing notification went out since it last fired, so its resolve is owed.
    #[serde(default)]
    pub announced: bool,
    /// Why it is not being notified now: a silence, an inhibiting alert, a maintenance window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted_by: Option<String>,
    /// Who acknowledged it, if anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
}

impl Alert {
    pub fn is_firing(&self) -> bool {
        self.status == AlertStatus::Firing
    }
}
