//! `POST /hooks/slack`: the `slack_app` notifier's buttons (Acknowledge, Silence 1h/24h,
//! Resolve) and the `/tocsin` slash command (`status`, `silence`, `search`).
//!
//! Every request is verified against the signing secret of a configured `slack_app`
//! notifier: `v0=` HMAC-SHA256 over `v0:<timestamp>:<raw body>`, within 5 minutes of now,
//! compared in constant time. Slack wants an answer within 3 seconds, so the handler does only
//! quick store work and updates the clicked message in the background with `chat.update`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::error::ApiError;
use super::AppState;
use crate::config::{Config, Secret};
use crate::notify::slack_app::{
    SlackApp, ACTIONS_BLOCK_ID, ACTION_ACKNOWLEDGE, ACTION_RESOLVE, ACTION_SILENCE_1H, ACTION_SILENCE_24H,
};
use crate::notify::slack_webhook::escape;
use crate::notify::{NotifierConfig, NotifierContext};
use crate::silence::Silence;
use crate::store::EventQuery;

pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// Slack's replay window: requests older (or newer) than this are refused.
pub const MAX_AGE_SECS: i64 = 5 * 60;
/// How many alerts `/tocsin status` and events `/tocsin search` list.
const LISTED: u32 = 5;

/// The `slack_app` notifiers that can verify requests, from the configuration in force.
#[derive(Default)]
pub struct SlackSettings {
    apps: Vec<(Secret, Arc<SlackApp>)>,
}

impl SlackSettings {
    pub fn new(config: &Config) -> SlackSettings {
        let ctx = NotifierContext::new(config.delivery.timeout.get());
        let apps = config
            .notifiers
            .iter()
            .filter_map(|(name, n)| match n {
                NotifierConfig::SlackApp(c) => c
                    .signing_secret
                    .clone()
                    .map(|secret| (secret, Arc::new(SlackApp::new(name, c.clone(), ctx.http.clone(), None)))),
                _ => None,
            })
            .collect();
        SlackSettings { apps }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// No timestamp, or one outside the 5-minute window.
    Stale,
    /// The signature is missing or does not match.
    BadSignature,
}

/// `v0=<hex HMAC-SHA256(secret, "v0:<timestamp>:<body>")>`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks one request from Slack; `now` is Unix seconds.
pub fn verify(secret: &str, timestamp: &str, body: &[u8], signature: &str, now: i64) -> Result<(), VerifyError> {
    let ts: i64 = timestamp.trim().parse().map_err(|_| VerifyError::Stale)?;
    if (now - ts).abs() > MAX_AGE_SECS {
        return Err(VerifyError::Stale);
    }
    let expected = sign(secret, timestamp.trim(), body);
    if bool::from(expected.as_bytes().ct_eq(signature.trim().as_bytes())) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn ephemeral(text: impl Into<String>) -> Json<Value> {
    Json(json!({"response_type": "ephemeral", "replace_original": false, "text": text.into()}))
}

pub async fn post_slack(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let apps: Vec<(Secret, Arc<SlackApp>)> = state.settings.current().slack.apps.clone();
    if apps.is_empty() {
        return Err(ApiError::not_found("no slack_app notifier with a signing_secret is configured"));
    }
    let timestamp = header(&headers, TIMESTAMP_HEADER);
    let signature = header(&headers, SIGNATURE_HEADER);
    let now = Utc::now();
    let mut stale = false;
    let mut verified = None;
    for (secret, app) in &apps {
        match verify(secret.expose(), timestamp, &body, signature, now.timestamp()) {
            Ok(()) => {
                verified = Some(app.clone());
                break;
            }
            Err(VerifyError::Stale) => stale = true,
            Err(VerifyError::BadSignature) => {}
        }
    }
    let Some(app) = verified else {
        return Err(ApiError::unauthorized(if stale {
            "missing or stale X-Slack-Request-Timestamp (more than 5 minutes from now)"
        } else {
            "X-Slack-Signature does not match any slack_app signing_secret"
        }));
    };
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if let Some(payload) = form.get("payload") {
        let payload: Value = serde_json::from_str(payload)
            .map_err(|_| ApiError::bad_request("invalid_payload", "payload", "must be JSON"))?;
        return interaction(&state, app, &payload, now).await;
    }
    if form.contains_key("command") {
        return slash_command(&state, &form, now).await;
    }
    Err(ApiError::bad_request("invalid_payload", "body", "expected a `payload` (interaction) or a slash `command`"))
}

/// A glob that matches exactly `value`: the glob metacharacters backslash-escaped.
pub fn exact_glob(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' | '?' | '[' | ']' | '{' | '}' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Matchers for exactly this alert's kind and labels.
fn exact_matchers(kind: &str, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut matchers: BTreeMap<String, String> =
        labels.iter().filter(|(k, _)| k.as_str() != "kind").map(|(k, v)| (k.clone(), exact_glob(v))).collect();
    matchers.insert("kind".into(), exact_glob(kind));
    matchers
}

/// The clicked message's blocks with the buttons in `remove` taken out and `note` added.
fn amend(blocks: &[Value], note: &str, remove: &[&str]) -> Vec<Value> {
    let mut out = Vec::with_capacity(blocks.len() + 1);
    let mut actions = None;
    for block in blocks {
        if block["type"] == "actions" && block["block_id"] == ACTIONS_BLOCK_ID {
            let mut block = block.clone();
            if let Some(elements) = block["elements"].as_array_mut() {
                elements.retain(|e| !remove.contains(&e["action_id"].as_str().unwrap_or("")));
                if !elements.is_empty() {
                    actions = Some(block);
                }
            }
        } else {
            out.push(block.clone());
        }
    }
    if out.len() >= crate::notify::slack_webhook::MAX_BLOCKS - 1 {
        out.truncate(crate::notify::slack_webhook::MAX_BLOCKS - 2);
    }
    out.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]}));
    out.extend(actions);
    out
}

async fn refresh_silences(state: &AppState, now: DateTime<Utc>) -> Result<(), ApiError> {
    let silences = state.ingest.store().silences(now).await?;
    state.ingest.lifecycle().set_silences(silences);
    let ingest = state.ingest.clone();
    tokio::spawn(async move {
        if let Err(e) = ingest.tick(Utc::now()).await {
            tracing::warn!(error = %e, "alert upkeep after a Slack silence failed");
        }
    });
    Ok(())
}

/// The alert's kind, labels, severity and title, from memory or else from its last event.
async fn alert_facts(
    state: &AppState,
    fingerprint: &str,
) -> Result<Option<(String, BTreeMap<String, String>, crate::event::Severity, Option<String>)>, ApiError> {
    if let Some(a) = state.ingest.lifecycle().alert(fingerprint) {
        return Ok(Some((a.kind, a.labels.to_map(), a.severity, a.title)));
    }
    Ok(state.ingest.store().alert_event(fingerprint).await?.map(|e| (e.kind, e.labels, e.severity, e.title)))
}

async fn interaction(
    state: &AppState,
    app: Arc<SlackApp>,
    payload: &Value,
    now: DateTime<Utc>,
) -> Result<Json<Value>, ApiError> {
    if payload["type"] != "block_actions" {
        return Ok(Json(json!({})));
    }
    let Some(action) = payload["actions"].as_array().and_then(|a| a.first()) else {
        return Ok(Json(json!({})));
    };
    let action_id = action["action_id"].as_str().unwrap_or_default();
    let fingerprint = action["value"].as_str().unwrap_or_default();
    let user_id = payload["user"]["id"].as_str().unwrap_or_default();
    let user_name = ["username", "name", "id"]
        .iter()
        .find_map(|k| payload["user"][k].as_str().filter(|s| !s.is_empty()))
        .unwrap_or("someone")
        .to_string();
    let who = if user_id.is_empty() { escape(&user_name) } else { format!("<@{}>", escape(user_id)) };
    let channel = payload["container"]["channel_id"].as_str().or_else(|| payload["channel"]["id"].as_str());
    let message_ts = payload["container"]["message_ts"].as_str().or_else(|| payload["message"]["ts"].as_str());
    let blocks: Vec<Value> = payload["message"]["blocks"].as_array().cloned().unwrap_or_default();
    let text = payload["message"]["text"].as_str().unwrap_or("tocsin alert").to_string();

    let (note, remove): (String, Vec<&str>) = match action_id {
        ACTION_ACKNOWLEDGE => {
            let Some(alert) = state.ingest.lifecycle().acknowledge(fingerprint, &user_name) else {
                return Ok(ephemeral("This alert is no longer firing."));
            };
            state.ingest.store().enqueue(Vec::new(), vec![alert]).await?;
            tracing::info!(fingerprint, by = %user_name, "alert acknowledged from Slack");
            (format!(":raised_hand: Acknowledged by {who}"), vec![ACTION_ACKNOWLEDGE])
        }
        ACTION_SILENCE_1H | ACTION_SILENCE_24H => {
            let hours = if action_id == ACTION_SILENCE_1H { 1 } else { 24 };
            let Some((kind, labels, _, _)) = alert_facts(state, fingerprint).await? else {
                return Ok(ephemeral("tocsin does not know this alert any more."));
            };
            let silence = Silence {
                id: Uuid::now_v7(),
                matchers: exact_matchers(&kind, &labels),
                starts_at: now,
                ends_at: now + chrono::Duration::hours(hours),
                comment: format!("from Slack, alert {fingerprint}"),
                created_by: format!("slack:{user_name}"),
                created_at: now,
            };
            state.ingest.store().insert_silence(&silence).await?;
            refresh_silences(state, now).await?;
            tracing::info!(silence = %silence.id, by = %user_name, hours, "silence created from Slack");
            let until = silence.ends_at.format("%Y-%m-%d %H:%M UTC");
            (
                format!(":no_bell: Silenced for {hours}h by {who} (until {until})"),
                vec![ACTION_SILENCE_1H, ACTION_SILENCE_24H],
            )
        }
        ACTION_RESOLVE => {
            let Some((kind, labels, severity, title)) = alert_facts(state, fingerprint).await? else {
                return Ok(ephemeral("tocsin does not know this alert any more."));
            };
            let body = json!({
                "kind": kind,
                "severity": severity,
                "title": title,
                "text": format!("Resolved from Slack by {user_name}"),
                "labels": labels,
                "fingerprint": fingerprint,
                "status": "resolved",
            });
            let event = crate::event::parse_event(&body, "", "slack", now)
                .map_err(|e| ApiError::bad_request("invalid_event", e.field, e.message))?;
            state.ingest.submit(vec![event]).await?;
            tracing::info!(fingerprint, by = %user_name, "alert resolved from Slack");
            // The resolution's delivery updates the original message (✅ RESOLVED, no buttons).
            return Ok(ephemeral(format!("Resolved by {who}; the alert message will be updated.")));
        }
        _ => return Ok(Json(json!({}))),
    };

    let blocks = amend(&blocks, &note, &remove);
    if let (Some(channel), Some(ts)) = (channel, message_ts) {
        let (channel, ts, text, blocks) = (channel.to_string(), ts.to_string(), text.clone(), json!(blocks));
        tokio::spawn(async move {
            let update = tokio::time::timeout(Duration::from_secs(30), app.update(&channel, &ts, &text, &blocks));
            match update.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot update the clicked Slack message"),
                Err(_) => tracing::warn!("updating the clicked Slack message timed out"),
            }
        });
    }
    Ok(Json(json!({"replace_original": true, "text": text, "blocks": blocks})))
}

async fn slash_command(
    state: &AppState,
    form: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Json<Value>, ApiError> {
    let text = form.get("text").map(String::as_str).unwrap_or("").trim();
    let user = form
        .get("user_name")
        .or_else(|| form.get("user_id"))
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("someone");
    let mut words = text.split_whitespace();
    let command = form.get("command").map(String::as_str).unwrap_or("/tocsin");
    let help = format!(
        "Usage: `{command} status` · `{command} silence <kind-glob> <duration> [comment]` · `{command} search <user>`"
    );
    match words.next() {
        Some("status") => {
            let page = state.ingest.store().firing_alerts(LISTED, None).await?;
            if page.total == 0 {
                return Ok(ephemeral(":white_check_mark: No alerts firing."));
            }
            let mut lines = vec![format!("*{} alert{} firing*", page.total, if page.total == 1 { "" } else { "s" })];
            for a in &page.alerts {
                let mut line = format!(
                    "• {} *{}* (`{}`, since {})",
                    crate::notify::slack_webhook::severity_marker(a.severity),
                    escape(a.title.as_deref().unwrap_or(&a.kind)),
                    escape(&a.kind),
                    a.started_at.format("%Y-%m-%d %H:%M UTC")
                );
                if let Some(by) = &a.acknowledged_by {
                    line.push_str(&format!(" — acknowledged by {}", escape(by)));
                }
                if a.muted_by.is_some() {
                    line.push_str(" — muted");
                }
                lines.push(line);
            }
            if page.total > page.alerts.len() as u64 {
                lines.push(format!("…and {} more", page.total - page.alerts.len() as u64));
            }
            Ok(ephemeral(lines.join("\n")))
        }
        Some("silence") => {
            let (Some(glob), Some(duration)) = (words.next(), words.next()) else {
                return Ok(ephemeral(format!("Usage: `{command} silence <kind-glob> <duration> [comment]`")));
            };
            let comment = words.collect::<Vec<_>>().join(" ");
            let body = json!({"matchers": {"kind": glob}, "duration": duration, "comment": comment});
            let silence = match super::parse_silence(&body, &format!("slack:{user}"), now) {
                Ok(s) => s,
                Err(e) => return Ok(ephemeral(format!("Not silenced: {}", escape(&e.message)))),
            };
            state.ingest.store().insert_silence(&silence).await?;
            refresh_silences(state, now).await?;
            tracing::info!(silence = %silence.id, by = %user, "silence created from Slack");
            Ok(ephemeral(format!(
                ":no_bell: Silenced `{}` until {} (id {})",
                escape(glob),
                silence.ends_at.format("%Y-%m-%d %H:%M UTC"),
                silence.id
            )))
        }
        Some("search") => {
            let Some(who) = words.next() else {
                return Ok(ephemeral(format!("Usage: `{command} search <user>`")));
            };
            let query = EventQuery { user: Some(who.to_string()), limit: LISTED, ..EventQuery::default() };
            let page = state.ingest.store().search_events(&query).await?;
            if page.items.is_empty() {
                return Ok(ephemeral(format!("No events for user {}.", escape(who))));
            }
            let mut lines = vec![format!("*Latest events of {}*", escape(who))];
            for e in &page.items {
                lines.push(format!(
                    "• {} `{}` {}",
                    e.timestamp.format("%Y-%m-%d %H:%M:%S UTC"),
                    escape(&e.kind),
                    escape(e.title.as_deref().unwrap_or(""))
                ));
            }
            Ok(ephemeral(lines.join("\n")))
        }
        _ => Ok(ephemeral(help)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The known-good vector of `shared/reference/slack.md` §4.1 (Slack's own docs and SDK).
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TIMESTAMP: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn known_good_vector() {
        assert_eq!(sign(SECRET, TIMESTAMP, BODY.as_bytes()), SIGNATURE);
        let at = 1531420618;
        assert_eq!(verify(SECRET, TIMESTAMP, BODY.as_bytes(), SIGNATURE, at), Ok(()));
        assert_eq!(verify(SECRET, TIMESTAMP, BODY.as_bytes(), SIGNATURE, at + 300), Ok(()));
        assert_eq!(verify(SECRET, TIMESTAMP, BODY.as_bytes(), SIGNATURE, at + 301), Err(VerifyError::Stale));
        assert_eq!(verify(SECRET, TIMESTAMP, BODY.as_bytes(), SIGNATURE, at - 301), Err(VerifyError::Stale));
        assert_eq!(verify(SECRET, "", BODY.as_bytes(), SIGNATURE, at), Err(VerifyError::Stale));
        let tampered = BODY.replace("roadrunner", "coyote");
        assert_eq!(verify(SECRET, TIMESTAMP, tampered.as_bytes(), SIGNATURE, at), Err(VerifyError::BadSignature));
        assert_eq!(verify("other", TIMESTAMP, BODY.as_bytes(), SIGNATURE, at), Err(VerifyError::BadSignature));
        assert_eq!(verify(SECRET, TIMESTAMP, BODY.as_bytes(), "v0=", at), Err(VerifyError::BadSignature));
    }

    #[test]
    fn exact_globs_match_only_themselves() {
        for value in ["es.index_missing", "a*b", "x?[y]{z,w}!", "back\\slash", "prod-us-east-1"] {
            let m = crate::silence::Matchers::compile(&BTreeMap::from([("kind".to_string(), exact_glob(value))]))
                .unwrap_or_else(|e| panic!("{value}: {e}"));
            assert!(m.matches(value, &BTreeMap::new()), "{value}");
            assert!(!m.matches(&format!("{value}x"), &BTreeMap::new()), "{value}");
        }
        let m = crate::silence::Matchers::compile(&BTreeMap::from([("kind".to_string(), exact_glob("a*"))]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!m.matches("abc", &BTreeMap::new()));
    }

    #[test]
    fn amend_removes_buttons_and_adds_a_note() {
        let blocks = vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": "x"}}),
            crate::notify::slack_app::action_buttons("fp"),
        ];
        let out = amend(&blocks, "note", &[ACTION_ACKNOWLEDGE]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[1]["elements"][0]["text"], "note");
        assert_eq!(out[2]["elements"].as_array().map(Vec::len), Some(3));
        let out = amend(&out, "n2", &[ACTION_SILENCE_1H, ACTION_SILENCE_24H, ACTION_RESOLVE]);
        assert!(out.iter().all(|b| b["type"] != "actions"));
    }
}
