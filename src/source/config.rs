//! Configuration of the application event sources (issue 5): `[stripe]`, `[errors]`,
//! `[scrub]`, `[browser]`, `[client]`, `[[heartbeats]]`, `[[webhooks]]`, `[[rate_rules]]`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::{index_path, key_path, Config, Dur, Secret};
use crate::event::Severity;

/// `[stripe]`: verification of `POST /hooks/stripe`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// Endpoint signing secrets (`whsec_…`); several while rotating.
    pub signing_secrets: Vec<Secret>,
    /// Largest accepted difference between the signature's timestamp and now.
    #[serde(default = "default_tolerance")]
    pub tolerance: Dur,
}

fn default_tolerance() -> Dur {
    Dur::secs(300)
}

/// `[errors]`: when an error issue's occurrences are notified.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorsConfig {
    /// Occurrences within `spike_window` that make a spike (notified once per window).
    #[serde(default = "default_spike_threshold")]
    pub spike_threshold: u64,
    #[serde(default = "default_spike_window")]
    pub spike_window: Dur,
    /// An issue not seen for this long counts as resolved: its next occurrence is a regression.
    #[serde(default)]
    pub resolve_after: Option<Dur>,
}

impl Default for ErrorsConfig {
    fn default() -> Self {
        ErrorsConfig {
            spike_threshold: default_spike_threshold(),
            spike_window: default_spike_window(),
            resolve_after: None,
        }
    }
}

fn default_spike_threshold() -> u64 {
    100
}
fn default_spike_window() -> Dur {
    Dur::secs(3600)
}

/// `[scrub]`: what is removed from events before they are stored or sent, on top of the
/// built-in lists.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrubConfig {
    /// More header names (case-insensitive) whose values are replaced by `[Filtered]`.
    #[serde(default)]
    pub headers: Vec<String>,
    /// More substrings of field names (case-insensitive) whose values are replaced.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Replace Luhn-valid card numbers found in any string.
    #[serde(default = "yes")]
    pub card_numbers: bool,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig { headers: Vec::new(), fields: Vec::new(), card_numbers: true }
    }
}

fn yes() -> bool {
    true
}

/// `[browser]`: limits of `POST /api/v1/browser/events`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserConfig {
    /// Events above this severity are lowered to it.
    #[serde(default = "default_browser_severity")]
    pub max_severity: Severity,
    #[serde(default = "default_browser_body")]
    pub max_body_bytes: usize,
    #[serde(default = "default_browser_batch")]
    pub max_batch: usize,
    /// Sustained requests per minute from one IP address, and the burst allowed.
    #[serde(default = "default_ip_rate")]
    pub ip_rate_per_minute: u32,
    #[serde(default = "default_ip_burst")]
    pub ip_burst: u32,
    /// Sustained requests per minute with one key (all visitors of a site together).
    #[serde(default = "default_key_rate")]
    pub key_rate_per_minute: u32,
    #[serde(default = "default_key_burst")]
    pub key_burst: u32,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    #[serde(default)]
    pub trust_forwarded_for: bool,
}

impl Default for BrowserConfig {
    fn default() -> Self {
        BrowserConfig {
            max_severity: default_browser_severity(),
            max_body_bytes: default_browser_body(),
            max_batch: default_browser_batch(),
            ip_rate_per_minute: default_ip_rate(),
            ip_burst: default_ip_burst(),
            key_rate_per_minute: default_key_rate(),
            key_burst: default_key_burst(),
            trust_forwarded_for: false,
        }
    }
}

fn default_browser_severity() -> Severity {
    Severity::Warning
}
fn default_browser_body() -> usize {
    16 * 1024
}
fn default_browser_batch() -> usize {
    20
}
fn default_ip_rate() -> u32 {
    60
}
fn default_ip_burst() -> u32 {
    20
}
fn default_key_rate() -> u32 {
    600
}
fn default_key_burst() -> u32 {
    100
}

/// `[client]`: how commands such as `tocsin run-task` reach a running daemon.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The daemon's base URL; default `http://` + `server.listen`.
    pub url: Option<String>,
    /// An API key with the scope the command needs (heartbeats:write for run-task).
    pub key: Option<Secret>,
}

/// `[[heartbeats]]`: a scheduled task that reports in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    pub name: String,
    /// Cron expression (5 or 6 fields) of when the task runs; or `period`.
    pub schedule: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    /// Expected time between runs; or `schedule`.
    pub period: Option<Dur>,
    /// How late a run may be before it is reported.
    #[serde(default = "default_grace")]
    pub grace: Dur,
    /// A run still going after this long (since its start ping) is reported.
    pub max_duration: Option<Dur>,
    /// Severity of the alerts; default error.
    #[serde(default = "default_heartbeat_severity")]
    pub severity: Severity,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_grace() -> Dur {
    Dur::secs(300)
}
fn default_heartbeat_severity() -> Severity {
    Severity::Error
}

/// `[webhooks.hmac]`: signature verification of an inbound webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookHmac {
    /// The header carrying the signature, e.g. `X-Hub-Signature-256`.
    pub header: String,
    pub secret: Secret,
    /// Only `sha256`.
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// Text before the hex digest in the header, e.g. `sha256=`.
    #[serde(default)]
    pub prefix: String,
}

fn default_algorithm() -> String {
    "sha256".into()
}

/// `[[webhooks]]`: any JSON payload turned into an event by templates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Served at `POST /hooks/in/{name}`.
    pub name: String,
    pub hmac: Option<WebhookHmac>,
    /// A minijinja expression; when it is false the delivery is acknowledged and dropped.
    pub when: Option<String>,
    /// Templates over `payload` (the JSON body) and `headers` (lower-case names).
    pub kind: String,
    pub severity: Option<String>,
    pub title: Option<String>,
    pub text: Option<String>,
    pub user: Option<String>,
    pub fingerprint: Option<String>,
    pub link: Option<String>,
    pub status: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// `[[rate_rules]]`: unusual activity for a kind pattern.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateRuleConfig {
    pub name: String,
    /// Glob patterns on the event kind.
    pub kinds: Vec<String>,
    /// The counting window, ending now.
    pub window: Dur,
    /// Alert when fewer events than this arrived in the window.
    pub min: Option<u64>,
    /// Alert when more events than this arrived in the window.
    pub max: Option<u64>,
    /// Trailing period (before the window) whose average per window is the baseline.
    pub baseline: Option<Dur>,
    /// Alert when the count departs from the baseline by more than this percentage.
    pub deviation_percent: Option<f64>,
    /// No baseline verdict while the baseline averages fewer events per window than this.
    #[serde(default = "default_min_baseline")]
    pub min_baseline: f64,
    /// How often the rule is evaluated; default one tenth of the window, between 10s and 5m.
    pub every: Option<Dur>,
    #[serde(default = "default_rate_severity")]
    pub severity: Severity,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_min_baseline() -> f64 {
    1.0
}
fn default_rate_severity() -> Severity {
    Severity::Warning
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn check_template(errors: &mut Vec<(String, String)>, path: String, source: &str) {
    let env = minijinja::Environment::new();
    if let Err(e) = env.template_from_str(source) {
        errors.push((path, format!("invalid template: {e}")));
    }
}

/// Semantic checks of the sections above; listed in `config::VALIDATORS`.
pub fn validate_sources(config: &Config) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if let Some(stripe) = &config.stripe {
        if stripe.signing_secrets.is_empty() {
            errors.push(("stripe.signing_secrets".into(), "at least one signing secret is required".into()));
        }
        for (i, s) in stripe.signing_secrets.iter().enumerate() {
            if s.expose().is_empty() {
                errors.push((index_path("stripe.signing_secrets", i), "must not be empty".into()));
            }
        }
        if stripe.tolerance.get().is_zero() {
            errors.push(("stripe.tolerance".into(), "must be greater than 0".into()));
        }
    }
    if config.errors.spike_threshold == 0 {
        errors.push(("errors.spike_threshold".into(), "must be at least 1".into()));
    }
    if config.errors.spike_window.get().is_zero() {
        errors.push(("errors.spike_window".into(), "must be greater than 0".into()));
    }
    for (i, f) in config.scrub.fields.iter().enumerate() {
        if f.trim().is_empty() {
            errors.push((index_path("scrub.fields", i), "must not be empty".into()));
        }
    }
    for (i, h) in config.scrub.headers.iter().enumerate() {
        if h.trim().is_empty() {
            errors.push((index_path("scrub.headers", i), "must not be empty".into()));
        }
    }
    let b = &config.browser;
    for (key, v) in [
        ("max_body_bytes", b.max_body_bytes as u64),
        ("max_batch", b.max_batch as u64),
        ("ip_rate_per_minute", b.ip_rate_per_minute as u64),
        ("ip_burst", b.ip_burst as u64),
        ("key_rate_per_minute", b.key_rate_per_minute as u64),
        ("key_burst", b.key_burst as u64),
    ] {
        if v == 0 {
            errors.push((key_path("browser", key), "must be greater than 0".into()));
        }
    }
    if let Some(url) = &config.client.url {
        match url::Url::parse(url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => errors.push(("client.url".into(), "must be an http(s) URL such as \"http://127.0.0.1:9750\"".into())),
        }
    }

    let mut names = BTreeMap::new();
    for (i, hb) in config.heartbeats.iter().enumerate() {
        let path = index_path("heartbeats", i);
        if !valid_name(&hb.name) {
            errors.push((key_path(&path, "name"), "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'".into()));
        } else if let Some(first) = names.insert(hb.name.clone(), i) {
            errors.push((key_path(&path, "name"), format!("duplicate name {:?}: heartbeats[{first}] has it", hb.name)));
        }
        match (&hb.schedule, &hb.period) {
            (Some(_), Some(_)) => {
                errors.push((key_path(&path, "period"), "give either schedule or period, not both".into()))
            }
            (None, None) => errors.push((path.clone(), "a schedule (cron) or a period is required".into())),
            (None, Some(p)) if p.get().is_zero() => {
                errors.push((key_path(&path, "period"), "must be greater than 0".into()))
            }
            (Some(s), None) => {
                if let Err(e) = super::heartbeat::parse_cron(s) {
                    errors.push((key_path(&path, "schedule"), e));
                }
            }
            _ => {}
        }
        if let Some(tz) = &hb.timezone {
            if tz.parse::<chrono_tz::Tz>().is_err() {
                errors.push((
                    key_path(&path, "timezone"),
                    format!("unknown time zone {tz:?}; use an IANA name such as \"Europe/Paris\""),
                ));
            }
            if hb.schedule.is_none() {
                errors.push((key_path(&path, "timezone"), "only applies to a schedule".into()));
            }
        }
        if hb.max_duration.is_some_and(|d| d.get().is_zero()) {
            errors.push((key_path(&path, "max_duration"), "must be greater than 0".into()));
        }
    }

    let mut names = BTreeMap::new();
    for (i, w) in config.webhooks.iter().enumerate() {
        let path = index_path("webhooks", i);
        if !valid_name(&w.name) {
            errors.push((key_path(&path, "name"), "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'".into()));
        } else if let Some(first) = names.insert(w.name.clone(), i) {
            errors.push((key_path(&path, "name"), format!("duplicate name {:?}: webhooks[{first}] has it", w.name)));
        }
        if let Some(h) = &w.hmac {
            let hp = key_path(&path, "hmac");
            if h.algorithm != "sha256" {
                errors.push((key_path(&hp, "algorithm"), "only \"sha256\" is supported".into()));
            }
            if h.secret.expose().is_empty() {
                errors.push((key_path(&hp, "secret"), "must not be empty".into()));
            }
            if axum::http::HeaderName::from_bytes(h.header.as_bytes()).is_err() {
                errors.push((key_path(&hp, "header"), "not a valid header name".into()));
            }
        }
        if let Some(when) = &w.when {
            if let Err(e) = minijinja::Environment::new().compile_expression(when) {
                errors.push((key_path(&path, "when"), format!("invalid expression: {e}")));
            }
        }
        check_template(&mut errors, key_path(&path, "kind"), &w.kind);
        for (key, t) in [
            ("severity", &w.severity),
            ("title", &w.title),
            ("text", &w.text),
            ("user", &w.user),
            ("fingerprint", &w.fingerprint),
            ("link", &w.link),
            ("status", &w.status),
        ] {
            if let Some(t) = t {
                check_template(&mut errors, key_path(&path, key), t);
            }
        }
        for (k, t) in &w.labels {
            check_template(&mut errors, key_path(&key_path(&path, "labels"), k), t);
        }
        for (k, t) in &w.fields {
            check_template(&mut errors, key_path(&key_path(&path, "fields"), k), t);
        }
    }

    let mut names = BTreeMap::new();
    for (i, r) in config.rate_rules.iter().enumerate() {
        let path = index_path("rate_rules", i);
        if !valid_name(&r.name) {
            errors.push((key_path(&path, "name"), "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'".into()));
        } else if let Some(first) = names.insert(r.name.clone(), i) {
            errors.push((key_path(&path, "name"), format!("duplicate name {:?}: rate_rules[{first}] has it", r.name)));
        }
        if r.kinds.is_empty() {
            errors.push((key_path(&path, "kinds"), "at least one kind pattern is required".into()));
        }
        for (j, k) in r.kinds.iter().enumerate() {
            if globset::Glob::new(k).is_err() || k.is_empty() {
                errors.push((index_path(&key_path(&path, "kinds"), j), "invalid pattern".into()));
            }
        }
        if r.window.get().is_zero() {
            errors.push((key_path(&path, "window"), "must be greater than 0".into()));
        }
        if r.min.is_none() && r.max.is_none() && r.baseline.is_none() {
            errors.push((path.clone(), "set min, max, or baseline with deviation_percent".into()));
        }
        if let (Some(min), Some(max)) = (r.min, r.max) {
            if min > max {
                errors.push((key_path(&path, "min"), format!("must not exceed max ({min} > {max})")));
            }
        }
        match (r.baseline, r.deviation_percent) {
            (Some(_), None) => errors.push((key_path(&path, "deviation_percent"), "is required with baseline".into())),
            (None, Some(_)) => errors.push((key_path(&path, "baseline"), "is required with deviation_percent".into())),
            (Some(b), Some(d)) => {
                if b.get() < r.window.get() {
                    errors.push((key_path(&path, "baseline"), "must be at least as long as the window".into()));
                }
                if d.is_nan() || d <= 0.0 {
                    errors.push((key_path(&path, "deviation_percent"), "must be greater than 0".into()));
                }
            }
            (None, None) => {}
        }
        if r.every.is_some_and(|d| d.get().is_zero()) {
            errors.push((key_path(&path, "every"), "must be greater than 0".into()));
        }
    }
    errors
}
