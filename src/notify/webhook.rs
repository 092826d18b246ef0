//! `webhook`: a generic JSON POST, optionally signed, for receivers of our own (the body and
//! the signature are documented in `docs/notifiers.md`).
//!
//! The HTTP helpers at the bottom are shared with `slack_webhook`: both must classify failures
//! the same way and both must keep the URL, which is a credential, out of every error.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use super::{Notifier, NotifyError};
use crate::config::Secret;
use crate::message::Message;

pub const TIMESTAMP_HEADER: &str = "X-Tocsin-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Tocsin-Signature";
/// The version of the request body; bumped only for incompatible changes.
pub const PAYLOAD_VERSION: u64 = 1;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: Secret,
    pub secret: Option<Secret>,
}

pub struct Webhook {
    name: String,
    config: WebhookConfig,
    http: reqwest::Client,
}

impl Webhook {
    pub fn new(name: &str, config: WebhookConfig, http: reqwest::Client) -> Self {
        Webhook { name: name.to_string(), config, http }
    }
}

/// The request body for notifier `name`.
pub fn payload(name: &str, message: &Message) -> Value {
    json!({
        "version": PAYLOAD_VERSION,
        "notifier": name,
        "channel": message.channel,
        "status": message.status.as_str(),
        "group_key": message.group_key,
        "group_labels": message.group_labels,
        "title": message.title,
        "text": message.text,
        "events": message.events,
        "truncated": message.truncated,
    })
}

/// `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. The timestamp is signed too so a
/// receiver can refuse replays of an old request.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` can fail only for fixed-size MACs.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[async_trait]
impl Notifier for Webhook {
    async fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(&payload(&self.name, message))
            .map_err(|e| NotifyError::permanent(format!("cannot encode the webhook body: {e}")))?;
        let mut request = self.http.post(self.config.url.expose()).header(CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.config.secret {
            let timestamp = Utc::now().timestamp();
            request = request
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, sign(secret.expose().as_bytes(), timestamp, &body));
        }
        let secrets = Secrets::new(&self.config.url, self.config.secret.as_ref());
        let response = request.body(body).send().await.map_err(|e| send_error("webhook", e, &secrets))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let headers = response.headers().clone();
        let detail = error_body(response, &secrets).await;
        let message = if detail.is_empty() {
            format!("webhook answered {}", status.as_u16())
        } else {
            format!("webhook answered {} {detail}", status.as_u16())
        };
        Err(classify_status(status, &headers, message))
    }
}

/// Values that must never appear in an error: the URL (and its path, where tokens live) and any
/// signing secret.
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    pub(crate) fn new(url: &Secret, extra: Option<&Secret>) -> Secrets {
        let mut values = vec![url.expose().to_string()];
        if let Ok(parsed) = url::Url::parse(url.expose()) {
            // reqwest prints the normalized form, which may differ from the configured text.
            values.push(parsed.to_string());
            values.push(parsed.path().to_string());
            if let Some(query) = parsed.query() {
                values.push(query.to_string());
            }
            values.extend(parsed.path_segments().into_iter().flatten().map(str::to_string));
            if !parsed.password().unwrap_or("").is_empty() {
                values.extend(parsed.password().map(str::to_string));
            }
        }
        values.extend(extra.map(|s| s.expose().to_string()));
        // Short fragments ("/", "services") are not secret, and replacing them would garble text.
        values.retain(|v| v.len() >= 8);
        // Longest first, so a URL is replaced whole rather than piece by piece.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        Secrets(values)
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for value in &self.0 {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), "<redacted>");
            }
        }
        out
    }
}

/// A transport failure: the request may or may not have arrived, so it is worth retrying,
/// except when it could never have been sent (a malformed URL).
pub(crate) fn send_error(target: &str, err: reqwest::Error, secrets: &Secrets) -> NotifyError {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else if err.is_builder() {
        "cannot build the request (check the URL)"
    } else {
        "request failed"
    };
    let permanent = err.is_builder();
    let err = err.without_url();
    let mut chain = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    while let Some(e) = source {
        let text = e.to_string();
        if !chain.contains(&text) {
            chain.push(text);
        }
        source = e.source();
    }
    let message = secrets.redact(&format!("{target} {what}: {}", chain.join(": ")));
    if permanent {
        NotifyError::permanent(message)
    } else {
        NotifyError::retryable(message)
    }
}

/// 429 waits for `Retry-After`, 5xx retries, every other non-success status is final.
pub(crate) fn classify_status(status: StatusCode, headers: &HeaderMap, message: String) -> NotifyError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        NotifyError::Retryable { message, retry_after: Some(retry_after(headers)) }
    } else if status.is_server_error() {
        NotifyError::retryable(message)
    } else {
        NotifyError::permanent(message)
    }
}

/// Waiting longer than this is the retry policy's business, not the target's.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// What Slack's own SDK assumes when a 429 carries no usable header.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// `Retry-After` as seconds or an HTTP date; 1 s when absent or unreadable.
pub(crate) fn retry_after(headers: &HeaderMap) -> Duration {
    let Some(value) = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::trim) else {
        return DEFAULT_RETRY_AFTER;
    };
    let wait = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else if let Ok(date) = chrono::DateTime::parse_from_rfc2822(value) {
        (date.with_timezone(&Utc) - Utc::now()).to_std().unwrap_or(Duration::ZERO)
    } else {
        return DEFAULT_RETRY_AFTER;
    };
    wait.min(MAX_RETRY_AFTER)
}

/// Enough of an error body to say what went wrong, on one line, without secrets.
pub(crate) async fn error_body(mut response: reqwest::Response, secrets: &Secrets) -> String {
    const MAX_BYTES: usize = 1024;
    const MAX_CHARS: usize = 200;
    let mut bytes = Vec::new();
    // Read only the start: an error page can be large and its tail says nothing more.
    while bytes.len() < MAX_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(MAX_BYTES);
    let text = String::from_utf8_lossy(&bytes);
    let one_line: String =
        text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_CHARS).collect::<String>();
    secrets.redact(one_line.trim())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::event::{Event, Severity};
    use crate::message::MessageStatus;
    use crate::testkit::fake_receiver::{FakeReceiver, Reply};

    fn message() -> Message {
        let now = "2026-11-21T16:00:00Z".parse().unwrap_or_else(|_| Utc::now());
        let event = crate::event::parse_event(
            &json!({"kind": "es.cluster.red", "severity": "critical", "labels": {"cluster": "main"}}),
            "",
            "checks",
            now,
        );
        let event: Event = match event {
            Ok(e) => e,
            Err(e) => panic!("test event is valid: {e}"),
        };
        Message {
            title: "Cluster main is red".into(),
            text: "3 shards unassigned".into(),
            severity: Severity::Critical,
            status: MessageStatus::Firing,
            fields: vec![],
            link: None,
            channel: Some("#ops".into()),
            group_key: "route-1/cluster=main".into(),
            group_labels: BTreeMap::from([("cluster".to_string(), "main".to_string())]),
            events: vec![event],
            truncated: 2,
            mention: None,
        }
    }

    fn notifier(url: String, secret: Option<&str>) -> Webhook {
        let config = WebhookConfig { url: Secret::new(url), secret: secret.map(Secret::new) };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("a client");
        Webhook::new("ops-hook", config, http)
    }

    #[test]
    fn payload_follows_the_contract() {
        let m = message();
        let p = payload("ops-hook", &m);
        assert_eq!(p["version"], 1);
        assert_eq!(p["notifier"], "ops-hook");
        assert_eq!(p["channel"], "#ops");
        assert_eq!(p["status"], "firing");
        assert_eq!(p["group_key"], "route-1/cluster=main");
        assert_eq!(p["group_labels"], json!({"cluster": "main"}));
        assert_eq!(p["title"], "Cluster main is red");
        assert_eq!(p["text"], "3 shards unassigned");
        assert_eq!(p["truncated"], 2);
        assert_eq!(p["events"][0]["kind"], "es.cluster.red");
        assert_eq!(p["events"][0]["severity"], "critical");
        assert_eq!(p["events"][0]["fingerprint"], m.events[0].fingerprint);
        let mut resolved = m;
        resolved.status = MessageStatus::Resolved;
        resolved.channel = None;
        let p = payload("ops-hook", &resolved);
        assert_eq!((p["status"].clone(), p["channel"].clone()), (json!("resolved"), Value::Null));
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac s3cret
        assert_eq!(
            sign(b"s3cret", 1_700_000_000, br#"{"a":1}"#),
            "sha256=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"
        );
    }

    #[tokio::test]
    async fn signed_request_verifies() {
        let fake = FakeReceiver::start().await;
        let notifier = notifier(fake.url(), Some("hook-signing-secret"));
        let before = Utc::now().timestamp();
        let m = message();
        notifier.send(&m).await.expect("delivered");
        let requests = fake.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.method, reqwest::Method::POST);
        assert_eq!(request.header("content-type"), Some("application/json"));
        let timestamp = request.header("x-tocsin-timestamp").expect("a timestamp");
        let timestamp_value: i64 = timestamp.parse().expect("unix seconds");
        assert!((before..=before + 5).contains(&timestamp_value));

        // Verify as a receiver would, with the hmac crate directly rather than `sign`.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"hook-signing-secret").expect("any key length");
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(&request.body);
        let signature = request.header("x-tocsin-signature").expect("a signature");
        let hex_part = signature.strip_prefix("sha256=").expect("the sha256= prefix");
        mac.verify_slice(&hex::decode(hex_part).expect("hex")).expect("the signature verifies");

        let body = request.json().expect("a JSON body");
        assert_eq!(body, payload("ops-hook", &m));
    }

    #[tokio::test]
    async fn unsigned_without_secret() {
        let fake = FakeReceiver::start().await;
        notifier(fake.url(), None).send(&message()).await.expect("delivered");
        let request = &fake.requests()[0];
        assert_eq!(request.header("x-tocsin-signature"), None);
        assert_eq!(request.header("x-tocsin-timestamp"), None);
    }

    #[tokio::test]
    async fn classifies_answers() {
        let fake = FakeReceiver::start().await;
        fake.set_replies([
            Reply::status(204),
            Reply::rate_limited("7"),
            Reply::rate_limited("soon"),
            Reply::status(429),
            Reply::with_body(503, "down for maintenance"),
            Reply::Drop,
            Reply::with_body(404, "no such hook"),
            Reply::status(400),
            Reply::status(410),
        ]);
        let n = notifier(fake.url(), Some("hook-signing-secret"));
        let m = message();
        assert_eq!(n.send(&m).await, Ok(()));
        let e = n.send(&m).await.expect_err("429");
        assert_eq!((e.is_retryable(), e.retry_after()), (true, Some(Duration::from_secs(7))));
        assert_eq!(e.to_string(), "webhook answered 429");
        for _ in 0..2 {
            let e = n.send(&m).await.expect_err("429");
            assert_eq!(e.retry_after(), Some(Duration::from_secs(1)), "the default when the header is unusable");
        }
        let e = n.send(&m).await.expect_err("503");
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "webhook answered 503 down for maintenance");
        let e = n.send(&m).await.expect_err("dropped");
        assert!(e.is_retryable(), "{e}");
        let e = n.send(&m).await.expect_err("404");
        assert_eq!(e, NotifyError::permanent("webhook answered 404 no such hook"));
        for status in [400, 410] {
            let e = n.send(&m).await.expect_err("4xx");
            assert!(!e.is_retryable(), "{status}: {e}");
        }
    }

    #[tokio::test]
    async fn a_redirect_is_a_failure_not_a_delivery() {
        let fake = FakeReceiver::start().await;
        fake.set_replies([Reply::redirect(302, "/moved"), Reply::redirect(308, "/moved")]);
        let http = crate::notify::NotifierContext::new(Duration::from_secs(2)).http;
        let config = WebhookConfig { url: Secret::new(fake.url()), secret: None };
        let n = Webhook::new("ops-hook", config, http);
        for status in [302, 308] {
            let e = n.send(&message()).await.expect_err("a redirect");
            assert_eq!(e, NotifyError::permanent(format!("webhook answered {status}")));
        }
        assert_eq!(fake.requests().len(), 2, "the redirect was not followed");
    }

    #[tokio::test]
    async fn errors_never_show_the_url_or_secret() {
        let secret = "sig-secret-0123456789";
        // A port nothing listens on: bind, learn the port, close.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}/hooks/tok-ABCDEFGHIJKLMNOP?key=QUERYSECRET123");
        let e = notifier(url, Some(secret)).send(&message()).await.expect_err("refused");
        assert!(e.is_retryable(), "{e}");
        let fake = FakeReceiver::start().await;
        let echo_url = format!("{}/hooks/tok-ABCDEFGHIJKLMNOP", fake.base_url());
        // A receiver that echoes the URL and the secret back must not get them into our errors.
        fake.set_replies([Reply::with_body(400, format!("bad request to {echo_url} signed with {secret}"))]);
        let e2 = notifier(echo_url.clone(), Some(secret)).send(&message()).await.expect_err("400");
        for e in [e, e2] {
            for shown in [e.to_string(), format!("{e:?}")] {
                for leak in ["tok-ABCDEFGHIJKLMNOP", "QUERYSECRET123", secret, "/hooks/"] {
                    assert!(!shown.contains(leak), "{leak} leaked in {shown}");
                }
            }
        }
    }

    #[test]
    fn retry_after_forms() {
        let h = |v: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, v.parse().expect("a header value"));
            retry_after(&headers)
        };
        assert_eq!(h("30"), Duration::from_secs(30));
        assert_eq!(h(" 2 "), Duration::from_secs(2));
        assert_eq!(h("999999"), MAX_RETRY_AFTER);
        assert_eq!(h("Wed, 21 Oct 2015 07:28:00 GMT"), Duration::ZERO, "a past date means now");
        assert_eq!(h("-1"), DEFAULT_RETRY_AFTER);
        assert_eq!(retry_after(&HeaderMap::new()), DEFAULT_RETRY_AFTER);
    }
}
