//! Fakes of the HTTP targets of issue 6's notifiers — a Teams workflow webhook, a Discord
//! webhook, a Mattermost incoming webhook, PagerDuty's Events API v2 and the Telegram Bot API —
//! in one server type, since only the validation and the shape of the answers differ.
//!
//! Each validates what it receives against the target's real limits and answers in the
//! target's own format and status codes; a script of [`Fault`]s makes the next requests fail
//! the way the target fails (rate limit, 5xx, dropped connection, revoked hook or blocked bot).
//! Where the real service is more lenient than documented (Mattermost splits over-long posts,
//! a Power Automate flow accepts a card it later fails to post), the fake refuses instead, so a
//! notifier cannot come to rely on the leniency.

use std::collections::VecDeque;
use std::future::pending;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};

use super::http::{ConnKill, LoopbackServer};

/// Which service the fake plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Teams,
    Discord,
    Mattermost,
    PagerDuty,
    Telegram,
}

/// Teams' documented message size limit (the whole request, card included).
pub const TEAMS_MAX_BYTES: usize = 28 * 1024;
pub const DISCORD_MAX_CONTENT: usize = 2000;
pub const DISCORD_MAX_EMBEDS: usize = 10;
pub const DISCORD_MAX_TITLE: usize = 256;
pub const DISCORD_MAX_DESCRIPTION: usize = 4096;
pub const DISCORD_MAX_FIELDS: usize = 25;
pub const DISCORD_MAX_FIELD_NAME: usize = 256;
pub const DISCORD_MAX_FIELD_VALUE: usize = 1024;
pub const DISCORD_MAX_FOOTER: usize = 2048;
pub const DISCORD_MAX_AUTHOR: usize = 256;
pub const DISCORD_MAX_TOTAL: usize = 6000;
/// Mattermost's `MaxPostSize` in runes (the default since 5.0).
pub const MATTERMOST_MAX_TEXT: usize = 16383;
pub const PAGERDUTY_MAX_SUMMARY: usize = 1024;
pub const PAGERDUTY_MAX_DEDUP_KEY: usize = 255;
/// Telegram counts UTF-16 code units of the text after entity parsing.
pub const TELEGRAM_MAX_TEXT: usize = 4096;

/// How the next request fails instead of being judged on its content.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// 429 in the target's format; the wait is in seconds, as the target reports it (Discord
    /// keeps the fraction, the others round up).
    RateLimited(f64),
    /// 500 in the target's format.
    ServerError,
    /// Close the connection without answering.
    Drop,
    /// The credential no longer works: a deleted Teams flow (404), a deleted Discord webhook
    /// (404 `Unknown Webhook`), a deleted Mattermost hook (400 invalid webhook), a disabled
    /// PagerDuty integration (400 invalid routing key), a bot blocked by the user (403).
    Revoked,
}

/// One request as received, with the status the fake answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub query: Option<String>,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub status: u16,
}

impl Recorded {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

struct Inner {
    faults: VecDeque<Fault>,
    requests: Vec<Recorded>,
    accepted: Vec<Value>,
    /// Telegram chats the bot may post to.
    chats: Vec<String>,
    next_id: u64,
    rate_limit: Option<RateWindow>,
    /// When the requests inside the current rate window arrived.
    recent: VecDeque<Instant>,
}

/// At most `max` requests per `per`, a sliding window, as the targets count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow {
    pub max: u32,
    pub per: Duration,
}

impl Target {
    /// The target's documented default limit for one webhook, bot chat or integration key:
    /// Discord 5 per 2 s per webhook (its `X-RateLimit-Limit: 5`), Telegram about one message
    /// per second in a chat, PagerDuty 120 events a minute per routing key, Teams 4 per second
    /// (the figure documented for its incoming webhooks; workflows publish none), Mattermost 10 per second (its rate limiter's default
    /// when enabled).
    pub fn documented_rate_limit(self) -> RateWindow {
        let (max, per) = match self {
            Target::Discord => (5, Duration::from_secs(2)),
            Target::Telegram => (1, Duration::from_secs(1)),
            Target::PagerDuty => (120, Duration::from_secs(60)),
            Target::Teams => (4, Duration::from_secs(1)),
            Target::Mattermost => (10, Duration::from_secs(1)),
        };
        RateWindow { max, per }
    }
}

struct Shared {
    target: Target,
    /// The credential in the URL (Teams `sig`, Discord and Mattermost hook token, Telegram bot
    /// token) or in the body (PagerDuty routing key).
    secret: String,
    /// The non-secret id in the URL: the Teams workflow, the Discord or Mattermost hook id.
    id: String,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running fake. Dropping it stops it.
pub struct FakeChat {
    server: LoopbackServer,
    shared: Arc<Shared>,
}

fn random(len: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

impl FakeChat {
    /// # Panics
    /// If no loopback port can be bound; use [`FakeChat::try_start`] to handle that.
    pub async fn start(target: Target) -> FakeChat {
        match FakeChat::try_start(target).await {
            Ok(fake) => fake,
            Err(e) => panic!("fake {target:?} cannot bind 127.0.0.1: {e}"),
        }
    }

    pub async fn try_start(target: Target) -> io::Result<FakeChat> {
        let (id, secret) = match target {
            Target::Teams => (random(32).to_lowercase(), random(43)),
            Target::Discord => (format!("1{:018}", rand::thread_rng().gen_range(0..10u64.pow(17))), random(68)),
            Target::Mattermost => (random(26).to_lowercase(), String::new()),
            Target::PagerDuty => (String::new(), random(32).to_lowercase()),
            Target::Telegram => {
                (String::new(), format!("{}:{}", rand::thread_rng().gen_range(10_000_000..99_999_999), random(35)))
            }
        };
        // Mattermost's hook id is itself the credential.
        let secret = if target == Target::Mattermost { id.clone() } else { secret };
        let inner = Inner {
            faults: VecDeque::new(),
            requests: Vec::new(),
            accepted: Vec::new(),
            chats: vec!["-1001234567890".to_string(), "@tocsin_alerts".to_string()],
            next_id: 0,
            rate_limit: None,
            recent: VecDeque::new(),
        };
        let shared = Arc::new(Shared { target, secret, id, inner: Mutex::new(inner) });
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let server = LoopbackServer::start(router).await?;
        Ok(FakeChat { server, shared })
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// What the notifier is configured with: the webhook URL (Teams, Discord, Mattermost), the
    /// events endpoint (PagerDuty) or the API root (Telegram).
    pub fn url(&self) -> String {
        let base = self.base_url();
        let s = &self.shared;
        match s.target {
            Target::Teams => format!(
                "{base}/workflows/{}/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={}",
                s.id, s.secret
            ),
            Target::Discord => format!("{base}/api/webhooks/{}/{}", s.id, s.secret),
            Target::Mattermost => format!("{base}/hooks/{}", s.id),
            Target::PagerDuty => format!("{base}/v2/enqueue"),
            Target::Telegram => base,
        }
    }

    /// The credential: the signature, hook token, routing key or bot token.
    pub fn secret(&self) -> String {
        self.shared.secret.clone()
    }

    /// A Telegram chat the bot is a member of.
    pub fn chat_id(&self) -> String {
        self.shared.lock().chats[0].clone()
    }

    /// The next requests fail so, in order; after them, requests are judged on their content.
    pub fn set_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.lock().faults = faults.into_iter().collect();
    }

    /// Enforce a rate limit (none by default, so tests are not timing-dependent); requests
    /// over it get the target's 429 with the time until the window frees a slot.
    pub fn set_rate_limit(&self, limit: Option<RateWindow>) {
        let mut inner = self.shared.lock();
        inner.rate_limit = limit;
        inner.recent.clear();
    }

    /// Every request, whatever the answer.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// The bodies the fake accepted, in order.
    pub fn accepted(&self) -> Vec<Value> {
        self.shared.lock().accepted.clone()
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

enum Verdict {
    Drop,
    Answer(Response),
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    kill: Option<Extension<ConnKill>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let fault = {
        let mut inner = shared.lock();
        inner.faults.pop_front().or_else(|| over_rate_limit(&mut inner))
    };
    let verdict = match fault {
        Some(Fault::Drop) => Verdict::Drop,
        Some(fault) => Verdict::Answer(fault_answer(&shared, &fault)),
        None => Verdict::Answer(judge(&shared, &uri, content_type.as_deref(), &body)),
    };
    let status = match &verdict {
        Verdict::Answer(r) => r.status().as_u16(),
        Verdict::Drop => 0,
    };
    shared.lock().requests.push(Recorded {
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        content_type,
        body,
        status,
    });
    match verdict {
        Verdict::Answer(response) => response,
        Verdict::Drop => match kill {
            Some(Extension(kill)) => {
                kill.kill();
                pending::<Response>().await
            }
            None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        },
    }
}

/// A `RateLimited` fault when one more request now would exceed the window; else counts it.
fn over_rate_limit(inner: &mut Inner) -> Option<Fault> {
    let limit = inner.rate_limit?;
    let now = Instant::now();
    while inner.recent.front().is_some_and(|t| now.duration_since(*t) >= limit.per) {
        inner.recent.pop_front();
    }
    if inner.recent.len() < limit.max as usize {
        inner.recent.push_back(now);
        return None;
    }
    let oldest = inner.recent.front().copied().unwrap_or(now);
    let wait = limit.per.saturating_sub(now.duration_since(oldest));
    // Millisecond precision, as Discord reports it.
    Some(Fault::RateLimited((wait.as_millis() as f64 / 1000.0).max(0.001)))
}

fn json_answer(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn with_header(mut response: Response, name: &'static str, value: String) -> Response {
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(name, value);
    }
    response
}

fn teams_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_answer(status, json!({"error": {"code": code, "message": message}}))
}

fn discord_error(status: StatusCode, code: u64, message: &str) -> Response {
    json_answer(status, json!({"message": message, "code": code}))
}

fn mattermost_error(status: StatusCode, id: &str, message: &str) -> Response {
    json_answer(
        status,
        json!({"id": id, "message": message, "detailed_error": "", "request_id": random(26).to_lowercase(), "status_code": status.as_u16()}),
    )
}

fn pagerduty_invalid(errors: Vec<String>) -> Response {
    json_answer(
        StatusCode::BAD_REQUEST,
        json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
    )
}

fn telegram_error(code: u16, description: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    json_answer(status, json!({"ok": false, "error_code": code, "description": description}))
}

fn fault_answer(shared: &Shared, fault: &Fault) -> Response {
    let whole_seconds = |s: f64| (s.ceil() as u64).max(1);
    match (shared.target, fault) {
        (_, Fault::Drop) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        (Target::Teams, Fault::RateLimited(s)) => with_header(
            teams_error(StatusCode::TOO_MANY_REQUESTS, "WorkflowRequestsThrottled", "Rate limit is exceeded."),
            "retry-after",
            whole_seconds(*s).to_string(),
        ),
        (Target::Teams, Fault::ServerError) => {
            teams_error(StatusCode::BAD_GATEWAY, "BadGateway", "The server received an invalid response.")
        }
        (Target::Teams, Fault::Revoked) => teams_error(
            StatusCode::NOT_FOUND,
            "WorkflowNotFound",
            &format!("The workflow '{}' could not be found.", shared.id),
        ),
        (Target::Discord, Fault::RateLimited(s)) => {
            let response = json_answer(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"message": "You are being rate limited.", "retry_after": s, "global": false}),
            );
            let reset = chrono::Utc::now().timestamp_millis() as f64 / 1000.0 + s;
            let headers = [
                ("retry-after", whole_seconds(*s).to_string()),
                ("x-ratelimit-limit", "5".to_string()),
                ("x-ratelimit-remaining", "0".to_string()),
                ("x-ratelimit-reset", format!("{reset:.3}")),
                ("x-ratelimit-reset-after", format!("{s:.3}")),
                ("x-ratelimit-bucket", "d1d5c9e2b2f1b0a5c0e3e5f0b1a2c3d4".to_string()),
                ("x-ratelimit-scope", "shared".to_string()),
            ];
            headers.into_iter().fold(response, |r, (name, value)| with_header(r, name, value))
        }
        (Target::Discord, Fault::ServerError) => {
            discord_error(StatusCode::INTERNAL_SERVER_ERROR, 0, "500: Internal Server Error")
        }
        (Target::Discord, Fault::Revoked) => discord_error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook"),
        (Target::Mattermost, Fault::RateLimited(s)) => {
            let response = (StatusCode::TOO_MANY_REQUESTS, "limit exceeded\n").into_response();
            let headers = [
                ("retry-after", whole_seconds(*s).to_string()),
                ("x-ratelimit-limit", "10".to_string()),
                ("x-ratelimit-remaining", "0".to_string()),
                ("x-ratelimit-reset", whole_seconds(*s).to_string()),
            ];
            headers.into_iter().fold(response, |r, (name, value)| with_header(r, name, value))
        }
        (Target::Mattermost, Fault::ServerError) => mattermost_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "web.incoming_webhook.create_post.app_error",
            "Unable to create post.",
        ),
        (Target::Mattermost, Fault::Revoked) => {
            mattermost_error(StatusCode::BAD_REQUEST, "web.incoming_webhook.invalid.app_error", "Invalid webhook.")
        }
        (Target::PagerDuty, Fault::RateLimited(s)) => with_header(
            json_answer(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly.  Please retry later."}),
            ),
            "retry-after",
            whole_seconds(*s).to_string(),
        ),
        (Target::PagerDuty, Fault::ServerError) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
        }
        (Target::PagerDuty, Fault::Revoked) => pagerduty_invalid(vec!["Invalid routing key".to_string()]),
        (Target::Telegram, Fault::RateLimited(s)) => {
            let secs = whole_seconds(*s);
            json_answer(
                StatusCode::TOO_MANY_REQUESTS,
                json!({
                    "ok": false,
                    "error_code": 429,
                    "description": format!("Too Many Requests: retry after {secs}"),
                    "parameters": {"retry_after": secs},
                }),
            )
        }
        (Target::Telegram, Fault::ServerError) => telegram_error(500, "Internal Server Error"),
        (Target::Telegram, Fault::Revoked) => telegram_error(403, "Forbidden: bot was blocked by the user"),
    }
}

/// Judges a request on its content, as the real target does.
fn judge(shared: &Shared, uri: &Uri, content_type: Option<&str>, body: &[u8]) -> Response {
    let json_body = content_type.is_some_and(|ct| ct.starts_with("application/json"));
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    match shared.target {
        Target::Teams => {
            let path = format!("/workflows/{}/triggers/manual/paths/invoke", shared.id);
            if uri.path() != path {
                return teams_error(StatusCode::NOT_FOUND, "WorkflowNotFound", "The workflow could not be found.");
            }
            let sig = uri.query().and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "sig").map(|(_, v)| v.into_owned())
            });
            if sig.as_deref() != Some(shared.secret.as_str()) {
                return teams_error(
                    StatusCode::UNAUTHORIZED,
                    "DirectApiAuthorizationRequired",
                    "The request must be authenticated only by Shared Access scheme.",
                );
            }
            if body.len() > TEAMS_MAX_BYTES {
                return teams_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "MessageSizeTooBig",
                    &format!("The message is {} bytes; the limit is {TEAMS_MAX_BYTES}.", body.len()),
                );
            }
            let Some(payload) = parsed.filter(|_| json_body) else {
                return teams_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContent",
                    "The request content is not valid JSON.",
                );
            };
            if let Err(e) = validate_teams(&payload) {
                return teams_error(StatusCode::BAD_REQUEST, "InvalidRequestContent", &e);
            }
            accept(shared, payload);
            StatusCode::ACCEPTED.into_response()
        }
        Target::Discord => {
            let (id, token) = match uri.path().strip_prefix("/api/webhooks/").and_then(|rest| rest.split_once('/')) {
                Some(parts) => parts,
                None => return discord_error(StatusCode::NOT_FOUND, 0, "404: Not Found"),
            };
            if id != shared.id {
                return discord_error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook");
            }
            if token != shared.secret {
                return discord_error(StatusCode::UNAUTHORIZED, 50027, "Invalid Webhook Token");
            }
            let Some(payload) = parsed.filter(|_| json_body) else {
                return discord_error(StatusCode::BAD_REQUEST, 50109, "The request body contains invalid JSON.");
            };
            if let Err(error) = validate_discord(&payload) {
                return json_answer(StatusCode::BAD_REQUEST, error);
            }
            let wait = uri.query().is_some_and(|q| q.split('&').any(|kv| kv == "wait=true"));
            let message_id = accept(shared, payload.clone());
            if wait {
                let mut message = payload;
                message["id"] = json!(message_id.to_string());
                message["channel_id"] = json!("1100000000000000000");
                message["webhook_id"] = json!(shared.id);
                json_answer(StatusCode::OK, message)
            } else {
                StatusCode::NO_CONTENT.into_response()
            }
        }
        Target::Mattermost => {
            if uri.path() != format!("/hooks/{}", shared.id) {
                return mattermost_error(
                    StatusCode::BAD_REQUEST,
                    "web.incoming_webhook.invalid.app_error",
                    "Invalid webhook.",
                );
            }
            let Some(payload) = parsed.filter(|v| v.is_object()) else {
                return mattermost_error(
                    StatusCode::BAD_REQUEST,
                    "api.webhook.incoming.error",
                    "Could not decode the multipart payload of incoming webhook.",
                );
            };
            if let Err((id, message)) = validate_mattermost(&payload) {
                return mattermost_error(StatusCode::BAD_REQUEST, id, &message);
            }
            accept(shared, payload);
            (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "ok").into_response()
        }
        Target::PagerDuty => {
            if uri.path() != "/v2/enqueue" {
                return (StatusCode::NOT_FOUND, "Not Found").into_response();
            }
            let Some(payload) = parsed.filter(|v| v.is_object()) else {
                return pagerduty_invalid(vec!["Event object is not valid JSON".to_string()]);
            };
            if let Err(errors) = validate_pagerduty(&payload, &shared.secret) {
                return pagerduty_invalid(errors);
            }
            let dedup_key = match payload["dedup_key"].as_str() {
                Some(key) => key.to_string(),
                None => random(32).to_lowercase(),
            };
            accept(shared, payload);
            json_answer(
                StatusCode::ACCEPTED,
                json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
            )
        }
        Target::Telegram => {
            let Some((token, method)) = uri.path().strip_prefix("/bot").and_then(|rest| rest.split_once('/')) else {
                return telegram_error(404, "Not Found");
            };
            if token != shared.secret {
                return telegram_error(401, "Unauthorized");
            }
            if method != "sendMessage" {
                return telegram_error(404, "Not Found");
            }
            let Some(payload) = parsed.filter(|v| v.is_object()) else {
                return telegram_error(400, "Bad Request: message text is empty");
            };
            let chat = match &payload["chat_id"] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return telegram_error(400, "Bad Request: chat_id is empty"),
            };
            if !shared.lock().chats.contains(&chat) {
                return telegram_error(400, "Bad Request: chat not found");
            }
            let text = payload["text"].as_str().unwrap_or("");
            let visible = if payload["parse_mode"] == "HTML" {
                match telegram_html_text(text) {
                    Ok(visible) => visible,
                    Err(e) => return telegram_error(400, &format!("Bad Request: can't parse entities: {e}")),
                }
            } else {
                text.to_string()
            };
            if visible.trim().is_empty() {
                return telegram_error(400, "Bad Request: message text is empty");
            }
            if visible.encode_utf16().count() > TELEGRAM_MAX_TEXT {
                return telegram_error(400, "Bad Request: message is too long");
            }
            let message_id = accept(shared, payload);
            json_answer(
                StatusCode::OK,
                json!({"ok": true, "result": {
                    "message_id": message_id,
                    "chat": {"id": chat},
                    "date": chrono::Utc::now().timestamp(),
                    "text": visible,
                }}),
            )
        }
    }
}

fn accept(shared: &Shared, payload: Value) -> u64 {
    let mut inner = shared.lock();
    inner.accepted.push(payload);
    inner.next_id += 1;
    inner.next_id
}

/// What the Teams "post to a channel when a webhook request is received" flow needs: a
/// `message` with Adaptive Card attachments of a version Teams renders (up to 1.5).
pub fn validate_teams(payload: &Value) -> Result<(), String> {
    if payload["type"] != "message" {
        return Err("'type' must be 'message'.".into());
    }
    let Some(attachments) = payload["attachments"].as_array().filter(|a| !a.is_empty()) else {
        return Err("'attachments' must be a non-empty array.".into());
    };
    for (i, a) in attachments.iter().enumerate() {
        if a["contentType"] != "application/vnd.microsoft.card.adaptive" {
            return Err(format!("attachments[{i}].contentType is not an Adaptive Card."));
        }
        let card = &a["content"];
        if card["type"] != "AdaptiveCard" {
            return Err(format!("attachments[{i}].content.type must be 'AdaptiveCard'."));
        }
        let version = card["version"].as_str().unwrap_or("");
        if !["1.0", "1.1", "1.2", "1.3", "1.4", "1.5"].contains(&version) {
            return Err(format!("attachments[{i}].content.version '{version}' is not supported."));
        }
        if !card["body"].is_array() {
            return Err(format!("attachments[{i}].content.body must be an array."));
        }
    }
    Ok(())
}

fn discord_len(v: &Value) -> usize {
    v.as_str().map(|s| s.chars().count()).unwrap_or(0)
}

/// Discord's form-body checks; the error is the body of Discord's 400.
pub fn validate_discord(payload: &Value) -> Result<(), Value> {
    let content = discord_len(&payload["content"]);
    let embeds = payload["embeds"].as_array().cloned().unwrap_or_default();
    if content == 0 && embeds.is_empty() {
        return Err(json!({"message": "Cannot send an empty message", "code": 50006}));
    }
    let mut errors = serde_json::Map::new();
    let too_long = |max: usize| json!({"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": format!("Must be {max} or fewer in length.")}]});
    if content > DISCORD_MAX_CONTENT {
        errors.insert("content".into(), too_long(DISCORD_MAX_CONTENT));
    }
    if embeds.len() > DISCORD_MAX_EMBEDS {
        errors.insert(
            "embeds".into(),
            json!({"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 10 or fewer in length."}]}),
        );
    }
    let mut total = 0;
    let mut embed_errors = serde_json::Map::new();
    for (i, e) in embeds.iter().enumerate() {
        let mut this = serde_json::Map::new();
        let checks = [
            ("title", &e["title"], DISCORD_MAX_TITLE),
            ("description", &e["description"], DISCORD_MAX_DESCRIPTION),
            ("footer", &e["footer"]["text"], DISCORD_MAX_FOOTER),
            ("author", &e["author"]["name"], DISCORD_MAX_AUTHOR),
        ];
        for (name, value, max) in checks {
            total += discord_len(value);
            if discord_len(value) > max {
                this.insert(name.into(), too_long(max));
            }
        }
        let fields = e["fields"].as_array().cloned().unwrap_or_default();
        if fields.len() > DISCORD_MAX_FIELDS {
            this.insert("fields".into(), too_long(DISCORD_MAX_FIELDS));
        }
        let mut field_errors = serde_json::Map::new();
        for (j, f) in fields.iter().enumerate() {
            let (name, value) = (discord_len(&f["name"]), discord_len(&f["value"]));
            total += name + value;
            let mut fe = serde_json::Map::new();
            if name == 0 || name > DISCORD_MAX_FIELD_NAME {
                fe.insert("name".into(), too_long(DISCORD_MAX_FIELD_NAME));
            }
            if value == 0 || value > DISCORD_MAX_FIELD_VALUE {
                fe.insert("value".into(), too_long(DISCORD_MAX_FIELD_VALUE));
            }
            if !fe.is_empty() {
                field_errors.insert(j.to_string(), Value::Object(fe));
            }
        }
        if !field_errors.is_empty() {
            this.insert("fields".into(), Value::Object(field_errors));
        }
        if let Some(color) = e.get("color") {
            if color.as_u64().is_none_or(|c| c > 0xFF_FFFF) {
                this.insert("color".into(), json!({"_errors": [{"code": "NUMBER_TYPE_MAX", "message": "int value should be less than or equal to 16777215."}]}));
            }
        }
        if !this.is_empty() {
            embed_errors.insert(i.to_string(), Value::Object(this));
        }
    }
    if total > DISCORD_MAX_TOTAL {
        embed_errors.insert(
            "_errors".into(),
            json!([{"code": "MAX_EMBED_SIZE_EXCEEDED", "message": "Embed size exceeds maximum size of 6000"}]),
        );
    }
    if !embed_errors.is_empty() {
        errors.insert("embeds".into(), Value::Object(embed_errors));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(json!({"code": 50035, "message": "Invalid Form Body", "errors": errors}))
    }
}

/// Mattermost's incoming-webhook checks: some text or attachments, and no post longer than
/// `MaxPostSize`.
pub fn validate_mattermost(payload: &Value) -> Result<(), (&'static str, String)> {
    let text = payload["text"].as_str().unwrap_or("");
    let attachments = payload["attachments"].as_array().map(Vec::len).unwrap_or(0);
    if text.trim().is_empty() && attachments == 0 {
        return Err(("web.incoming_webhook.text.app_error", "No text specified.".into()));
    }
    if text.chars().count() > MATTERMOST_MAX_TEXT {
        return Err((
            "model.post.is_valid.msg.app_error",
            format!("Invalid Message: message is longer than {MATTERMOST_MAX_TEXT} characters."),
        ));
    }
    for a in payload["attachments"].as_array().into_iter().flatten() {
        for key in ["text", "pretext", "fallback", "title"] {
            if a[key].as_str().is_some_and(|s| s.chars().count() > MATTERMOST_MAX_TEXT) {
                return Err((
                    "model.post.is_valid.props.app_error",
                    format!("Invalid props: attachment {key} is too long."),
                ));
            }
        }
    }
    Ok(())
}

/// The Events API v2 schema checks, with PagerDuty's error strings.
pub fn validate_pagerduty(payload: &Value, routing_key: &str) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    match payload["routing_key"].as_str() {
        None => errors.push("'routing_key' is missing or blank".to_string()),
        Some(key) if key.len() != 32 => {
            errors.push("Length of 'routing_key' is incorrect (should be 32 characters)".to_string())
        }
        Some(key) if key != routing_key => errors.push("Invalid routing key".to_string()),
        Some(_) => {}
    }
    let action = payload["event_action"].as_str().unwrap_or("");
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        errors.push("'event_action' must be one of trigger, acknowledge or resolve".to_string());
    }
    match &payload["dedup_key"] {
        Value::Null => {
            if action != "trigger" {
                errors.push("'dedup_key' is required for acknowledge and resolve".to_string());
            }
        }
        Value::String(k) if k.chars().count() > PAGERDUTY_MAX_DEDUP_KEY => {
            errors.push("'dedup_key' must be at most 255 characters".to_string())
        }
        Value::String(_) => {}
        _ => errors.push("'dedup_key' must be a string".to_string()),
    }
    if action == "trigger" {
        let p = &payload["payload"];
        match p["summary"].as_str() {
            None | Some("") => errors.push("'payload.summary' is missing or blank".to_string()),
            Some(s) if s.chars().count() > PAGERDUTY_MAX_SUMMARY => {
                errors.push("'payload.summary' must be at most 1024 characters".to_string())
            }
            Some(_) => {}
        }
        if p["source"].as_str().is_none_or(str::is_empty) {
            errors.push("'payload.source' is missing or blank".to_string());
        }
        if !["critical", "error", "warning", "info"].contains(&p["severity"].as_str().unwrap_or("")) {
            errors.push("'payload.severity' must be one of critical, error, warning or info".to_string());
        }
        if let Some(ts) = p.get("timestamp") {
            if ts.as_str().is_none_or(|t| chrono::DateTime::parse_from_rfc3339(t).is_err()) {
                errors.push("'payload.timestamp' must be an ISO 8601 timestamp".to_string());
            }
        }
        if p.get("custom_details").is_some_and(|d| !d.is_object()) {
            errors.push("'payload.custom_details' must be an object".to_string());
        }
    }
    for link in payload["links"].as_array().into_iter().flatten() {
        if link["href"].as_str().is_none_or(str::is_empty) {
            errors.push("'links[].href' is missing or blank".to_string());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Telegram's HTML parse mode: the supported tags, balanced, and every `&` an entity. Returns
/// the visible text (what Telegram counts), or Telegram's error.
pub fn telegram_html_text(html: &str) -> Result<String, String> {
    const TAGS: &[&str] = &[
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "a",
        "code",
        "pre",
        "tg-spoiler",
        "span",
        "blockquote",
    ];
    let mut out = String::new();
    let mut open: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(c) = rest.chars().next() {
        let offset = html.len() - rest.len();
        match c {
            '<' => {
                let Some(end) = rest.find('>') else {
                    return Err(format!("Can't find end of the entity starting at byte offset {offset}"));
                };
                let inner = &rest[1..end];
                let (closing, body) = match inner.strip_prefix('/') {
                    Some(b) => (true, b),
                    None => (false, inner),
                };
                let name = body.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
                if !TAGS.contains(&name.as_str()) {
                    return Err(format!("Unsupported start tag \"{name}\" at byte offset {offset}"));
                }
                if closing {
                    if open.pop().as_deref() != Some(name.as_str()) {
                        return Err(format!("Unmatched end tag at byte offset {offset}, expected \"</{name}>\""));
                    }
                } else {
                    open.push(name);
                }
                rest = &rest[end + 1..];
            }
            '&' => {
                let Some(end) = rest.find(';').filter(|&e| e <= 10) else {
                    return Err(format!("Can't find end of the entity starting at byte offset {offset}"));
                };
                let decoded = match &rest[1..end] {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    num if num.starts_with('#') => {
                        let n = num[1..]
                            .strip_prefix('x')
                            .map_or_else(|| num[1..].parse().ok(), |h| u32::from_str_radix(h, 16).ok());
                        match n.and_then(char::from_u32) {
                            Some(c) => c,
                            None => return Err(format!("Unsupported entity at byte offset {offset}")),
                        }
                    }
                    _ => return Err(format!("Unsupported entity at byte offset {offset}")),
                };
                out.push(decoded);
                rest = &rest[end + 1..];
            }
            c => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if let Some(name) = open.pop() {
        return Err(format!("Can't find end tag corresponding to start tag \"{name}\""));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telegram_html_rules() {
        assert_eq!(telegram_html_text("<b>a &amp; b</b> &lt;x&gt;"), Ok("a & b <x>".to_string()));
        assert!(telegram_html_text("a & b").is_err());
        assert!(telegram_html_text("<script>x</script>").is_err());
        assert!(telegram_html_text("<b>x").is_err());
        assert_eq!(telegram_html_text("<a href=\"https://x\">l</a>"), Ok("l".to_string()));
    }

    #[tokio::test]
    async fn enforces_a_rate_window() {
        let fake = FakeChat::start(Target::Discord).await;
        fake.set_rate_limit(Some(Target::Discord.documented_rate_limit()));
        let client = reqwest::Client::new();
        for _ in 0..5 {
            let r = client.post(fake.url()).json(&json!({"content": "hi"})).send().await.expect("an answer");
            assert_eq!(r.status().as_u16(), 204);
        }
        let r = client.post(fake.url()).json(&json!({"content": "hi"})).send().await.expect("an answer");
        assert_eq!(r.status().as_u16(), 429);
        assert_eq!(r.headers().get("x-ratelimit-remaining").and_then(|v| v.to_str().ok()), Some("0"));
        let v: Value = r.json().await.expect("json");
        let wait = v["retry_after"].as_f64().unwrap_or(0.0);
        assert!(wait > 1.0 && wait <= 2.0, "{v}");
        assert_eq!(fake.accepted().len(), 5);
    }

    #[tokio::test]
    async fn discord_refuses_over_limit_embeds() {
        let fake = FakeChat::start(Target::Discord).await;
        let client = reqwest::Client::new();
        let body = json!({"embeds": [{"title": "t".repeat(257), "description": "d"}]});
        let r = client.post(fake.url()).json(&body).send().await.expect("an answer");
        assert_eq!(r.status().as_u16(), 400);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["code"], 50035);
        assert_eq!(v["errors"]["embeds"]["0"]["title"]["_errors"][0]["code"], "BASE_TYPE_MAX_LENGTH");
        let body = json!({"embeds": [{"description": "d".repeat(4000)}, {"description": "d".repeat(2001)}]});
        let v: Value = client.post(fake.url()).json(&body).send().await.expect("an answer").json().await.expect("json");
        assert_eq!(v["errors"]["embeds"]["_errors"][0]["code"], "MAX_EMBED_SIZE_EXCEEDED");
        let r = client.post(format!("{}?wait=true", fake.url())).json(&json!({"content": "hi"})).send().await;
        assert_eq!(r.expect("an answer").status().as_u16(), 200);
        assert_eq!(fake.accepted().len(), 1);
    }
}
