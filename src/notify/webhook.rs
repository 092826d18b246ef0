//! `webhook`: a generic JSON POST, optionally signed. (to be completed)

use async_trait::async_trait;
use serde::Deserialize;

use super::{NotifyError, Notifier};
use crate::config::Secret;
use crate::message::Message;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: Secret,
    pub secret: Option<Secret>,
}

pub struct Webhook {
    #[allow(dead_code)]
    name: String,
    #[allow(dead_code)]
    config: WebhookConfig,
    #[allow(dead_code)]
    http: reqwest::Client,
}

impl Webhook {
    pub fn new(name: &str, config: WebhookConfig, http: reqwest::Client) -> Self {
        Webhook { name: name.to_string(), config, http }
    }
}

#[async_trait]
impl Notifier for Webhook {
    async fn send(&self, _message: &Message) -> Result<(), NotifyError> {
        Err(NotifyError::permanent("not implemented"))
    }
}
