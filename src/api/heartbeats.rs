//! Heartbeats: `POST /api/v1/heartbeats/{name}` (success), `…/start`, `…/fail`, and
//! `GET /api/v1/heartbeats` (states).

use axum::body::{to_bytes, Body};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;
use crate::config::Scope;
use crate::source::heartbeat::{self, Ping};

#[derive(Debug, Deserialize)]
pub struct PingParams {
    exit_code: Option<i32>,
}

async fn output(state: &AppState, body: Body) -> Result<String, ApiError> {
    let limit = state.settings.current().max_body_bytes;
    let bytes = to_bytes(body, limit).await.map_err(|_| ApiError::too_large(limit))?;
    let text = String::from_utf8_lossy(&bytes);
    let settings = state.sources.settings();
    Ok(settings.scrubber.text(heartbeat::tail(&text)))
}

async fn record(state: &AppState, headers: &HeaderMap, name: &str, ping: Ping) -> Result<Json<Value>, ApiError> {
    state.settings.current().keys.authenticate(headers)?.require(Scope::HeartbeatsWrite)?;
    match heartbeat::ping(&state.sources, name, ping).await? {
        Some(s) => Ok(Json(json!({"name": name, "status": s.status()}))),
        None => Err(ApiError::not_found(format!("no heartbeat named {name:?}"))),
    }
}

pub async fn success(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    state.settings.current().keys.authenticate(&headers)?.require(Scope::HeartbeatsWrite)?;
    let output = output(&state, body).await?;
    record(&state, &headers, &name, Ping::Success { output }).await
}

pub async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    record(&state, &headers, &name, Ping::Start).await
}

pub async fn fail(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<PingParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    state.settings.current().keys.authenticate(&headers)?.require(Scope::HeartbeatsWrite)?;
    let output = output(&state, body).await?;
    record(&state, &headers, &name, Ping::Fail { output, exit_code: params.exit_code }).await
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<Json<Value>, ApiError> {
    state.settings.current().keys.authenticate(&headers)?.require(Scope::EventsRead)?;
    super::params::QueryParams::parse(raw.as_deref(), &[])?;
    Ok(Json(json!({"heartbeats": heartbeat::list(&state.sources).await?})))
}
