//! `POST /api/v1/browser/events` and its CORS preflight: events from web pages, sent with a
//! publishable key (scope `events:browser`).

use std::net::SocketAddr;

use axum::body::to_bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;
use crate::config::Scope;
use crate::source::browser;

/// How long a browser may cache a preflight answer (Chromium caps it at 2 hours).
const PREFLIGHT_MAX_AGE: u32 = 7200;

fn origin_of(headers: &HeaderMap) -> Option<String> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn with_cors(mut response: Response, origin: Option<&str>) -> Response {
    let h = response.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(o) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("retry-after"));
    }
    response
}

/// `OPTIONS`: a preflight carries no key, so any origin some browser key allows is answered.
pub async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let settings = state.sources.settings();
    let origin = origin_of(&headers);
    match origin {
        Some(o) if browser::origin_allowed(&settings.browser_origins, &o) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            let h = response.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&o) {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            }
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type, x-tocsin-key"),
            );
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(PREFLIGHT_MAX_AGE));
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
            response
        }
        _ => {
            let mut r = ApiError::forbidden("this origin may not send browser events").into_response();
            r.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin"));
            r
        }
    }
}

fn client_ip(req: &Request, trust_forwarded: bool) -> String {
    if trust_forwarded {
        if let Some(ip) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            return ip.to_string();
        }
    }
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_else(|| "unknown".into())
}

fn rate_limited(seconds: u64, what: &str) -> ApiError {
    let mut e =
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", format!("too many requests {what}; retry later"));
    e.retry_after = Some(seconds);
    e
}

pub async fn post(State(state): State<AppState>, req: Request) -> Response {
    let settings = state.sources.settings();
    let origin = origin_of(req.headers());
    // Errors are readable by the page only when its origin is one tocsin serves.
    let known_origin = origin.as_deref().filter(|o| browser::origin_allowed(&settings.browser_origins, o));
    match handle(&state, req, origin.as_deref()).await {
        Ok(r) => with_cors(r, origin.as_deref()),
        Err((e, cors)) => {
            state.metrics.rejected(e.code, 1);
            with_cors(e.into_response(), if cors { known_origin } else { None })
        }
    }
}

async fn handle(state: &AppState, req: Request, origin: Option<&str>) -> Result<Response, (ApiError, bool)> {
    let settings = state.sources.settings();
    let limits = &settings.browser;
    let ip = client_ip(&req, limits.trust_forwarded_for);
    state
        .sources
        .limiter()
        .take(&format!("ip:{ip}"), limits.ip_rate_per_minute, limits.ip_burst)
        .map_err(|s| (rate_limited(s, "from this address"), true))?;

    let api = state.settings.current();
    let (parts, body) = req.into_parts();
    let caller = api.keys.authenticate(&parts.headers).map_err(|e| (e, true))?;
    caller.require(Scope::EventsBrowser).map_err(|e| (e, true))?;
    if let Some(o) = origin {
        if !browser::origin_allowed(&caller.allowed_origins, o) {
            let e = ApiError {
                code: "origin_not_allowed",
                ..ApiError::forbidden(format!("the key {:?} may not be used from {o}", caller.name))
            };
            return Err((e, false));
        }
    }
    state
        .sources
        .limiter()
        .take(&format!("key:{}", caller.name), limits.key_rate_per_minute, limits.key_burst)
        .map_err(|s| (rate_limited(s, "with this key"), true))?;

    ApiError::refuse_encoded(&parts.headers).map_err(|e| (e, true))?;
    let limit = limits.max_body_bytes;
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err((ApiError::too_large(limit), true));
    }
    let bytes = to_bytes(body, limit).await.map_err(|_| (ApiError::too_large(limit), true))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        (ApiError::bad_request("invalid_json", "body", format!("the body is not valid JSON: {e}")), true)
    })?;
    if let Some(items) = value.get("events").and_then(Value::as_array) {
        if items.len() > limits.max_batch {
            let e = ApiError::bad_request(
                "invalid_event",
                "events",
                format!("holds {} events; at most {} per browser request", items.len(), limits.max_batch),
            );
            return Err((e, true));
        }
    }
    let now = state.sources.now();
    let batch = value.get("events").is_some();
    let mut events =
        super::events::parse_body(value, &caller.name, now).map_err(|errs| (ApiError::invalid_events(errs), true))?;
    let at = |i: usize, f: &str| if batch { format!("events[{i}].{f}") } else { f.to_string() };
    for (i, e) in events.iter().enumerate() {
        if !caller.may_send(&e.kind) {
            let mut err = ApiError {
                code: "kind_not_allowed",
                ..ApiError::forbidden(format!("the key {:?} may not send events of kind {:?}", caller.name, e.kind))
            };
            err.field = Some(at(i, "kind"));
            return Err((err, true));
        }
        if e.status.is_some() {
            return Err((
                ApiError::bad_request("invalid_event", at(i, "status"), "browser events cannot fire or resolve alerts"),
                true,
            ));
        }
    }
    let mut capped = 0;
    for e in &mut events {
        // A web page speaks only for itself.
        e.source = caller.name.clone();
        if browser::sanitize(e, limits.max_severity) {
            capped += 1;
        }
        crate::source::errors::scrub_event(e, &settings.scrubber);
    }
    let ids: Vec<_> = events.iter().map(|e| e.id).collect();
    let count = ids.len();
    state.sources.accept_events(events).await.map_err(|e| (ApiError::from(e), true))?;
    Ok((StatusCode::ACCEPTED, Json(json!({"accepted": count, "ids": ids, "severity_capped": capped}))).into_response())
}
