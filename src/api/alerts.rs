//! `GET /api/v1/alerts` and the silences: `POST/GET /api/v1/silences`, `DELETE …/{id}`.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::error::ApiError;
use super::params::QueryParams;
use super::AppState;
use crate::alert::Alert;
use crate::config::{Dur, Scope};
use crate::silence::{Matchers, Silence};

#[derive(Serialize)]
struct AlertView {
    #[serde(flatten)]
    alert: Alert,
    /// Kept quiet by a silence or a maintenance window.
    silenced: bool,
    /// Kept quiet because a related alert (e.g. its cluster is unreachable) fires.
    inhibited: bool,
}

#[derive(Serialize)]
pub struct AlertList {
    alerts: Vec<AlertView>,
    total: u64,
    next_cursor: Option<String>,
}

pub async fn list_alerts(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<AlertList>, ApiError> {
    state.settings.current().keys.authenticate(&headers)?.require(Scope::EventsRead)?;
    let mut params = QueryParams::parse(raw.as_deref(), &["limit", "cursor"])?;
    let limit = params.limit(100)?;
    let cursor = params.take("cursor");
    let page = state.ingest.store().firing_alerts(limit, cursor.as_deref()).await?;
    let alerts = page
        .alerts
        .into_iter()
        .map(|alert| {
            let reason = alert.muted_by.as_deref().unwrap_or("");
            AlertView {
                silenced: reason.starts_with("silence") || reason.starts_with("maintenance"),
                inhibited: reason.starts_with("inhibited"),
                alert,
            }
        })
        .collect();
    Ok(Json(AlertList { alerts, total: page.total, next_cursor: page.next_cursor }))
}

#[derive(Serialize)]
struct SilenceView {
    #[serde(flatten)]
    silence: Silence,
    /// `pending`, `active` or `expired`.
    state: &'static str,
}

fn view(silence: Silence, now: DateTime<Utc>) -> SilenceView {
    SilenceView { state: silence.state(now), silence }
}

#[derive(Serialize)]
pub struct Created {
    id: Uuid,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
}

fn field_str<'a>(body: &'a serde_json::Map<String, Value>, name: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request("invalid_silence", name, "must be a string")),
    }
}

fn time_field(body: &serde_json::Map<String, Value>, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    field_str(body, name)?
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| ApiError::bad_request("invalid_silence", name, "must be an RFC 3339 time"))
        })
        .transpose()
}

/// Validates a silence request; pure, so the command line can share it.
pub fn parse_silence(body: &Value, author: &str, now: DateTime<Utc>) -> Result<Silence, ApiError> {
    let body =
        body.as_object().ok_or_else(|| ApiError::bad_request("invalid_silence", "body", "must be a JSON object"))?;
    const KNOWN: &[&str] = &["matchers", "duration", "starts_at", "ends_at", "comment", "created_by"];
    if let Some(unknown) = body.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            "invalid_silence",
            unknown.clone(),
            format!("unknown field; expected one of {}", KNOWN.join(", ")),
        ));
    }
    let matchers: BTreeMap<String, String> = match body.get("matchers") {
        Some(Value::Object(m)) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| match v {
                _ if k.trim().is_empty() => Err(ApiError::bad_request(
                    "invalid_silence",
                    "matchers",
                    "a matcher needs a name: `kind` or a label name",
                )),
                Value::String(s) if !s.is_empty() => Ok((k.clone(), s.clone())),
                _ => Err(ApiError::bad_request(
                    "invalid_silence",
                    format!("matchers.{k}"),
                    "must be a non-empty string (a glob)",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Object(_)) => {
            return Err(ApiError::bad_request(
                "invalid_silence",
                "matchers",
                "needs at least one matcher; a silence of everything is refused",
            ))
        }
        Some(_) => {
            return Err(ApiError::bad_request("invalid_silence", "matchers", "must be an object of kind/label globs"))
        }
        None => return Err(ApiError::bad_request("invalid_silence", "matchers", "is required")),
    };
    Matchers::compile(&matchers).map_err(|e| ApiError::bad_request("invalid_silence", "matchers", e))?;
    let starts_at = time_field(body, "starts_at")?.unwrap_or(now);
    let ends_at = match (field_str(body, "duration")?, time_field(body, "ends_at")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_silence",
                "duration",
                "give either duration or ends_at, not both",
            ))
        }
        (Some(d), None) => {
            let d = Dur::parse(d).map_err(|e| ApiError::bad_request("invalid_silence", "duration", e))?;
            if d.get().is_zero() {
                return Err(ApiError::bad_request("invalid_silence", "duration", "must be longer than zero"));
            }
            starts_at
                + chrono::Duration::from_std(d.get())
                    .map_err(|_| ApiError::bad_request("invalid_silence", "duration", "too long"))?
        }
        (None, Some(end)) => end,
        (None, None) => {
            return Err(ApiError::bad_request("invalid_silence", "duration", "give duration (\"2h\") or ends_at"))
        }
    };
    if ends_at <= starts_at || ends_at <= now {
        return Err(ApiError::bad_request("invalid_silence", "ends_at", "must be in the future and after starts_at"));
    }
    Ok(Silence {
        id: Uuid::now_v7(),
        matchers,
        starts_at,
        ends_at,
        comment: field_str(body, "comment")?.unwrap_or("").to_string(),
        created_by: field_str(body, "created_by")?.filter(|by| !by.trim().is_empty()).unwrap_or(author).to_string(),
        created_at: now,
    })
}

/// Makes the lifecycle see the new set of silences, and act on it now rather than at the
/// next tick (an expired silence releases its alerts at once).
async fn refresh(state: &AppState, now: DateTime<Utc>) -> Result<(), ApiError> {
    let silences = state.ingest.store().silences(now).await?;
    state.ingest.lifecycle().set_silences(silences);
    let ingest = state.ingest.clone();
    tokio::spawn(async move {
        if let Err(e) = ingest.tick(Utc::now()).await {
            tracing::warn!(error = %e, "alert upkeep after a silence change failed");
        }
    });
    Ok(())
}

pub async fn create_silence(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let caller = state.settings.current().keys.authenticate(&headers)?.clone();
    caller.require(Scope::SilencesWrite)?;
    // Read as JSON whatever the Content-Type says, as events are (`curl -d` sends a form type).
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", "body", format!("the body is not valid JSON: {e}")))?;
    let now = Utc::now();
    let silence = parse_silence(&body, &caller.name, now)?;
    state.ingest.store().insert_silence(&silence).await?;
    refresh(&state, now).await?;
    tracing::info!(silence = %silence.id, by = %silence.created_by, ends_at = %silence.ends_at, "silence created");
    Ok((StatusCode::CREATED, Json(Created { id: silence.id, starts_at: silence.starts_at, ends_at: silence.ends_at })))
}

#[derive(Serialize)]
pub struct SilenceList {
    silences: Vec<SilenceView>,
}

pub async fn list_silences(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<SilenceList>, ApiError> {
    state.settings.current().keys.authenticate(&headers)?.require(Scope::EventsRead)?;
    QueryParams::parse(raw.as_deref(), &[])?;
    let now = Utc::now();
    // Recently expired ones stay listed for a day, for the record.
    let silences = state.ingest.store().silences(now - chrono::Duration::days(1)).await?;
    Ok(Json(SilenceList { silences: silences.into_iter().map(|s| view(s, now)).collect() }))
}

pub async fn expire_silence(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.settings.current().keys.authenticate(&headers)?.require(Scope::SilencesWrite)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("no silence with that id"))?;
    let now = Utc::now();
    let silence = state.ingest.store().expire_silence(id, now).await.map_err(|e| match e {
        crate::store::StoreError::NotFound => ApiError::not_found("no silence with that id"),
        other => other.into(),
    })?;
    refresh(&state, now).await?;
    Ok(Json(serde_json::to_value(view(silence, now)).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn silence_requests_are_checked() {
        let now = Utc::now();
        let ok =
            parse_silence(&json!({"matchers": {"kind": "es.*"}, "duration": "2h", "comment": "upgrade"}), "ops", now)
                .unwrap();
        assert_eq!(ok.ends_at - ok.starts_at, chrono::Duration::hours(2));
        assert_eq!(ok.created_by, "ops");
        let blank = parse_silence(&json!({"matchers": {"kind": "a"}, "duration": "1h", "created_by": " "}), "ops", now);
        assert_eq!(blank.unwrap().created_by, "ops", "a blank author is the key's name");
        let field = |body: Value| parse_silence(&body, "k", now).unwrap_err().field.unwrap();
        assert_eq!(field(json!({"duration": "1h"})), "matchers");
        assert_eq!(field(json!({"matchers": {}, "duration": "1h"})), "matchers");
        assert_eq!(field(json!({"matchers": {"kind": "a"}})), "duration");
        assert_eq!(field(json!({"matchers": {"kind": "a"}, "duration": "forever"})), "duration");
        assert_eq!(field(json!({"matchers": {"kind": "a"}, "ends_at": "2000-01-01T00:00:00Z"})), "ends_at");
        assert_eq!(field(json!({"matchers": {"kind": "a"}, "duration": "1h", "color": "red"})), "color");
        assert_eq!(field(json!({"matchers": {"kind": "[a"}, "duration": "1h"})), "matchers");
        assert_eq!(field(json!({"matchers": {"": "a"}, "duration": "1h"})), "matchers");
        assert_eq!(field(json!({"matchers": {"kind": "a"}, "duration": "0s"})), "duration");
    }
}
