//! `mattermost`: a Mattermost incoming webhook (Slack-compatible: `text`, `attachments`,
//! `username`, `icon_url`, `channel`), in Mattermost's Markdown.
//!
//! The title and body go in `text`, cut to Mattermost's 16,383-character post limit with a
//! visible marker (Mattermost would otherwise split a long post into several, which breaks
//! one-alert-one-post); the severity colour, fields and footnotes go in one attachment.
//! Success is 200 `ok`; errors are JSON app errors (`{"id","message","status_code"}`): a 400
//! (invalid or deleted hook, bad payload) is permanent, 429 and 5xx are retried.
//!
//! Untrusted text is Markdown-escaped and its `@` mentions are defused with a zero-width space,
//! since Mattermost has no `allowed_mentions`: an event must not be able to ping `@channel`.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::http::{
    context_lines, escape_markdown, more_line, post_json, safe_link, severity_rgb, title_or_kind, title_tag, truncate,
    Answer, TRUNCATION_MARKER,
};
use super::webhook::{classify_status, Secrets};
use super::{Notifier, NotifyError};
use crate::config::Secret;
use crate::message::Message;

/// Mattermost's `MaxPostSize`, in characters.
pub const MAX_TEXT_CHARS: usize = 16_383;
pub const MAX_TITLE_CHARS: usize = 500;
pub const MAX_FIELDS: usize = 50;
pub const MAX_FIELD_CHARS: usize = 2000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MattermostConfig {
    /// `https://mattermost.example.com/hooks/{id}`: the id is the credential.
    pub url: Secret,
    /// Honoured when the server allows integrations to override them.
    pub username: Option<String>,
    pub icon_url: Option<String>,
    /// A channel name (`town-square`) or `@user`; a route's `channel` wins over it.
    pub channel: Option<String>,
}

pub struct Mattermost {
    config: MattermostConfig,
    http: reqwest::Client,
}

impl Mattermost {
    pub fn new(config: MattermostConfig, http: reqwest::Client) -> Self {
        Mattermost { config, http }
    }
}

#[async_trait]
impl Notifier for Mattermost {
    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let secrets = Secrets::new(&self.config.url, None);
        let body = payload(&self.config, message);
        let answer = post_json(&self.http, "mattermost", self.config.url.expose(), &body, &secrets).await?;
        if answer.status.is_success() {
            return Ok(());
        }
        Err(classify(&answer))
    }
}

/// As every webhook, except that 501 is Mattermost saying incoming webhooks are disabled on
/// the server (`web.incoming_webhook.disabled.app_error`): retrying will not turn them on.
fn classify(answer: &Answer) -> NotifyError {
    if answer.status == reqwest::StatusCode::NOT_IMPLEMENTED {
        return NotifyError::permanent(error_message(answer));
    }
    classify_status(answer.status, &answer.headers, error_message(answer))
}

fn error_message(answer: &Answer) -> String {
    let status = answer.status.as_u16();
    let detail = match answer.json() {
        Some(v) if v["message"].is_string() => {
            format!("{} ({})", v["message"].as_str().unwrap_or(""), v["id"].as_str().unwrap_or(""))
        }
        _ => answer.summary(),
    };
    let detail = truncate(&detail, 300, "…");
    if detail.is_empty() {
        format!("mattermost answered {status}")
    } else {
        format!("mattermost answered {status} {detail}")
    }
}

/// Markdown escaping plus defused mentions (`@channel`, `@all`, `@here`, `@user`).
pub fn escape(text: &str) -> String {
    escape_markdown(text).replace('@', "@\u{200b}")
}

/// The webhook body.
pub fn payload(config: &MattermostConfig, message: &Message) -> Value {
    let title = truncate(&escape(&title_or_kind(message)), MAX_TITLE_CHARS, "…");
    let mut text = format!("**{} {title}**", title_tag(message));
    if !message.text.trim().is_empty() {
        text.push('\n');
        text.push_str(&escape(&message.text));
    }
    let text = truncate(&text, MAX_TEXT_CHARS, TRUNCATION_MARKER);

    let mut attachment = Map::new();
    attachment.insert(
        "fallback".into(),
        json!(truncate(&format!("{} {}", title_tag(message), title_or_kind(message)), 500, "…")),
    );
    attachment.insert("color".into(), json!(format!("#{:06X}", severity_rgb(message))));
    let fields: Vec<Value> = message
        .fields
        .iter()
        .take(MAX_FIELDS)
        .map(|f| {
            json!({
                // Field titles are plain text in Mattermost: escaping would show backslashes.
                "title": truncate(&f.name, 200, "…"),
                "value": truncate(&escape(&f.value), MAX_FIELD_CHARS, TRUNCATION_MARKER),
                "short": f.value.chars().count() <= 40,
            })
        })
        .collect();
    if !fields.is_empty() {
        attachment.insert("fields".into(), json!(fields));
    }
    let mut notes: Vec<String> = context_lines(message).into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
    notes.extend(more_line(message));
    if message.fields.len() > MAX_FIELDS {
        notes.push(format!("…and {} more fields", message.fields.len() - MAX_FIELDS));
    }
    // The footer is plain text in Mattermost; no escaping, but it is kept short.
    if !notes.is_empty() {
        attachment.insert("footer".into(), json!(truncate(&notes.join(" · "), 1000, "…")));
    }
    if let Some(link) = message.link.as_deref().and_then(safe_link) {
        attachment.insert("title".into(), json!("Open"));
        attachment.insert("title_link".into(), json!(link));
    }

    let mut body = Map::new();
    body.insert("text".into(), json!(text));
    body.insert("attachments".into(), json!([attachment]));
    let channel = message.channel.as_ref().or(config.channel.as_ref());
    for (key, value) in
        [("channel", channel), ("username", config.username.as_ref()), ("icon_url", config.icon_url.as_ref())]
    {
        if let Some(value) = value {
            body.insert(key.into(), json!(value));
        }
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::message::Field;
    use crate::notify::http::testing::{client, message, refused_url};
    use crate::testkit::fake_chat::{validate_mattermost, FakeChat, Fault, Target};

    fn config(url: &str) -> MattermostConfig {
        MattermostConfig { url: Secret::new(url), username: None, icon_url: None, channel: None }
    }

    #[test]
    fn renders_text_and_one_attachment() {
        let p = payload(&config("x"), &message());
        assert_eq!(validate_mattermost(&p), Ok(()));
        assert_eq!(p["text"], "**[WARNING] Disk almost full**\n/var is at 97%");
        let a = &p["attachments"][0];
        assert_eq!(a["color"], "#ECB22E");
        assert_eq!(a["fields"][0], json!({"title": "host", "value": "db-1", "short": true}));
        assert_eq!(a["title_link"], "https://grafana.example/d/disk?var=a&from=now-1h");
        assert!(a["footer"].as_str().unwrap_or("").starts_with("kind: disk.full · source: checks"));
        for key in ["channel", "username", "icon_url"] {
            assert!(p.get(key).is_none(), "{key} only when set");
        }
        let mut c = config("x");
        c.channel = Some("town-square".into());
        c.username = Some("tocsin".into());
        let mut m = message();
        assert_eq!(payload(&c, &m)["channel"], "town-square");
        m.channel = Some("ops".into());
        assert_eq!(
            (payload(&c, &m)["channel"].clone(), payload(&c, &m)["username"].clone()),
            (json!("ops"), json!("tocsin"))
        );
    }

    #[test]
    fn escapes_markdown_and_defuses_mentions() {
        let mut m = message();
        m.text = "@channel **now** [x](https://evil)".into();
        let p = payload(&config("x"), &m);
        let text = p["text"].as_str().unwrap_or("");
        assert!(text.ends_with("@\u{200b}channel \\*\\*now\\*\\* \\[x\\]\\(https://evil\\)"), "{text}");
        assert!(!text.contains("@channel"));
    }

    #[test]
    fn truncates_to_the_post_limit() {
        let mut m = message();
        m.text = "w".repeat(40_000);
        m.fields = (0..60).map(|i| Field { name: format!("f{i}"), value: "v".repeat(3000) }).collect();
        let p = payload(&config("x"), &m);
        assert_eq!(validate_mattermost(&p), Ok(()));
        let text = p["text"].as_str().unwrap_or("");
        assert_eq!(text.chars().count(), MAX_TEXT_CHARS);
        assert!(text.ends_with(TRUNCATION_MARKER));
        assert_eq!(p["attachments"][0]["fields"].as_array().map(Vec::len), Some(MAX_FIELDS));
        assert!(p["attachments"][0]["footer"].as_str().unwrap_or("").contains("…and 10 more fields"));
    }

    #[tokio::test]
    async fn classifies_answers_from_the_fake() {
        let fake = FakeChat::start(Target::Mattermost).await;
        let n = Mattermost::new(config(&fake.url()), client());
        let mut big = message();
        big.text = "q".repeat(20_000);
        n.send(&big).await.expect("200 ok");
        assert_eq!(fake.requests()[0].status, 200);

        fake.set_faults([Fault::RateLimited(3.0), Fault::ServerError, Fault::Drop, Fault::Revoked]);
        let e = n.send(&message()).await.expect_err("429");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(e.to_string(), "mattermost answered 429 limit exceeded");
        assert!(n.send(&message()).await.expect_err("500").is_retryable());
        assert!(n.send(&message()).await.expect_err("dropped").is_retryable());
        let e = n.send(&message()).await.expect_err("400");
        assert_eq!(
            e,
            NotifyError::permanent("mattermost answered 400 Invalid webhook. (web.incoming_webhook.invalid.app_error)")
        );
        let wrong = Mattermost::new(config(&format!("{}/hooks/nosuchhook0000000000000000", fake.base_url())), client());
        assert!(!wrong.send(&message()).await.expect_err("400").is_retryable());
        assert_eq!(fake.accepted().len(), 1);
    }

    #[test]
    fn disabled_webhooks_are_permanent() {
        let answer = Answer {
            status: reqwest::StatusCode::NOT_IMPLEMENTED,
            headers: Default::default(),
            body: r#"{"id":"web.incoming_webhook.disabled.app_error","message":"Incoming webhooks have been disabled by the system admin.","status_code":501}"#.into(),
        };
        assert_eq!(
            classify(&answer),
            NotifyError::permanent(
                "mattermost answered 501 Incoming webhooks have been disabled by the system admin. \
                 (web.incoming_webhook.disabled.app_error)"
            )
        );
    }

    #[tokio::test]
    async fn errors_never_show_the_hook_id() {
        let fake = FakeChat::start(Target::Mattermost).await;
        let id = fake.secret();
        fake.set_faults([Fault::Revoked, Fault::Drop]);
        let n = Mattermost::new(config(&fake.url()), client());
        let mut errors = vec![n.send(&message()).await.expect_err("400"), n.send(&message()).await.expect_err("drop")];
        let refused = refused_url(&format!("/hooks/{id}"));
        errors.push(Mattermost::new(config(&refused), client()).send(&message()).await.expect_err("refused"));
        for e in errors {
            for shown in [e.to_string(), format!("{e:?}")] {
                assert!(!shown.contains(&id), "leaked in {shown}");
            }
        }
    }
}
