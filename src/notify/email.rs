//! `email`: mail over SMTP (lettre), with a plain-text and an HTML alternative.
//!
//! TLS is `starttls` (default, port 587: STARTTLS is required, never silently skipped), `tls`
//! (implicit TLS, port 465) or `none` (plain, port 25: for a relay on localhost or tests).
//!
//! One [`Notifier::send`] is one email to every configured recipient. Batching per recipient
//! list (one list per destination) is [`Email::send_digest`]: messages that queued up for this
//! destination folded into one digest email ([`build_email`] with several messages). Folding a
//! backlog is the delivery worker's job; it does not call `send_digest` yet.
//!
//! SMTP replies are classified by their class: 4xx (e.g. 451, 421) retryable, 5xx (550 no such
//! user, 535 bad credentials) permanent; connection, network and TLS failures retryable; a
//! configuration the client refuses (bad address, no common AUTH mechanism, no STARTTLS on a
//! server that must offer it) permanent. The password never appears in an error.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;

use super::http::{
    context_lines, escape_html, escape_html_attr, more_line, safe_link, severity_rgb, title_or_kind, title_tag,
    truncate, TRUNCATION_MARKER,
};
use super::{Notifier, NotifyError};
use crate::config::Secret;
use crate::message::Message;

pub const MAX_SUBJECT_CHARS: usize = 200;
/// Per message in an email: enough for any alert, not enough to make a mailbox choke.
pub const MAX_TEXT_CHARS: usize = 50_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption at all.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub host: String,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// `alerts@example.com` or `tocsin <alerts@example.com>`.
    pub from: String,
    pub to: Vec<String>,
    /// Put before every subject, e.g. `[tocsin] `.
    pub subject_prefix: Option<String>,
    /// The EHLO name; default `localhost`.
    pub hello_name: Option<String>,
}

impl EmailConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        })
    }
}

/// The TLS setting lettre is given for `config`.
pub fn tls(config: &EmailConfig) -> Result<Tls, String> {
    let params =
        || TlsParameters::new(config.host.clone()).map_err(|e| format!("invalid TLS settings for the SMTP host: {e}"));
    Ok(match config.tls {
        SmtpTls::Starttls => Tls::Required(params()?),
        SmtpTls::Tls => Tls::Wrapper(params()?),
        SmtpTls::None => Tls::None,
    })
}

fn transport(config: &EmailConfig, timeout: Duration) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.clone())
        .port(config.port())
        .timeout(Some(timeout))
        .tls(tls(config)?);
    match (&config.username, &config.password) {
        (Some(user), Some(password)) => {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_string()))
        }
        (None, None) => {}
        _ => return Err("email needs both `username` and `password`, or neither".to_string()),
    }
    if let Some(name) = &config.hello_name {
        builder = builder.hello_name(ClientId::Domain(name.clone()));
    }
    Ok(builder.build())
}

fn addresses(config: &EmailConfig) -> Result<(Mailbox, Vec<Mailbox>), String> {
    let from = config.from.parse::<Mailbox>().map_err(|e| format!("invalid `from` address {:?}: {e}", config.from))?;
    if config.to.is_empty() {
        return Err("email needs at least one `to` address".to_string());
    }
    let to = config
        .to
        .iter()
        .map(|t| t.parse::<Mailbox>().map_err(|e| format!("invalid `to` address {t:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((from, to))
}

pub struct Email {
    config: EmailConfig,
    /// A configuration error fails every send, permanently: `build` cannot fail.
    ready: Result<(AsyncSmtpTransport<Tokio1Executor>, Mailbox, Vec<Mailbox>), String>,
}

impl Email {
    pub fn new(config: EmailConfig, timeout: Duration) -> Self {
        let ready = transport(&config, timeout).and_then(|t| addresses(&config).map(|(from, to)| (t, from, to)));
        Email { config, ready }
    }

    /// Sends `messages` as one email: one message as itself, several as a digest.
    pub async fn send_digest(&self, messages: &[Message]) -> Result<(), NotifyError> {
        let (transport, from, to) = self.ready.as_ref().map_err(|e| NotifyError::permanent(format!("email: {e}")))?;
        let email = build_email(&self.config, from, to, messages)
            .map_err(|e| NotifyError::permanent(format!("email cannot be built: {e}")))?;
        match transport.send(email).await {
            Ok(_) => Ok(()),
            Err(e) => Err(smtp_error(&e, self.config.password.as_ref())),
        }
    }
}

#[async_trait]
impl Notifier for Email {
    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        self.send_digest(std::slice::from_ref(message)).await
    }
}

/// An SMTP failure, classified by reply class, with the server's words and without the password.
fn smtp_error(e: &lettre::transport::smtp::Error, password: Option<&Secret>) -> NotifyError {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    let mut text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if let Some(p) = password.map(Secret::expose).filter(|p| p.len() >= 4) {
        text = text.replace(p, "<redacted>");
    }
    let text = format!("smtp: {}", truncate(text.trim(), 300, "…"));
    if e.is_permanent() || e.is_client() {
        NotifyError::permanent(text)
    } else {
        NotifyError::retryable(text)
    }
}

fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The subject: the message's own, or a digest's count and first title.
pub fn subject(config: &EmailConfig, messages: &[Message]) -> String {
    let prefix = config.subject_prefix.clone().unwrap_or_default();
    let subject = match messages {
        [] => "tocsin: nothing to report".to_string(),
        [only] => format!("{} {}", title_tag(only), title_or_kind(only)),
        [first, rest @ ..] => format!(
            "{} notifications: {} {} (+{} more)",
            messages.len(),
            title_tag(first),
            title_or_kind(first),
            rest.len()
        ),
    };
    truncate(&one_line(&format!("{prefix}{subject}")), MAX_SUBJECT_CHARS, "…")
}

/// The plain-text rendering of one message.
pub fn text_part(message: &Message) -> String {
    let mut out = format!("{} {}\n", title_tag(message), title_or_kind(message));
    if !message.text.trim().is_empty() {
        out.push('\n');
        out.push_str(&truncate(message.text.trim(), MAX_TEXT_CHARS, TRUNCATION_MARKER));
        out.push('\n');
    }
    if !message.fields.is_empty() {
        out.push('\n');
        for f in &message.fields {
            out.push_str(&format!("{}: {}\n", f.name, truncate(&f.value, 2000, TRUNCATION_MARKER)));
        }
    }
    out.push('\n');
    for (k, v) in context_lines(message) {
        out.push_str(&format!("{k}: {v}\n"));
    }
    if let Some(link) = message.link.as_deref().and_then(safe_link) {
        out.push_str(&format!("Open: {link}\n"));
    }
    if let Some(more) = more_line(message) {
        out.push_str(&more);
        out.push('\n');
    }
    out
}

/// The HTML rendering of one message; every value escaped.
pub fn html_part(message: &Message) -> String {
    let mut out = format!(
        "<h2 style=\"color:#{:06X};margin:0 0 8px\">{} {}</h2>\n",
        severity_rgb(message),
        escape_html(&title_tag(message)),
        escape_html(&title_or_kind(message))
    );
    if !message.text.trim().is_empty() {
        let text = truncate(message.text.trim(), MAX_TEXT_CHARS, TRUNCATION_MARKER);
        out.push_str(&format!("<p style=\"white-space:pre-wrap\">{}</p>\n", escape_html(&text)));
    }
    if !message.fields.is_empty() {
        out.push_str("<table cellpadding=\"4\" style=\"border-collapse:collapse\">\n");
        for f in &message.fields {
            out.push_str(&format!(
                "<tr><th align=\"left\" valign=\"top\">{}</th><td style=\"white-space:pre-wrap\">{}</td></tr>\n",
                escape_html(&f.name),
                escape_html(&truncate(&f.value, 2000, TRUNCATION_MARKER))
            ));
        }
        out.push_str("</table>\n");
    }
    let mut notes: Vec<String> =
        context_lines(message).into_iter().map(|(k, v)| format!("{k}: {}", escape_html(&v))).collect();
    notes.extend(more_line(message).map(|m| escape_html(&m)));
    if !notes.is_empty() {
        out.push_str(&format!("<p style=\"color:#666;font-size:small\">{}</p>\n", notes.join("<br>")));
    }
    if let Some(link) = message.link.as_deref().and_then(safe_link) {
        out.push_str(&format!("<p><a href=\"{}\">Open</a></p>\n", escape_html_attr(link)));
    }
    out
}

/// The email for `messages` (one, or several folded into a digest): text and HTML alternatives.
pub fn build_email(
    config: &EmailConfig,
    from: &Mailbox,
    to: &[Mailbox],
    messages: &[Message],
) -> Result<lettre::Message, lettre::error::Error> {
    let text =
        messages.iter().map(text_part).collect::<Vec<_>>().join("\n----------------------------------------\n\n");
    let html_body = messages.iter().map(html_part).collect::<Vec<_>>().join("<hr>\n");
    let html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\
         <body style=\"font-family:sans-serif\">\n{html_body}</body></html>\n"
    );
    let mut builder = lettre::Message::builder().from(from.clone()).subject(subject(config, messages));
    for mailbox in to {
        builder = builder.to(mailbox.clone());
    }
    builder.multipart(
        MultiPart::alternative()
            .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text))
            .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageStatus;
    use crate::notify::http::testing::{message, refused_port};
    use crate::testkit::fake_smtp::{FakeSmtp, SmtpFault};

    fn config(port: u16) -> EmailConfig {
        EmailConfig {
            host: "127.0.0.1".into(),
            port: Some(port),
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "tocsin <alerts@example.com>".into(),
            to: vec!["ops@example.com".into(), "Oncall <oncall@example.com>".into()],
            subject_prefix: Some("[tocsin] ".into()),
            hello_name: None,
        }
    }

    fn email(config: EmailConfig) -> Email {
        Email::new(config, Duration::from_secs(5))
    }

    #[test]
    fn tls_modes_and_default_ports() {
        let mut c = config(0);
        c.host = "smtp.example.com".into();
        c.port = None;
        for (mode, port) in [(SmtpTls::Starttls, 587), (SmtpTls::Tls, 465), (SmtpTls::None, 25)] {
            c.tls = mode;
            assert_eq!(c.port(), port);
            let t = tls(&c).expect("valid");
            match mode {
                SmtpTls::Starttls => assert!(matches!(t, Tls::Required(ref p) if p.domain() == "smtp.example.com")),
                SmtpTls::Tls => assert!(matches!(t, Tls::Wrapper(ref p) if p.domain() == "smtp.example.com")),
                SmtpTls::None => assert!(matches!(t, Tls::None)),
            }
        }
        let parsed: EmailConfig =
            toml::from_str("host = \"h\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]").expect("minimal config parses");
        assert_eq!((parsed.tls, parsed.port()), (SmtpTls::Starttls, 587));
        let parsed: EmailConfig =
            toml::from_str("host = \"h\"\ntls = \"tls\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]").expect("parses");
        assert_eq!(parsed.port(), 465);
    }

    #[test]
    fn renders_both_parts_escaped() {
        let mut m = message();
        m.title = "<b>Disk</b> & more".into();
        let html = html_part(&m);
        assert!(html.contains("[WARNING] &lt;b&gt;Disk&lt;/b&gt; &amp; more</h2>"), "{html}");
        assert!(html.contains("<th align=\"left\" valign=\"top\">host</th>"));
        assert!(html.contains("<a href=\"https://grafana.example/d/disk?var=a&amp;from=now-1h\">Open</a>"));
        let text = text_part(&m);
        assert!(text.starts_with("[WARNING] <b>Disk</b> & more\n\n/var is at 97%\n\nhost: db-1\n"), "{text}");
        assert!(text.contains("Open: https://grafana.example/d/disk?var=a&from=now-1h"));
        m.text = "x".repeat(MAX_TEXT_CHARS + 10);
        assert!(text_part(&m).contains(TRUNCATION_MARKER));
    }

    #[test]
    fn subjects() {
        let c = config(25);
        let mut m = message();
        assert_eq!(subject(&c, std::slice::from_ref(&m)), "[tocsin] [WARNING] Disk almost full");
        m.title = "line\r\nBcc: evil@example.com".into();
        assert_eq!(subject(&c, std::slice::from_ref(&m)), "[tocsin] [WARNING] line  Bcc: evil@example.com");
        let mut resolved = message();
        resolved.status = MessageStatus::Resolved;
        assert_eq!(
            subject(&c, &[message(), resolved, message()]),
            "[tocsin] 3 notifications: [WARNING] Disk almost full (+2 more)"
        );
    }

    #[tokio::test]
    async fn delivers_over_a_real_smtp_session() {
        let fake = FakeSmtp::start().await;
        fake.require_credentials("tocsin", "smtp-password-123");
        let mut c = config(fake.port());
        c.username = Some("tocsin".into());
        c.password = Some(Secret::new("smtp-password-123"));
        email(c).send(&message()).await.expect("delivered");
        let mails = fake.mails();
        assert_eq!(mails.len(), 1);
        let mail = &mails[0];
        assert_eq!(mail.from, "alerts@example.com");
        assert_eq!(mail.to, ["ops@example.com", "oncall@example.com"]);
        assert_eq!(mail.user.as_deref(), Some("tocsin"));
        assert_eq!(mail.header("Subject").as_deref(), Some("[tocsin] [WARNING] Disk almost full"));
        let to = mail.header("To").unwrap_or_default();
        assert!(to.contains("ops@example.com") && to.contains("Oncall <oncall@example.com>"), "{to}");
        assert!(mail.header("Content-Type").unwrap_or_default().starts_with("multipart/alternative"));
        let parts = mail.parts();
        let kinds: Vec<&str> = parts.iter().map(|p| p.content_type.as_str()).collect();
        assert_eq!(kinds, ["text/plain", "text/html"]);
        assert_eq!(parts[0].body.replace("\r\n", "\n"), text_part(&message()));
        assert!(parts[1].body.contains("<h2 style=\"color:#ECB22E;margin:0 0 8px\">[WARNING] Disk almost full</h2>"));
    }

    #[tokio::test]
    async fn a_digest_is_one_email() {
        let fake = FakeSmtp::start().await;
        let mut second = message();
        second.title = "CPU hot".into();
        email(config(fake.port())).send_digest(&[message(), second]).await.expect("delivered");
        let mails = fake.mails();
        assert_eq!(mails.len(), 1);
        assert_eq!(
            mails[0].header("Subject").as_deref(),
            Some("[tocsin] 2 notifications: [WARNING] Disk almost full (+1 more)")
        );
        let parts = mails[0].parts();
        assert!(parts[0].body.contains("Disk almost full") && parts[0].body.contains("CPU hot"));
        assert!(parts[1].body.contains("<hr>"));
    }

    #[tokio::test]
    async fn classifies_smtp_failures() {
        let fake = FakeSmtp::start().await;
        let n = email(config(fake.port()));
        fake.set_faults([SmtpFault::Transient, SmtpFault::Permanent, SmtpFault::Drop]);
        let e = n.send(&message()).await.expect_err("451");
        assert!(e.is_retryable() && e.to_string().contains("451"), "{e}");
        let e = n.send(&message()).await.expect_err("550");
        assert!(!e.is_retryable() && e.to_string().contains("550") && e.to_string().contains("User unknown"), "{e}");
        let e = n.send(&message()).await.expect_err("dropped");
        assert!(e.is_retryable(), "{e}");
        n.send(&message()).await.expect("then delivered");
        assert_eq!(fake.mails().len(), 1);

        let e = email(config(refused_port())).send(&message()).await.expect_err("refused");
        assert!(e.is_retryable(), "{e}");

        // The fake has no STARTTLS: a required upgrade must fail, never fall back to plain.
        let mut c = config(fake.port());
        c.tls = SmtpTls::Starttls;
        let e = email(c).send(&message()).await.expect_err("no STARTTLS");
        assert!(!e.is_retryable(), "{e}");
        assert_eq!(fake.mails().len(), 1);

        let mut c = config(fake.port());
        c.from = "not an address".into();
        let e = email(c).send(&message()).await.expect_err("bad from");
        assert!(!e.is_retryable() && e.to_string().contains("`from`"), "{e}");
    }

    #[tokio::test]
    async fn errors_never_show_the_password() {
        let fake = FakeSmtp::start().await;
        fake.require_credentials("tocsin", "right-password");
        let password = "wrong-password-4321";
        let mut c = config(fake.port());
        c.username = Some("tocsin".into());
        c.password = Some(Secret::new(password));
        let e = email(c.clone()).send(&message()).await.expect_err("535");
        assert!(!e.is_retryable() && e.to_string().contains("535"), "{e}");
        let mut errors = vec![e];
        c.port = Some(refused_port());
        errors.push(email(c.clone()).send(&message()).await.expect_err("refused"));
        for e in errors {
            for shown in [e.to_string(), format!("{e:?}")] {
                assert!(!shown.contains(password), "leaked in {shown}");
            }
        }
        assert!(!format!("{c:?}").contains(password), "the config's Debug hides it too");
    }
}
