//! `GET /api/v1/deliveries/dead`: messages that could not be delivered, newest first.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::AppState;
use crate::config::Scope;
use crate::store::OutboxEntry;

#[derive(Deserialize)]
pub struct Params {
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct DeadLetters {
    dead_letters: Vec<OutboxEntry>,
    next_cursor: Option<String>,
}

pub async fn dead_letters(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeadLetters>, ApiError> {
    state.settings.current().keys.authenticate(&headers)?.require(Scope::EventsRead)?;
    let Query(params) = params.map_err(|e| ApiError::bad_request("invalid_parameter", "query", e.body_text()))?;
    let limit = params.limit.unwrap_or(50).clamp(1, 1000);
    let before = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| ApiError::bad_request("invalid_cursor", "cursor", "not a cursor from a previous page"))?,
        ),
    };
    let items = state.ingest.store().dead_letters(limit, before).await?;
    let next_cursor = (items.len() as u32 == limit).then(|| items.last().map(|e| e.id.to_string())).flatten();
    Ok(Json(DeadLetters { dead_letters: items, next_cursor }))
}
