//! `slack_webhook`: Slack incoming webhooks with Block Kit.
//!
//! The message is clamped to Slack's limits here rather than trusted to fit: a payload Slack
//! refuses (`invalid_blocks`) is a permanent failure, so an oversized alert would otherwise
//! never be delivered at all. Limits and answers are from `shared/reference/slack.md`.

use async_trait::async_trait;
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::webhook::{classify_status, error_body, send_error, Secrets};
use super::{Notifier, NotifyError};
use crate::config::Secret;
use crate::event::Severity;
use crate::message::{Message, MessageStatus};

pub const MAX_BLOCKS: usize = 50;
pub const MAX_HEADER_CHARS: usize = 150;
pub const MAX_SECTION_CHARS: usize = 3000;
pub const MAX_FIELDS_PER_SECTION: usize = 10;
pub const MAX_FIELD_CHARS: usize = 2000;
/// Slack's advice for `text`, and the chat.update limit; the hard cut is at 40,000.
pub const MAX_FALLBACK_CHARS: usize = 4000;
/// Context lines are footnotes; a long one would push the message body off screen.
const MAX_CONTEXT_CHARS: usize = 300;

/// Appended where text was cut, so a reader knows there was more.
pub const TRUNCATION_MARKER: &str = "… (truncated)";
/// The header is short; the long marker would eat a tenth of it.
const HEADER_TRUNCATION_MARKER: &str = "…";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackWebhookConfig {
    pub url: Secret,
    /// `username`, `icon_emoji`, `icon_url` and `channel` are honoured only by legacy
    /// custom-integration webhooks; app webhooks ignore them, so they are sent only when set.
    pub username: Option<String>,
    pub icon_emoji: Option<String>,
    pub icon_url: Option<String>,
    pub channel: Option<String>,
}

impl SlackWebhookConfig {
    /// Values Slack would take silently and then ignore or print as they are.
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if let Some(emoji) = &self.icon_emoji {
            let name = emoji.strip_prefix(':').and_then(|e| e.strip_suffix(':'));
            if !name.is_some_and(|n| !n.is_empty() && !n.contains(char::is_whitespace)) {
                out.push(("icon_emoji", "must be an emoji name between colons, e.g. \":rotating_light:\""));
            }
        }
        if let Some(icon) = &self.icon_url {
            if !url::Url::parse(icon).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                out.push(("icon_url", "must be an http:// or https:// URL of an image"));
            }
        }
        for (key, value) in [("username", &self.username), ("channel", &self.channel)] {
            if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
                out.push((key, "must not be empty (leave it out for the webhook's own)"));
            }
        }
        out
    }
}

pub struct SlackWebhook {
    config: SlackWebhookConfig,
    http: reqwest::Client,
}

impl SlackWebhook {
    pub fn new(config: SlackWebhookConfig, http: reqwest::Client) -> Self {
        SlackWebhook { config, http }
    }
}

#[async_trait]
impl Notifier for SlackWebhook {
    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(&payload(&self.config, message))
            .map_err(|e| NotifyError::permanent(format!("cannot encode the Slack message: {e}")))?;
        let secrets = Secrets::new(&self.config.url, None);
        let response = self
            .http
            .post(self.config.url.expose())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| send_error("slack", e, &secrets))?;
        let status = response.status();
        // Slack's success is exactly 200 `ok`; any other 2xx is not something it sends.
        if status == reqwest::StatusCode::OK {
            return Ok(());
        }
        let headers = response.headers().clone();
        let detail = slack_error_string(&error_body(response, &secrets).await);
        let mut message = if detail.is_empty() {
            format!("slack answered {}", status.as_u16())
        } else {
            format!("slack answered {} {detail}", status.as_u16())
        };
        if let Some(hint) = what_to_do(&detail) {
            message.push_str(": ");
            message.push_str(hint);
            return Err(NotifyError::gone(message));
        }
        Err(classify_status(status, &headers, message))
    }
}

/// What the operator can do about a permanent answer, for the dead letter that records it:
/// these mean the destination itself is gone, and every later message will fail the same way
/// until the notifier is fixed (`slack.md`, section 6).
fn what_to_do(detail: &str) -> Option<&'static str> {
    match detail {
        "no_service" | "no_service_id" | "no_team" | "team_disabled" | "no_active_hooks" | "invalid_token" => {
            Some("the webhook was removed or disabled; create a new one and put its URL in this notifier's url")
        }
        "channel_is_archived" => Some("the channel is archived; unarchive it or give this notifier another webhook"),
        _ => None,
    }
}

/// Webhook errors are a bare string (`channel_is_archived`); a 429 carries JSON with `error`.
fn slack_error_string(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(obj)) => match obj.get("error").and_then(Value::as_str) {
            Some(error) => error.to_string(),
            None => body.to_string(),
        },
        _ => body.to_string(),
    }
}

/// The JSON body for one message: Block Kit plus a plain `text` fallback for notifications.
pub fn payload(config: &SlackWebhookConfig, message: &Message) -> Value {
    let mut body = Map::new();
    body.insert("text".into(), Value::String(fallback_text(message)));
    body.insert("blocks".into(), Value::Array(blocks(message)));
    let channel = message.channel.as_ref().or(config.channel.as_ref());
    let overrides = [
        ("channel", channel),
        ("username", config.username.as_ref()),
        ("icon_emoji", config.icon_emoji.as_ref()),
        ("icon_url", config.icon_url.as_ref()),
    ];
    for (key, value) in overrides {
        if let Some(value) = value {
            body.insert(key.into(), Value::String(value.clone()));
        }
    }
    Value::Object(body)
}

/// The emoji shortcode that says how bad it is at a glance.
pub fn severity_marker(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => ":large_blue_circle:",
        Severity::Warning => ":warning:",
        Severity::Error => ":red_circle:",
        Severity::Critical => ":rotating_light:",
    }
}

/// What precedes the title: a resolution replaces the severity, which no longer matters.
fn title_prefix(message: &Message) -> String {
    match message.status {
        MessageStatus::Resolved => ":white_check_mark: [RESOLVED] ".to_string(),
        MessageStatus::Firing | MessageStatus::Event => {
            format!("{} ", severity_marker(message.severity))
        }
    }
}

fn fallback_text(message: &Message) -> String {
    // The "…and N more" line is kept whole: it says the message is not the whole story.
    let more = if message.truncated > 0 { format!("\n…and {} more", message.truncated) } else { String::new() };
    // The route's mention is trusted configuration (`<!here>`), so it is not escaped.
    let mention = message.mention.as_deref().map(|m| format!("{m} ")).unwrap_or_default();
    let mut text = format!("{mention}{}{}", title_prefix(message), escape(&message.title));
    if !message.text.trim().is_empty() {
        text.push('\n');
        text.push_str(&escape(&message.text));
    }
    let room = MAX_FALLBACK_CHARS - more.chars().count();
    let mut text = clamp(&text, room, TRUNCATION_MARKER);
    text.push_str(&more);
    text
}

fn blocks(message: &Message) -> Vec<Value> {
    let prefix = title_prefix(message);
    let title_room = MAX_HEADER_CHARS.saturating_sub(prefix.chars().count());
    let header = format!("{prefix}{}", clamp(&escape(&message.title), title_room, HEADER_TRUNCATION_MARKER));
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": header, "emoji": true},
    })];

    if let Some(mention) = message.mention.as_deref().filter(|m| !m.trim().is_empty()) {
        blocks.push(mrkdwn_section(clamp(mention, MAX_SECTION_CHARS, HEADER_TRUNCATION_MARKER)));
    }

    // Slack refuses an empty section text, so an empty message body gets no section.
    if !message.text.trim().is_empty() {
        blocks.push(mrkdwn_section(clamp(&escape(&message.text), MAX_SECTION_CHARS, TRUNCATION_MARKER)));
    }

    let fields: Vec<Value> = message
        .fields
        .iter()
        .map(|f| {
            let text = format!("*{}*\n{}", escape(&f.name), escape(&f.value));
            json!({"type": "mrkdwn", "text": clamp(&text, MAX_FIELD_CHARS, TRUNCATION_MARKER)})
        })
        .collect();
    // One block stays free for the context line.
    let room = MAX_BLOCKS.saturating_sub(blocks.len() + 1);
    let field_sections: Vec<&[Value]> = fields.chunks(MAX_FIELDS_PER_SECTION).collect();
    let kept = field_sections.len().min(room);
    for chunk in &field_sections[..kept] {
        blocks.push(json!({"type": "section", "fields": chunk}));
    }
    let dropped_fields = fields.len() - fields.len().min(kept * MAX_FIELDS_PER_SECTION);

    let context = context_elements(message, dropped_fields);
    if !context.is_empty() {
        blocks.push(json!({"type": "context", "elements": context}));
    }
    blocks
}

fn mrkdwn_section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// Kind, source, time, link and what was left out; at most 6 of Slack's 10 elements.
fn context_elements(message: &Message, dropped_fields: usize) -> Vec<Value> {
    let mut lines = Vec::new();
    let kinds = distinct(message.events.iter().map(|e| e.kind.as_str()));
    if !kinds.is_empty() {
        lines.push(format!("*kind:* {}", escape(&kinds.join(", "))));
    }
    let sources = distinct(message.events.iter().map(|e| e.source.as_str()));
    if !sources.is_empty() {
        lines.push(format!("*source:* {}", escape(&sources.join(", "))));
    }
    if let Some(latest) = message.events.iter().map(|e| e.timestamp).max() {
        lines.push(format!("*time:* {}", latest.format("%Y-%m-%d %H:%M:%S UTC")));
    }
    if let Some(link) = &message.link {
        let element = format!("<{}|Open>", link_target(link));
        // A link is never cut (half a URL is worse than none); one too long for a text object
        // would make Slack refuse the whole message, so it is left out and says so.
        if element.chars().count() <= MAX_SECTION_CHARS {
            lines.push(element);
        } else {
            lines.push(format!(
                "_link left out: {} characters, over Slack's {MAX_SECTION_CHARS}_",
                link.chars().count()
            ));
        }
    }
    if message.truncated > 0 {
        lines.push(format!("…and {} more", message.truncated));
    }
    if dropped_fields > 0 {
        lines.push(format!("…and {dropped_fields} more fields"));
    }
    lines
        .into_iter()
        .map(|line| {
            let text =
                if line.starts_with('<') { line } else { clamp(&line, MAX_CONTEXT_CHARS, HEADER_TRUNCATION_MARKER) };
            json!({"type": "mrkdwn", "text": text})
        })
        .collect()
}

fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// A URL inside `<url|label>`: `|` and `>` would end it early and `<` is a control character,
/// so those are percent-encoded; `&` is escaped as everywhere else.
fn link_target(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        match c {
            '|' => out.push_str("%7C"),
            '<' => out.push_str("%3C"),
            '>' => out.push_str("%3E"),
            ' ' => out.push_str("%20"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

/// Slack's three control characters as entities, so untrusted text cannot mention `<!channel>`,
/// forge a link or open a quote. Only these three: Slack decodes no other entity.
pub fn escape(text: &str) -> String {
    super::http::escape_html(text)
}

/// Cuts already-escaped `text` to at most `max` characters (Slack counts characters, not
/// bytes), ending with `marker`, without splitting an entity such as `&amp;`.
pub fn clamp(text: &str, max: usize, marker: &str) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let keep = max.saturating_sub(marker.chars().count());
    let mut cut: String = text.chars().take(keep).collect();
    if let Some(amp) = cut.rfind('&') {
        // Entities are at most 5 characters (`&amp;`); an `&` that close to the end without its
        // `;` is a split entity.
        if cut.len() - amp < 5 && !cut[amp..].contains(';') {
            cut.truncate(amp);
        }
    }
    cut.push_str(marker);
    cut
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::event::Event;
    use crate::message::Field;
    use crate::testkit::fake_slack::{self, FakeSlack, Mode, RateLimit};

    fn config(url: &str) -> SlackWebhookConfig {
        SlackWebhookConfig { url: Secret::new(url), username: None, icon_emoji: None, icon_url: None, channel: None }
    }

    fn event(kind: &str, source: &str) -> Event {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-21T16:00:00Z")
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|_| chrono::Utc::now());
        match crate::event::parse_event(&json!({"kind": kind}), "", source, now) {
            Ok(e) => e,
            Err(e) => panic!("test event is valid: {e}"),
        }
    }

    fn message() -> Message {
        Message {
            title: "Disk almost full".into(),
            text: "/var is at 97%".into(),
            severity: Severity::Warning,
            status: MessageStatus::Firing,
            fields: vec![Field { name: "host".into(), value: "db-1".into() }],
            link: Some("https://grafana.example/d/disk?var=a&from=now-1h".into()),
            channel: None,
            group_key: "g".into(),
            group_labels: BTreeMap::new(),
            events: vec![event("disk.full", "checks")],
            truncated: 0,
            mention: None,
        }
    }

    fn block_of<'a>(p: &'a Value, kind: &str) -> Vec<&'a Value> {
        p["blocks"].as_array().map(|b| b.iter().filter(|b| b["type"] == kind).collect()).unwrap_or_default()
    }

    fn context_text(p: &Value) -> String {
        block_of(p, "context")
            .first()
            .and_then(|c| c["elements"].as_array())
            .map(|els| els.iter().filter_map(|e| e["text"].as_str()).collect::<Vec<_>>().join(" | "))
            .unwrap_or_default()
    }

    #[test]
    fn builds_header_section_fields_and_context() {
        let p = payload(&config("http://x"), &message());
        assert_eq!(fake_slack::validate(&p), Ok(()));
        assert_eq!(p["blocks"][0]["type"], "header");
        assert_eq!(p["blocks"][0]["text"]["type"], "plain_text");
        assert_eq!(p["blocks"][0]["text"]["text"], ":warning: Disk almost full");
        assert_eq!(p["blocks"][1]["text"]["text"], "/var is at 97%");
        assert_eq!(p["blocks"][2]["fields"][0]["text"], "*host*\ndb-1");
        let context = context_text(&p);
        assert!(context.contains("*kind:* disk.full"), "{context}");
        assert!(context.contains("*source:* checks"), "{context}");
        assert!(context.contains("*time:* 2026-11-21 16:00:00 UTC"), "{context}");
        assert!(context.contains("<https://grafana.example/d/disk?var=a&amp;from=now-1h|Open>"), "{context}");
        assert_eq!(p["text"], ":warning: Disk almost full\n/var is at 97%");
        for key in ["channel", "username", "icon_emoji", "icon_url"] {
            assert!(p.get(key).is_none(), "{key} is sent only when set");
        }
    }

    #[test]
    fn markers_by_severity_and_status() {
        let mut m = message();
        for (severity, marker) in [
            (Severity::Info, ":large_blue_circle:"),
            (Severity::Warning, ":warning:"),
            (Severity::Error, ":red_circle:"),
            (Severity::Critical, ":rotating_light:"),
        ] {
            m.severity = severity;
            let p = payload(&config("http://x"), &m);
            assert_eq!(p["blocks"][0]["text"]["text"], format!("{marker} Disk almost full"));
        }
        m.status = MessageStatus::Resolved;
        let p = payload(&config("http://x"), &m);
        assert_eq!(p["blocks"][0]["text"]["text"], ":white_check_mark: [RESOLVED] Disk almost full");
        assert!(p["text"].as_str().unwrap_or("").starts_with(":white_check_mark: [RESOLVED] Disk almost full"));
    }

    #[test]
    fn escapes_every_interpolated_value() {
        let mut m = message();
        m.title = "<script>&".into();
        m.text = "<!channel> & <https://evil|click>".into();
        m.fields = vec![Field { name: "a<b".into(), value: "x>y&z".into() }];
        m.events = vec![event("k", "src<1>")];
        let p = payload(&config("http://x"), &m);
        assert_eq!(p["blocks"][0]["text"]["text"], ":warning: &lt;script&gt;&amp;");
        assert_eq!(p["blocks"][1]["text"]["text"], "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;");
        assert_eq!(p["blocks"][2]["fields"][0]["text"], "*a&lt;b*\nx&gt;y&amp;z");
        assert!(context_text(&p).contains("*source:* src&lt;1&gt;"));
        let text = p["text"].as_str().unwrap_or("");
        assert!(!text.contains('<') && !text.contains("<!channel>"), "{text}");
        // Only the three entities: an apostrophe stays as it is.
        m.text = "it's \"fine\"".into();
        assert_eq!(payload(&config("http://x"), &m)["blocks"][1]["text"]["text"], "it's \"fine\"");
    }

    #[test]
    fn a_link_too_long_for_slack_is_left_out_and_the_message_still_valid() {
        let mut m = message();
        let long = format!("https://kibana.example/app/discover#/?_a=({})", "q".repeat(3_100));
        m.link = Some(long.clone());
        let p = payload(&config("http://x"), &m);
        let context = context_text(&p);
        assert!(!context.contains("kibana.example"), "{context}");
        assert!(context.contains(&format!("link left out: {} characters", long.chars().count())), "{context}");
        assert_eq!(crate::testkit::fake_slack::validate(&p), Ok(()));
        // One that fits is kept whole.
        m.link = Some(format!("https://x.example/{}", "a".repeat(2_900)));
        assert!(context_text(&payload(&config("http://x"), &m)).contains(&"a".repeat(2_900)));
    }

    #[test]
    fn link_cannot_break_out() {
        let mut m = message();
        m.link = Some("https://x.example/a|b>c<d e".into());
        let p = payload(&config("http://x"), &m);
        assert!(context_text(&p).contains("<https://x.example/a%7Cb%3Ec%3Cd%20e|Open>"), "{}", context_text(&p));
    }

    #[test]
    fn clamps_to_slack_limits() {
        let mut m = message();
        m.title = "T".repeat(300);
        m.text = "x".repeat(10_000);
        m.severity = Severity::Critical;
        let p = payload(&config("http://x"), &m);
        assert_eq!(fake_slack::validate(&p), Ok(()));
        let header = p["blocks"][0]["text"]["text"].as_str().unwrap_or("");
        assert_eq!(header.chars().count(), MAX_HEADER_CHARS);
        assert!(header.starts_with(":rotating_light: TTT") && header.ends_with('…'), "{header}");
        let section = p["blocks"][1]["text"]["text"].as_str().unwrap_or("");
        assert_eq!(section.chars().count(), MAX_SECTION_CHARS);
        assert!(section.ends_with(TRUNCATION_MARKER));
        let text = p["text"].as_str().unwrap_or("");
        assert_eq!(text.chars().count(), MAX_FALLBACK_CHARS);
        assert!(text.ends_with(TRUNCATION_MARKER));
        m.truncated = 12;
        let p = payload(&config("http://x"), &m);
        let text = p["text"].as_str().unwrap_or("");
        assert_eq!(text.chars().count(), MAX_FALLBACK_CHARS);
        assert!(text.ends_with(&format!("{TRUNCATION_MARKER}\n…and 12 more")), "{}", &text[text.len() - 40..]);
        m.truncated = 0;

        // Escaping happens before counting, and an entity is never cut in half.
        m.text = "&".repeat(5000);
        let p = payload(&config("http://x"), &m);
        let section = p["blocks"][1]["text"]["text"].as_str().unwrap_or("");
        assert!(section.chars().count() <= MAX_SECTION_CHARS);
        assert!(section.trim_end_matches(TRUNCATION_MARKER).ends_with("&amp;"), "{}", &section[section.len() - 30..]);

        m.fields = vec![Field { name: "big".into(), value: "v".repeat(5000) }];
        let p = payload(&config("http://x"), &m);
        let field = p["blocks"][2]["fields"][0]["text"].as_str().unwrap_or("");
        assert_eq!(field.chars().count(), MAX_FIELD_CHARS);
        assert!(field.ends_with(TRUNCATION_MARKER));
    }

    #[test]
    fn splits_fields_and_caps_blocks() {
        let mut m = message();
        m.fields = (0..23).map(|i| Field { name: format!("f{i}"), value: format!("v{i}") }).collect();
        let p = payload(&config("http://x"), &m);
        assert_eq!(fake_slack::validate(&p), Ok(()));
        let sizes: Vec<usize> =
            block_of(&p, "section").iter().filter_map(|s| s["fields"].as_array().map(Vec::len)).collect();
        assert_eq!(sizes, [10, 10, 3]);

        m.fields = (0..1000).map(|i| Field { name: format!("f{i}"), value: "v".into() }).collect();
        m.truncated = 7;
        let p = payload(&config("http://x"), &m);
        assert_eq!(fake_slack::validate(&p), Ok(()));
        let blocks = p["blocks"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(blocks, MAX_BLOCKS);
        let context = context_text(&p);
        // header + text + 47 field sections + context = 50, so 470 fields shown.
        assert!(context.contains("…and 530 more fields"), "{context}");
        assert!(context.contains("…and 7 more"), "{context}");
        assert!(p["text"].as_str().unwrap_or("").ends_with("…and 7 more"));
    }

    #[test]
    fn minimal_message_is_still_valid() {
        let mut m = message();
        m.title = String::new();
        m.text = String::new();
        m.fields.clear();
        m.events.clear();
        m.link = None;
        let p = payload(&config("http://x"), &m);
        assert_eq!(fake_slack::validate(&p), Ok(()));
        assert_eq!(p["blocks"].as_array().map(Vec::len), Some(1));
        assert!(!p["text"].as_str().unwrap_or("").trim().is_empty());
    }

    #[test]
    fn overrides_only_when_set_and_route_channel_wins() {
        let mut c = config("http://x");
        c.username = Some("tocsin".into());
        c.icon_emoji = Some(":bell:".into());
        c.icon_url = Some("https://x/icon.png".into());
        c.channel = Some("#default".into());
        let mut m = message();
        let p = payload(&c, &m);
        assert_eq!(
            (&p["username"], &p["icon_emoji"], &p["icon_url"], &p["channel"]),
            (&json!("tocsin"), &json!(":bell:"), &json!("https://x/icon.png"), &json!("#default"))
        );
        m.channel = Some("#ops".into());
        assert_eq!(payload(&c, &m)["channel"], "#ops");
    }

    #[test]
    fn clamp_counts_characters() {
        assert_eq!(clamp("héllo", 5, "…"), "héllo");
        assert_eq!(clamp("héllo wörld", 5, "…"), "héll…");
        assert_eq!(clamp("ab&amp;cd", 5, "…"), "ab…");
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("a client")
    }

    #[tokio::test]
    async fn delivers_to_the_fake() {
        let fake = FakeSlack::start().await;
        let notifier = SlackWebhook::new(config(&fake.hook_url("ops")), client());
        let mut m = message();
        m.fields = (0..25).map(|i| Field { name: format!("f{i}"), value: "<v>".repeat(900) }).collect();
        m.text = "y".repeat(10_000);
        m.title = "z".repeat(300);
        notifier.send(&m).await.expect("Slack accepts the clamped message");
        let got = fake.messages("ops");
        assert_eq!(got, vec![payload(&config("unused"), &m)]);
    }

    #[tokio::test]
    async fn classifies_slack_answers() {
        let fake = FakeSlack::start().await;
        let url = fake.hook_url("ops");
        let notifier = SlackWebhook::new(config(&url), client());
        let m = message();

        let cases: [(Mode, bool, &str); 4] = [
            (Mode::Archived, false, "slack answered 410 channel_is_archived"),
            (Mode::Revoked, false, "slack answered 403 invalid_token"),
            (Mode::ServerError(Some(1)), true, "slack answered 500 rollup_error"),
            (Mode::DropConnections(1), true, "slack request failed"),
        ];
        for (mode, retryable, expected) in cases {
            fake.set_mode("ops", mode);
            let e = notifier.send(&m).await.expect_err("an error");
            assert_eq!(e.is_retryable(), retryable, "{mode:?}: {e}");
            // A revoked webhook or an archived channel is gone, not just a refused message.
            assert_eq!(e.is_gone(), !retryable, "{mode:?}: {e}");
            assert!(e.to_string().starts_with(expected), "{mode:?}: {e}");
            assert_eq!(e.retry_after(), None);
        }
        fake.set_mode("ops", Mode::Normal);
        notifier.send(&m).await.expect("back to normal");

        fake.set_rate_limit("ops", Some(RateLimit { per_second: 0.5, burst: 1 }));
        notifier.send(&m).await.expect("the burst allows one");
        let e = notifier.send(&m).await.expect_err("rate limited");
        assert_eq!(
            e,
            NotifyError::Retryable {
                message: "slack answered 429 rate_limited".into(),
                retry_after: Some(Duration::from_secs(2)),
            }
        );
        assert_eq!(fake.rate_limited_count("ops"), 1);
        fake.set_rate_limit("ops", None);

        let dead = SlackWebhook::new(config(&format!("{}/services/T1/B1/nope", fake.base_url())), client());
        let e = dead.send(&m).await.expect_err("no such hook");
        assert_eq!(
            e,
            NotifyError::gone(
                "slack answered 404 no_service: the webhook was removed or disabled; create a new one and put its \
                 URL in this notifier's url"
            )
        );

        // Slack's own 400s are permanent too, but the destination is fine: an empty body is `no_text`.
        let e = notifier_post_raw(&url, "{}").await;
        assert_eq!(e, NotifyError::permanent("slack answered 400 no_text"));
    }

    /// Sends a raw body through the same classification as the notifier.
    async fn notifier_post_raw(url: &str, body: &'static str) -> NotifyError {
        let secrets = Secrets::new(&Secret::new(url), None);
        let response = client().post(url).body(body).send().await.expect("an answer");
        let status = response.status();
        let headers = response.headers().clone();
        let detail = slack_error_string(&error_body(response, &secrets).await);
        classify_status(status, &headers, format!("slack answered {} {detail}", status.as_u16()))
    }

    #[tokio::test]
    async fn times_out_as_retryable() {
        let fake = FakeSlack::start().await;
        let url = fake.hook_url("slow");
        fake.set_latency("slow", Duration::from_millis(500));
        let http = reqwest::Client::builder().timeout(Duration::from_millis(100)).build().expect("a client");
        let e = SlackWebhook::new(config(&url), http).send(&message()).await.expect_err("too slow");
        assert!(e.is_retryable() && e.to_string().contains("timed out"), "{e}");
    }

    #[tokio::test]
    async fn errors_never_show_the_webhook_url() {
        let fake = FakeSlack::start().await;
        let url = fake.hook_url("ops");
        let token = url.rsplit('/').next().unwrap_or_default().to_string();
        assert_eq!(token.len(), 24);
        let mut errors = Vec::new();
        for mode in [Mode::Archived, Mode::Revoked, Mode::ServerError(Some(1)), Mode::DropConnections(1)] {
            fake.set_mode("ops", mode);
            errors.push(SlackWebhook::new(config(&url), client()).send(&message()).await.expect_err("fails"));
        }
        fake.set_mode("ops", Mode::Normal);
        fake.set_latency("ops", Duration::from_millis(300));
        let http = reqwest::Client::builder().timeout(Duration::from_millis(50)).build().expect("a client");
        errors.push(SlackWebhook::new(config(&url), http).send(&message()).await.expect_err("timeout"));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let refused = format!("http://127.0.0.1:{port}/services/T0/B0/{token}");
        let e = SlackWebhook::new(config(&refused), client()).send(&message()).await.expect_err("refused");
        assert!(e.is_retryable(), "{e}");
        errors.push(e);
        errors.push(
            SlackWebhook::new(config("not a url /T0/B0/SECRETTOKEN123"), client())
                .send(&message())
                .await
                .expect_err("bad url"),
        );

        for e in errors {
            for shown in [e.to_string(), format!("{e:?}")] {
                for leak in [token.as_str(), "/services/", "SECRETTOKEN123"] {
                    assert!(!shown.contains(leak), "{leak} leaked in {shown}");
                }
            }
        }
    }
}
