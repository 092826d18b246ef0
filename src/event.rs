//! The event: the one unit that flows through the system, and its validation.
//!
//! Incoming JSON is checked field by field so a bad request names the exact field that is
//! wrong (`events[3].kind`) instead of a generic parse error.

pub(crate) mod time;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

pub const MAX_KIND_LEN: usize = 128;
pub const MAX_TITLE_LEN: usize = 256;
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
pub const MAX_LABELS: usize = 64;
pub const MAX_BATCH: usize = 1000;

/// How much attention an event deserves; ordered from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Severity::Info, Severity::Warning, Severity::Error, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|sev| sev.as_str() == s)
    }

    /// The number a stored row keeps: 0 for info up to 3 for critical.
    pub fn rank(self) -> i64 {
        self as i64
    }

    pub fn from_rank(rank: i64) -> Option<Severity> {
        usize::try_from(rank).ok().and_then(|i| Severity::ALL.get(i).copied())
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an event is a one-off notice or a state change of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// A validated event, as stored and routed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: Uuid,
    pub kind: String,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub fields: Map<String, Value>,
    pub fingerprint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<AlertStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(serialize_with = "time::serialize")]
    pub timestamp: DateTime<Utc>,
    #[serde(serialize_with = "time::serialize")]
    pub received_at: DateTime<Utc>,
    pub source: String,
    /// The exception of an `error.*` event (issue 5), already scrubbed when stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::source::errors::ErrorReport>,
}

impl Event {
    /// True when the sender named no fingerprint. Such one-off events are each their own
    /// notification: only a fingerprint the sender chose says "this is the same thing again".
    pub fn fingerprint_is_derived(&self) -> bool {
        self.fingerprint == derive_fingerprint(&self.kind, &self.labels)
    }
}

/// Why one field of one event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

/// Turns one JSON object into an [`Event`]. `path` prefixes field names in errors
/// (`""` for a single event, `"events[3]."` inside a batch).
pub fn parse_event(value: &Value, path: &str, source: &str, now: DateTime<Utc>) -> Result<Event, FieldError> {
    parse_event_owned(value.clone(), path, source, now)
}

/// [`parse_event`] for a value the caller no longer needs: its strings and maps move into the
/// event instead of being copied.
pub fn parse_event_owned(value: Value, path: &str, source: &str, now: DateTime<Utc>) -> Result<Event, FieldError> {
    parse_event_all(value, path, source, now).map_err(first)
}

/// [`parse_event_owned`] naming every problem of the event, not only the first, so a sender
/// can fix them all in one go (the API lists them in `details`).
pub fn parse_event_all(value: Value, path: &str, source: &str, now: DateTime<Utc>) -> Result<Event, Vec<FieldError>> {
    let Value::Object(obj) = value else {
        return Err(vec![FieldError::new(path.trim_end_matches('.').to_string().or_root(), "must be a JSON object")]);
    };
    let (wire, mut problems) = WireEvent::from_object(obj, path);
    match validate_all(wire, path, source, now) {
        Ok(event) if problems.is_empty() => Ok(event),
        Ok(_) => Err(problems),
        Err(more) => {
            // A field of the wrong type is absent to `validate_all`: "kind is required" would
            // repeat what is already said about `kind`.
            let more: Vec<FieldError> =
                more.into_iter().filter(|m| !problems.iter().any(|p| p.field == m.field)).collect();
            problems.extend(more);
            Err(problems)
        }
    }
}

fn first(mut problems: Vec<FieldError>) -> FieldError {
    problems.swap_remove(0)
}

/// An incoming event's fields, each of the right JSON type, not yet validated. Ingest
/// deserializes request bodies straight into it when they are well-typed (no `Value` tree in
/// between); anything serde refuses goes through [`WireEvent::from_object`], which names the
/// exact fields that are wrong.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireEvent {
    kind: Option<String>,
    severity: Option<String>,
    title: Option<String>,
    text: Option<String>,
    user: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    fields: Option<Map<String, Value>>,
    fingerprint: Option<String>,
    status: Option<String>,
    link: Option<String>,
    timestamp: Option<String>,
    source: Option<String>,
    error: Option<Value>,
}

impl WireEvent {
    /// Type-checks an object field by field, in the order of [`KNOWN_FIELDS`]; a field of the
    /// wrong type is left out and named among the problems.
    fn from_object(mut obj: Map<String, Value>, path: &str) -> (WireEvent, Vec<FieldError>) {
        let field = |name: &str| format!("{path}{name}");
        let mut problems: Vec<FieldError> = obj
            .keys()
            .filter(|k| !KNOWN_FIELDS.contains(&k.as_str()))
            .map(|key| {
                FieldError::new(field(key), format!("unknown field; expected one of {}", KNOWN_FIELDS.join(", ")))
            })
            .collect();
        let obj = &mut obj;
        let mut wire = WireEvent {
            kind: take_str(obj, "kind", &field, &mut problems),
            severity: take_str(obj, "severity", &field, &mut problems),
            title: take_str(obj, "title", &field, &mut problems),
            text: take_str(obj, "text", &field, &mut problems),
            user: take_str(obj, "user", &field, &mut problems),
            ..WireEvent::default()
        };
        wire.labels = match obj.remove("labels") {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => {
                let mut labels = BTreeMap::new();
                for (k, v) in map {
                    match v {
                        Value::String(s) => {
                            labels.insert(k, s);
                        }
                        _ => problems.push(FieldError::new(format!("{path}labels.{k}"), "must be a string")),
                    }
                }
                Some(labels)
            }
            Some(_) => {
                problems.push(FieldError::new(field("labels"), "must be an object of strings"));
                None
            }
        };
        wire.fields = match obj.remove("fields") {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map),
            Some(_) => {
                problems.push(FieldError::new(field("fields"), "must be an object"));
                None
            }
        };
        wire.fingerprint = take_str(obj, "fingerprint", &field, &mut problems);
        wire.status = take_str(obj, "status", &field, &mut problems);
        wire.link = take_str(obj, "link", &field, &mut problems);
        wire.timestamp = take_str(obj, "timestamp", &field, &mut problems);
        wire.source = take_str(obj, "source", &field, &mut problems);
        wire.error = obj.remove("error").filter(|v| !v.is_null());
        (wire, problems)
    }
}

/// Checks a type-checked event against the contract's rules and builds the [`Event`]; the
/// first problem, when there are several.
pub fn validate(wire: WireEvent, path: &str, source: &str, now: DateTime<Utc>) -> Result<Event, FieldError> {
    validate_all(wire, path, source, now).map_err(first)
}

/// [`validate`] naming every problem, in field order.
pub fn validate_all(wire: WireEvent, path: &str, source: &str, now: DateTime<Utc>) -> Result<Event, Vec<FieldError>> {
    let field = |name: &str| format!("{path}{name}");
    let mut problems = Vec::new();
    let mut bad = |name: String, message: String| problems.push(FieldError::new(name, message));

    let kind = match wire.kind {
        None => {
            bad(field("kind"), "is required".into());
            String::new()
        }
        Some(kind) => {
            if let Err(m) = validate_kind(&kind) {
                bad(field("kind"), m);
            }
            kind
        }
    };

    let severity = match wire.severity {
        None => Severity::Info,
        Some(s) => Severity::parse(&s).unwrap_or_else(|| {
            bad(field("severity"), "must be one of info, warning, error, critical".into());
            Severity::Info
        }),
    };
    let title = wire.title;
    if title.as_ref().is_some_and(|t| t.chars().count() > MAX_TITLE_LEN) {
        bad(field("title"), format!("must be at most {MAX_TITLE_LEN} characters"));
    }
    let text = wire.text;
    if text.as_ref().is_some_and(|t| t.len() > MAX_TEXT_BYTES) {
        bad(field("text"), format!("must be at most {MAX_TEXT_BYTES} bytes"));
    }
    let user = wire.user;
    if user.as_ref().is_some_and(|u| u.len() > 256) {
        bad(field("user"), "must be at most 256 bytes (UTF-8)".into());
    }

    let labels = wire.labels.unwrap_or_default();
    if labels.len() > MAX_LABELS {
        bad(field("labels"), format!("must have at most {MAX_LABELS} pairs"));
    }
    if labels.keys().any(|k| k.is_empty() || k.len() > 128) {
        bad(field("labels"), "label names must be 1 to 128 bytes (UTF-8)".into());
    }
    for (k, v) in &labels {
        if v.len() > 1024 {
            bad(format!("{path}labels.{k}"), "must be at most 1024 bytes (UTF-8)".into());
        }
    }

    let fields = wire.fields.unwrap_or_default();
    if fields.len() > 64 {
        bad(field("fields"), "must have at most 64 entries".into());
    }

    let status = match wire.status.as_deref() {
        None => None,
        Some("firing") => Some(AlertStatus::Firing),
        Some("resolved") => Some(AlertStatus::Resolved),
        Some(_) => {
            bad(field("status"), "must be firing or resolved".into());
            None
        }
    };

    let link = wire.link;
    if let Some(l) = &link {
        if !url::Url::parse(l).is_ok_and(|u| u.scheme() == "http" || u.scheme() == "https") {
            bad(field("link"), "must be an absolute http(s) URL".into());
        }
    }

    let timestamp = match wire.timestamp {
        None => now,
        Some(s) => match DateTime::parse_from_rfc3339(&s) {
            Ok(t) => t.with_timezone(&Utc),
            Err(_) => {
                bad(field("timestamp"), "must be an RFC 3339 time such as 2026-11-21T16:00:00Z".into());
                now
            }
        },
    };

    let error = match wire.error {
        None => None,
        Some(v) if kind.starts_with("error.") => match crate::source::errors::parse_error(&v, &field("error.")) {
            Ok(e) => Some(e),
            Err(e) => {
                bad(e.field, e.message);
                None
            }
        },
        Some(_) => {
            bad(field("error"), "only events of kind error.* carry an error".into());
            None
        }
    };

    let fingerprint = match wire.fingerprint {
        Some(f) if f.is_empty() || f.len() > 256 => {
            bad(field("fingerprint"), "must be 1 to 256 bytes (UTF-8)".into());
            f
        }
        Some(f) => f,
        None => match &error {
            Some(e) => e.fingerprint(),
            None => derive_fingerprint(&kind, &labels),
        },
    };

    let source = match wire.source {
        Some(s) if s.is_empty() || s.len() > 128 => {
            bad(field("source"), "must be 1 to 128 bytes (UTF-8)".into());
            s
        }
        Some(s) => s,
        None => source.to_string(),
    };

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Event {
        id: new_event_id(now),
        kind,
        severity,
        title,
        text,
        user,
        labels,
        fields,
        fingerprint,
        status,
        link,
        timestamp,
        received_at: now,
        source,
        error,
    })
}

const KNOWN_FIELDS: &[&str] = &[
    "kind",
    "severity",
    "title",
    "text",
    "user",
    "labels",
    "fields",
    "fingerprint",
    "status",
    "link",
    "timestamp",
    "source",
    "error",
];

trait OrRoot {
    fn or_root(self) -> String;
}
impl OrRoot for String {
    fn or_root(self) -> String {
        if self.is_empty() {
            "body".to_string()
        } else {
            self
        }
    }
}

/// Takes an optional string field out of `obj`: absent and `null` are `None`, and so is a value
/// of another type, which is added to `problems`.
fn take_str(
    obj: &mut Map<String, Value>,
    name: &str,
    field: &dyn Fn(&str) -> String,
    problems: &mut Vec<FieldError>,
) -> Option<String> {
    match obj.remove(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            problems.push(FieldError::new(field(name), "must be a string"));
            None
        }
    }
}

/// Kinds are dotted lower-case names (`user.registered`), at most 128 characters.
pub fn validate_kind(kind: &str) -> Result<(), String> {
    if kind.is_empty() {
        return Err("must not be empty".into());
    }
    if kind.len() > MAX_KIND_LEN {
        return Err(format!("must be at most {MAX_KIND_LEN} characters"));
    }
    if let Some(c) = kind.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-')) {
        return Err(format!("may contain only a-z, 0-9, '_', '.' and '-' (found {c:?})"));
    }
    Ok(())
}

/// The fingerprint of an event that names none: its kind and labels, so the same condition
/// on the same thing always has the same key (as Alertmanager fingerprints label sets).
pub fn derive_fingerprint(kind: &str, labels: &BTreeMap<String, String>) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(kind.as_bytes());
    for (k, v) in labels {
        hasher.update([0xff]);
        hasher.update(k.as_bytes());
        hasher.update([0xfe]);
        hasher.update(v.as_bytes());
    }
    hex::encode(&hasher.finalize()[..8])
}

/// Time-ordered ids keep the primary index append-only and make ids sortable.
pub fn new_event_id(now: DateTime<Utc>) -> Uuid {
    let ts = uuid::Timestamp::from_unix(uuid::NoContext, now.timestamp() as u64, now.timestamp_subsec_nanos());
    Uuid::new_v7(ts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-21T16:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_severity_s_rank_reads_back() {
        for severity in Severity::ALL {
            assert_eq!(Severity::from_rank(severity.rank()), Some(severity));
        }
        assert_eq!((Severity::Info.rank(), Severity::Critical.rank()), (0, 3));
        assert_eq!((Severity::from_rank(4), Severity::from_rank(-1)), (None, None));
    }

    #[test]
    fn minimal_event_gets_defaults() {
        let e = parse_event(&json!({"kind": "user.registered"}), "", "backend", now()).unwrap();
        assert_eq!(e.severity, Severity::Info);
        assert_eq!(e.timestamp, now());
        assert_eq!(e.source, "backend");
        assert_eq!(e.fingerprint, derive_fingerprint("user.registered", &BTreeMap::new()));
        assert!(e.fingerprint_is_derived());
        let named = parse_event(&json!({"kind": "user.registered", "fingerprint": "x"}), "", "backend", now()).unwrap();
        assert!(!named.fingerprint_is_derived());
    }

    #[test]
    fn a_named_source_is_kept_within_bounds() {
        let named = parse_event(&json!({"kind": "a", "source": "billing"}), "", "backend", now()).unwrap();
        assert_eq!(named.source, "billing");
        for bad in [String::new(), "s".repeat(129)] {
            let e = parse_event(&json!({"kind": "a", "source": bad}), "events[2].", "backend", now()).unwrap_err();
            assert_eq!(e.field, "events[2].source");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({}), "kind"),
            (json!({"kind": "User Registered"}), "kind"),
            (json!({"kind": "a", "severity": "loud"}), "severity"),
            (json!({"kind": "a", "labels": {"env": 1}}), "labels.env"),
            (json!({"kind": "a", "timestamp": "yesterday"}), "timestamp"),
            (json!({"kind": "a", "status": "open"}), "status"),
            (json!({"kind": "a", "link": "javascript:alert(1)"}), "link"),
            (json!({"kind": "a", "title": "x".repeat(257)}), "title"),
            (json!({"kind": "a", "text": "x".repeat(16 * 1024 + 1)}), "text"),
            (json!({"kind": "a", "severty": "info"}), "severty"),
        ];
        for (body, field) in cases {
            let err = parse_event(&body, "events[2].", "k", now()).unwrap_err();
            assert_eq!(err.field, format!("events[2].{field}"), "{body}");
        }
    }

    #[test]
    fn severities_are_ordered() {
        assert!(Severity::Info < Severity::Warning && Severity::Error < Severity::Critical);
    }

    #[test]
    fn fingerprint_depends_on_labels() {
        let mut a = BTreeMap::new();
        a.insert("cluster".to_string(), "a".to_string());
        let mut b = BTreeMap::new();
        b.insert("cluster".to_string(), "b".to_string());
        assert_ne!(derive_fingerprint("es.down", &a), derive_fingerprint("es.down", &b));
    }
}
