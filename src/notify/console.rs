//! `console`: prints each message to standard output, one block per message.

use std::io::Write;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Notifier, NotifyError};
use crate::message::Message;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// `text` (default) for people, `json` for machines reading stdout.
    #[serde(default)]
    pub format: ConsoleFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleFormat {
    #[default]
    Text,
    Json,
}

pub struct Console {
    config: ConsoleConfig,
}

impl Console {
    pub fn new(config: ConsoleConfig) -> Self {
        Console { config }
    }
}

/// One line of a block: control characters (a newline in a title, a carriage return, NUL)
/// become spaces, so a sender cannot start a line that looks like another message.
fn line(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(char::is_control) {
        s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().into()
    } else {
        s.into()
    }
}

pub fn render_text(message: &Message) -> String {
    let mut out = format!("[{}] {}", message.severity.as_str().to_uppercase(), line(&message.title));
    if message.status != crate::message::MessageStatus::Event {
        out.push_str(&format!(" ({})", message.status.as_str()));
    }
    if let Some(channel) = &message.channel {
        out.push_str(&format!(" → {}", line(channel)));
    }
    out.push('\n');
    if !message.text.is_empty() {
        for text_line in message.text.lines() {
            out.push_str("  ");
            out.push_str(&line(text_line));
            out.push('\n');
        }
    }
    for field in &message.fields {
        out.push_str(&format!("  {}: {}\n", line(&field.name), line(&field.value)));
    }
    if let Some(link) = &message.link {
        out.push_str(&format!("  {}\n", line(link)));
    }
    if message.truncated > 0 {
        out.push_str(&format!("  … and {} more\n", message.truncated));
    }
    out
}

#[async_trait]
impl Notifier for Console {
    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let rendered = match self.config.format {
            ConsoleFormat::Text => render_text(message),
            ConsoleFormat::Json => {
                let mut s = serde_json::to_string(message).map_err(|e| NotifyError::permanent(e.to_string()))?;
                s.push('\n');
                s
            }
        };
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(rendered.as_bytes())
            .and_then(|_| stdout.flush())
            .map_err(|e| NotifyError::retryable(format!("cannot write to standard output: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Severity;
    use crate::message::{Field, MessageStatus};

    #[test]
    fn a_sender_cannot_forge_a_line_of_another_message() {
        let message = Message {
            title: "ok\n[CRITICAL] forged\r\0".into(),
            text: "first\nsecond\r[ERROR] x".into(),
            severity: Severity::Info,
            status: MessageStatus::Event,
            fields: vec![Field { name: "k\n".into(), value: "v\n[ERROR] y".into() }],
            link: None,
            channel: None,
            group_key: "g".into(),
            group_labels: Default::default(),
            events: vec![],
            truncated: 0,
            mention: None,
        };
        let out = render_text(&message);
        assert_eq!(out, "[INFO] ok [CRITICAL] forged  \n  first\n  second [ERROR] x\n  k : v [ERROR] y\n");
        assert!(out.lines().skip(1).all(|l| l.starts_with("  ")), "{out}");
    }
}
