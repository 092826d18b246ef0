//! `POST /api/v1/events` (ingest) and `GET /api/v1/events` (search).

use axum::body::{to_bytes, Body};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::error::ApiError;
use super::params::QueryParams;
use super::AppState;
use crate::config::Scope;
use crate::event::{parse_event_all, Event, FieldError, WireEvent, MAX_BATCH};
use crate::store::EventQuery;

#[derive(Serialize)]
struct Accepted {
    accepted: usize,
    ids: Vec<Uuid>,
}

pub async fn post_events(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match accept(&state, &headers, body).await {
        Ok(accepted) => (StatusCode::ACCEPTED, Json(accepted)).into_response(),
        Err((reason, count, err)) => {
            state.metrics.rejected(reason, count);
            err.into_response()
        }
    }
}

type Rejection = (&'static str, u64, ApiError);

async fn accept(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Accepted, Rejection> {
    let settings = state.settings.current();
    let caller = settings.keys.authenticate(headers).map_err(|e| ("unauthorized", 1, e))?;
    caller.require(Scope::EventsWrite).map_err(|e| ("forbidden", 1, e))?;

    ApiError::refuse_encoded(headers).map_err(|e| ("unsupported_encoding", 1, e))?;
    let limit = settings.max_body_bytes;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(("too_large", 1, ApiError::too_large(limit)));
    }
    let bytes = to_bytes(body, limit).await.map_err(|_| ("too_large", 1, ApiError::too_large(limit)))?;
    let now = Utc::now();
    let (events, is_batch, posted) = match parse_typed(&bytes, &caller.name, now) {
        Some(parsed) => parsed,
        None => {
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
                let message = format!("the body is not valid JSON: {e}");
                ("invalid_json", 1, ApiError::bad_request("invalid_json", "body", message))
            })?;
            let is_batch = value.get("events").is_some();
            let posted = value.get("events").and_then(Value::as_array).map_or(1, Vec::len);
            (parse_body(value, &caller.name, now), is_batch, posted)
        }
    };
    // A refused batch counts each of its events, as an accepted one does.
    let events = events.map_err(|errs| ("invalid_event", posted.max(1) as u64, ApiError::invalid_events(errs)))?;
    if let Some((i, e)) = events.iter().enumerate().find(|(_, e)| !caller.may_send(&e.kind)) {
        let field = if is_batch { format!("events[{i}].kind") } else { "kind".into() };
        let mut err =
            ApiError::forbidden(format!("the key {:?} may not send events of kind {:?}", caller.name, e.kind));
        err.field = Some(field);
        return Err(("kind_not_allowed", events.len() as u64, err));
    }
    let count = events.len();
    let ids = events.iter().map(|e| e.id).collect();
    state.sources.accept_events(events).await.map_err(|e| ("store_error", count as u64, ApiError::from(e)))?;
    Ok(Accepted { accepted: count, ids })
}

/// A body's events, or every bad field in it.
type Parsed = Result<Vec<Event>, Vec<FieldError>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBatch {
    #[serde(deserialize_with = "events_with_room")]
    events: Vec<WireEvent>,
}

/// A batch's events into a `Vec` sized for a typical batch up front: grown from empty, it moved
/// every `WireEvent` so far 7 times on the way to 100 (1.5 % of batch ingest).
fn events_with_room<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<WireEvent>, D::Error> {
    struct Events;
    impl<'de> serde::de::Visitor<'de> for Events {
        type Value = Vec<WireEvent>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of events")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut events = Vec::with_capacity(seq.size_hint().unwrap_or(128).min(MAX_BATCH));
            while let Some(event) = seq.next_element()? {
                events.push(event);
            }
            Ok(events)
        }
    }
    deserializer.deserialize_seq(Events)
}

/// The fast path for well-typed bodies: serde straight into the events' fields, no `Value`
/// tree. `None` when serde refuses the body (bad JSON, a wrong type, an unknown field): then
/// [`parse_body`] reads it again and names the exact problem. Returns whether it was a batch,
/// and how many events it held.
fn parse_typed(bytes: &[u8], source: &str, now: DateTime<Utc>) -> Option<(Parsed, bool, usize)> {
    // A single event fails this at its first key, so trying the batch shape first is cheap.
    let batch = serde_json::from_slice::<WireBatch>(bytes);
    if let Err(e) = &batch {
        if let Some(twice) = key_twice(e) {
            return Some((Err(vec![twice]), true, 1));
        }
    }
    if let Ok(batch) = batch {
        let posted = batch.events.len();
        let events = check_batch_size(batch.events.len()).and_then(|()| {
            collect_valid(
                batch
                    .events
                    .into_iter()
                    .enumerate()
                    .map(|(i, wire)| crate::event::validate_all(wire, &format!("events[{i}]."), source, now)),
            )
        });
        return Some((events, true, posted));
    }
    let wire = match serde_json::from_slice::<WireEvent>(bytes) {
        Ok(wire) => wire,
        Err(e) => return key_twice(&e).map(|twice| (Err(vec![twice]), false, 1)),
    };
    Some((crate::event::validate_all(wire, "", source, now).map(|e| vec![e]), false, 1))
}

/// A key given twice: read as a tree the last one would silently win (and a batch given
/// twice would drop the first), so it is refused, as unknown keys are.
fn key_twice(e: &serde_json::Error) -> Option<FieldError> {
    let text = e.to_string();
    text.starts_with("duplicate field")
        .then(|| FieldError { field: "body".into(), message: format!("a key is given twice: {text}") })
}

fn check_batch_size(n: usize) -> Result<(), Vec<FieldError>> {
    if n == 0 {
        return Err(vec![FieldError { field: "events".into(), message: "must hold at least one event".into() }]);
    }
    if n > MAX_BATCH {
        return Err(vec![FieldError {
            field: "events".into(),
            message: format!("holds {n} events; at most {MAX_BATCH} per request"),
        }]);
    }
    Ok(())
}

/// All the events, or every error among them.
fn collect_valid(parsed: impl Iterator<Item = Result<Event, Vec<FieldError>>>) -> Result<Vec<Event>, Vec<FieldError>> {
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for result in parsed {
        match result {
            Ok(e) => events.push(e),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        Err(errors)
    }
}

/// One event, or `{"events": [...]}`; a batch is taken whole or not at all, and every bad
/// field in it is reported.
pub(super) fn parse_body(value: Value, source: &str, now: DateTime<Utc>) -> Result<Vec<Event>, Vec<FieldError>> {
    let mut obj = match value {
        Value::Object(obj) if obj.contains_key("events") => obj,
        single => return parse_event_all(single, "", source, now).map(|e| vec![e]),
    };
    let only_events = obj.len() == 1;
    let batch = match obj.remove("events") {
        Some(Value::Array(items)) if only_events => items,
        Some(Value::Array(_)) => {
            return Err(vec![FieldError { field: "body".into(), message: "a batch holds only `events`".into() }])
        }
        _ => return Err(vec![FieldError { field: "events".into(), message: "must be an array of events".into() }]),
    };
    check_batch_size(batch.len())?;
    collect_valid(
        batch.into_iter().enumerate().map(|(i, item)| parse_event_all(item, &format!("events[{i}]."), source, now)),
    )
}

#[derive(Serialize)]
struct SearchResult {
    events: Vec<Event>,
    next_cursor: Option<String>,
    /// Only when a text search could not see the newest events yet (see docs/api.md).
    #[serde(skip_serializing_if = "is_zero")]
    index_lag: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A kind, or a glob of kinds with `*`: anything else (`[`, `?`, capitals) matches nothing.
fn kind_param(kind: String) -> Result<String, ApiError> {
    if kind.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-*".contains(c)) {
        Ok(kind)
    } else {
        Err(ApiError::bad_request("invalid_parameter", "kind", "a kind (a-z, 0-9, _ . -) or a glob of kinds with *"))
    }
}

fn time_param(name: &str, value: Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(&v).map(|t| t.with_timezone(&Utc)).map_err(|_| {
                ApiError::bad_request(
                    "invalid_parameter",
                    name,
                    "must be an RFC 3339 time such as 2026-11-21T16:00:00Z",
                )
            })
        })
        .transpose()
}

pub async fn search_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<impl Serialize>, ApiError> {
    let settings = state.settings.current();
    settings.keys.authenticate(&headers)?.require(Scope::EventsRead)?;
    let mut params = QueryParams::parse(raw.as_deref(), &["user", "q", "kind", "since", "until", "limit", "cursor"])?;
    let q = params.take("q");
    if q.as_deref().is_some_and(|q| q.chars().any(char::is_control)) {
        return Err(ApiError::bad_request("invalid_parameter", "q", "must not contain control characters"));
    }
    let query = EventQuery {
        user: params.take("user"),
        q,
        kind: params.take("kind").map(kind_param).transpose()?,
        since: time_param("since", params.take("since"))?,
        until: time_param("until", params.take("until"))?,
        limit: params.limit(50)?,
        cursor: params.take("cursor"),
    };
    let page = state.ingest.store().search_events(&query).await?;
    Ok(Json(SearchResult { events: page.items, next_cursor: page.next_cursor, index_lag: page.index_lag }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn batch_errors_list_every_bad_event() {
        let body = json!({"events": [{"kind": "ok"}, {"kind": "Bad Kind"}, {"severity": "info"}]});
        let errs = parse_body(body, "k", Utc::now()).unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["events[1].kind", "events[2].kind"]);
    }

    #[test]
    fn every_problem_of_an_event_is_named() {
        let body = json!({"kind": "BAD", "severity": "urgent", "timestamp": "nope", "link": "ftp://x", "sevrty": 1});
        let errs = parse_body(body, "k", Utc::now()).unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["sevrty", "kind", "severity", "link", "timestamp"]);
        let batch =
            json!({"events": [{"kind": "ok", "title": "t".repeat(300), "text": "x".repeat(20_000)}, {"kind": 3}]});
        let errs = parse_body(batch, "k", Utc::now()).unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["events[0].title", "events[0].text", "events[1].kind"]);
    }

    #[test]
    fn batch_limits() {
        let too_many: Vec<_> = (0..1001).map(|_| json!({"kind": "a"})).collect();
        assert_eq!(parse_body(json!({ "events": too_many }), "k", Utc::now()).unwrap_err()[0].field, "events");
        assert_eq!(parse_body(json!({"events": []}), "k", Utc::now()).unwrap_err()[0].field, "events");
        assert_eq!(parse_body(json!({"events": [{"kind": "a"}]}), "k", Utc::now()).unwrap().len(), 1);
    }

    /// The typed fast path must take exactly what the field-by-field path takes, build the same
    /// events, and leave everything else to it.
    #[test]
    fn the_typed_path_agrees_with_the_field_by_field_path() {
        let now = Utc::now();
        let bodies = [
            json!({"kind": "a.b"}),
            json!({"kind": "a.b", "title": null, "labels": null, "error": null, "fields": {"n": [1, {"x": null}]}}),
            json!({"kind": "error.unhandled", "error": {"type": "E", "message": "boom"}}),
            json!({"kind": "Bad Kind"}),
            json!({}),
            json!({"kind": "a", "labels": {"env": 1}}),
            json!({"kind": "a", "severity": 3}),
            json!({"kind": "a", "nope": 1}),
            json!({"kind": "a", "labels": {"": "x"}}),
            json!({"kind": "a", "status": "maybe", "link": "ftp://x"}),
            json!({"kind": "a", "timestamp": "yesterday"}),
            json!({"events": [{"kind": "a"}, {"kind": "b", "labels": {"k": "v"}, "user": "u"}]}),
            json!({"events": [{"kind": "a"}, {"kind": "B"}, {"title": "no kind"}]}),
            json!({"events": [{"kind": "a"}, {"kind": "b", "title": 7}]}),
            json!({"events": []}),
            json!({"events": [1]}),
            json!({"events": {"kind": "a"}}),
            json!({"events": [{"kind": "a"}], "kind": "b"}),
            json!([{"kind": "a"}]),
        ];
        let without_ids = |r: Result<Vec<Event>, Vec<FieldError>>| {
            r.map(|events| events.into_iter().map(|e| Event { id: uuid::Uuid::nil(), ..e }).collect::<Vec<_>>())
        };
        let mut typed = 0;
        for body in bodies {
            let bytes = serde_json::to_vec(&body).unwrap();
            let slow = without_ids(parse_body(body.clone(), "k", now));
            if let Some((fast, is_batch, _)) = parse_typed(&bytes, "k", now) {
                typed += 1;
                assert_eq!(without_ids(fast), slow, "{body}");
                assert_eq!(is_batch, body.get("events").is_some(), "{body}");
            } else {
                assert!(slow.is_err(), "the typed path refused a body the other accepts: {body}");
            }
        }
        assert!(typed >= 10, "the typed path took only {typed} bodies");
    }

    #[test]
    fn a_batch_is_only_an_array_of_events() {
        let extra = parse_body(json!({"events": [{"kind": "a"}], "kind": "b"}), "k", Utc::now()).unwrap_err();
        assert_eq!((extra[0].field.as_str(), extra[0].message.as_str()), ("body", "a batch holds only `events`"));
        let not_array = parse_body(json!({"events": {"kind": "a"}}), "k", Utc::now()).unwrap_err();
        assert_eq!(not_array[0].field, "events");
    }

    #[test]
    fn every_field_of_an_event_arrives_whole() {
        let sent = json!({
            "kind": "user.registered", "severity": "warning", "title": "New user", "text": "Ana <ana@x.io>",
            "user": "u-1", "labels": {"env": "prod", "plan": "pro"}, "fields": {"n": 3, "tags": ["a", "b"]},
            "fingerprint": "fp-1", "status": "firing", "link": "https://x.io/u/1",
            "timestamp": "2026-11-22T10:00:00Z", "source": "signup"
        });
        let batch = parse_body(json!({"events": [sent.clone()]}), "k", Utc::now()).unwrap();
        let single = parse_body(sent, "k", Utc::now()).unwrap();
        for e in [&batch[0], &single[0]] {
            assert_eq!((e.kind.as_str(), e.severity), ("user.registered", crate::event::Severity::Warning));
            assert_eq!((e.title.as_deref(), e.text.as_deref()), (Some("New user"), Some("Ana <ana@x.io>")));
            assert_eq!(e.user.as_deref(), Some("u-1"));
            assert_eq!(e.labels.get("plan").map(String::as_str), Some("pro"));
            assert_eq!(e.fields.get("tags"), Some(&json!(["a", "b"])));
            assert_eq!((e.fingerprint.as_str(), e.source.as_str()), ("fp-1", "signup"));
            assert_eq!(e.status, Some(crate::event::AlertStatus::Firing));
            assert_eq!(e.link.as_deref(), Some("https://x.io/u/1"));
            assert_eq!(e.timestamp.to_rfc3339(), "2026-11-22T10:00:00+00:00");
        }
    }
}
