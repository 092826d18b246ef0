//! `pagerduty`: PagerDuty Events API v2 (`POST /v2/enqueue`).
//!
//! A firing alert or a one-off event is a `trigger`, a resolution a `resolve`; the `dedup_key`
//! is the message's `group_key`, so the resolution closes the incident the trigger opened and
//! repeats of one alert update it rather than open new ones. Success is 202
//! `{"status":"success",…}`. A 400 `invalid event` is permanent (its `errors` are shown), 429
//! and 5xx are retried (429 honours `Retry-After` when PagerDuty sends one, else 1 s).
//! The routing (integration) key is a secret: it is in the body, and never in an error.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::http::{context_lines, more_line, post_json, safe_link, title_or_kind, title_tag, truncate, Answer};
use super::webhook::{classify_status, Secrets};
use super::{Notifier, NotifyError};
use crate::config::Secret;
use crate::event::Severity;
use crate::message::{Message, MessageStatus};

pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";
pub const MAX_SUMMARY_CHARS: usize = 1024;
pub const MAX_DEDUP_KEY_CHARS: usize = 255;
pub const MAX_SOURCE_CHARS: usize = 255;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// The Events API v2 integration key of a service (32 characters).
    pub routing_key: Secret,
    /// The endpoint; `https://events.eu.pagerduty.com/v2/enqueue` for the EU service region.
    #[serde(default = "default_url")]
    pub url: String,
    /// `payload.source` when the message's events do not name one.
    pub source: Option<String>,
}

fn default_url() -> String {
    DEFAULT_URL.to_string()
}

pub struct PagerDuty {
    config: PagerDutyConfig,
    http: reqwest::Client,
}

impl PagerDuty {
    pub fn new(config: PagerDutyConfig, http: reqwest::Client) -> Self {
        PagerDuty { config, http }
    }
}

#[async_trait]
impl Notifier for PagerDuty {
    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let url = Secret::new(self.config.url.clone());
        let secrets = Secrets::new(&url, Some(&self.config.routing_key));
        let body = payload(&self.config, message);
        let answer = post_json(&self.http, "pagerduty", &self.config.url, &body, &secrets).await?;
        if answer.status.is_success() {
            return Ok(());
        }
        Err(classify_status(answer.status, &answer.headers, error_message(&answer)))
    }
}

/// `{"status","message","errors":[…]}`, the errors joined.
fn error_message(answer: &Answer) -> String {
    let status = answer.status.as_u16();
    let detail = match answer.json() {
        Some(v) if v["message"].is_string() => {
            let mut detail = v["message"].as_str().unwrap_or("").to_string();
            let errors: Vec<&str> = v["errors"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            if !errors.is_empty() {
                detail.push_str(": ");
                detail.push_str(&errors.join("; "));
            }
            detail
        }
        _ => answer.summary(),
    };
    let detail = truncate(&detail, 300, "…");
    if detail.is_empty() {
        format!("pagerduty answered {status}")
    } else {
        format!("pagerduty answered {status} {detail}")
    }
}

pub fn severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Error => "error",
        Severity::Critical => "critical",
    }
}

/// The group key, or its SHA-256 when longer than PagerDuty allows (stable either way).
pub fn dedup_key(group_key: &str) -> String {
    if group_key.chars().count() <= MAX_DEDUP_KEY_CHARS {
        group_key.to_string()
    } else {
        format!("sha256:{}", hex::encode(Sha256::digest(group_key.as_bytes())))
    }
}

/// The event body.
pub fn payload(config: &PagerDutyConfig, message: &Message) -> Value {
    let action = match message.status {
        MessageStatus::Firing | MessageStatus::Event => "trigger",
        MessageStatus::Resolved => "resolve",
    };
    let mut body = json!({
        "routing_key": config.routing_key.expose(),
        "event_action": action,
        "dedup_key": dedup_key(&message.group_key),
        "client": "tocsin",
    });
    if message.status == MessageStatus::Resolved {
        // A resolve needs only the key; PagerDuty ignores any payload.
        return body;
    }
    let summary = truncate(&format!("{} {}", title_tag(message), title_or_kind(message)), MAX_SUMMARY_CHARS, "…");
    let source = message
        .events
        .first()
        .map(|e| e.source.clone())
        .filter(|s| !s.is_empty())
        .or_else(|| config.source.clone())
        .unwrap_or_else(|| "tocsin".to_string());
    let mut details = Map::new();
    if !message.text.trim().is_empty() {
        details.insert("text".into(), json!(truncate(&message.text, 4000, super::http::TRUNCATION_MARKER)));
    }
    for field in message.fields.iter().take(50) {
        // The message's own text and labels win over a field of the same name.
        details.entry(truncate(&field.name, 200, "…")).or_insert(json!(truncate(&field.value, 1000, "…")));
    }
    if !message.group_labels.is_empty() {
        details.insert("group_labels".into(), json!(message.group_labels));
    }
    for (key, value) in context_lines(message) {
        details.entry(key).or_insert(json!(value));
    }
    if let Some(more) = more_line(message) {
        details.insert("more".into(), json!(more));
    }
    let mut inner = json!({
        "summary": summary,
        "source": truncate(&source, MAX_SOURCE_CHARS, ""),
        "severity": severity(message.severity),
        "custom_details": details,
    });
    if let Some(latest) = message.events.iter().map(|e| e.timestamp).max() {
        inner["timestamp"] = json!(latest.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    if let Some(kind) = message.events.first().map(|e| e.kind.clone()) {
        inner["class"] = json!(kind);
    }
    body["payload"] = inner;
    if let Some(link) = message.link.as_deref().and_then(safe_link) {
        body["links"] = json!([{"href": link, "text": "Open"}]);
    }
    body
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::notify::http::testing::{client, message, refused_port};
    use crate::testkit::fake_chat::{validate_pagerduty, FakeChat, Fault, Target};

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn config(url: &str, key: &str) -> PagerDutyConfig {
        PagerDutyConfig { routing_key: Secret::new(key), url: url.to_string(), source: None }
    }

    #[test]
    fn trigger_and_resolve() {
        let p = payload(&config(DEFAULT_URL, KEY), &message());
        assert_eq!(validate_pagerduty(&p, KEY), Ok(()));
        assert_eq!(p["event_action"], "trigger");
        assert_eq!(p["dedup_key"], "route-1/host=db-1");
        assert_eq!(p["payload"]["summary"], "[WARNING] Disk almost full");
        assert_eq!(p["payload"]["source"], "checks");
        assert_eq!(p["payload"]["severity"], "warning");
        assert_eq!(p["payload"]["timestamp"], "2026-11-21T16:00:00.000Z");
        assert_eq!(p["payload"]["class"], "disk.full");
        assert_eq!(p["payload"]["custom_details"]["host"], "db-1");
        assert_eq!(p["payload"]["custom_details"]["text"], "/var is at 97%");
        assert_eq!(p["links"], json!([{"href": "https://grafana.example/d/disk?var=a&from=now-1h", "text": "Open"}]));

        let mut m = message();
        m.status = MessageStatus::Event;
        m.severity = Severity::Critical;
        let p = payload(&config(DEFAULT_URL, KEY), &m);
        assert_eq!(
            (p["event_action"].clone(), p["payload"]["severity"].clone()),
            (json!("trigger"), json!("critical"))
        );

        m.status = MessageStatus::Resolved;
        let p = payload(&config(DEFAULT_URL, KEY), &m);
        assert_eq!(validate_pagerduty(&p, KEY), Ok(()));
        assert_eq!(p["event_action"], "resolve");
        assert_eq!(p["dedup_key"], "route-1/host=db-1");
        assert!(p.get("payload").is_none());
    }

    #[test]
    fn clamps_summary_and_dedup_key() {
        let mut m = message();
        m.title = "s".repeat(2000);
        m.group_key = "g".repeat(300);
        let p = payload(&config(DEFAULT_URL, KEY), &m);
        assert_eq!(validate_pagerduty(&p, KEY), Ok(()));
        let summary = p["payload"]["summary"].as_str().unwrap_or("");
        assert_eq!(summary.chars().count(), MAX_SUMMARY_CHARS);
        assert!(summary.ends_with('…'));
        let key = p["dedup_key"].as_str().unwrap_or("");
        assert!(key.starts_with("sha256:") && key.len() <= MAX_DEDUP_KEY_CHARS);
        assert_eq!(key, dedup_key(&m.group_key), "stable");
    }

    #[tokio::test]
    async fn classifies_answers_from_the_fake() {
        let fake = FakeChat::start(Target::PagerDuty).await;
        let n = PagerDuty::new(config(&fake.url(), &fake.secret()), client());
        n.send(&message()).await.expect("202");
        let mut resolved = message();
        resolved.status = MessageStatus::Resolved;
        n.send(&resolved).await.expect("202");
        let accepted = fake.accepted();
        assert_eq!(accepted.len(), 2);
        assert_eq!(
            (accepted[1]["event_action"].clone(), accepted[1]["dedup_key"].clone()),
            (json!("resolve"), json!("route-1/host=db-1"))
        );
        assert_eq!(fake.requests()[0].status, 202);

        fake.set_faults([Fault::RateLimited(4.0), Fault::ServerError, Fault::Drop, Fault::Revoked]);
        let e = n.send(&message()).await.expect_err("429");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(4)));
        assert!(e.to_string().starts_with("pagerduty answered 429 Requests for this service"), "{e}");
        assert!(n.send(&message()).await.expect_err("500").is_retryable());
        assert!(n.send(&message()).await.expect_err("dropped").is_retryable());
        let e = n.send(&message()).await.expect_err("400");
        assert_eq!(e, NotifyError::permanent("pagerduty answered 400 Event object is invalid: Invalid routing key"));

        let short = PagerDuty::new(config(&fake.url(), "short"), client());
        let e = short.send(&message()).await.expect_err("400");
        assert!(!e.is_retryable() && e.to_string().contains("Length of 'routing_key' is incorrect"), "{e}");
    }

    #[tokio::test]
    async fn errors_never_show_the_routing_key() {
        let fake = FakeChat::start(Target::PagerDuty).await;
        let key = fake.secret();
        fake.set_faults([Fault::Revoked, Fault::Drop, Fault::ServerError]);
        let n = PagerDuty::new(config(&fake.url(), &key), client());
        let mut errors = Vec::new();
        for _ in 0..3 {
            errors.push(n.send(&message()).await.expect_err("fails"));
        }
        let refused = format!("http://127.0.0.1:{}/v2/enqueue", refused_port());
        errors.push(PagerDuty::new(config(&refused, &key), client()).send(&message()).await.expect_err("refused"));
        for e in errors {
            for shown in [e.to_string(), format!("{e:?}")] {
                assert!(!shown.contains(&key), "leaked in {shown}");
            }
        }
    }
}
