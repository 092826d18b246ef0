//! `slack_webhook`: Slack incoming webhooks with Block Kit. (to be completed)

use async_trait::async_trait;
use serde::Deserialize;

use super::{NotifyError, Notifier};
use crate::config::Secret;
use crate::message::Message;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackWebhookConfig {
    pub url: Secret,
    pub username: Option<String>,
    pub icon_emoji: Option<String>,
    pub icon_url: Option<String>,
    pub channel: Option<String>,
}

pub struct SlackWebhook {
    #[allow(dead_code)]
    config: SlackWebhookConfig,
    #[allow(dead_code)]
    http: reqwest::Client,
}

impl SlackWebhook {
    pub fn new(config: SlackWebhookConfig, http: reqwest::Client) -> Self {
        SlackWebhook { config, http }
    }
}

#[async_trait]
impl Notifier for SlackWebhook {
    async fn send(&self, _message: &Message) -> Result<(), NotifyError> {
        Err(NotifyError::permanent("not implemented"))
    }
}
