//! `discord`: a Discord channel webhook, one embed per message.
//!
//! Discord refuses a whole message (400, code 50035 `Invalid Form Body`) when any embed limit is
//! exceeded, so every part is clamped here: title 256, description 4096, 25 fields of 256/1024,
//! footer 2048, and 6000 characters for all of them together. Success is 204 (200 with
//! `?wait=true`). A 429 says how long to wait in its JSON body (`retry_after`, float seconds),
//! which is preferred to the whole-second `Retry-After` header. 404 `Unknown Webhook` (10015)
//! and 401 `Invalid Webhook Token` (50027) mean the webhook is gone: permanent.
//!
//! Untrusted text is Markdown-escaped, and `allowed_mentions` is empty so that no `@everyone`
//! or role mention in an event can ping anyone.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::http::{
    context_lines, escape_markdown, more_line, post_json, safe_link, seconds, severity_rgb, title_or_kind, title_tag,
    truncate, Answer, TRUNCATION_MARKER,
};
use super::webhook::{classify_status, retry_after, Secrets};
use super::{Notifier, NotifyError};
use crate::config::Secret;
use crate::message::Message;

pub const MAX_TITLE: usize = 256;
pub const MAX_DESCRIPTION: usize = 4096;
pub const MAX_FIELDS: usize = 25;
pub const MAX_FIELD_NAME: usize = 256;
pub const MAX_FIELD_VALUE: usize = 1024;
pub const MAX_FOOTER: usize = 2048;
pub const MAX_USERNAME: usize = 80;
/// Title, description, field names and values, footer and author, together.
pub const MAX_EMBED_TOTAL: usize = 6000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// `https://discord.com/api/webhooks/{id}/{token}`: the token is the credential.
    pub url: Secret,
    /// Overrides the webhook's name and avatar.
    pub username: Option<String>,
    pub avatar_url: Option<String>,
}

pub struct Discord {
    config: DiscordConfig,
    http: reqwest::Client,
}

impl Discord {
    pub fn new(config: DiscordConfig, http: reqwest::Client) -> Self {
        Discord { config, http }
    }
}

#[async_trait]
impl Notifier for Discord {
    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let secrets = Secrets::new(&self.config.url, None);
        let body = payload(&self.config, message);
        let answer = post_json(&self.http, "discord", self.config.url.expose(), &body, &secrets).await?;
        if answer.status.is_success() {
            return Ok(());
        }
        Err(classify(&answer))
    }
}

/// Discord's JSON errors: `{"message","code"}`, plus `errors` for 50035 and `retry_after` for 429.
fn classify(answer: &Answer) -> NotifyError {
    let status = answer.status.as_u16();
    let json = answer.json().unwrap_or(Value::Null);
    let detail = match (json["message"].as_str(), json["code"].as_u64()) {
        (Some(text), Some(code)) if code != 0 => {
            let errors = if json["errors"].is_object() { format!(": {}", json["errors"]) } else { String::new() };
            format!("{text} ({code}){errors}")
        }
        (Some(text), _) => text.to_string(),
        _ => answer.summary(),
    };
    let detail = truncate(&detail, 300, "…");
    let message = if detail.is_empty() {
        format!("discord answered {status}")
    } else {
        format!("discord answered {status} {detail}")
    };
    if status == 429 {
        let wait = seconds(&json["retry_after"]).unwrap_or_else(|| retry_after(&answer.headers));
        return NotifyError::Retryable { message, retry_after: Some(wait) };
    }
    classify_status(answer.status, &answer.headers, message)
}

fn len(s: &str) -> usize {
    s.chars().count()
}

/// The webhook body: one embed, within all of Discord's limits.
pub fn payload(config: &DiscordConfig, message: &Message) -> Value {
    let title =
        truncate(&format!("{} {}", title_tag(message), escape_markdown(&title_or_kind(message))), MAX_TITLE, "…");
    let mut description = truncate(&escape_markdown(&message.text), MAX_DESCRIPTION, TRUNCATION_MARKER);
    let mut fields: Vec<(String, String)> = message
        .fields
        .iter()
        .take(MAX_FIELDS)
        .map(|f| {
            // Discord refuses an empty name or value; a zero-width space stands in.
            let name = truncate(&escape_markdown(&f.name), MAX_FIELD_NAME, "…");
            let value = truncate(&escape_markdown(&f.value), MAX_FIELD_VALUE, TRUNCATION_MARKER);
            (non_empty(name), non_empty(value))
        })
        .collect();
    let footer = |shown: usize| {
        let mut notes: Vec<String> = context_lines(message)
            .into_iter()
            .filter(|(k, _)| *k != "time")
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        notes.extend(more_line(message));
        if message.fields.len() > shown {
            notes.push(format!("…and {} more fields", message.fields.len() - shown));
        }
        truncate(&notes.join(" · "), 500, "…")
    };
    loop {
        let total = len(&title)
            + len(&description)
            + fields.iter().map(|(n, v)| len(n) + len(v)).sum::<usize>()
            + len(&footer(fields.len()));
        if total <= MAX_EMBED_TOTAL {
            break;
        }
        let excess = total - MAX_EMBED_TOTAL;
        if len(&description) > 1000 {
            let keep = len(&description).saturating_sub(excess).max(1000);
            description = truncate(&description, keep, TRUNCATION_MARKER);
        } else if fields.pop().is_none() {
            description = truncate(&description, len(&description).saturating_sub(excess), TRUNCATION_MARKER);
            break;
        }
    }

    let mut embed = Map::new();
    embed.insert("title".into(), json!(title));
    if !description.is_empty() {
        embed.insert("description".into(), json!(description));
    }
    if let Some(link) = message.link.as_deref().and_then(safe_link).filter(|l| url::Url::parse(l).is_ok()) {
        embed.insert("url".into(), json!(link));
    }
    embed.insert("color".into(), json!(severity_rgb(message)));
    if !fields.is_empty() {
        let fields: Vec<Value> =
            fields.iter().map(|(name, value)| json!({"name": name, "value": value, "inline": true})).collect();
        embed.insert("fields".into(), json!(fields));
    }
    let footer = footer(fields.len());
    if !footer.is_empty() {
        embed.insert("footer".into(), json!({"text": footer}));
    }
    if let Some(latest) = message.events.iter().map(|e| e.timestamp).max() {
        embed.insert("timestamp".into(), json!(latest.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)));
    }

    let mut body = Map::new();
    body.insert("embeds".into(), json!([embed]));
    body.insert("allowed_mentions".into(), json!({"parse": []}));
    if let Some(username) = &config.username {
        body.insert("username".into(), json!(truncate(username, MAX_USERNAME, "")));
    }
    if let Some(avatar) = &config.avatar_url {
        body.insert("avatar_url".into(), json!(avatar));
    }
    Value::Object(body)
}

fn non_empty(s: String) -> String {
    if s.trim().is_empty() {
        "\u{200b}".to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::message::{Field, MessageStatus};
    use crate::notify::http::testing::{client, message, refused_url};
    use crate::testkit::fake_chat::{validate_discord, FakeChat, Fault, Target};

    fn config(url: &str) -> DiscordConfig {
        DiscordConfig { url: Secret::new(url), username: None, avatar_url: None }
    }

    #[test]
    fn renders_one_embed_and_no_mentions() {
        let p = payload(&config("x"), &message());
        assert!(validate_discord(&p).is_ok());
        let e = &p["embeds"][0];
        assert_eq!(e["title"], "[WARNING] Disk almost full");
        assert_eq!(e["description"], "/var is at 97%");
        assert_eq!(e["fields"][0], json!({"name": "host", "value": "db-1", "inline": true}));
        assert_eq!(e["color"], 0xECB22E);
        assert_eq!(e["url"], "https://grafana.example/d/disk?var=a&from=now-1h");
        assert_eq!(e["timestamp"], "2026-11-21T16:00:00.000Z");
        assert_eq!(e["footer"]["text"], "kind: disk.full · source: checks");
        assert_eq!(p["allowed_mentions"], json!({"parse": []}));
        assert!(p.get("content").is_none() && p.get("username").is_none());
        let mut resolved = message();
        resolved.status = MessageStatus::Resolved;
        assert_eq!(payload(&config("x"), &resolved)["embeds"][0]["color"], 0x2EB67D);
    }

    #[test]
    fn escapes_markdown() {
        let mut m = message();
        m.title = "**bold** [x](https://evil)".into();
        m.text = "`code` @everyone".into();
        let p = payload(&config("x"), &m);
        assert_eq!(p["embeds"][0]["title"], r"[WARNING] \*\*bold\*\* \[x\]\(https://evil\)");
        assert_eq!(p["embeds"][0]["description"], r"\`code\` @everyone");
    }

    #[test]
    fn clamps_every_limit() {
        let mut m = message();
        m.title = "T".repeat(400);
        m.text = "d".repeat(10_000);
        m.fields = (0..40).map(|i| Field { name: format!("n{i}").repeat(100), value: "v".repeat(2000) }).collect();
        m.fields.push(Field { name: String::new(), value: String::new() });
        let p = payload(&config("x"), &m);
        assert!(validate_discord(&p).is_ok(), "{p}");
        let e = &p["embeds"][0];
        assert_eq!(len(e["title"].as_str().unwrap_or("")), MAX_TITLE);
        assert!(e["description"].as_str().unwrap_or("").ends_with(TRUNCATION_MARKER));
        let fields = e["fields"].as_array().map(Vec::len).unwrap_or(0);
        assert!(fields < MAX_FIELDS);
        let footer = e["footer"]["text"].as_str().unwrap_or("");
        assert!(footer.contains(&format!("…and {} more fields", 41 - fields)), "{footer}");
        assert!(e["fields"][0]["value"].as_str().unwrap_or("").ends_with(TRUNCATION_MARKER));
    }

    #[tokio::test]
    async fn classifies_answers_from_the_fake() {
        let fake = FakeChat::start(Target::Discord).await;
        let n = Discord::new(config(&fake.url()), client());
        let mut big = message();
        big.text = "z".repeat(9000);
        n.send(&big).await.expect("204");
        assert_eq!(fake.requests()[0].status, 204);

        fake.set_faults([Fault::RateLimited(0.64), Fault::ServerError, Fault::Drop, Fault::Revoked]);
        let e = n.send(&message()).await.expect_err("429");
        assert_eq!(e.retry_after(), Some(Duration::from_millis(640)), "the JSON float, not the header's 1 s");
        assert_eq!(e.to_string(), "discord answered 429 You are being rate limited.");
        assert!(n.send(&message()).await.expect_err("500").is_retryable());
        assert!(n.send(&message()).await.expect_err("dropped").is_retryable());
        let e = n.send(&message()).await.expect_err("404");
        assert_eq!(e, NotifyError::permanent("discord answered 404 Unknown Webhook (10015)"));

        let forged = Discord::new(config(&fake.url().replace(&fake.secret(), "forged")), client());
        let e = forged.send(&message()).await.expect_err("401");
        assert_eq!(e, NotifyError::permanent("discord answered 401 Invalid Webhook Token (50027)"));

        // A payload that bypasses the clamping gets Discord's form error, permanently.
        let secrets = Secrets::new(&Secret::new(fake.url()), None);
        let raw = json!({"embeds": [{"title": "t".repeat(300)}]});
        let answer = post_json(&client(), "discord", &fake.url(), &raw, &secrets).await.expect("an answer");
        let e = classify(&answer);
        assert!(!e.is_retryable());
        assert!(e.to_string().starts_with("discord answered 400 Invalid Form Body (50035): {\"embeds\""), "{e}");
        assert_eq!(fake.accepted().len(), 1);
    }

    #[tokio::test]
    async fn errors_never_show_the_token() {
        let fake = FakeChat::start(Target::Discord).await;
        let token = fake.secret();
        fake.set_faults([Fault::Revoked, Fault::Drop]);
        let n = Discord::new(config(&fake.url()), client());
        let mut errors = vec![n.send(&message()).await.expect_err("404"), n.send(&message()).await.expect_err("drop")];
        let refused = refused_url(&format!("/api/webhooks/123/{token}"));
        errors.push(Discord::new(config(&refused), client()).send(&message()).await.expect_err("refused"));
        errors.push(
            Discord::new(config(&format!("not a url/{token}")), client()).send(&message()).await.expect_err("bad"),
        );
        for e in errors {
            for shown in [e.to_string(), format!("{e:?}")] {
                assert!(!shown.contains(&token), "leaked in {shown}");
            }
        }
    }
}
