//! A fake Slack Web API (`chat.postMessage`, `chat.update`) that answers like Slack does
//! (`shared/reference/slack.md` §2): HTTP 200 with `ok:false` and Slack's error strings,
//! `Authorization: Bearer` and a JSON Content-Type required, Block Kit validated, one message
//! per second per channel (429 `{"ok":false,"error":"ratelimited"}` with `Retry-After`), and
//! real-looking `ts` values. It records every post, thread reply and update.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::fake_slack::validate;
use super::http::LoopbackServer;

/// One channel the bot may be asked to post to.
#[derive(Debug, Clone)]
struct Channel {
    id: String,
    name: String,
    member: bool,
    /// When the next post is allowed (one per second).
    next_post: Option<Instant>,
}

/// A message accepted by `chat.postMessage`.
#[derive(Debug, Clone)]
pub struct Post {
    /// The channel id (`C…`).
    pub channel: String,
    pub ts: String,
    /// Set for thread replies: the parent's `ts`.
    pub thread_ts: Option<String>,
    pub body: Value,
    pub at: Instant,
}

impl Post {
    /// The header block's text, or the fallback `text`.
    pub fn header(&self) -> String {
        header_of(&self.body)
    }

    /// Whether the message carries an actions block (buttons).
    pub fn has_buttons(&self) -> bool {
        self.body["blocks"].as_array().is_some_and(|b| b.iter().any(|x| x["type"] == "actions"))
    }
}

fn header_of(body: &Value) -> String {
    body["blocks"]
        .as_array()
        .and_then(|b| b.iter().find(|x| x["type"] == "header"))
        .and_then(|h| h["text"]["text"].as_str())
        .or_else(|| body["text"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// A `chat.update` that succeeded.
#[derive(Debug, Clone)]
pub struct Update {
    pub channel: String,
    pub ts: String,
    pub body: Value,
}

impl Update {
    pub fn header(&self) -> String {
        header_of(&self.body)
    }

    pub fn has_buttons(&self) -> bool {
        self.body["blocks"].as_array().is_some_and(|b| b.iter().any(|x| x["type"] == "actions"))
    }

    /// Every text in the blocks, joined (to look for "Acknowledged by").
    pub fn all_text(&self) -> String {
        let mut out = Vec::new();
        collect_text(&self.body["blocks"], &mut out);
        out.push(self.body["text"].as_str().unwrap_or_default().to_string());
        out.join("\n")
    }
}

fn collect_text(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(t)) = o.get("text") {
                out.push(t.clone());
            }
            o.values().for_each(|x| collect_text(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_text(x, out)),
        _ => {}
    }
}

/// A request refused with `ok:false` (or 429).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRejection {
    pub method: String,
    pub status: u16,
    pub error: String,
}

#[derive(Default)]
struct Inner {
    channels: Vec<Channel>,
    posts: Vec<Post>,
    updates: Vec<Update>,
    rejections: Vec<ApiRejection>,
    /// Current content of each message, by (channel id, ts).
    messages: HashMap<(String, String), Value>,
    seq: u64,
    rate_limit: Option<Duration>,
}

struct Shared {
    token: String,
    inner: Mutex<Inner>,
    /// Bumped on every accepted post or update; waiters watch it.
    changes: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct FakeSlackApi {
    server: LoopbackServer,
    shared: Arc<Shared>,
}

impl FakeSlackApi {
    /// Starts the fake; requests must carry `Authorization: Bearer <token>`.
    pub async fn start(token: &str) -> FakeSlackApi {
        let (changes, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            token: token.to_string(),
            inner: Mutex::new(Inner { rate_limit: Some(Duration::from_secs(1)), ..Inner::default() }),
            changes,
        });
        let router = Router::new().route("/api/{method}", post(method)).with_state(shared.clone());
        let server = LoopbackServer::start(router).await.expect("the fake Slack API binds a loopback port");
        FakeSlackApi { server, shared }
    }

    /// `http://127.0.0.1:PORT/api`, the notifier's `api_url`.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.server.base_url())
    }

    /// Creates a channel named `name` (without `#`); returns its id. `member`: whether the
    /// bot was invited (otherwise posts fail with `not_in_channel`).
    pub fn add_channel(&self, name: &str, member: bool) -> String {
        let mut inner = self.shared.lock();
        let id = format!("C{:08}", inner.channels.len() + 1);
        inner.channels.push(Channel { id: id.clone(), name: name.to_string(), member, next_post: None });
        id
    }

    /// Changes the per-channel spacing of posts (`None`: no limit).
    pub fn set_rate_limit(&self, every: Option<Duration>) {
        self.shared.lock().rate_limit = every;
    }

    pub fn posts(&self) -> Vec<Post> {
        self.shared.lock().posts.clone()
    }

    /// Top-level posts only.
    pub fn parents(&self) -> Vec<Post> {
        self.posts().into_iter().filter(|p| p.thread_ts.is_none()).collect()
    }

    /// Replies in threads only.
    pub fn thread_replies(&self) -> Vec<Post> {
        self.posts().into_iter().filter(|p| p.thread_ts.is_some()).collect()
    }

    pub fn updates(&self) -> Vec<Update> {
        self.shared.lock().updates.clone()
    }

    pub fn rejections(&self) -> Vec<ApiRejection> {
        self.shared.lock().rejections.clone()
    }

    /// Waits until `check` holds (it is re-evaluated after every accepted request).
    pub async fn wait_until(&self, timeout: Duration, check: impl Fn(&FakeSlackApi) -> bool) -> bool {
        let mut rx = self.shared.changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if check(self) {
                return true;
            }
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep_until(deadline) => return check(self),
                // Rejections do not bump the counter; look again now and then.
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    pub async fn wait_for_posts(&self, count: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |f| f.posts().len() >= count).await
    }

    pub async fn wait_for_updates(&self, count: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |f| f.updates().len() >= count).await
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json; charset=utf-8"));
    response
}

fn refuse(shared: &Shared, method: &str, error: &str) -> Response {
    shared.lock().rejections.push(ApiRejection { method: method.to_string(), status: 200, error: error.to_string() });
    let mut body = json!({"ok": false, "error": error});
    if error == "missing_scope" {
        body["needed"] = json!("chat:write");
    }
    answer(StatusCode::OK, body)
}

async fn method(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if name != "chat.postMessage" && name != "chat.update" {
        return refuse(&shared, &name, "unknown_method");
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.is_empty() {
        return refuse(&shared, &name, "missing_post_type");
    }
    if !content_type.to_ascii_lowercase().starts_with("application/json") {
        return refuse(&shared, &name, "invalid_post_type");
    }
    // With a JSON body the token can only be a Bearer header.
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match token {
        None | Some("") => return refuse(&shared, &name, "not_authed"),
        Some(t) if t != shared.token => return refuse(&shared, &name, "invalid_auth"),
        Some(_) => {}
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return refuse(&shared, &name, "invalid_json"),
    };
    if !value.is_object() {
        return refuse(&shared, &name, "json_not_object");
    }
    let Some(wanted) = value["channel"].as_str().filter(|c| !c.is_empty()) else {
        return refuse(&shared, &name, "channel_not_found");
    };
    let has_text = value["text"].as_str().is_some_and(|t| !t.is_empty());
    let has_blocks = value["blocks"].as_array().is_some_and(|b| !b.is_empty());
    if !has_text && !has_blocks {
        return refuse(&shared, &name, "no_text");
    }
    if validate(&value).is_err() {
        return refuse(&shared, &name, "invalid_blocks");
    }
    if name == "chat.update" && value["text"].as_str().is_some_and(|t| t.chars().count() > 4000) {
        return refuse(&shared, &name, "msg_too_long");
    }

    let mut inner = shared.lock();
    let name_only = wanted.trim_start_matches('#');
    let Some(index) = inner.channels.iter().position(|c| c.id == wanted || c.name == name_only) else {
        drop(inner);
        return refuse(&shared, &name, "channel_not_found");
    };
    let channel_id = inner.channels[index].id.clone();
    if name == "chat.update" {
        let ts = value["ts"].as_str().unwrap_or_default().to_string();
        // chat.update takes the channel id only, as Slack does in practice.
        if wanted != channel_id || !inner.messages.contains_key(&(channel_id.clone(), ts.clone())) {
            drop(inner);
            return refuse(&shared, &name, "message_not_found");
        }
        inner.messages.insert((channel_id.clone(), ts.clone()), value.clone());
        inner.updates.push(Update { channel: channel_id.clone(), ts: ts.clone(), body: value.clone() });
        drop(inner);
        shared.changes.send_modify(|n| *n += 1);
        let text = value["text"].clone();
        return answer(
            StatusCode::OK,
            json!({"ok": true, "channel": channel_id, "ts": ts, "text": text,
                   "message": {"text": text, "user": "U0FAKEBOT", "blocks": value["blocks"]}}),
        );
    }

    if !inner.channels[index].member {
        drop(inner);
        return refuse(&shared, &name, "not_in_channel");
    }
    let now = Instant::now();
    if let (Some(every), Some(next)) = (inner.rate_limit, inner.channels[index].next_post) {
        if now < next {
            let wait = next.duration_since(now).as_secs_f64().ceil().max(1.0) as u64;
            inner.rejections.push(ApiRejection { method: name.clone(), status: 429, error: "ratelimited".into() });
            drop(inner);
            let _ = every;
            let mut response = answer(StatusCode::TOO_MANY_REQUESTS, json!({"ok": false, "error": "ratelimited"}));
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(wait));
            return response;
        }
    }
    if let Some(every) = inner.rate_limit {
        inner.channels[index].next_post = Some(now + every);
    }
    let thread_ts = value["thread_ts"].as_str().map(str::to_string);
    inner.seq += 1;
    let ts = format!("{}.{:06}", chrono::Utc::now().timestamp(), inner.seq);
    inner.messages.insert((channel_id.clone(), ts.clone()), value.clone());
    inner.posts.push(Post { channel: channel_id.clone(), ts: ts.clone(), thread_ts, body: value.clone(), at: now });
    drop(inner);
    shared.changes.send_modify(|n| *n += 1);
    answer(
        StatusCode::OK,
        json!({"ok": true, "channel": channel_id, "ts": ts,
               "message": {"text": value["text"], "blocks": value["blocks"], "username": "tocsin",
                           "bot_id": "B0FAKEBOT", "type": "message", "subtype": "bot_message", "ts": ts}}),
    )
}
