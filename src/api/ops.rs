//! Health, readiness and metrics: unauthenticated, for probes and Prometheus.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.ingest.store().ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    match state.ingest.store().outbox_counts().await {
        Ok(counts) => {
            state.metrics.outbox_pending.set(counts.pending as i64);
            state.metrics.dead_letters.set(counts.dead as i64);
        }
        Err(e) => tracing::warn!(error = %e, "cannot read outbox counts for /metrics"),
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
        .into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method")
}
