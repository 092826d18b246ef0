//! The HTTP API: the only module that knows HTTP and JSON for the machine interface.

mod alerts;
mod auth;
mod browser;
mod deliveries;
mod error;
mod events;
mod heartbeats;
mod inbound;
mod issues;
mod ops;
mod params;
pub mod slack;
mod stripe;

use std::sync::Arc;

use axum::routing::{delete, get, post};
use axum::Router;

pub use alerts::parse_silence;
pub use auth::{Caller, KeyRing};
pub use error::ApiError;
pub use slack::SlackSettings;

use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::shared::Shared;

/// The parts of the configuration the API reads on each request; replaced on reload.
pub struct ApiSettings {
    pub keys: KeyRing,
    pub max_body_bytes: usize,
    /// `slack_app` notifiers that verify `POST /hooks/slack` (issue 6).
    pub slack: SlackSettings,
}

#[derive(Clone)]
pub struct AppState {
    pub ingest: Ingest,
    pub settings: Shared<ApiSettings>,
    pub metrics: Arc<Metrics>,
    /// Application event sources (issue 5).
    pub sources: crate::source::Sources,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/events", post(events::post_events).get(events::search_events))
        .route("/api/v1/deliveries/dead", get(deliveries::dead_letters))
        .route("/api/v1/alerts", get(alerts::list_alerts))
        .route("/api/v1/silences", post(alerts::create_silence).get(alerts::list_silences))
        .route("/api/v1/silences/{id}", delete(alerts::expire_silence))
        // Application event sources (issue 5).
        .route("/api/v1/browser/events", post(browser::post).options(browser::preflight))
        .route("/api/v1/heartbeats", get(heartbeats::list))
        .route("/api/v1/heartbeats/{name}", post(heartbeats::success))
        .route("/api/v1/heartbeats/{name}/start", post(heartbeats::start))
        .route("/api/v1/heartbeats/{name}/fail", post(heartbeats::fail))
        .route("/api/v1/errors/{fingerprint}/resolve", post(issues::resolve))
        .route("/hooks/stripe", post(stripe::post_stripe))
        .route("/hooks/slack", post(slack::post_slack))
        .route("/hooks/in/{name}", post(inbound::post_inbound))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .with_state(state)
}
