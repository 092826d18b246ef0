//! What the JSON-over-HTTP notifiers of issue 6 share (Teams, Discord, Mattermost, PagerDuty,
//! Telegram): one POST with redacted transport errors, the answer read whole but bounded, and
//! the text helpers each target's limits need. Status classification, `Retry-After` parsing and
//! redaction themselves are `webhook.rs`'s, so every notifier fails the same way.

use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::Value;

use super::webhook::{send_error, Secrets};
use super::NotifyError;
use crate::event::Severity;
use crate::message::{Message, MessageStatus};

/// Appended where text was cut, so a reader knows there was more (the same words as Slack's).
pub const TRUNCATION_MARKER: &str = "… (truncated)";

/// One answer, read before the connection is given back.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The first few KiB of the body, secrets already redacted.
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// The body on one line and short, for an error message.
    pub fn summary(&self) -> String {
        let line: String = self.body.chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect();
        line.trim().to_string()
    }
}

/// POSTs `body` as JSON to `url`. A transport failure is an error (`target` names it); any HTTP
/// answer, success or not, is returned for the notifier to judge.
pub(crate) async fn post_json(
    http: &reqwest::Client,
    target: &str,
    url: &str,
    body: &Value,
    secrets: &Secrets,
) -> Result<Answer, NotifyError> {
    let bytes = serde_json::to_vec(body)
        .map_err(|e| NotifyError::permanent(format!("cannot encode the {target} request: {e}")))?;
    let mut response = http
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .body(bytes)
        .send()
        .await
        .map_err(|e| send_error(target, e, secrets))?;
    let status = response.status();
    let headers = response.headers().clone();
    const MAX_BYTES: usize = 8 * 1024;
    let mut raw = Vec::new();
    while raw.len() < MAX_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => raw.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    raw.truncate(MAX_BYTES);
    let body = secrets.redact(&String::from_utf8_lossy(&raw));
    Ok(Answer { status, headers, body })
}

/// `Retry-After` given as fractional seconds in a JSON body (Discord, Telegram), capped like the
/// header form.
pub(crate) fn seconds(value: &Value) -> Option<Duration> {
    let secs = value.as_f64().filter(|s| s.is_finite() && *s >= 0.0)?;
    Some(Duration::from_secs_f64(secs.min(3600.0)))
}

/// Cuts `text` to at most `max` characters, ending with `marker` when cut.
pub fn truncate(text: &str, max: usize, marker: &str) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let keep = max.saturating_sub(marker.chars().count());
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(marker);
    out
}

/// Like [`truncate`], counting UTF-16 code units, as Telegram and Discord do.
pub fn truncate_utf16(text: &str, max: usize, marker: &str) -> String {
    if text.encode_utf16().count() <= max {
        return text.to_string();
    }
    let room = max.saturating_sub(marker.encode_utf16().count());
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        if used + c.len_utf16() > room {
            break;
        }
        used += c.len_utf16();
        out.push(c);
    }
    out.push_str(marker);
    out
}

/// `&`, `<` and `>` as entities: what Telegram's HTML mode requires (and all it decodes besides
/// `&quot;`), and enough for HTML element content in email.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// [`escape_html`] plus quotes, for attribute values.
pub fn escape_html_attr(text: &str) -> String {
    escape_html(text).replace('"', "&quot;")
}

/// Markdown's inline control characters backslash-escaped, so untrusted text renders as typed
/// in Discord and Mattermost: no bold, links, code or headings it did not ask for. `@` is left
/// alone: mentions are prevented by the payload (`allowed_mentions`), not by mangling text.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '*' | '_' | '~' | '`' | '|' | '[' | ']' | '(' | ')' | '>' | '#' | '<') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A word for the severity, for targets without colours or emoji of their own.
pub fn severity_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "INFO",
        Severity::Warning => "WARNING",
        Severity::Error => "ERROR",
        Severity::Critical => "CRITICAL",
    }
}

/// What precedes a title: `[RESOLVED]` for a resolution, else the severity.
pub fn title_tag(message: &Message) -> String {
    match message.status {
        MessageStatus::Resolved => "[RESOLVED]".to_string(),
        MessageStatus::Firing | MessageStatus::Event => format!("[{}]", severity_word(message.severity)),
    }
}

/// A title that is never empty: a target that needs one gets the first event's kind instead.
pub fn title_or_kind(message: &Message) -> String {
    if !message.title.trim().is_empty() {
        return message.title.clone();
    }
    message.events.first().map(|e| e.kind.clone()).unwrap_or_else(|| "tocsin alert".to_string())
}

/// An RGB colour per severity (green once resolved), as chat embeds and attachments take it.
pub fn severity_rgb(message: &Message) -> u32 {
    match (message.status, message.severity) {
        (MessageStatus::Resolved, _) => 0x2EB67D,
        (_, Severity::Info) => 0x3B82F6,
        (_, Severity::Warning) => 0xECB22E,
        (_, Severity::Error) => 0xE01E5A,
        (_, Severity::Critical) => 0x8B0000,
    }
}

/// Distinct values in order of first appearance.
pub fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// The "kind, source, time" footnote lines most targets show under the body.
pub fn context_lines(message: &Message) -> Vec<(&'static str, String)> {
    let mut lines = Vec::new();
    let kinds = distinct(message.events.iter().map(|e| e.kind.as_str()));
    if !kinds.is_empty() {
        lines.push(("kind", kinds.join(", ")));
    }
    let sources = distinct(message.events.iter().map(|e| e.source.as_str()));
    if !sources.is_empty() {
        lines.push(("source", sources.join(", ")));
    }
    if let Some(latest) = message.events.iter().map(|e| e.timestamp).max() {
        lines.push(("time", latest.format("%Y-%m-%d %H:%M:%S UTC").to_string()));
    }
    lines
}

/// "…and N more" when the group held more events than the message lists.
pub fn more_line(message: &Message) -> Option<String> {
    (message.truncated > 0).then(|| format!("…and {} more", message.truncated))
}

/// Whether `link` is safe to make clickable: only http(s) URLs.
pub fn safe_link(link: &str) -> Option<&str> {
    let lower = link.trim_start().to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://")).then_some(link.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_characters_or_utf16() {
        assert_eq!(truncate("héllo", 5, "…"), "héllo");
        assert_eq!(truncate("héllo wörld", 5, "…"), "héll…");
        // An emoji is two UTF-16 units: it does not fit in the last single unit.
        assert_eq!(truncate_utf16("ab😀cd", 4, "…"), "ab…");
        assert_eq!(truncate_utf16("ab😀", 4, "…"), "ab😀");
        assert_eq!(truncate_utf16("abcdef", 4, "…").encode_utf16().count(), 4);
    }

    #[test]
    fn escapes() {
        assert_eq!(escape_html("<b>&"), "&lt;b&gt;&amp;");
        assert_eq!(escape_html_attr("a\"b"), "a&quot;b");
        assert_eq!(escape_markdown("**x** [y](z) `c` _u_ ~s~ #h"), r"\*\*x\*\* \[y\]\(z\) \`c\` \_u\_ \~s\~ \#h");
        assert_eq!(escape_markdown("@here a\\b"), "@here a\\\\b");
    }

    #[test]
    fn links_are_http_only() {
        assert_eq!(safe_link("https://x.example/a"), Some("https://x.example/a"));
        assert_eq!(safe_link("javascript:alert(1)"), None);
        assert_eq!(safe_link("HTTP://x"), Some("HTTP://x"));
    }

    /// The commented-out examples in `examples/tocsin.toml` are real configurations.
    #[test]
    fn documented_examples_parse() {
        let text = include_str!("../../examples/tocsin.toml");
        let mut blocks: Vec<String> = Vec::new();
        let mut in_block = false;
        for line in text.lines() {
            if line.starts_with("# [notifiers.") {
                blocks.push(String::new());
                in_block = true;
            } else if !line.starts_with("# ") {
                in_block = false;
            } else if in_block && !line.starts_with("# # ") {
                if let Some(block) = blocks.last_mut() {
                    block.push_str(&line["# ".len()..].replace("${env:", "${"));
                    block.push('\n');
                }
            }
        }
        let mut types = Vec::new();
        for block in blocks.iter().filter(|b| !b.is_empty()) {
            let config: super::super::NotifierConfig = match toml::from_str(block) {
                Ok(c) => c,
                Err(e) => panic!("example does not parse: {e}\n{block}"),
            };
            types.push(format!("{config:?}").split('(').next().unwrap_or_default().to_string());
        }
        for kind in ["Teams", "Discord", "Mattermost", "Email", "PagerDuty", "Telegram", "SlackApp"] {
            assert!(types.iter().any(|t| t == kind), "{kind} is documented: {types:?}");
        }
    }

    #[test]
    fn retry_after_seconds_from_json() {
        assert_eq!(seconds(&serde_json::json!(0.64)), Some(Duration::from_millis(640)));
        assert_eq!(seconds(&serde_json::json!(5)), Some(Duration::from_secs(5)));
        assert_eq!(seconds(&serde_json::json!(-1)), None);
        assert_eq!(seconds(&serde_json::json!("x")), None);
        assert_eq!(seconds(&serde_json::json!(1e9)), Some(Duration::from_secs(3600)));
    }
}

/// What the notifiers' tests share: a message, a client, a URL nothing listens on.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde_json::json;

    use crate::event::{Event, Severity};
    use crate::message::{Field, Message, MessageStatus};

    pub fn event(kind: &str, source: &str) -> Event {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-21T16:00:00Z")
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|_| chrono::Utc::now());
        match crate::event::parse_event(&json!({"kind": kind}), "", source, now) {
            Ok(e) => e,
            Err(e) => panic!("test event is valid: {e}"),
        }
    }

    pub fn message() -> Message {
        Message {
            title: "Disk almost full".into(),
            text: "/var is at 97%".into(),
            severity: Severity::Warning,
            status: MessageStatus::Firing,
            fields: vec![Field { name: "host".into(), value: "db-1".into() }],
            link: Some("https://grafana.example/d/disk?var=a&from=now-1h".into()),
            channel: None,
            group_key: "route-1/host=db-1".into(),
            group_labels: BTreeMap::from([("host".to_string(), "db-1".to_string())]),
            events: vec![event("disk.full", "checks")],
            truncated: 0,
            mention: None,
        }
    }

    pub fn client() -> reqwest::Client {
        reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("a client")
    }

    /// A free loopback port (bound, then closed) so connecting is refused.
    pub fn refused_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }

    /// `http://127.0.0.1:<refused port><path>`.
    pub fn refused_url(path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", refused_port())
    }
}
