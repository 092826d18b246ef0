//! Scheduled checks: configuration, one module per check kind, findings → events, and the
//! scheduler that runs them inside the daemon.
//!
//! A run looks at each cluster of a check and ends in one of three ways per cluster: blind
//! (could not reach or read it: one `es.unreachable` alert, and no claim about its data),
//! healthy, or alerting. Alerts are events with `status = firing`; when a condition clears the
//! next run sends the same fingerprint with `status = resolved`.

pub mod indices;
pub mod names;
mod run;
pub mod schedule;
mod scheduler;
pub mod size;

use std::collections::BTreeMap;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

pub use run::{run_check, Clusters, Outcome, RunOptions, RunReport};
pub use scheduler::{start_with, Sink};

use crate::config::{Config, Dur};
use crate::event::Severity;
use crate::ingest::Ingest;

pub const KIND_MISSING: &str = "es.index_missing";
pub const KIND_SIZE: &str = "es.index_size_change";
pub const KIND_UNREACHABLE: &str = "es.unreachable";

/// `[[checks]]`: one variant per `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CheckConfig {
    ElasticsearchIndices(IndicesCheck),
    ElasticsearchIndexSize(SizeCheck),
}

/// Keys every check has. Repeated in each variant because serde cannot combine `flatten`
/// with `deny_unknown_fields`.
#[derive(Debug, Clone, Copy)]
pub struct Common<'a> {
    pub name: &'a str,
    pub clusters: &'a [String],
    pub schedule: Option<&'a str>,
    pub timezone: &'a str,
    pub retries: u32,
    pub retry_delay: Dur,
    pub timeout: Dur,
    pub jitter: Option<Dur>,
    pub severity: Severity,
}

impl CheckConfig {
    pub fn common(&self) -> Common<'_> {
        macro_rules! common {
            ($c:expr) => {
                Common {
                    name: &$c.name,
                    clusters: &$c.clusters,
                    schedule: $c.schedule.as_deref(),
                    timezone: &$c.timezone,
                    retries: $c.retries,
                    retry_delay: $c.retry_delay,
                    timeout: $c.timeout,
                    jitter: $c.jitter,
                    severity: $c.severity,
                }
            };
        }
        match self {
            CheckConfig::ElasticsearchIndices(c) => common!(c),
            CheckConfig::ElasticsearchIndexSize(c) => common!(c),
        }
    }

    pub fn name(&self) -> &str {
        self.common().name
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            CheckConfig::ElasticsearchIndices(_) => "elasticsearch_indices",
            CheckConfig::ElasticsearchIndexSize(_) => "elasticsearch_index_size",
        }
    }
}

/// `type = "elasticsearch_indices"`: expected indices exist, are open and not red.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndicesCheck {
    pub name: String,
    pub clusters: Vec<String>,
    /// Cron, 5 or 6 fields; without it the check runs only through `tocsin check run`.
    pub schedule: Option<String>,
    #[serde(default = "utc")]
    pub timezone: String,
    /// Exact names, wildcard patterns (`app-*`) and date templates (`logs-{now:%Y.%m.%d}`).
    pub expect: Vec<String>,
    #[serde(default)]
    pub retries: u32,
    #[serde(default = "default_retry_delay")]
    pub retry_delay: Dur,
    #[serde(default = "default_check_timeout")]
    pub timeout: Dur,
    pub jitter: Option<Dur>,
    #[serde(default = "error_severity")]
    pub severity: Severity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    #[default]
    Bytes,
    Docs,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Bytes => "bytes",
            Metric::Docs => "docs",
        }
    }
}

/// `type = "elasticsearch_index_size"`: each index against its own recent past.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeCheck {
    pub name: String,
    pub clusters: Vec<String>,
    pub schedule: Option<String>,
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default = "all_indices")]
    pub indices: Vec<String>,
    #[serde(default = "default_baseline")]
    pub baseline: Dur,
    #[serde(default = "default_threshold")]
    pub threshold_percent: f64,
    #[serde(default = "default_min_samples")]
    pub min_samples: u32,
    #[serde(default)]
    pub metric: Metric,
    #[serde(default)]
    pub retries: u32,
    #[serde(default = "default_retry_delay")]
    pub retry_delay: Dur,
    #[serde(default = "default_check_timeout")]
    pub timeout: Dur,
    pub jitter: Option<Dur>,
    #[serde(default = "warning_severity")]
    pub severity: Severity,
}

fn utc() -> String {
    "UTC".into()
}
fn all_indices() -> Vec<String> {
    vec!["*".into()]
}
fn default_baseline() -> Dur {
    Dur::secs(30 * 86400)
}
fn default_threshold() -> f64 {
    20.0
}
fn default_min_samples() -> u32 {
    7
}
fn default_retry_delay() -> Dur {
    Dur::secs(60)
}
fn default_check_timeout() -> Dur {
    Dur::secs(300)
}
fn error_severity() -> Severity {
    Severity::Error
}
fn warning_severity() -> Severity {
    Severity::Warning
}

/// Every problem in `[elasticsearch.*]` and `[[checks]]` as `(key path, message)`.
/// Pure apart from checking that CA bundle files exist.
pub fn validate(config: &Config) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    for (name, cluster) in &config.elasticsearch {
        errors.extend(crate::es::validate_cluster(name, cluster));
    }
    let mut seen = BTreeMap::new();
    for (i, check) in config.checks.iter().enumerate() {
        let key = |k: &str| format!("checks[{i}].{k}");
        let c = check.common();
        if c.name.is_empty() {
            errors.push((key("name"), "must not be empty".into()));
        } else if let Some(first) = seen.insert(c.name.to_string(), i) {
            errors.push((key("name"), format!("{:?} is already the name of checks[{first}]", c.name)));
        }
        if c.clusters.is_empty() {
            errors.push((key("clusters"), "must name at least one [elasticsearch.NAME] cluster".into()));
        }
        let mut listed = std::collections::HashSet::new();
        for cl in c.clusters {
            if !listed.insert(cl.as_str()) {
                errors.push((key("clusters"), format!("{cl:?} is listed twice (it would be checked and told twice)")));
            }
            if !config.elasticsearch.contains_key(cl) {
                let known: Vec<_> = config.elasticsearch.keys().map(String::as_str).collect();
                let known = if known.is_empty() {
                    "none are configured".to_string()
                } else {
                    format!("known: {}", known.join(", "))
                };
                errors.push((key("clusters"), format!("no cluster named {cl:?} ({known})")));
            }
        }
        let tz = match schedule::parse_tz(c.timezone) {
            Ok(tz) => Some(tz),
            Err(e) => {
                errors.push((key("timezone"), e));
                None
            }
        };
        if let Some(expr) = c.schedule {
            // Checked with UTC when the zone is wrong, so both mistakes are reported at once.
            if let Err(e) = schedule::Schedule::parse(expr, tz.unwrap_or(chrono_tz::UTC)) {
                errors.push((key("schedule"), e));
            }
        }
        if c.timeout.get().is_zero() {
            errors.push((key("timeout"), "must be greater than zero".into()));
        }
        match check {
            CheckConfig::ElasticsearchIndices(ic) => {
                if ic.expect.is_empty() {
                    errors.push((key("expect"), "must list at least one index".into()));
                }
                for (j, e) in ic.expect.iter().enumerate() {
                    if e.trim().is_empty() || e.contains(',') {
                        errors.push((
                            format!("checks[{i}].expect[{j}]"),
                            "must be one index name or pattern (no commas)".into(),
                        ));
                    } else if let Err(err) = names::render(e, chrono::Utc::now(), chrono_tz::UTC) {
                        errors.push((format!("checks[{i}].expect[{j}]"), err.to_string()));
                    }
                }
            }
            CheckConfig::ElasticsearchIndexSize(sc) => {
                if sc.indices.is_empty() {
                    errors.push((key("indices"), "must list at least one pattern (\"*\" for all)".into()));
                }
                if !(sc.threshold_percent > 0.0 && sc.threshold_percent.is_finite()) {
                    errors.push((key("threshold_percent"), "must be a positive number".into()));
                }
                if sc.baseline.get().is_zero() {
                    errors.push((key("baseline"), "must be greater than zero".into()));
                }
                if sc.min_samples == 0 {
                    errors.push((key("min_samples"), "must be at least 1".into()));
                }
            }
        }
    }
    errors
}

/// Starts the scheduler for the configured checks; it stops when `shutdown` is cancelled.
/// Findings enter the system through `ingest` like any other event. `None` when no check
/// has a schedule.
pub fn start(config: &Config, ingest: Ingest, shutdown: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    let store = ingest.store().clone();
    let sink: Sink = std::sync::Arc::new(move |events| {
        let ingest = ingest.clone();
        Box::pin(async move { ingest.submit(events).await.map_err(|e| e.to_string()) })
    });
    start_with(config, store, sink, shutdown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let mut c: Config = toml::from_str(text).unwrap();
        c.path = "t.toml".into();
        c
    }

    #[test]
    fn parses_the_contract_example() {
        let c = config(
            r#"
[elasticsearch.prod-us-east-1]
url = "https://search-example.us-east-1.es.amazonaws.com"
labels = { region = "us-east-1", env = "prod" }
auth = { type = "aws_sigv4", region = "us-east-1" }
timeout = "10s"

[[checks]]
name = "missing-indices"
type = "elasticsearch_indices"
clusters = ["prod-us-east-1"]
schedule = "0 16 * * *"
timezone = "America/New_York"
expect = ["accounts_index", "users_index", "employees_index", "logs-{now:%Y.%m.%d}"]
retries = 1
retry_delay = "5m"

[[checks]]
name = "index-size"
type = "elasticsearch_index_size"
clusters = ["prod-us-east-1"]
indices = ["*"]
schedule = "0 16 * * *"
baseline = "30d"
threshold_percent = 20
min_samples = 7
"#,
        );
        assert_eq!(validate(&c), vec![]);
        assert_eq!(c.checks[1].type_name(), "elasticsearch_index_size");
    }

    #[test]
    fn validation_points_at_keys() {
        let c = config(
            r#"
[elasticsearch.a]
url = "http://localhost:9200"

[[checks]]
name = "x"
type = "elasticsearch_indices"
clusters = ["a"]
schedule = "0 99 * * *"
expect = ["users"]

[[checks]]
name = "x"
type = "elasticsearch_index_size"
clusters = ["b"]
timezone = "Europe/Atlantis"
schedule = "61 * * *"
threshold_percent = 0
"#,
        );
        let keys: Vec<_> = validate(&c).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "checks[0].schedule",
                "checks[1].name",
                "checks[1].clusters",
                "checks[1].timezone",
                "checks[1].schedule",
                "checks[1].threshold_percent"
            ]
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let r: Result<Config, _> = toml::from_str(
            "[[checks]]\nname = \"x\"\ntype = \"elasticsearch_indices\"\nclusters = []\nexpect = []\nbogus = 1\n",
        );
        assert!(r.is_err());
    }
}
