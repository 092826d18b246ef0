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

pub fn render_text(message: &Message) -> String {
    let mut out = format!("[{}] {}", message.severity.as_str().to_uppercase(), message.title);
    if message.status != crate::message::MessageStatus::Event {
        out.push_str(&format!(" ({})", message.status.as_str()));
    }
    if let Some(channel) = &message.channel {
        out.push_str(&format!(" → {channel}"));
    }
    out.push('\n');
    if !message.text.is_empty() {
        for line in message.text.lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    for field in &message.fields {
        out.push_str(&format!("  {}: {}\n", field.name, field.value));
    }
    if let Some(link) = &message.link {
        out.push_str(&format!("  {link}\n"));
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
