//! Notifiers (Vector's "sinks"): one trait, one module per target.
//!
//! Adding a notifier is one file with its config struct and `impl Notifier`, plus one variant
//! of [`NotifierConfig`]; the compiler then points at the `match` in [`build`].

pub mod console;
pub mod delivery;
pub mod discord;
pub mod email;
pub mod health;
pub(crate) mod http;
pub mod mattermost;
pub mod pagerduty;
pub mod slack_app;
pub mod slack_webhook;
pub mod teams;
pub mod telegram;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::message::Message;

/// Why a delivery failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// Worth retrying: 5xx, timeouts, dropped connections, rate limits.
    #[error("{message}")]
    Retryable {
        message: String,
        /// The target asked us to wait this long (429 Retry-After).
        retry_after: Option<Duration>,
    },
    /// Retrying the same request cannot succeed (a payload the target refuses).
    #[error("{message}")]
    Permanent { message: String },
    /// The destination itself is gone (revoked webhook, archived channel, refused token):
    /// every later message would fail the same way until the notifier is fixed.
    #[error("{message}")]
    Gone { message: String },
}

impl NotifyError {
    pub fn retryable(message: impl Into<String>) -> Self {
        NotifyError::Retryable { message: message.into(), retry_after: None }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        NotifyError::Permanent { message: message.into() }
    }

    pub fn gone(message: impl Into<String>) -> Self {
        NotifyError::Gone { message: message.into() }
    }

    pub fn is_gone(&self) -> bool {
        matches!(self, NotifyError::Gone { .. })
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, NotifyError::Retryable { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            NotifyError::Retryable { retry_after, .. } => *retry_after,
            NotifyError::Permanent { .. } | NotifyError::Gone { .. } => None,
        }
    }
}

/// A destination that can receive messages.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers one message. Errors must never contain secrets (webhook URLs, tokens).
    async fn send(&self, message: &Message) -> Result<(), NotifyError>;
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NotifierConfig {
    SlackWebhook(slack_webhook::SlackWebhookConfig),
    Console(console::ConsoleConfig),
    Webhook(webhook::WebhookConfig),
    Teams(teams::TeamsConfig),
    Discord(discord::DiscordConfig),
    Mattermost(mattermost::MattermostConfig),
    Email(email::EmailConfig),
    #[serde(rename = "pagerduty")]
    PagerDuty(pagerduty::PagerDutyConfig),
    Telegram(telegram::TelegramConfig),
    SlackApp(slack_app::SlackAppConfig),
}

impl NotifierConfig {
    /// The `type` names, as written in the configuration.
    pub const TYPE_NAMES: &'static [&'static str] = &[
        "slack_webhook",
        "slack_app",
        "console",
        "webhook",
        "teams",
        "discord",
        "mattermost",
        "email",
        "pagerduty",
        "telegram",
    ];

    /// This notifier's `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            NotifierConfig::SlackWebhook(_) => "slack_webhook",
            NotifierConfig::SlackApp(_) => "slack_app",
            NotifierConfig::Console(_) => "console",
            NotifierConfig::Webhook(_) => "webhook",
            NotifierConfig::Teams(_) => "teams",
            NotifierConfig::Discord(_) => "discord",
            NotifierConfig::Mattermost(_) => "mattermost",
            NotifierConfig::Email(_) => "email",
            NotifierConfig::PagerDuty(_) => "pagerduty",
            NotifierConfig::Telegram(_) => "telegram",
        }
    }

    /// Whether the target limits each channel on its own, so each channel is a destination
    /// with its own order and pace. Webhooks are limited per URL, whatever channel they name.
    pub fn paces_per_channel(&self) -> bool {
        matches!(self, NotifierConfig::SlackApp(_) | NotifierConfig::Telegram(_))
    }

    /// The URLs this notifier sends to, by config key, for validation.
    pub fn urls(&self) -> Vec<(&'static str, &str)> {
        match self {
            NotifierConfig::SlackWebhook(c) => vec![("url", c.url.expose())],
            NotifierConfig::Webhook(c) => vec![("url", c.url.expose())],
            NotifierConfig::Teams(c) => vec![("url", c.url.expose())],
            NotifierConfig::Discord(c) => vec![("url", c.url.expose())],
            NotifierConfig::Mattermost(c) => vec![("url", c.url.expose())],
            NotifierConfig::PagerDuty(c) => vec![("url", c.url.as_str())],
            NotifierConfig::Telegram(c) => vec![("api_url", c.api_url.as_str())],
            NotifierConfig::SlackApp(c) => vec![("api_url", c.api_url.as_str())],
            NotifierConfig::Console(_) | NotifierConfig::Email(_) => vec![],
        }
    }

    /// The keys (tokens, signing secrets) this notifier authenticates with, by config key, for
    /// validation: an empty one would sign or authenticate with nothing.
    pub fn keys(&self) -> Vec<(&'static str, &str)> {
        match self {
            NotifierConfig::Webhook(c) => c.secret.iter().map(|s| ("secret", s.expose())).collect(),
            NotifierConfig::PagerDuty(c) => vec![("routing_key", c.routing_key.expose())],
            NotifierConfig::Telegram(c) => vec![("bot_token", c.bot_token.expose())],
            NotifierConfig::SlackApp(c) => std::iter::once(("token", c.token.expose()))
                .chain(c.signing_secret.iter().map(|s| ("signing_secret", s.expose())))
                .collect(),
            NotifierConfig::Email(c) => c.password.iter().map(|s| ("password", s.expose())).collect(),
            NotifierConfig::SlackWebhook(_)
            | NotifierConfig::Teams(_)
            | NotifierConfig::Discord(_)
            | NotifierConfig::Mattermost(_)
            | NotifierConfig::Console(_) => vec![],
        }
    }

    /// Values of this notifier's own keys that its target would ignore or misread, by key.
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        match self {
            NotifierConfig::SlackWebhook(c) => c.problems(),
            _ => Vec::new(),
        }
    }

    /// The target's own posting limit, so the pipeline never provokes a 429 in steady state.
    /// Slack allows one message per second per webhook (with short bursts, unpublished).
    pub fn default_rate_limit(&self) -> Option<crate::config::RateLimitConfig> {
        let limit = |per_second, burst| Some(crate::config::RateLimitConfig { per_second, burst });
        match self {
            NotifierConfig::SlackWebhook(_) => limit(1.0, 1),
            // chat.postMessage: one message per second per channel; destinations are per channel.
            NotifierConfig::SlackApp(_) => limit(1.0, 1),
            // 30 messages a minute per channel.
            NotifierConfig::Discord(_) => limit(0.5, 5),
            // One message per second per chat.
            NotifierConfig::Telegram(_) => limit(1.0, 1),
            // Teams workflows throttle bursts of more than a few per second.
            NotifierConfig::Teams(_) => limit(1.0, 4),
            // 120 events a minute per routing key.
            NotifierConfig::PagerDuty(_) => limit(2.0, 10),
            // An inbox is not a chat: at most one email a minute to the same recipients; what
            // comes meanwhile is batched into the next one (see `fold_threshold`).
            NotifierConfig::Email(_) => limit(1.0 / 60.0, 1),
            NotifierConfig::Console(_) | NotifierConfig::Webhook(_) | NotifierConfig::Mattermost(_) => None,
        }
    }

    /// How many due messages make a paced destination fold them into one, when the target
    /// wants that sooner than `delivery.fold_threshold`: email batches everything per recipient.
    pub fn fold_threshold(&self) -> Option<usize> {
        match self {
            NotifierConfig::Email(_) => Some(1),
            _ => None,
        }
    }
}

/// What notifiers share: an HTTP client, the delivery timeout and, in the daemon, the store
/// (the `slack_app` notifier keeps its threads there).
#[derive(Clone)]
pub struct NotifierContext {
    pub http: reqwest::Client,
    pub timeout: Duration,
    pub store: Option<crate::store::DynStore>,
}

impl NotifierContext {
    pub fn new(timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
            // Following a 301/302/303 turns the POST into a bodiless GET, and that GET's 2xx
            // would count as delivered: the message lost. A redirect is the target's error.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the TLS backend initializes");
        NotifierContext { http, timeout, store: None }
    }

    /// The same context with a store, for notifiers that keep state.
    pub fn with_store(mut self, store: crate::store::DynStore) -> Self {
        self.store = Some(store);
        self
    }
}

pub fn build(name: &str, config: &NotifierConfig, ctx: &NotifierContext) -> Arc<dyn Notifier> {
    match config {
        NotifierConfig::SlackWebhook(c) => Arc::new(slack_webhook::SlackWebhook::new(c.clone(), ctx.http.clone())),
        NotifierConfig::Console(c) => Arc::new(console::Console::new(c.clone())),
        NotifierConfig::Webhook(c) => Arc::new(webhook::Webhook::new(name, c.clone(), ctx.http.clone())),
        NotifierConfig::Teams(c) => Arc::new(teams::Teams::new(c.clone(), ctx.http.clone())),
        NotifierConfig::Discord(c) => Arc::new(discord::Discord::new(c.clone(), ctx.http.clone())),
        NotifierConfig::Mattermost(c) => Arc::new(mattermost::Mattermost::new(c.clone(), ctx.http.clone())),
        NotifierConfig::Email(c) => Arc::new(email::Email::new(c.clone(), ctx.timeout)),
        NotifierConfig::PagerDuty(c) => Arc::new(pagerduty::PagerDuty::new(c.clone(), ctx.http.clone())),
        NotifierConfig::Telegram(c) => Arc::new(telegram::Telegram::new(c.clone(), ctx.http.clone())),
        NotifierConfig::SlackApp(c) => {
            Arc::new(slack_app::SlackApp::new(name, c.clone(), ctx.http.clone(), ctx.store.clone()))
        }
    }
}

/// Every configured notifier, by name.
pub fn build_all(
    configs: &BTreeMap<String, NotifierConfig>,
    ctx: &NotifierContext,
) -> BTreeMap<String, Arc<dyn Notifier>> {
    configs.iter().map(|(name, c)| (name.clone(), build(name, c, ctx))).collect()
}
