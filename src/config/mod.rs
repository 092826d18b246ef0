//! Configuration: one TOML file, parsed strictly, then validated as a whole.
//!
//! `load` reads the file, replaces `${env:…}` / `${file:…}` references, deserializes with
//! unknown keys rejected, and validates cross-references. Every problem found is returned at
//! once, each pointing at `file:line:col`. Validation does no network or database IO.

mod duration;
mod interpolate;
mod load;
mod secret;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

pub use duration::Dur;
pub use interpolate::{interpolate, InterpolateError, Interpolated, Resolver};
pub use load::{load, load_str, load_str_with_env, ConfigError, ConfigErrors};
pub use secret::Secret;
pub use validate::{index_path, key_path, validate, Validator, VALIDATORS};

use crate::event::Severity;
use crate::notify::NotifierConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub templates: TemplatesConfig,
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    #[serde(default)]
    pub notifiers: BTreeMap<String, NotifierConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Where events that match no route go; when absent they are only stored.
    #[serde(default)]
    pub default_route: Option<RouteConfig>,
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// While an alert matching a rule's source fires, alerts matching its target are muted.
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRuleConfig>,
    /// Recurring windows during which matching alerts and events are not notified.
    #[serde(default)]
    pub maintenance: Vec<MaintenanceConfig>,
    #[serde(default)]
    pub elasticsearch: BTreeMap<String, crate::es::ClusterConfig>,
    #[serde(default)]
    pub checks: Vec<crate::check::CheckConfig>,
    // Application event sources (issue 5); see `crate::source::config`.
    #[serde(default)]
    pub stripe: Option<crate::source::config::StripeConfig>,
    #[serde(default)]
    pub errors: crate::source::config::ErrorsConfig,
    #[serde(default)]
    pub scrub: crate::source::config::ScrubConfig,
    #[serde(default)]
    pub browser: crate::source::config::BrowserConfig,
    #[serde(default)]
    pub client: crate::source::config::ClientConfig,
    #[serde(default)]
    pub heartbeats: Vec<crate::source::config::HeartbeatConfig>,
    #[serde(default)]
    pub webhooks: Vec<crate::source::config::WebhookConfig>,
    #[serde(default)]
    pub rate_rules: Vec<crate::source::config::RateRuleConfig>,
    /// The file this was read from, for messages and reloads.
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen", deserialize_with = "listen_address")]
    pub listen: SocketAddr,
    /// Largest request body accepted; larger ones get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight requests and deliveries.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: Dur,
}

/// `IP:PORT`, or as Alertmanager and Prometheus take it: `:PORT` (every interface) and
/// `localhost:PORT` (loopback).
fn listen_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    let text = text.trim();
    let (host, port) = text.rsplit_once(':').unwrap_or(("", text));
    let with_host = match host {
        "" => format!("0.0.0.0:{port}"),
        "localhost" => format!("127.0.0.1:{port}"),
        _ => text.to_string(),
    };
    with_host.parse().map_err(|_| {
        serde::de::Error::custom("must be IP:PORT, :PORT or localhost:PORT (e.g. \"127.0.0.1:9750\", \"[::1]:9750\")")
    })
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:9750".parse().expect("valid default address")
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_shutdown_grace() -> Dur {
    Dur::secs(10)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default = "default_store_url")]
    pub url: String,
    /// Events (and delivered outbox rows) older than this are pruned.
    #[serde(default = "default_retention")]
    pub retention: Dur,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { url: default_store_url(), retention: default_retention() }
    }
}

fn default_store_url() -> String {
    "sqlite://tocsin.db".into()
}
fn default_retention() -> Dur {
    Dur::secs(90 * 86400)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `tocsin=debug`; `RUST_LOG` wins when set.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, level: default_log_level() }
    }
}

fn default_log_level() -> String {
    "info".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Attempts before a message is dead-lettered.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_backoff_initial")]
    pub backoff_initial: Dur,
    #[serde(default = "default_backoff_max")]
    pub backoff_max: Dur,
    /// Per-request timeout for notifiers that make HTTP requests.
    #[serde(default = "default_delivery_timeout")]
    pub timeout: Dur,
    /// Per-notifier send rate, overriding the notifier type's default (Slack: 1/s).
    #[serde(default)]
    pub rate_limits: BTreeMap<String, RateLimitConfig>,
    /// When more messages than this are due for a rate-limited destination, they are folded
    /// into one summary instead of queueing.
    #[serde(default = "default_fold_threshold")]
    pub fold_threshold: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Messages per second in steady state; 0 disables the limit.
    pub per_second: f64,
    /// How many may go at once after a quiet spell.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_burst() -> u32 {
    1
}
/// About twenty seconds of queue at Slack's pace: short backlogs go out one by one.
fn default_fold_threshold() -> usize {
    20
}

/// Alert lifecycle settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// State changes within `flap_window` that mark an alert as flapping.
    #[serde(default = "default_flap_threshold")]
    pub flap_threshold: usize,
    #[serde(default = "default_flap_window")]
    pub flap_window: Dur,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig { flap_threshold: default_flap_threshold(), flap_window: default_flap_window() }
    }
}

fn default_flap_threshold() -> usize {
    6
}
fn default_flap_window() -> Dur {
    Dur::secs(600)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRuleConfig {
    /// Kind globs of the alerts that inhibit (e.g. `es.unreachable`).
    pub source_kinds: Vec<String>,
    /// Kind globs of the alerts that are muted (e.g. `es.index_missing`).
    pub target_kinds: Vec<String>,
    /// Labels that must be equal on both (e.g. `cluster`).
    #[serde(default)]
    pub equal: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    pub name: String,
    /// Cron (5 or 6 fields) for when each window starts.
    pub schedule: String,
    pub duration: Dur,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// `kind` and label globs; empty mutes everything.
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
}

fn default_timezone() -> String {
    "UTC".into()
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_attempts: default_max_attempts(),
            backoff_initial: default_backoff_initial(),
            backoff_max: default_backoff_max(),
            timeout: default_delivery_timeout(),
            rate_limits: BTreeMap::new(),
            fold_threshold: default_fold_threshold(),
        }
    }
}

fn default_max_attempts() -> u32 {
    20
}
fn default_backoff_initial() -> Dur {
    Dur::secs(1)
}
fn default_backoff_max() -> Dur {
    Dur::secs(300)
}
fn default_delivery_timeout() -> Dur {
    Dur::secs(10)
}

/// Global message templates (minijinja); routes may override them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplatesConfig {
    pub title: Option<String>,
    pub text: Option<String>,
    /// Overrides for one notifier type (`[templates.types.email]`), e.g. a longer text for
    /// email than for chat; a route's own templates still win.
    #[serde(default)]
    pub types: BTreeMap<String, TypeTemplates>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeTemplates {
    pub title: Option<String>,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Scope {
    #[serde(rename = "events:write")]
    EventsWrite,
    #[serde(rename = "events:read")]
    EventsRead,
    #[serde(rename = "silences:write")]
    SilencesWrite,
    #[serde(rename = "heartbeats:write")]
    HeartbeatsWrite,
    #[serde(rename = "events:browser")]
    EventsBrowser,
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::EventsWrite => "events:write",
            Scope::EventsRead => "events:read",
            Scope::SilencesWrite => "silences:write",
            Scope::HeartbeatsWrite => "heartbeats:write",
            Scope::EventsBrowser => "events:browser",
            Scope::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub name: String,
    pub key: Secret,
    pub scopes: Vec<Scope>,
    #[serde(default)]
    pub allowed_kinds: Vec<String>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Glob patterns on the event kind; empty means every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub min_severity: Severity,
    /// Labels that must all be equal.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub notifier: String,
    pub channel: Option<String>,
    #[serde(default)]
    pub group_by: Vec<String>,
    pub group_wait: Option<Dur>,
    pub group_interval: Option<Dur>,
    pub repeat_interval: Option<Dur>,
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Send one summary per period instead of a message per event (`"1h"`).
    pub digest: Option<Dur>,
    /// minijinja template for the message title; overrides `[templates] title`.
    pub title_template: Option<String>,
    /// minijinja template for the message text; overrides `[templates] text`.
    pub text_template: Option<String>,
    /// Who chat notifiers page, by severity: `{ critical = "<!here>", error = "<!subteam^S0123>" }`.
    /// A message gets the entry of the highest severity at or below its own; resolutions and
    /// events from browser keys (`events:browser`) never mention anyone.
    #[serde(default)]
    pub mentions: BTreeMap<Severity, String>,
}
