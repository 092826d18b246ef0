//! `POST /api/v1/errors/{fingerprint}/resolve`: marks an error issue resolved, so its next
//! occurrence is notified as a regression.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;
use crate::config::Scope;

pub async fn resolve(
    State(state): State<AppState>,
    Path(fingerprint): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.settings.current().keys.authenticate(&headers)?.require(Scope::EventsWrite)?;
    if state.sources.resolve_error(&fingerprint).await? {
        Ok(Json(json!({"fingerprint": fingerprint, "resolved": true})))
    } else {
        Err(ApiError::not_found(format!("no error issue with fingerprint {fingerprint:?}")))
    }
}
