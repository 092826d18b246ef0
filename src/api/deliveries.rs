//! `GET /api/v1/deliveries/dead`: messages that could not be delivered, newest first.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;

use super::error::ApiError;
use super::params::QueryParams;
use super::AppState;
use crate::config::Scope;
use crate::store::OutboxEntry;

#[derive(Serialize)]
pub struct DeadLetters {
    dead_letters: Vec<OutboxEntry>,
    next_cursor: Option<String>,
}

pub async fn dead_letters(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<DeadLetters>, ApiError> {
    state.settings.current().keys.authenticate(&headers)?.require(Scope::EventsRead)?;
    let mut params = QueryParams::parse(raw.as_deref(), &["limit", "cursor"])?;
    let limit = params.limit(50)?;
    let before = params
        .take("cursor")
        .map(|c| {
            c.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| ApiError::bad_request("invalid_cursor", "cursor", "not a cursor from a previous page"))
        })
        .transpose()?;
    let items = state.ingest.store().dead_letters(limit, before).await?;
    let next_cursor = (items.len() as u32 == limit).then(|| items.last().map(|e| e.id.to_string())).flatten();
    Ok(Json(DeadLetters { dead_letters: items, next_cursor }))
}
