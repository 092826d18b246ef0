//! `teams`: Microsoft Teams through a Workflows (Power Automate) webhook — "Post to a channel
//! when a webhook request is received" — which takes a `message` carrying an Adaptive Card.
//!
//! The flow answers 202 Accepted once it has queued the run; 429 (with `Retry-After`) and 5xx
//! are worth retrying, every other status is final (401 bad signature, 404 deleted flow, 413
//! too large). Teams refuses messages over ~28 KB, so the card is shrunk to fit: the text is
//! cut first, with a visible marker, then facts are dropped.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{
    context_lines, more_line, post_json, safe_link, title_or_kind, title_tag, truncate, Answer, TRUNCATION_MARKER,
};
use super::webhook::{classify_status, Secrets};
use super::{Notifier, NotifyError};
use crate::config::Secret;
use crate::event::Severity;
use crate::message::{Message, MessageStatus};

/// Teams' message size limit is about 28 KB; a little is kept back for the flow's own wrapping.
pub const MAX_PAYLOAD_BYTES: usize = 27 * 1024;
pub const MAX_TITLE_CHARS: usize = 500;
pub const MAX_TEXT_CHARS: usize = 20_000;
pub const MAX_FACTS: usize = 50;
pub const MAX_FACT_CHARS: usize = 1000;
pub const CARD_VERSION: &str = "1.4";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsConfig {
    /// The workflow's HTTP POST URL; its `sig` parameter is the credential.
    pub url: Secret,
}

pub struct Teams {
    config: TeamsConfig,
    http: reqwest::Client,
}

impl Teams {
    pub fn new(config: TeamsConfig, http: reqwest::Client) -> Self {
        Teams { config, http }
    }
}

#[async_trait]
impl Notifier for Teams {
    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let secrets = Secrets::new(&self.config.url, None);
        let answer = post_json(&self.http, "teams", self.config.url.expose(), &payload(message), &secrets).await?;
        if answer.status.is_success() {
            return Ok(());
        }
        Err(classify_status(answer.status, &answer.headers, error_message(&answer)))
    }
}

/// Power Automate's errors are `{"error":{"code","message"}}`.
fn error_message(answer: &Answer) -> String {
    let status = answer.status.as_u16();
    let detail = match answer.json() {
        Some(v) if v["error"]["code"].is_string() => {
            format!("{}: {}", v["error"]["code"].as_str().unwrap_or(""), v["error"]["message"].as_str().unwrap_or(""))
        }
        _ => answer.summary(),
    };
    let detail = truncate(detail.trim(), 300, "…");
    if detail.is_empty() {
        format!("teams answered {status}")
    } else {
        format!("teams answered {status} {detail}")
    }
}

fn title_color(message: &Message) -> &'static str {
    match (message.status, message.severity) {
        (MessageStatus::Resolved, _) => "Good",
        (_, Severity::Info) => "Accent",
        (_, Severity::Warning) => "Warning",
        (_, Severity::Error | Severity::Critical) => "Attention",
    }
}

/// TextBlocks are Markdown: the characters that make emphasis, code or links are
/// backslash-escaped so untrusted text cannot forge a link, and each line break is doubled
/// because a single one is not a break in Markdown.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '*' | '_' | '[' | ']' | '`' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\n\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// The request body: one Adaptive Card 1.4, at most [`MAX_PAYLOAD_BYTES`] long.
pub fn payload(message: &Message) -> Value {
    let mut text_room = MAX_TEXT_CHARS;
    let mut facts = MAX_FACTS.min(message.fields.len());
    loop {
        let body = envelope(card(message, text_room, facts));
        let size = body.to_string().len();
        if size <= MAX_PAYLOAD_BYTES {
            return body;
        }
        let excess = size - MAX_PAYLOAD_BYTES;
        let text_len = message.text.chars().count().min(text_room);
        if text_len > 200 {
            // Every character is at least one byte of JSON, so cutting `excess` of them (plus
            // room for the marker) is always enough for the text's share.
            text_room = text_len.saturating_sub(excess + TRUNCATION_MARKER.len()).max(200);
        } else if facts > 0 {
            facts /= 2;
        } else {
            // Only the title and footnotes are left and still too big: cut the title hard.
            return envelope(card(&Message { title: truncate(&message.title, 100, "…"), ..message.clone() }, 200, 0));
        }
    }
}

fn envelope(card: Value) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

fn card(message: &Message, text_room: usize, facts: usize) -> Value {
    let title = format!("{} {}", title_tag(message), escape(&truncate(&title_or_kind(message), MAX_TITLE_CHARS, "…")));
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": title,
        "weight": "Bolder",
        "size": "Medium",
        "color": title_color(message),
        "wrap": true,
    })];
    if !message.text.trim().is_empty() {
        body.push(
            json!({"type": "TextBlock", "text": escape(&truncate(&message.text, text_room, TRUNCATION_MARKER)), "wrap": true}),
        );
    }
    let shown = facts.min(message.fields.len());
    if shown > 0 {
        let facts: Vec<Value> = message.fields[..shown]
            .iter()
            .map(|f| json!({"title": escape(&truncate(&f.name, 200, "…")), "value": escape(&truncate(&f.value, MAX_FACT_CHARS, TRUNCATION_MARKER))}))
            .collect();
        body.push(json!({"type": "FactSet", "facts": facts}));
    }
    let mut notes: Vec<String> = context_lines(message).into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
    notes.extend(more_line(message));
    if message.fields.len() > shown {
        notes.push(format!("…and {} more fields", message.fields.len() - shown));
    }
    if !notes.is_empty() {
        let notes = escape(&truncate(&notes.join(" · "), 1000, "…"));
        body.push(json!({"type": "TextBlock", "text": notes, "isSubtle": true, "size": "Small", "wrap": true}));
    }
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": body,
    });
    if let Some(link) = message.link.as_deref().and_then(safe_link) {
        card["actions"] = json!([{"type": "Action.OpenUrl", "title": "Open", "url": link}]);
    }
    card
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::message::Field;
    use crate::notify::http::testing::{client, message, refused_url};
    use crate::testkit::fake_chat::{validate_teams, FakeChat, Fault, Target, TEAMS_MAX_BYTES};

    #[test]
    fn renders_an_adaptive_card() {
        let p = payload(&message());
        assert_eq!(validate_teams(&p), Ok(()));
        let card = &p["attachments"][0]["content"];
        assert_eq!(card["version"], "1.4");
        assert_eq!(card["body"][0]["text"], "[WARNING] Disk almost full");
        assert_eq!(card["body"][0]["color"], "Warning");
        assert_eq!(card["body"][1]["text"], "/var is at 97%");
        assert_eq!(card["body"][2]["facts"][0], json!({"title": "host", "value": "db-1"}));
        let notes = card["body"][3]["text"].as_str().unwrap_or("");
        assert!(notes.contains("kind: disk.full") && notes.contains("source: checks"), "{notes}");
        assert_eq!(card["actions"][0]["url"], "https://grafana.example/d/disk?var=a&from=now-1h");
        let mut resolved = message();
        resolved.status = MessageStatus::Resolved;
        resolved.link = Some("javascript:alert(1)".into());
        let p = payload(&resolved);
        assert_eq!(p["attachments"][0]["content"]["body"][0]["text"], "[RESOLVED] Disk almost full");
        assert_eq!(p["attachments"][0]["content"]["body"][0]["color"], "Good");
        assert!(p["attachments"][0]["content"].get("actions").is_none(), "only http(s) links are clickable");
    }

    #[test]
    fn escapes_markdown_and_keeps_line_breaks() {
        let mut m = message();
        m.title = "**x** [a](https://evil)".into();
        m.text = "line 1\r\nline_2 `code`".into();
        let card = &payload(&m)["attachments"][0]["content"];
        assert_eq!(card["body"][0]["text"], r"[WARNING] \*\*x\*\* \[a\](https://evil)");
        assert_eq!(card["body"][1]["text"], "line 1\n\nline\\_2 \\`code\\`");
    }

    #[test]
    fn shrinks_to_the_size_limit_with_a_marker() {
        let mut m = message();
        m.text = "x\"".repeat(40_000);
        m.fields = (0..200).map(|i| Field { name: format!("f{i}"), value: "v".repeat(2000) }).collect();
        let p = payload(&m);
        assert!(p.to_string().len() <= MAX_PAYLOAD_BYTES);
        const { assert!(MAX_PAYLOAD_BYTES < TEAMS_MAX_BYTES) };
        let card = &p["attachments"][0]["content"];
        let text = card["body"][1]["text"].as_str().unwrap_or("");
        assert!(text.ends_with(TRUNCATION_MARKER), "{}", &text[text.len().saturating_sub(40)..]);
        let last = card["body"].as_array().and_then(|b| b.last()).cloned().unwrap_or_default();
        assert!(last["text"].as_str().unwrap_or("").contains("more fields"), "{last}");
        assert_eq!(validate_teams(&p), Ok(()));
    }

    #[tokio::test]
    async fn classifies_answers_from_the_fake() {
        let fake = FakeChat::start(Target::Teams).await;
        let n = Teams::new(TeamsConfig { url: Secret::new(fake.url()) }, client());
        let mut big = message();
        big.text = "y".repeat(100_000);
        n.send(&big).await.expect("202, the card shrunk to fit");
        assert_eq!(fake.requests()[0].status, 202);

        fake.set_faults([Fault::RateLimited(2.5), Fault::ServerError, Fault::Drop, Fault::Revoked]);
        let e = n.send(&message()).await.expect_err("429");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)), "{e}");
        assert!(e.to_string().starts_with("teams answered 429 WorkflowRequestsThrottled"), "{e}");
        let e = n.send(&message()).await.expect_err("502");
        assert!(e.is_retryable() && e.to_string().contains("502"), "{e}");
        assert!(n.send(&message()).await.expect_err("dropped").is_retryable());
        let e = n.send(&message()).await.expect_err("404");
        assert!(!e.is_retryable() && e.to_string().contains("WorkflowNotFound"), "{e}");

        let wrong_sig = fake.url().replace(&fake.secret(), "forged");
        let e = Teams::new(TeamsConfig { url: Secret::new(wrong_sig) }, client()).send(&message()).await;
        let e = e.expect_err("401");
        assert!(!e.is_retryable() && e.to_string().starts_with("teams answered 401"), "{e}");
        assert_eq!(fake.accepted().len(), 1);
    }

    #[tokio::test]
    async fn errors_never_show_the_signature() {
        let fake = FakeChat::start(Target::Teams).await;
        let sig = fake.secret();
        fake.set_faults([Fault::Revoked, Fault::Drop]);
        let n = Teams::new(TeamsConfig { url: Secret::new(fake.url()) }, client());
        let mut errors = vec![n.send(&message()).await.expect_err("404"), n.send(&message()).await.expect_err("drop")];
        let refused = refused_url(&format!("/workflows/abc/triggers/manual/paths/invoke?sig={sig}"));
        errors.push(
            Teams::new(TeamsConfig { url: Secret::new(refused) }, client())
                .send(&message())
                .await
                .expect_err("refused"),
        );
        for e in errors {
            for shown in [e.to_string(), format!("{e:?}")] {
                assert!(!shown.contains(&sig) && !shown.contains("/workflows/"), "leaked in {shown}");
            }
        }
    }
}
