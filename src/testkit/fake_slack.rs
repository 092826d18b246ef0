//! A fake Slack incoming-webhook server that validates and answers like Slack does
//! (see `shared/reference/slack.md`): the same statuses, error strings and Block Kit limits,
//! plus switches for the failures a notifier must survive (archived channel, revoked hook,
//! rate limit, 5xx, dropped connections).

use std::collections::HashMap;
use std::future::pending;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::Value;
use tokio::sync::watch;

use super::http::{ConnKill, LoopbackServer};

/// Slack's Block Kit limits, as the fake enforces them.
pub const MAX_BLOCKS: usize = 50;
pub const MAX_HEADER_CHARS: usize = 150;
pub const MAX_SECTION_TEXT_CHARS: usize = 3000;
pub const MAX_SECTION_FIELDS: usize = 10;
pub const MAX_FIELD_CHARS: usize = 2000;
pub const MAX_CONTEXT_ELEMENTS: usize = 10;
pub const MAX_ATTACHMENTS: usize = 100;
pub const MAX_BLOCK_ID_CHARS: usize = 255;

const KNOWN_BLOCK_TYPES: &[&str] =
    &["actions", "context", "divider", "file", "header", "image", "input", "markdown", "rich_text", "section", "video"];

/// How one hook answers, apart from its rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Validate and accept.
    #[default]
    Normal,
    /// 410 `channel_is_archived`.
    Archived,
    /// 403 `invalid_token`, as for a revoked webhook.
    Revoked,
    /// 500 `rollup_error`: for the next `n` requests (`Some(n)`), then back to `Normal`, or
    /// until the mode is changed (`None`).
    ServerError(Option<u32>),
    /// Close the socket without answering, for the next `n` requests, then back to `Normal`.
    DropConnections(u32),
}

/// A token bucket: `per_second` sustained, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl RateLimit {
    /// Slack's documented webhook limit: one per second, with short bursts.
    pub fn slack_default() -> RateLimit {
        RateLimit { per_second: 1.0, burst: 3 }
    }
}

/// One message the fake accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Value,
    pub content_type: Option<String>,
    pub at: Instant,
    pub time: DateTime<Utc>,
}

/// One request the fake refused or failed on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub error: String,
    /// When the refused request arrived.
    pub at: Instant,
}

#[derive(Debug)]
struct Bucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(limit: RateLimit) -> Bucket {
        Bucket { limit, tokens: f64::from(limit.burst), last: Instant::now() }
    }

    /// `Ok` takes a token; `Err(seconds)` is how long until one is available.
    fn take(&mut self, now: Instant) -> Result<(), u64> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst.max(1)));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if self.limit.per_second > 0.0 {
            let wait = ((1.0 - self.tokens) / self.limit.per_second).ceil();
            // Slack's Retry-After is whole seconds and never zero.
            Err((wait as u64).max(1))
        } else {
            Err(60)
        }
    }
}

#[derive(Debug)]
struct Hook {
    mode: Mode,
    bucket: Option<Bucket>,
    latency: Duration,
    received: Vec<Received>,
    rejections: Vec<Rejection>,
    requests: u64,
    rate_limited: u64,
}

#[derive(Default)]
struct Hooks {
    /// By URL path, `/services/T…/B…/token`.
    by_path: HashMap<String, Hook>,
    /// Name → URL path.
    paths: HashMap<String, String>,
    next_id: u64,
}

struct Shared {
    hooks: Mutex<Hooks>,
    /// Counts accepted messages over all hooks; waiters watch it instead of polling.
    accepted: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Hooks> {
        // A test that panicked while holding the lock must not hide the rest of the state.
        self.hooks.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The fake server. Dropping it stops it.
pub struct FakeSlack {
    server: LoopbackServer,
    shared: Arc<Shared>,
}

impl FakeSlack {
    /// Starts on 127.0.0.1 with an ephemeral port.
    ///
    /// # Panics
    /// If no loopback port can be bound; use [`FakeSlack::try_start`] to handle that.
    pub async fn start() -> FakeSlack {
        match FakeSlack::try_start().await {
            Ok(fake) => fake,
            Err(e) => panic!("fake Slack cannot bind 127.0.0.1: {e}"),
        }
    }

    pub async fn try_start() -> io::Result<FakeSlack> {
        let (accepted, _) = watch::channel(0u64);
        let shared = Arc::new(Shared { hooks: Mutex::new(Hooks::default()), accepted });
        let router = Router::new()
            .route("/services/{team}/{service}/{token}", post(incoming_webhook))
            .fallback(|| async { slack_error(StatusCode::NOT_FOUND, "no_service") })
            .with_state(shared.clone());
        let server = LoopbackServer::start(router).await?;
        Ok(FakeSlack { server, shared })
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The webhook URL of hook `name`, created on first use with a random secret token.
    pub fn hook_url(&self, name: &str) -> String {
        let mut hooks = self.shared.lock();
        if let Some(path) = hooks.paths.get(name) {
            return format!("{}{}", self.base_url(), path);
        }
        hooks.next_id += 1;
        let token: String = rand::thread_rng().sample_iter(&Alphanumeric).take(24).map(char::from).collect();
        let path = format!("/services/T0TOCSIN00/B{:09}/{token}", hooks.next_id);
        hooks.paths.insert(name.to_string(), path.clone());
        hooks.by_path.insert(
            path.clone(),
            Hook {
                mode: Mode::Normal,
                bucket: None,
                latency: Duration::ZERO,
                received: Vec::new(),
                rejections: Vec::new(),
                requests: 0,
                rate_limited: 0,
            },
        );
        format!("{}{}", self.base_url(), path)
    }

    /// Deletes hook `name`: its URL then answers 404 `no_service`, like a removed webhook.
    pub fn remove_hook(&self, name: &str) {
        let mut hooks = self.shared.lock();
        if let Some(path) = hooks.paths.get(name).cloned() {
            hooks.by_path.remove(&path);
        }
    }

    pub fn set_mode(&self, name: &str, mode: Mode) {
        self.with_hook(name, |hook| hook.mode = mode);
    }

    /// `None` removes the limit. The bucket starts full.
    pub fn set_rate_limit(&self, name: &str, limit: Option<RateLimit>) {
        self.with_hook(name, |hook| hook.bucket = limit.map(Bucket::new));
    }

    /// Delay before every answer of hook `name` (to exercise client timeouts).
    pub fn set_latency(&self, name: &str, latency: Duration) {
        self.with_hook(name, |hook| hook.latency = latency);
    }

    /// The bodies of the accepted messages, in arrival order.
    pub fn messages(&self, name: &str) -> Vec<Value> {
        self.received(name).into_iter().map(|r| r.body).collect()
    }

    pub fn received(&self, name: &str) -> Vec<Received> {
        self.read_hook(name, |hook| hook.received.clone()).unwrap_or_default()
    }

    /// Every non-200 answer the hook gave, in order (dropped connections are not answers).
    pub fn rejections(&self, name: &str) -> Vec<Rejection> {
        self.read_hook(name, |hook| hook.rejections.clone()).unwrap_or_default()
    }

    pub fn rate_limited_count(&self, name: &str) -> u64 {
        self.read_hook(name, |hook| hook.rate_limited).unwrap_or(0)
    }

    /// Every request that reached the hook, whatever the answer.
    pub fn request_count(&self, name: &str) -> u64 {
        self.read_hook(name, |hook| hook.requests).unwrap_or(0)
    }

    /// Accepted messages over all hooks.
    pub fn total_accepted(&self) -> u64 {
        *self.shared.accepted.borrow()
    }

    /// Waits until hook `name` has accepted at least `count` messages; false on timeout.
    pub async fn wait_for(&self, name: &str, count: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, || self.read_hook(name, |hook| hook.received.len()).unwrap_or(0) >= count).await
    }

    /// Waits until all hooks together have accepted at least `count` messages.
    pub async fn wait_for_total(&self, count: u64, timeout: Duration) -> bool {
        self.wait_until(timeout, || self.total_accepted() >= count).await
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn() -> bool) -> bool {
        let mut changes = self.shared.accepted.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if done() {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives in `self`, so it cannot close while we wait; a timeout ends it.
                Ok(Err(_)) | Err(_) => return done(),
            }
        }
    }

    fn with_hook(&self, name: &str, f: impl FnOnce(&mut Hook)) {
        let mut hooks = self.shared.lock();
        let Some(path) = hooks.paths.get(name).cloned() else {
            drop(hooks);
            // Configuring a hook before asking for its URL is allowed: create it.
            self.hook_url(name);
            return self.with_hook(name, f);
        };
        if let Some(hook) = hooks.by_path.get_mut(&path) {
            f(hook);
        }
    }

    fn read_hook<T>(&self, name: &str, f: impl FnOnce(&Hook) -> T) -> Option<T> {
        let hooks = self.shared.lock();
        let path = hooks.paths.get(name)?;
        hooks.by_path.get(path).map(f)
    }
}

/// What the handler decided while holding the lock; acted upon after releasing it.
enum Verdict {
    Drop,
    Answer(Response),
}

async fn incoming_webhook(
    State(shared): State<Arc<Shared>>,
    Path((team, service, token)): Path<(String, String, String)>,
    kill: Option<Extension<ConnKill>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/services/{team}/{service}/{token}");
    let latency = shared.lock().by_path.get(&path).map(|h| h.latency).unwrap_or_default();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let verdict = {
        let mut hooks = shared.lock();
        match hooks.by_path.get_mut(&path) {
            None => Verdict::Answer(slack_error(StatusCode::NOT_FOUND, "no_service")),
            Some(hook) => judge(hook, &headers, &body, &shared.accepted),
        }
    };
    match verdict {
        Verdict::Answer(response) => response,
        Verdict::Drop => match kill {
            Some(Extension(kill)) => {
                kill.kill();
                pending::<Response>().await
            }
            // Served without the loopback server (cannot happen here): the closest thing.
            None => slack_error(StatusCode::INTERNAL_SERVER_ERROR, "rollup_error"),
        },
    }
}

fn judge(hook: &mut Hook, headers: &HeaderMap, body: &[u8], accepted: &watch::Sender<u64>) -> Verdict {
    hook.requests += 1;
    let reject = |hook: &mut Hook, status: StatusCode, error: &str| {
        hook.rejections.push(Rejection { status: status.as_u16(), error: error.to_string(), at: Instant::now() });
        Verdict::Answer(slack_error(status, error))
    };

    match hook.mode {
        Mode::Normal => {}
        Mode::Archived => return reject(hook, StatusCode::GONE, "channel_is_archived"),
        Mode::Revoked => return reject(hook, StatusCode::FORBIDDEN, "invalid_token"),
        Mode::ServerError(remaining) => {
            hook.mode = match remaining {
                None => Mode::ServerError(None),
                Some(n) if n <= 1 => Mode::Normal,
                Some(n) => Mode::ServerError(Some(n - 1)),
            };
            if remaining != Some(0) {
                return reject(hook, StatusCode::INTERNAL_SERVER_ERROR, "rollup_error");
            }
        }
        Mode::DropConnections(remaining) => {
            hook.mode = if remaining <= 1 { Mode::Normal } else { Mode::DropConnections(remaining - 1) };
            if remaining > 0 {
                return Verdict::Drop;
            }
        }
    }

    if let Some(bucket) = hook.bucket.as_mut() {
        if let Err(retry_after) = bucket.take(Instant::now()) {
            hook.rate_limited += 1;
            hook.rejections.push(Rejection { status: 429, error: "rate_limited".to_string(), at: Instant::now() });
            return Verdict::Answer(rate_limited(retry_after));
        }
    }

    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let payload = match parse_body(content_type.as_deref(), body) {
        Some(payload) => payload,
        None => return reject(hook, StatusCode::BAD_REQUEST, "invalid_payload"),
    };
    if let Err(error) = validate(&payload) {
        return reject(hook, StatusCode::BAD_REQUEST, error);
    }

    hook.received.push(Received { body: payload, content_type, at: Instant::now(), time: Utc::now() });
    accepted.send_modify(|n| *n += 1);
    let mut response = (StatusCode::OK, "ok").into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    Verdict::Answer(response)
}

/// Slack takes JSON, or a form with the JSON in `payload=`, and is lenient about the
/// Content-Type: a JSON body sent as a form is still read as JSON.
fn parse_body(content_type: Option<&str>, body: &[u8]) -> Option<Value> {
    let is_form = content_type.is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let json = if is_form || body.starts_with(b"payload=") {
        let from_form = url::form_urlencoded::parse(body).find(|(k, _)| k == "payload").map(|(_, v)| v.into_owned());
        match from_form {
            Some(payload) => serde_json::from_str::<Value>(&payload).ok()?,
            None => serde_json::from_slice::<Value>(body).ok()?,
        }
    } else {
        serde_json::from_slice::<Value>(body).ok()?
    };
    json.is_object().then_some(json)
}

/// Slack's checks, in Slack's words: `no_text`, `invalid_blocks`, `too_many_attachments`,
/// `invalid_payload`.
pub fn validate(payload: &Value) -> Result<(), &'static str> {
    let text = match payload.get("text") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err("invalid_payload"),
    };
    let blocks = match payload.get("blocks") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(blocks)) => blocks.as_slice(),
        Some(_) => return Err("invalid_blocks"),
    };
    let attachments = match payload.get("attachments") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err("invalid_payload"),
    };
    if attachments.len() > MAX_ATTACHMENTS {
        return Err("too_many_attachments");
    }
    if text.trim().is_empty() && blocks.is_empty() && attachments.is_empty() {
        return Err("no_text");
    }
    if blocks.len() > MAX_BLOCKS {
        return Err("invalid_blocks");
    }
    for block in blocks {
        validate_block(block).map_err(|()| "invalid_blocks")?;
    }
    Ok(())
}

fn validate_block(block: &Value) -> Result<(), ()> {
    let obj = block.as_object().ok_or(())?;
    let kind = obj.get("type").and_then(Value::as_str).ok_or(())?;
    if !KNOWN_BLOCK_TYPES.contains(&kind) {
        return Err(());
    }
    if let Some(id) = obj.get("block_id") {
        let id = id.as_str().ok_or(())?;
        if id.is_empty() || id.chars().count() > MAX_BLOCK_ID_CHARS {
            return Err(());
        }
    }
    match kind {
        "header" => {
            let text = obj.get("text").ok_or(())?;
            if text.get("type").and_then(Value::as_str) != Some("plain_text") {
                return Err(());
            }
            text_object(text, MAX_HEADER_CHARS)
        }
        "section" => {
            let text = obj.get("text");
            let fields = obj.get("fields");
            if text.is_none() && fields.is_none() {
                return Err(());
            }
            if let Some(text) = text {
                text_object(text, MAX_SECTION_TEXT_CHARS)?;
            }
            if let Some(fields) = fields {
                let fields = fields.as_array().ok_or(())?;
                if fields.is_empty() || fields.len() > MAX_SECTION_FIELDS {
                    return Err(());
                }
                for field in fields {
                    text_object(field, MAX_FIELD_CHARS)?;
                }
            }
            Ok(())
        }
        "context" => {
            let elements = obj.get("elements").and_then(Value::as_array).ok_or(())?;
            if elements.is_empty() || elements.len() > MAX_CONTEXT_ELEMENTS {
                return Err(());
            }
            for element in elements {
                match element.get("type").and_then(Value::as_str) {
                    Some("image") => {}
                    _ => text_object(element, MAX_SECTION_TEXT_CHARS)?,
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A `plain_text` or `mrkdwn` object with 1..=`max` characters.
fn text_object(value: &Value, max: usize) -> Result<(), ()> {
    match value.get("type").and_then(Value::as_str) {
        Some("plain_text") | Some("mrkdwn") => {}
        _ => return Err(()),
    }
    let text = value.get("text").and_then(Value::as_str).ok_or(())?;
    let len = text.chars().count();
    if len == 0 || len > max {
        return Err(());
    }
    Ok(())
}

fn slack_error(status: StatusCode, error: &str) -> Response {
    let mut response = (status, error.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}

fn rate_limited(retry_after: u64) -> Response {
    let body = format!(r#"{{"retry_after":{retry_after},"ok":false,"error":"rate_limited"}}"#);
    let mut response = (StatusCode::TOO_MANY_REQUESTS, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn post(url: &str, body: &str, content_type: &str) -> (u16, String, HeaderMap) {
        let response = reqwest::Client::new()
            .post(url)
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .expect("the fake answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, response.text().await.expect("a body"), headers)
    }

    async fn post_json(url: &str, body: &Value) -> (u16, String) {
        let (status, text, _) = post(url, &body.to_string(), "application/json").await;
        (status, text)
    }

    #[tokio::test]
    async fn accepts_and_records_in_order() {
        let fake = FakeSlack::start().await;
        let url = fake.hook_url("ops");
        assert_eq!(url, fake.hook_url("ops"), "a hook's URL is stable");
        for i in 0..3 {
            let (status, body, headers) =
                post(&url, &json!({"text": format!("m{i}")}).to_string(), "application/json").await;
            assert_eq!((status, body.as_str()), (200, "ok"));
            assert_eq!(headers.get("content-type").and_then(|v| v.to_str().ok()), Some("text/html"));
        }
        assert!(fake.wait_for("ops", 3, Duration::from_secs(1)).await);
        let texts: Vec<_> = fake.messages("ops").iter().map(|m| m["text"].as_str().unwrap_or("").to_string()).collect();
        assert_eq!(texts, ["m0", "m1", "m2"]);
        assert_eq!(fake.total_accepted(), 3);
        assert!(!fake.wait_for("ops", 4, Duration::from_millis(50)).await);
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn unknown_paths_are_no_service() {
        let fake = FakeSlack::start().await;
        let url = fake.hook_url("ops");
        let base = fake.base_url();
        for path in ["/services/T0/B0/nope", "/elsewhere", "/services/T0"] {
            let (status, body) = post_json(&format!("{base}{path}"), &json!({"text": "x"})).await;
            assert_eq!((status, body.as_str()), (404, "no_service"), "{path}");
        }
        fake.remove_hook("ops");
        assert_eq!(post_json(&url, &json!({"text": "x"})).await, (404, "no_service".to_string()));
    }

    #[tokio::test]
    async fn payload_errors_use_slack_strings() {
        let fake = FakeSlack::start().await;
        let url = fake.hook_url("ops");
        let (status, body, _) = post(&url, "not json", "application/json").await;
        assert_eq!((status, body.as_str()), (400, "invalid_payload"));
        let (status, body, _) = post(&url, "[1,2]", "application/json").await;
        assert_eq!((status, body.as_str()), (400, "invalid_payload"));
        assert_eq!(post_json(&url, &json!({"username": "x"})).await, (400, "no_text".to_string()));
        assert_eq!(post_json(&url, &json!({"text": "", "blocks": []})).await, (400, "no_text".to_string()));

        let section = |text: String| json!({"type": "section", "text": {"type": "mrkdwn", "text": text}});
        let invalid = [
            json!({"blocks": vec![section("x".into()); 51]}),
            json!({"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h".repeat(151)}}]}),
            json!({"blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}]}),
            json!({"blocks": [section("s".repeat(3001))]}),
            json!({"blocks": [section(String::new())]}),
            json!({"blocks": [{"type": "section", "fields": vec![json!({"type": "mrkdwn", "text": "f"}); 11]}]}),
            json!({"blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f".repeat(2001)}]}]}),
            json!({"blocks": [{"type": "marquee"}]}),
            json!({"blocks": "nope"}),
        ];
        for payload in invalid {
            assert_eq!(post_json(&url, &payload).await, (400, "invalid_blocks".to_string()), "{payload}");
        }
        let at_limits = json!({"text": "t", "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "h".repeat(150)}},
            section("s".repeat(3000)),
            {"type": "section", "fields": vec![json!({"type": "mrkdwn", "text": "f".repeat(2000)}); 10]},
        ]});
        assert_eq!(post_json(&url, &at_limits).await, (200, "ok".to_string()));
        assert_eq!(fake.messages("ops").len(), 1);
        assert_eq!(fake.rejections("ops").len(), 13);
    }

    #[tokio::test]
    async fn form_payload_and_lenient_content_type() {
        let fake = FakeSlack::start().await;
        let url = fake.hook_url("ops");
        let form: String =
            url::form_urlencoded::Serializer::new(String::new()).append_pair("payload", r#"{"text":"a&b"}"#).finish();
        let (status, _, _) = post(&url, &form, "application/x-www-form-urlencoded").await;
        assert_eq!(status, 200);
        // curl's default Content-Type with a bare JSON body: Slack still reads the JSON.
        let (status, _, _) = post(&url, r#"{"text":"bare"}"#, "application/x-www-form-urlencoded").await;
        assert_eq!(status, 200);
        let (status, body, _) = post(&url, r#"{"username":"x"}"#, "application/x-www-form-urlencoded").await;
        assert_eq!((status, body.as_str()), (400, "no_text"));
        let texts: Vec<_> = fake.messages("ops").iter().map(|m| m["text"].clone()).collect();
        assert_eq!(texts, [json!("a&b"), json!("bare")]);
    }

    #[tokio::test]
    async fn modes() {
        let fake = FakeSlack::start().await;
        let url = fake.hook_url("ops");
        let msg = json!({"text": "x"});
        fake.set_mode("ops", Mode::Archived);
        assert_eq!(post_json(&url, &msg).await, (410, "channel_is_archived".to_string()));
        fake.set_mode("ops", Mode::Revoked);
        assert_eq!(post_json(&url, &msg).await, (403, "invalid_token".to_string()));
        fake.set_mode("ops", Mode::ServerError(Some(2)));
        assert_eq!(post_json(&url, &msg).await, (500, "rollup_error".to_string()));
        assert_eq!(post_json(&url, &msg).await, (500, "rollup_error".to_string()));
        assert_eq!(post_json(&url, &msg).await, (200, "ok".to_string()));
        fake.set_mode("ops", Mode::ServerError(None));
        for _ in 0..3 {
            assert_eq!(post_json(&url, &msg).await.0, 500);
        }
        fake.set_mode("ops", Mode::DropConnections(2));
        let client = reqwest::Client::new();
        for _ in 0..2 {
            let err = client.post(&url).json(&msg).send().await.expect_err("the connection is dropped");
            assert!(!err.is_status(), "{err}");
        }
        assert_eq!(post_json(&url, &msg).await, (200, "ok".to_string()));
        assert_eq!(fake.messages("ops").len(), 2);
        assert_eq!(fake.request_count("ops"), 11);
    }

    #[tokio::test]
    async fn rate_limit_answers_429_with_retry_after() {
        let fake = FakeSlack::start().await;
        let url = fake.hook_url("ops");
        fake.set_rate_limit("ops", Some(RateLimit { per_second: 1.0, burst: 2 }));
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let (status, body, headers) = post(&url, r#"{"text":"x"}"#, "application/json").await;
            if status == 429 {
                assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
                let body: Value = serde_json::from_str(&body).expect("a JSON body");
                assert_eq!(body, json!({"retry_after": 1, "ok": false, "error": "rate_limited"}));
            }
            statuses.push(status);
        }
        assert_eq!(statuses, [200, 200, 429, 429]);
        assert_eq!(fake.rate_limited_count("ops"), 2);
        fake.set_rate_limit("ops", None);
        assert_eq!(post_json(&url, &json!({"text": "x"})).await.0, 200);
    }

    #[test]
    fn bucket_refills() {
        let start = Instant::now();
        let mut bucket = Bucket::new(RateLimit { per_second: 2.0, burst: 1 });
        bucket.last = start;
        assert_eq!(bucket.take(start), Ok(()));
        assert_eq!(bucket.take(start), Err(1));
        assert_eq!(bucket.take(start + Duration::from_millis(500)), Ok(()));
    }
}
