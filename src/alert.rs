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
    pub labels: Labels,
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
    #[serde(default, skip_serializing_if = "DestinationTimes::is_empty")]
    pub notified: DestinationTimes,
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

/// Something labels can be looked up in: an event's map, or an alert's compact list.
pub trait LabelLookup {
    fn label(&self, name: &str) -> Option<&str>;
}

impl LabelLookup for BTreeMap<String, String> {
    fn label(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// An alert's labels as a sorted vector: with 100,000 alerts in memory, a B-tree node per
/// alert (half a kilobyte even for a few labels) is most of the footprint. Serialized as a
/// JSON object, like an event's labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    pub fn get(&self, name: &str) -> Option<&String> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)).ok().map(|i| &self.0[i].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.0.iter().cloned().collect()
    }

    /// Equal to an event's labels, without building either side anew.
    pub fn same_as(&self, map: &BTreeMap<String, String>) -> bool {
        self.0.len() == map.len() && self.0.iter().zip(map).all(|((a, b), (c, d))| a == c && b == d)
    }
}

impl From<&BTreeMap<String, String>> for Labels {
    fn from(map: &BTreeMap<String, String>) -> Self {
        // A BTreeMap iterates in key order, so the vector is sorted.
        Labels(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

impl LabelLookup for Labels {
    fn label(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Labels::from(&BTreeMap::<String, String>::deserialize(deserializer)?))
    }
}

/// When each destination was last told, as a short sorted vector: most alerts reach one or two
/// destinations, and a B-tree node costs half a kilobyte even for one entry — with 100,000
/// alerts in memory that is the difference that counts. Serialized as a JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DestinationTimes(Vec<(String, DateTime<Utc>)>);

impl DestinationTimes {
    pub fn get(&self, destination: &str) -> Option<&DateTime<Utc>> {
        self.0.binary_search_by(|(d, _)| d.as_str().cmp(destination)).ok().map(|i| &self.0[i].1)
    }

    pub fn insert(&mut self, destination: String, at: DateTime<Utc>) {
        match self.0.binary_search_by(|(d, _)| d.as_str().cmp(&destination)) {
            Ok(i) => self.0[i].1 = at,
            Err(i) => self.0.insert(i, (destination, at)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for DestinationTimes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (d, t) in &self.0 {
            map.serialize_entry(d, t)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for DestinationTimes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, DateTime<Utc>>::deserialize(deserializer)?;
        Ok(DestinationTimes(map.into_iter().collect()))
    }
}

impl Alert {
    pub fn is_firing(&self) -> bool {
        self.status == AlertStatus::Firing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_times_behave_like_a_map() {
        let t = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let mut d = DestinationTimes::default();
        d.insert("team|#ops".into(), t(1));
        d.insert("pager".into(), t(2));
        d.insert("team|#ops".into(), t(3));
        assert_eq!(d.get("team|#ops"), Some(&t(3)));
        assert_eq!(d.get("nobody"), None);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, r#"{"pager":"1970-01-01T00:00:02Z","team|#ops":"1970-01-01T00:00:03Z"}"#);
        assert_eq!(serde_json::from_str::<DestinationTimes>(&json).unwrap(), d);
    }
}
