//! `slack_app`: the Slack Web API with a bot token (`chat.postMessage`, `chat.update`).
//!
//! The first message of an alert group is posted to the channel, with Acknowledge / Silence /
//! Resolve buttons when the app can verify clicks (`signing_secret`); its `ts` is kept in the
//! store under `group_key|channel`. Follow-ups (repeats, resolution) go into that thread, and
//! on resolve the original is updated to say so, buttons removed. Slack answers failures with
//! HTTP 200 and `ok:false`; the `error` string decides retry or give up, and the message says
//! what to do about it. Facts from `shared/reference/slack.md`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::slack_webhook::{self, SlackWebhookConfig, MAX_BLOCKS};
use super::webhook::{classify_status, retry_after, send_error, Secrets};
use super::{Notifier, NotifyError};
use crate::config::Secret;
use crate::message::{Message, MessageStatus};
use crate::store::slack_threads::SlackThread;
use crate::store::DynStore;

pub const DEFAULT_API_URL: &str = "https://slack.com/api";

/// `action_id`s of the alert buttons; each button's `value` is the alert fingerprint.
pub const ACTION_ACKNOWLEDGE: &str = "tocsin_acknowledge";
pub const ACTION_SILENCE_1H: &str = "tocsin_silence_1h";
pub const ACTION_SILENCE_24H: &str = "tocsin_silence_24h";
pub const ACTION_RESOLVE: &str = "tocsin_resolve";
/// The `block_id` of the buttons' actions block.
pub const ACTIONS_BLOCK_ID: &str = "tocsin_actions";

/// Slack's `ok:false` errors that a later retry of the same request can get past.
const RETRYABLE: &[&str] =
    &["ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackAppConfig {
    /// The bot token (`xoxb-…`), sent as `Authorization: Bearer`.
    pub token: Secret,
    /// Verifies `POST /hooks/slack`; without it alert messages carry no buttons.
    pub signing_secret: Option<Secret>,
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Where messages go when the route names no `channel` (an ID like `C0123` is safest).
    pub channel: Option<String>,
}

fn default_api_url() -> String {
    DEFAULT_API_URL.to_string()
}

pub struct SlackApp {
    name: String,
    config: SlackAppConfig,
    http: reqwest::Client,
    store: Option<DynStore>,
}

impl SlackApp {
    pub fn new(name: &str, config: SlackAppConfig, http: reqwest::Client, store: Option<DynStore>) -> Self {
        SlackApp { name: name.to_string(), config, http, store }
    }

    pub fn config(&self) -> &SlackAppConfig {
        &self.config
    }

    fn secrets(&self) -> Secrets {
        Secrets::new(&self.config.token, self.config.signing_secret.as_ref())
    }

    /// Calls one Web API method; `Ok` is the whole `ok:true` answer.
    pub async fn call(&self, method: &str, body: &Value, channel: &str) -> Result<Value, NotifyError> {
        let url = format!("{}/{method}", self.config.api_url.trim_end_matches('/'));
        let secrets = self.secrets();
        let bytes = serde_json::to_vec(body)
            .map_err(|e| NotifyError::permanent(format!("cannot encode the Slack {method} request: {e}")))?;
        let response = self
            .http
            .post(&url)
            .header(AUTHORIZATION, format!("Bearer {}", self.config.token.expose()))
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(bytes)
            .send()
            .await
            .map_err(|e| send_error(&format!("slack {method}"), e, &secrets))?;
        let status = response.status();
        let headers = response.headers().clone();
        let raw = response.bytes().await.unwrap_or_default();
        let text = secrets.redact(&String::from_utf8_lossy(&raw[..raw.len().min(8 * 1024)]));
        let answer: Option<Value> = serde_json::from_str(&text).ok();
        let error = answer.as_ref().and_then(|a| a.get("error")).and_then(Value::as_str).map(str::to_string);
        if status == StatusCode::TOO_MANY_REQUESTS {
            let error = error.unwrap_or_else(|| "ratelimited".to_string());
            let message = secrets.redact(&describe(method, &error, channel, answer.as_ref()));
            return Err(NotifyError::Retryable { message, retry_after: Some(retry_after(&headers)) });
        }
        if !status.is_success() {
            let detail: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
            let message = format!("slack {method} answered {} {}", status.as_u16(), detail.trim());
            return Err(classify_status(status, &headers, message.trim().to_string()));
        }
        let Some(answer) = answer else {
            return Err(NotifyError::retryable(format!(
                "slack {method} answered {} with a body that is not JSON",
                status.as_u16()
            )));
        };
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            if let Some(warnings) = answer.pointer("/response_metadata/warnings") {
                tracing::warn!(notifier = %self.name, method, warnings = %warnings, "slack accepted the message with warnings");
            }
            return Ok(answer);
        }
        let error = error.unwrap_or_else(|| "unknown_error".to_string());
        Err(classify_error(method, &error, channel, Some(&answer), &secrets))
    }

    /// Rewrites a posted message (the click handler and resolutions use it).
    pub async fn update(&self, channel: &str, ts: &str, text: &str, blocks: &Value) -> Result<(), NotifyError> {
        let body = json!({"channel": channel, "ts": ts, "text": text, "blocks": blocks});
        self.call("chat.update", &body, channel).await.map(|_| ())
    }

    fn thread_key(message: &Message, channel: &str) -> String {
        format!("{}|{}", message.group_key, channel)
    }

    async fn thread(&self, key: &str) -> Result<Option<SlackThread>, NotifyError> {
        match &self.store {
            Some(store) => store
                .slack_thread(key)
                .await
                .map_err(|e| NotifyError::retryable(format!("cannot read the Slack thread of this alert: {e}"))),
            None => Ok(None),
        }
    }
}

/// Why Slack said no, and what the operator can do about it.
fn hint(error: &str, channel: &str) -> String {
    match error {
        "not_in_channel" => format!(
            "the bot is not a member of {channel}; invite the bot to the channel (`/invite @your-app` there), \
             or give the app the chat:write.public scope"
        ),
        "channel_not_found" => format!(
            "no channel {channel} is visible to the bot; check the route's or notifier's `channel` \
             (a channel ID such as C0123ABC is safest) and invite the bot to private channels"
        ),
        "is_archived" | "channel_is_archived" | "is_inactive" => {
            format!("channel {channel} is archived; unarchive it or route to another channel")
        }
        "invalid_auth" | "not_authed" | "token_revoked" | "token_expired" | "account_inactive" => {
            "Slack refused the bot token; check the notifier's `token` (a bot token, xoxb-…) and that the app is \
             still installed in the workspace"
                .to_string()
        }
        "missing_scope" => {
            "the bot token lacks a scope; add chat:write to the app's bot scopes and reinstall it".into()
        }
        "msg_too_long"
        | "msg_blocks_too_long"
        | "invalid_blocks"
        | "invalid_blocks_format"
        | "no_text"
        | "too_many_attachments"
        | "invalid_json"
        | "json_not_object"
        | "invalid_post_type"
        | "missing_post_type"
        | "invalid_charset" => "Slack refused the message's format; this is a bug in tocsin, please report it".into(),
        "message_not_found" | "cant_update_message" | "edit_window_closed" => {
            "the original message can no longer be updated (deleted, or not posted by this app)".into()
        }
        "restricted_action"
        | "restricted_action_read_only_channel"
        | "restricted_action_thread_only_channel"
        | "restricted_action_non_threadable_channel" => {
            format!("a workspace setting forbids the bot to post in {channel}; ask a Slack admin")
        }
        "message_limit_exceeded" => "the workspace reached its plan's message limit".into(),
        "ratelimited" | "rate_limited" => {
            "Slack's rate limit (about one message per second per channel); retrying after Retry-After".into()
        }
        "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
            "a failure on Slack's side; retrying".into()
        }
        _ => "see the method's error list at https://api.slack.com/methods".into(),
    }
}

fn describe(method: &str, error: &str, channel: &str, answer: Option<&Value>) -> String {
    let mut text = format!("slack {method} failed: {error}: {}", hint(error, channel));
    if error == "missing_scope" {
        if let Some(needed) = answer.and_then(|a| a.get("needed")).and_then(Value::as_str) {
            text.push_str(&format!(" (needed: {needed})"));
        }
    }
    let details: Vec<&str> = answer
        .and_then(|a| a.pointer("/response_metadata/messages"))
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(Value::as_str).take(3).collect())
        .unwrap_or_default();
    if !details.is_empty() {
        text.push_str(&format!(" ({})", details.join("; ")));
    }
    text
}

/// Answers that mean the destination (the channel, or the token for every channel) is dead
/// until someone fixes it (`slack.md`, section 6).
const GONE: &[&str] = &[
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "channel_is_archived",
    "is_inactive",
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "token_expired",
    "account_inactive",
];

/// An `ok:false` answer as a [`NotifyError`]: retryable only for Slack's transient errors.
pub(crate) fn classify_error(
    method: &str,
    error: &str,
    channel: &str,
    answer: Option<&Value>,
    secrets: &Secrets,
) -> NotifyError {
    let message = secrets.redact(&describe(method, error, channel, answer));
    if RETRYABLE.contains(&error) {
        let retry_after = matches!(error, "ratelimited" | "rate_limited").then_some(Duration::from_secs(1));
        NotifyError::Retryable { message, retry_after }
    } else if GONE.contains(&error) {
        NotifyError::gone(message)
    } else {
        NotifyError::permanent(message)
    }
}

/// The four buttons of an alert message; each carries the alert's fingerprint.
pub fn action_buttons(fingerprint: &str) -> Value {
    let button = |id: &str, text: &str, style: Option<&str>| {
        let mut b = json!({
            "type": "button",
            "action_id": id,
            "text": {"type": "plain_text", "text": text, "emoji": true},
            "value": fingerprint,
        });
        if let Some(style) = style {
            b["style"] = json!(style);
        }
        b
    };
    json!({
        "type": "actions",
        "block_id": ACTIONS_BLOCK_ID,
        "elements": [
            button(ACTION_ACKNOWLEDGE, "Acknowledge", Some("primary")),
            button(ACTION_SILENCE_1H, "Silence 1h", None),
            button(ACTION_SILENCE_24H, "Silence 24h", None),
            button(ACTION_RESOLVE, "Resolve", Some("danger")),
        ],
    })
}

/// The `chat.postMessage` body: the Block Kit of `slack_webhook`, addressed to `channel`,
/// optionally in a thread and with the alert buttons.
pub fn post_body(message: &Message, channel: &str, thread_ts: Option<&str>, buttons: Option<&str>) -> Value {
    let config =
        SlackWebhookConfig { url: Secret::new(""), username: None, icon_emoji: None, icon_url: None, channel: None };
    let mut body = slack_webhook::payload(&config, message);
    body["channel"] = json!(channel);
    if let Some(ts) = thread_ts {
        body["thread_ts"] = json!(ts);
    }
    if let Some(fingerprint) = buttons {
        if let Some(blocks) = body["blocks"].as_array_mut() {
            if blocks.len() >= MAX_BLOCKS {
                // Give up the last field section rather than the buttons or the context line.
                let at = blocks.len().saturating_sub(2);
                blocks.remove(at);
            }
            blocks.push(action_buttons(fingerprint));
        }
    }
    body
}

/// How the original message looks once its alert resolved: the resolution's header
/// (`✅ [RESOLVED] …`) and body, no buttons.
pub fn resolved_blocks(message: &Message) -> (String, Value) {
    let mut resolved = message.clone();
    resolved.status = MessageStatus::Resolved;
    resolved.mention = None;
    let body = post_body(&resolved, "", None, None);
    (body["text"].as_str().unwrap_or_default().to_string(), body["blocks"].clone())
}

#[async_trait]
impl Notifier for SlackApp {
    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let Some(channel) = message.channel.as_deref().or(self.config.channel.as_deref()) else {
            return Err(NotifyError::permanent(format!(
                "slack_app {:?} has no channel to post to; set `channel` on the route or on the notifier",
                self.name
            )));
        };
        let is_alert = message.status != MessageStatus::Event;
        let key = Self::thread_key(message, channel);
        let thread = if is_alert { self.thread(&key).await? } else { None };
        match (message.status, thread) {
            (MessageStatus::Resolved, Some(thread)) => {
                // The update first: it is idempotent, so a retry after a failed reply repeats
                // nothing visible.
                let (text, blocks) = resolved_blocks(message);
                match self.update(&thread.channel, &thread.ts, &text, &blocks).await {
                    Ok(()) => {}
                    Err(e) if e.is_retryable() => return Err(e),
                    Err(e) => {
                        tracing::warn!(notifier = %self.name, error = %e, "cannot mark the original Slack message resolved")
                    }
                }
                self.call("chat.postMessage", &post_body(message, &thread.channel, Some(&thread.ts), None), channel)
                    .await?;
                if let Some(store) = &self.store {
                    // The next firing starts a new message.
                    if let Err(e) = store.forget_slack_thread(&key).await {
                        tracing::warn!(notifier = %self.name, error = %e, "cannot forget a resolved Slack thread");
                    }
                }
                Ok(())
            }
            (_, Some(thread)) => {
                let body = post_body(message, &thread.channel, Some(&thread.ts), None);
                self.call("chat.postMessage", &body, channel).await.map(|_| ())
            }
            (status, None) => {
                let fingerprint = message.events.first().map(|e| e.fingerprint.as_str());
                let buttons =
                    fingerprint.filter(|_| status == MessageStatus::Firing && self.config.signing_secret.is_some());
                let answer =
                    self.call("chat.postMessage", &post_body(message, channel, None, buttons), channel).await?;
                if status == MessageStatus::Firing {
                    let posted =
                        (answer.get("channel").and_then(Value::as_str), answer.get("ts").and_then(Value::as_str));
                    if let (Some(store), (Some(id), Some(ts))) = (&self.store, posted) {
                        let thread = SlackThread { channel: id.to_string(), ts: ts.to_string() };
                        // Posted already: failing now would post it twice. Follow-ups then
                        // start a message of their own.
                        if let Err(e) = store.save_slack_thread(&key, &thread, Utc::now()).await {
                            tracing::warn!(notifier = %self.name, error = %e, "cannot remember the Slack thread of an alert");
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::http::testing::{client, message};
    use crate::testkit::fake_slack_api::FakeSlackApi;

    const TOKEN: &str = "xoxb-test-0000-secret-token";

    fn config(api_url: &str, token: &str) -> SlackAppConfig {
        SlackAppConfig {
            token: Secret::new(token),
            signing_secret: Some(Secret::new("signing")),
            api_url: api_url.to_string(),
            channel: Some("#alerts".into()),
        }
    }

    #[test]
    fn body_has_channel_thread_and_buttons() {
        let m = message();
        let b = post_body(&m, "C1", Some("1.000001"), Some("fp1"));
        assert_eq!(b["channel"], "C1");
        assert_eq!(b["thread_ts"], "1.000001");
        let blocks = b["blocks"].as_array().cloned().unwrap_or_default();
        let actions = blocks.last().cloned().unwrap_or_default();
        assert_eq!(actions["type"], "actions");
        let ids: Vec<&str> = actions["elements"]
            .as_array()
            .map(|e| e.iter().filter_map(|x| x["action_id"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(ids, [ACTION_ACKNOWLEDGE, ACTION_SILENCE_1H, ACTION_SILENCE_24H, ACTION_RESOLVE]);
        assert!(actions["elements"].as_array().is_some_and(|e| e.iter().all(|x| x["value"] == "fp1")));
        assert_eq!(crate::testkit::fake_slack::validate(&b), Ok(()));
        let (text, blocks) = resolved_blocks(&m);
        assert!(text.contains("[RESOLVED]"), "{text}");
        assert!(blocks[0]["text"]["text"].as_str().unwrap_or("").starts_with(":white_check_mark: [RESOLVED]"));
        assert!(blocks.as_array().is_some_and(|b| b.iter().all(|x| x["type"] != "actions")));
    }

    #[test]
    fn errors_are_classified() {
        let secrets = Secrets::new(&Secret::new(TOKEN), None);
        for e in
            ["ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"]
        {
            assert!(classify_error("chat.postMessage", e, "#a", None, &secrets).is_retryable(), "{e}");
        }
        for e in [
            "not_in_channel",
            "channel_not_found",
            "invalid_auth",
            "not_authed",
            "account_inactive",
            "token_revoked",
            "missing_scope",
            "is_archived",
            "msg_too_long",
            "invalid_blocks",
            "no_text",
            "something_new",
        ] {
            assert!(!classify_error("chat.postMessage", e, "#a", None, &secrets).is_retryable(), "{e}");
        }
        // The channel or the token is dead until someone fixes it: the destination is gone.
        for e in ["not_in_channel", "channel_not_found", "invalid_auth", "token_revoked", "is_archived"] {
            assert!(classify_error("chat.postMessage", e, "#a", None, &secrets).is_gone(), "{e}");
        }
        for e in ["missing_scope", "msg_too_long", "invalid_blocks", "something_new", "ratelimited"] {
            assert!(!classify_error("chat.postMessage", e, "#a", None, &secrets).is_gone(), "{e}");
        }
        let e = classify_error("chat.postMessage", "not_in_channel", "#ops", None, &secrets).to_string();
        assert!(e.contains("not_in_channel") && e.contains("invite the bot"), "{e}");
    }

    #[tokio::test]
    async fn posts_and_reports_slack_errors_without_the_token() {
        let fake = FakeSlackApi::start(TOKEN).await;
        fake.add_channel("alerts", true);
        fake.add_channel("outside", false);
        let app = SlackApp::new("s", config(&fake.api_url(), TOKEN), client(), None);
        app.send(&message()).await.expect("posted");
        assert_eq!(fake.posts().len(), 1);

        let mut m = message();
        m.channel = Some("#outside".into());
        let e = app.send(&m).await.expect_err("not a member");
        assert!(!e.is_retryable() && e.to_string().contains("not_in_channel"), "{e}");
        m.channel = Some("#nowhere".into());
        let e = app.send(&m).await.expect_err("no channel");
        assert!(!e.is_retryable() && e.to_string().contains("channel_not_found"), "{e}");

        let wrong = SlackApp::new("s", config(&fake.api_url(), "xoxb-wrong-token-1234"), client(), None);
        let e = wrong.send(&message()).await.expect_err("bad token");
        assert!(!e.is_retryable() && e.to_string().contains("invalid_auth"), "{e}");
        assert!(!e.to_string().contains("xoxb-wrong-token-1234"), "{e}");

        // Over the per-channel limit: 429 with Retry-After, retryable.
        let e = app.send(&message()).await.expect_err("too fast");
        assert!(e.is_retryable() && e.retry_after().is_some() && e.to_string().contains("ratelimited"), "{e}");
        assert!(!format!("{e:?}").contains(TOKEN));
    }
}
