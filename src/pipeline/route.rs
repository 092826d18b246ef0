//! Routing: which routes an event matches.

use std::collections::BTreeMap;
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::config::RouteConfig;
use crate::event::{Event, Severity};

#[derive(Debug, thiserror::Error)]
#[error("{route}.kinds: invalid pattern {pattern:?}: {reason}")]
pub struct RouteError {
    pub route: String,
    pub pattern: String,
    pub reason: String,
}

/// A route ready to match events.
pub struct CompiledRoute {
    /// `routes[2]` or `default_route`: names the route in logs and template lookups.
    pub id: String,
    kinds: Option<GlobSet>,
    min_severity: Severity,
    labels: BTreeMap<String, String>,
    pub notifier: String,
    pub channel: Option<String>,
    pub group_by: Vec<String>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub digest: Option<Duration>,
    pub continue_matching: bool,
    /// Who chat notifiers page, by severity (see `RouteConfig::mentions`).
    pub mentions: BTreeMap<Severity, String>,
    /// The notifier's target limits each channel separately (see `destination`).
    per_channel: bool,
    /// The notifier's `type`, for per-type templates.
    pub notifier_type: Option<&'static str>,
}

/// Defaults chosen so that nothing waits: the first message of a group goes at once; what
/// follows within a minute is folded into one message; a firing alert is repeated every 4h.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(0);
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// Compiles kind globs: `*` matches any run of characters, dots included (`es.*`).
pub fn compile_globs(patterns: &[String]) -> Result<Option<GlobSet>, (String, String)> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        let glob = Glob::new(p).map_err(|e| (p.clone(), e.kind().to_string()))?;
        builder.add(glob);
    }
    builder.build().map(Some).map_err(|e| (patterns.join(","), e.to_string()))
}

impl CompiledRoute {
    pub fn new(id: String, config: &RouteConfig) -> Result<CompiledRoute, RouteError> {
        let kinds = compile_globs(&config.kinds).map_err(|(pattern, reason)| RouteError {
            route: id.clone(),
            pattern,
            reason,
        })?;
        Ok(CompiledRoute {
            id,
            kinds,
            min_severity: config.min_severity,
            labels: config.labels.clone(),
            notifier: config.notifier.clone(),
            channel: config.channel.clone(),
            group_by: config.group_by.clone(),
            group_wait: config.group_wait.map_or(DEFAULT_GROUP_WAIT, |d| d.get()),
            group_interval: config.group_interval.map_or(DEFAULT_GROUP_INTERVAL, |d| d.get()),
            repeat_interval: config.repeat_interval.map_or(DEFAULT_REPEAT_INTERVAL, |d| d.get()),
            digest: config.digest.map(|d| d.get()),
            continue_matching: config.continue_matching,
            per_channel: false,
            notifier_type: None,
            mentions: config.mentions.clone(),
        })
    }

    /// A route that matches everything, for sending straight to one notifier.
    pub fn direct(notifier: &str, channel: Option<String>) -> CompiledRoute {
        CompiledRoute {
            id: "direct".into(),
            kinds: None,
            min_severity: Severity::Info,
            labels: BTreeMap::new(),
            notifier: notifier.to_string(),
            channel,
            group_by: Vec::new(),
            group_wait: Duration::ZERO,
            group_interval: Duration::ZERO,
            repeat_interval: DEFAULT_REPEAT_INTERVAL,
            digest: None,
            continue_matching: false,
            mentions: BTreeMap::new(),
            per_channel: false,
            notifier_type: None,
        }
    }

    /// The mention for a message of this severity: the entry of the highest severity at or
    /// below it (`error` also pages for `critical` unless `critical` has its own).
    pub fn mention_for(&self, severity: Severity) -> Option<&str> {
        self.mentions.range(..=severity).next_back().map(|(_, m)| m.as_str()).filter(|m| !m.trim().is_empty())
    }

    pub fn matches(&self, event: &Event) -> bool {
        event.severity >= self.min_severity
            && self.kinds.as_ref().is_none_or(|set| set.is_match(&event.kind))
            && self.labels.iter().all(|(k, v)| event.labels.get(k) == Some(v))
    }

    /// Events of one group are sent together: the digest of the route, the values of its
    /// `group_by` labels, or (by default) the fingerprint. A one-off event whose sender named
    /// no fingerprint is a group of its own: each is told, none is held back as a repeat.
    pub fn group_key(&self, event: &Event) -> String {
        self.grouping(event).0
    }

    /// The group key, and whether the event is a group of its own (see `is_solo`), decided
    /// together so the fingerprint check runs once per route.
    pub fn grouping(&self, event: &Event) -> (String, bool) {
        if self.digest.is_some() {
            return (format!("{}|digest", self.id), false);
        }
        if self.is_solo(event) {
            return (format!("{}|{}", self.id, event.id), true);
        }
        if self.group_by.is_empty() {
            return (format!("{}|{}", self.id, event.fingerprint), false);
        }
        let values: Vec<String> = self
            .group_by
            .iter()
            .map(|k| format!("{k}={}", event.labels.get(k).map(String::as_str).unwrap_or("")))
            .collect();
        (format!("{}|{}", self.id, values.join(",")), false)
    }

    /// A one-off event that is a group of its own: nothing to gather, so no grouping delay.
    /// Error events count as such because their source already deduplicated them (first
    /// occurrence, regression, spike): each one it lets through is news.
    pub fn is_solo(&self, event: &Event) -> bool {
        self.digest.is_none()
            && self.group_by.is_empty()
            && event.status.is_none()
            && (event.fingerprint_is_derived() || event.error.is_some())
    }

    /// Ordering and rate-limit pauses apply per destination: the notifier, and the channel
    /// too for notifiers whose target limits each channel on its own (Slack's Web API). A
    /// webhook is one destination whatever channel it names: Slack limits the URL.
    pub fn destination(&self) -> String {
        match &self.channel {
            Some(channel) if self.per_channel => format!("{}|{}", self.notifier, channel),
            _ => self.notifier.clone(),
        }
    }

    /// Tells the route about its notifier: its type (for per-type templates) and whether it
    /// paces each channel separately.
    pub fn for_notifier(mut self, notifier: Option<&crate::notify::NotifierConfig>) -> Self {
        self.per_channel = notifier.is_some_and(|n| n.paces_per_channel());
        self.notifier_type = notifier.map(|n| n.type_name());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event;
    use serde_json::json;

    fn route(kinds: &[&str], min: Severity, labels: &[(&str, &str)]) -> CompiledRoute {
        let config = RouteConfig {
            kinds: kinds.iter().map(|s| s.to_string()).collect(),
            min_severity: min,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            notifier: "n".into(),
            ..Default::default()
        };
        CompiledRoute::new("r".into(), &config).unwrap()
    }

    fn event(v: serde_json::Value) -> Event {
        parse_event(&v, "", "test", chrono::Utc::now()).unwrap()
    }

    #[test]
    fn mentions_by_severity() {
        let mut r = route(&[], Severity::Info, &[]);
        assert_eq!(r.mention_for(Severity::Critical), None);
        r.mentions = BTreeMap::from([
            (Severity::Critical, "<!here>".to_string()),
            (Severity::Error, "<!subteam^S0123>".to_string()),
        ]);
        assert_eq!(r.mention_for(Severity::Critical), Some("<!here>"));
        assert_eq!(r.mention_for(Severity::Error), Some("<!subteam^S0123>"));
        assert_eq!(r.mention_for(Severity::Warning), None);
        r.mentions.remove(&Severity::Critical);
        assert_eq!(r.mention_for(Severity::Critical), Some("<!subteam^S0123>"));
    }

    #[test]
    fn kind_globs_cross_dots() {
        let r = route(&["es.*"], Severity::Info, &[]);
        assert!(r.matches(&event(json!({"kind": "es.index_missing"}))));
        assert!(!r.matches(&event(json!({"kind": "user.registered"}))));
        assert!(!r.matches(&event(json!({"kind": "esx"}))));
    }

    #[test]
    fn severity_floor_and_labels() {
        let r = route(&[], Severity::Warning, &[("env", "prod")]);
        assert!(!r.matches(&event(json!({"kind": "a", "severity": "info", "labels": {"env": "prod"}}))));
        assert!(r.matches(&event(json!({"kind": "a", "severity": "error", "labels": {"env": "prod"}}))));
        assert!(!r.matches(&event(json!({"kind": "a", "severity": "error", "labels": {"env": "dev"}}))));
        assert!(!r.matches(&event(json!({"kind": "a", "severity": "error"}))));
    }
}
