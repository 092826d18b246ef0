//! `POST /hooks/in/{name}`: generic inbound webhooks (`[[webhooks]]`).

use std::collections::BTreeMap;

use axum::body::{to_bytes, Body};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;
use crate::source::inbound::InboundError;

pub async fn post_inbound(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let settings = state.sources.settings();
    let Some(hook) = settings.webhooks.get(&name) else {
        return Err(ApiError::not_found(format!("no webhook named {name:?}")));
    };
    ApiError::refuse_encoded(&headers)?;
    let limit = state.settings.current().max_body_bytes;
    let bytes = to_bytes(body, limit).await.map_err(|_| ApiError::too_large(limit))?;
    hook.verify(|h| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_string), &bytes).map_err(|e| {
        tracing::warn!(webhook = %name, reason = %e, "refused an inbound webhook");
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", e.to_string())
    })?;
    let payload: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", "body", format!("the body is not valid JSON: {e}")))?;
    let header_map: BTreeMap<String, String> = headers
        .iter()
        .filter(|(k, _)| !settings.scrubber.sensitive_header(k.as_str()))
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string())))
        .collect();
    let rendered = hook.render(&payload, &header_map).map_err(|e| match e {
        InboundError::Template { part, message } => ApiError::bad_request(
            "template_failed",
            part.clone(),
            format!("the webhook's {part} template failed on this payload: {message}"),
        ),
        other => ApiError::bad_request("invalid_event", "body", other.to_string()),
    })?;
    let Some(value) = rendered else {
        return Ok((StatusCode::ACCEPTED, Json(json!({"accepted": 0, "ids": [], "ignored": true}))).into_response());
    };
    let now = state.sources.now();
    let mut event = crate::event::parse_event(&value, "", &format!("webhook:{name}"), now).map_err(|e| {
        ApiError::bad_request(
            "invalid_event",
            e.field.clone(),
            format!("the templates made an invalid event: {}: {}", e.field, e.message),
        )
    })?;
    crate::source::errors::scrub_event(&mut event, &settings.scrubber);
    let id = event.id;
    state.sources.accept_events(vec![event]).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"accepted": 1, "ids": [id]}))).into_response())
}
