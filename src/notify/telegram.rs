//! `telegram`: a Telegram bot's `sendMessage`, in HTML parse mode.
//!
//! Telegram counts the text after entity parsing, in UTF-16 code units, and refuses more than
//! 4096 (`Bad Request: message is too long`); the text is built so that what is visible stays
//! within that, the body cut with a visible marker. Every interpolated value is HTML-escaped
//! (`&`, `<`, `>`), since one stray `<` fails the whole message (`can't parse entities`).
//! Answers are `{"ok":true,…}` or `{"ok":false,"error_code","description"}`; 429 carries the
//! wait in `parameters.retry_after`. 400 (chat not found), 401 (bad token), 403 (bot blocked or
//! removed from the chat) and 404 are permanent; 429 and 5xx are retried.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{
    context_lines, escape_html, escape_html_attr, more_line, post_json, safe_link, seconds, title_or_kind, title_tag,
    truncate, truncate_utf16, Answer, TRUNCATION_MARKER,
};
use super::webhook::{classify_status, retry_after, Secrets};
use super::{Notifier, NotifyError};
use crate::config::Secret;
use crate::event::Severity;
use crate::message::{Message, MessageStatus};

pub const DEFAULT_API_URL: &str = "https://api.telegram.org";
/// UTF-16 code units of visible text.
pub const MAX_TEXT: usize = 4096;
pub const MAX_TITLE: usize = 256;
pub const MAX_FIELD_VALUE: usize = 512;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// From @BotFather, `123456:ABC-…`: the credential.
    pub bot_token: Secret,
    /// A chat id (`-1001234567890`) or a public channel's `@name`; a route's `channel` wins.
    pub chat_id: String,
    #[serde(default = "default_api_url")]
    pub api_url: String,
}

fn default_api_url() -> String {
    DEFAULT_API_URL.to_string()
}

pub struct Telegram {
    config: TelegramConfig,
    http: reqwest::Client,
}

impl Telegram {
    pub fn new(config: TelegramConfig, http: reqwest::Client) -> Self {
        Telegram { config, http }
    }

    fn url(&self) -> String {
        format!("{}/bot{}/sendMessage", self.config.api_url.trim_end_matches('/'), self.config.bot_token.expose())
    }
}

#[async_trait]
impl Notifier for Telegram {
    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let url = self.url();
        let secrets = Secrets::new(&Secret::new(url.clone()), Some(&self.config.bot_token));
        let body = payload(&self.config, message);
        let answer = post_json(&self.http, "telegram", &url, &body, &secrets).await?;
        let json = answer.json().unwrap_or(Value::Null);
        if answer.status.is_success() && json["ok"] == true {
            return Ok(());
        }
        Err(classify(&answer, &json))
    }
}

fn classify(answer: &Answer, json: &Value) -> NotifyError {
    let status = answer.status.as_u16();
    let detail = match json["description"].as_str() {
        Some(d) => d.to_string(),
        None => answer.summary(),
    };
    let detail = truncate(&detail, 300, "…");
    let message = if detail.is_empty() {
        format!("telegram answered {status}")
    } else {
        format!("telegram answered {status} {detail}")
    };
    if status == 429 {
        let wait = seconds(&json["parameters"]["retry_after"]).unwrap_or_else(|| retry_after(&answer.headers));
        return NotifyError::Retryable { message, retry_after: Some(wait) };
    }
    if answer.status.is_success() {
        // 200 without `ok: true` is not something Telegram sends; retrying will tell.
        return NotifyError::retryable(message);
    }
    classify_status(answer.status, &answer.headers, message)
}

fn emoji(message: &Message) -> &'static str {
    match (message.status, message.severity) {
        (MessageStatus::Resolved, _) => "✅",
        (_, Severity::Info) => "ℹ️",
        (_, Severity::Warning) => "⚠️",
        (_, Severity::Error) => "🔴",
        (_, Severity::Critical) => "🚨",
    }
}

/// HTML and the length Telegram will count, built together.
#[derive(Default)]
struct Html {
    html: String,
    visible: usize,
}

impl Html {
    fn text(&mut self, raw: &str) -> &mut Self {
        self.html.push_str(&escape_html(raw));
        self.visible += raw.encode_utf16().count();
        self
    }

    fn tag(&mut self, tag: &str) -> &mut Self {
        self.html.push_str(tag);
        self
    }
}

/// The HTML text: what is visible is at most [`MAX_TEXT`] UTF-16 units.
pub fn text(message: &Message) -> String {
    let mut head = Html::default();
    head.tag("<b>")
        .text(&format!("{} {} ", emoji(message), title_tag(message)))
        .text(&truncate_utf16(&title_or_kind(message), MAX_TITLE, "…"))
        .tag("</b>");

    let mut tail = Html::default();
    let mut notes: Vec<String> = context_lines(message).into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
    notes.extend(more_line(message));
    let notes = truncate_utf16(&notes.join(" · "), 500, "…");
    if !notes.is_empty() {
        tail.text("\n\n").tag("<i>").text(&notes).tag("</i>");
    }
    if let Some(link) = message.link.as_deref().and_then(safe_link) {
        tail.text("\n").tag(&format!("<a href=\"{}\">", escape_html_attr(link))).text("Open").tag("</a>");
    }

    // Fields get what the head and tail leave, less a share kept for the body.
    let body_len = message.text.trim().encode_utf16().count();
    let reserve = body_len.min(1000) + 40;
    let field_room = MAX_TEXT.saturating_sub(head.visible + tail.visible + reserve);
    let mut fields = Html::default();
    let mut shown = 0;
    for f in &message.fields {
        let mut line = Html::default();
        line.text("\n").tag("<b>").text(&format!("{}:", truncate_utf16(&f.name, 100, "…"))).tag("</b>");
        line.text(&format!(" {}", truncate_utf16(&f.value, MAX_FIELD_VALUE, TRUNCATION_MARKER)));
        if fields.visible + line.visible > field_room {
            break;
        }
        fields.tag(&line.html);
        fields.visible += line.visible;
        shown += 1;
    }
    if shown < message.fields.len() {
        fields.text(&format!("\n…and {} more fields", message.fields.len() - shown));
    }
    if shown > 0 || !message.fields.is_empty() {
        let mut separated = Html::default();
        separated.text("\n").tag(&fields.html);
        separated.visible += fields.visible;
        fields = separated;
    }

    let mut out = Html::default();
    out.tag(&head.html);
    out.visible += head.visible;
    let body_room = MAX_TEXT.saturating_sub(head.visible + fields.visible + tail.visible + 1);
    if body_len > 0 {
        out.text("\n").text(&truncate_utf16(message.text.trim(), body_room, TRUNCATION_MARKER));
    }
    out.tag(&fields.html).tag(&tail.html);
    out.html
}

/// The `sendMessage` body.
pub fn payload(config: &TelegramConfig, message: &Message) -> Value {
    let chat = message.channel.clone().unwrap_or_else(|| config.chat_id.clone());
    // A numeric id is sent as a number, as Telegram documents it; `@channel` as a string.
    let chat_id = chat.parse::<i64>().map(Value::from).unwrap_or(Value::String(chat));
    json!({
        "chat_id": chat_id,
        "text": text(message),
        "parse_mode": "HTML",
        "disable_web_page_preview": true,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::message::Field;
    use crate::notify::http::testing::{client, message, refused_port};
    use crate::testkit::fake_chat::{telegram_html_text, FakeChat, Fault, Target};

    fn config(api_url: &str, token: &str, chat: &str) -> TelegramConfig {
        TelegramConfig { bot_token: Secret::new(token), chat_id: chat.into(), api_url: api_url.into() }
    }

    #[test]
    fn renders_html() {
        let p = payload(&config(DEFAULT_API_URL, "1:x", "-100123"), &message());
        assert_eq!(p["chat_id"], -100123);
        assert_eq!((p["parse_mode"].clone(), p["disable_web_page_preview"].clone()), (json!("HTML"), json!(true)));
        assert_eq!(
            p["text"],
            "<b>⚠️ [WARNING] Disk almost full</b>\n/var is at 97%\n\n<b>host:</b> db-1\n\n\
             <i>kind: disk.full · source: checks · time: 2026-11-21 16:00:00 UTC</i>\n\
             <a href=\"https://grafana.example/d/disk?var=a&amp;from=now-1h\">Open</a>"
        );
        let mut m = message();
        m.channel = Some("@tocsin_alerts".into());
        assert_eq!(payload(&config(DEFAULT_API_URL, "1:x", "-100123"), &m)["chat_id"], "@tocsin_alerts");
    }

    #[test]
    fn escapes_html() {
        let mut m = message();
        m.title = "<b>x</b> & y".into();
        m.text = "a<script>&amp;".into();
        m.fields = vec![Field { name: "<n>".into(), value: "v&".into() }];
        let t = text(&m);
        assert!(t.starts_with("<b>⚠️ [WARNING] &lt;b&gt;x&lt;/b&gt; &amp; y</b>\na&lt;script&gt;&amp;amp;"), "{t}");
        assert!(t.contains("<b>&lt;n&gt;:</b> v&amp;"), "{t}");
        assert!(telegram_html_text(&t).is_ok());
    }

    #[test]
    fn visible_text_fits_the_limit() {
        let mut m = message();
        m.text = "<&>😀".repeat(3000);
        m.fields = (0..100).map(|i| Field { name: format!("f{i}"), value: "v".repeat(600) }).collect();
        let t = text(&m);
        let visible = telegram_html_text(&t).expect("valid HTML");
        assert!(visible.encode_utf16().count() <= MAX_TEXT, "{}", visible.encode_utf16().count());
        assert!(visible.contains(TRUNCATION_MARKER));
        assert!(visible.contains("more fields"));
        m.fields.clear();
        let visible = telegram_html_text(&text(&m)).expect("valid HTML");
        assert!(visible.encode_utf16().count() <= MAX_TEXT);
        assert!(visible.encode_utf16().count() > MAX_TEXT - 100, "the body uses the room");
    }

    #[tokio::test]
    async fn classifies_answers_from_the_fake() {
        let fake = FakeChat::start(Target::Telegram).await;
        let n = Telegram::new(config(&fake.url(), &fake.secret(), &fake.chat_id()), client());
        let mut big = message();
        big.text = "<x>".repeat(5000);
        n.send(&big).await.expect("ok");
        assert_eq!(fake.requests()[0].status, 200);

        fake.set_faults([Fault::RateLimited(5.0), Fault::ServerError, Fault::Drop, Fault::Revoked]);
        let e = n.send(&message()).await.expect_err("429");
        assert_eq!(
            e,
            NotifyError::Retryable {
                message: "telegram answered 429 Too Many Requests: retry after 5".into(),
                retry_after: Some(Duration::from_secs(5)),
            }
        );
        assert!(n.send(&message()).await.expect_err("500").is_retryable());
        assert!(n.send(&message()).await.expect_err("dropped").is_retryable());
        let e = n.send(&message()).await.expect_err("403");
        assert_eq!(e, NotifyError::permanent("telegram answered 403 Forbidden: bot was blocked by the user"));

        let e = Telegram::new(config(&fake.url(), &fake.secret(), "-42"), client()).send(&message()).await;
        assert_eq!(e, Err(NotifyError::permanent("telegram answered 400 Bad Request: chat not found")));
        let e = Telegram::new(config(&fake.url(), "123:wrong", &fake.chat_id()), client()).send(&message()).await;
        assert_eq!(e, Err(NotifyError::permanent("telegram answered 401 Unauthorized")));
        assert_eq!(fake.accepted().len(), 1);
    }

    #[tokio::test]
    async fn errors_never_show_the_token() {
        let fake = FakeChat::start(Target::Telegram).await;
        let token = fake.secret();
        fake.set_faults([Fault::Revoked, Fault::Drop]);
        let n = Telegram::new(config(&fake.url(), &token, &fake.chat_id()), client());
        let mut errors = vec![n.send(&message()).await.expect_err("403"), n.send(&message()).await.expect_err("drop")];
        let refused = format!("http://127.0.0.1:{}", refused_port());
        errors
            .push(Telegram::new(config(&refused, &token, "1"), client()).send(&message()).await.expect_err("refused"));
        errors.push(Telegram::new(config("not a url", &token, "1"), client()).send(&message()).await.expect_err("bad"));
        let secret_part = token.split(':').nth(1).unwrap_or_default().to_string();
        for e in errors {
            for shown in [e.to_string(), format!("{e:?}")] {
                assert!(!shown.contains(&token) && !shown.contains(&secret_part), "leaked in {shown}");
            }
        }
    }
}
