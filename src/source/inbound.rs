//! Generic inbound webhooks: any JSON payload becomes an event through minijinja templates,
//! optionally after an HMAC check of the body.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use minijinja::{Environment, UndefinedBehavior};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::config::{WebhookConfig, WebhookHmac};

/// A configured webhook with its templates compiled.
pub struct Webhook {
    pub name: String,
    pub hmac: Option<WebhookHmac>,
    env: Environment<'static>,
    when: Option<String>,
    /// Event member → template name.
    parts: Vec<&'static str>,
    labels: Vec<String>,
    fields: Vec<String>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("name", &self.name).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error("the signature header {0} is missing")]
    MissingSignature(String),
    #[error("the signature does not match the body")]
    BadSignature,
    #[error("the template for {part} failed: {message}")]
    Template { part: String, message: String },
}

impl Webhook {
    pub fn new(c: &WebhookConfig) -> Result<Webhook, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        let mut add = |name: String, source: &str| {
            env.add_template_owned(name.clone(), source.to_string())
                .map_err(|e| format!("webhook {:?}: template {name}: {e}", c.name))
        };
        let mut parts = vec!["kind"];
        add("kind".into(), &c.kind)?;
        for (part, t) in [
            ("severity", &c.severity),
            ("title", &c.title),
            ("text", &c.text),
            ("user", &c.user),
            ("fingerprint", &c.fingerprint),
            ("link", &c.link),
            ("status", &c.status),
        ] {
            if let Some(t) = t {
                add(part.into(), t)?;
                parts.push(part);
            }
        }
        for (k, t) in &c.labels {
            add(format!("labels.{k}"), t)?;
        }
        for (k, t) in &c.fields {
            add(format!("fields.{k}"), t)?;
        }
        Ok(Webhook {
            name: c.name.clone(),
            hmac: c.hmac.clone(),
            env,
            when: c.when.clone(),
            parts,
            labels: c.labels.keys().cloned().collect(),
            fields: c.fields.keys().cloned().collect(),
        })
    }

    /// Checks the body's signature when the webhook has an `hmac` section.
    pub fn verify(&self, header: impl Fn(&str) -> Option<String>, body: &[u8]) -> Result<(), InboundError> {
        let Some(h) = &self.hmac else { return Ok(()) };
        let presented = header(&h.header).ok_or_else(|| InboundError::MissingSignature(h.header.clone()))?;
        let hex_part = presented.trim().strip_prefix(h.prefix.as_str()).ok_or(InboundError::BadSignature)?;
        let given = hex::decode(hex_part.trim()).map_err(|_| InboundError::BadSignature)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(h.secret.expose().as_bytes()).expect("any key length");
        mac.update(body);
        let expected = mac.finalize().into_bytes();
        if given.len() == expected.len() && bool::from(given.ct_eq(&expected)) {
            Ok(())
        } else {
            Err(InboundError::BadSignature)
        }
    }

    /// The event's JSON (validated afterwards like any event), or `None` when `when` is false.
    pub fn render(&self, payload: &Value, headers: &BTreeMap<String, String>) -> Result<Option<Value>, InboundError> {
        let ctx = minijinja::context! { payload => payload, headers => headers, webhook => &self.name };
        if let Some(when) = &self.when {
            let expr = self
                .env
                .compile_expression(when)
                .map_err(|e| InboundError::Template { part: "when".into(), message: e.to_string() })?;
            let v =
                expr.eval(&ctx).map_err(|e| InboundError::Template { part: "when".into(), message: e.to_string() })?;
            if !v.is_true() {
                return Ok(None);
            }
        }
        let render = |name: &str| -> Result<String, InboundError> {
            let t = self
                .env
                .get_template(name)
                .map_err(|e| InboundError::Template { part: name.into(), message: e.to_string() })?;
            t.render(&ctx)
                .map(|s| s.trim().to_string())
                .map_err(|e| InboundError::Template { part: name.into(), message: e.to_string() })
        };
        let mut out = Map::new();
        for part in &self.parts {
            let v = render(part)?;
            if !v.is_empty() {
                out.insert(part.to_string(), json!(v));
            }
        }
        let mut labels = Map::new();
        for k in &self.labels {
            let v = render(&format!("labels.{k}"))?;
            if !v.is_empty() {
                labels.insert(k.clone(), json!(v));
            }
        }
        let mut fields = Map::new();
        for k in &self.fields {
            let v = render(&format!("fields.{k}"))?;
            if !v.is_empty() {
                fields.insert(k.clone(), json!(v));
            }
        }
        if !labels.is_empty() {
            out.insert("labels".into(), Value::Object(labels));
        }
        if !fields.is_empty() {
            out.insert("fields".into(), Value::Object(fields));
        }
        Ok(Some(Value::Object(out)))
    }
}
