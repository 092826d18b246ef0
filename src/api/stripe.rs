//! `POST /hooks/stripe`: Stripe's webhook deliveries, verified and turned into `stripe.*` events.

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;
use crate::source::stripe::{self, SignatureError};

pub async fn post_stripe(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match handle(&state, &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            state.metrics.rejected(e.code, 1);
            e.into_response()
        }
    }
}

async fn handle(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let settings = state.sources.settings();
    let Some(config) = &settings.stripe else {
        return Err(ApiError::not_found("Stripe webhooks are not configured (no [stripe] section)"));
    };
    let limit = state.settings.current().max_body_bytes;
    let bytes = to_bytes(body, limit).await.map_err(|_| ApiError::too_large(limit))?;
    let now = state.sources.now();
    let header = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    if let Err(e) = stripe::verify(header, &bytes, &config.signing_secrets, config.tolerance.get(), now) {
        let code = match e {
            SignatureError::Stale => "stale_signature",
            _ => "invalid_signature",
        };
        tracing::warn!(reason = %e, "refused a Stripe delivery");
        return Err(ApiError::bad_request(code, "Stripe-Signature", e.to_string()));
    }
    let event: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", "body", format!("the body is not valid JSON: {e}")))?;
    let Some(id) = event.get("id").and_then(Value::as_str).map(str::to_string) else {
        return Err(ApiError::bad_request("invalid_event", "id", "a Stripe event has an id"));
    };
    let store = state.ingest.store();
    if !store.claim_stripe_event(&id, now).await? {
        // A retried delivery: acknowledged, not posted again.
        return Ok((StatusCode::OK, Json(json!({"received": true, "duplicate": true}))).into_response());
    }
    let (mut value, notify) = match stripe::describe(&event) {
        Some(v) => (v, true),
        None => (stripe::generic(&event), false),
    };
    value["fingerprint"] = json!(format!("stripe:{id}"));
    value["labels"] = json!({"stripe_event": id});
    let result = async {
        let mut e = crate::event::parse_event(&value, "", "stripe", now).map_err(|e| {
            ApiError::bad_request("invalid_event", e.field.clone(), format!("cannot make an event: {}", e.message))
        })?;
        crate::source::errors::scrub_event(&mut e, &settings.scrubber);
        let outcome = if notify { state.ingest.submit(vec![e]).await } else { state.ingest.store_only(vec![e]).await };
        outcome.map_err(ApiError::from)
    }
    .await;
    if let Err(e) = result {
        // Let Stripe's retry try again.
        let _ = store.release_stripe_event(&id).await;
        return Err(e);
    }
    Ok((StatusCode::OK, Json(json!({"received": true}))).into_response())
}
