//! Muting: silences, inhibition rules and maintenance windows, behind one question —
//! "should this alert or event be kept quiet now, and why?".
//!
//! Muted alerts are stored and visible, just not sent. Inhibition keeps an index of the
//! firing alerts that can inhibit, updated as alerts change, so a check costs a hash lookup
//! instead of a scan of every firing alert.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use globset::GlobSet;

use super::route::compile_globs;
use crate::alert::{Alert, LabelLookup};
use crate::config::{Config, InhibitRuleConfig, MaintenanceConfig};
use crate::silence::{Matchers, Silence};

#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct MuteConfigError {
    pub key: String,
    pub message: String,
}

struct InhibitRule {
    source: Option<GlobSet>,
    target: Option<GlobSet>,
    equal: Vec<String>,
}

impl InhibitRule {
    fn key(&self, labels: &dyn LabelLookup) -> Vec<String> {
        self.equal.iter().map(|name| labels.label(name).unwrap_or_default().to_string()).collect()
    }
}

struct Window {
    name: String,
    cron: croner::Cron,
    duration: chrono::Duration,
    tz: Tz,
    matchers: Matchers,
}

impl Window {
    /// In a window when a start lies within `duration` before now.
    fn is_open(&self, now: DateTime<Utc>) -> bool {
        let from = (now - self.duration).with_timezone(&self.tz);
        self.cron.find_next_occurrence(&from, true).is_ok_and(|start| start.with_timezone(&Utc) <= now)
    }
}

pub struct Muting {
    silences: Vec<(Silence, Matchers)>,
    rules: Vec<InhibitRule>,
    windows: Vec<Window>,
    /// (rule, values of its `equal` labels) → firing alerts that inhibit.
    inhibitors: HashMap<(usize, Vec<String>), HashSet<String>>,
}

pub fn parse_cron(schedule: &str) -> Result<croner::Cron, String> {
    croner::Cron::new(schedule).with_seconds_optional().parse().map_err(|e| format!("invalid cron {schedule:?}: {e}"))
}

fn compile_rules(rules: &[InhibitRuleConfig]) -> Result<Vec<InhibitRule>, MuteConfigError> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let globs = |field: &str, patterns: &[String]| {
                compile_globs(patterns).map_err(|(p, e)| MuteConfigError {
                    key: format!("inhibit_rules[{i}].{field}"),
                    message: format!("invalid pattern {p:?}: {e}"),
                })
            };
            Ok(InhibitRule {
                source: globs("source_kinds", &r.source_kinds)?,
                target: globs("target_kinds", &r.target_kinds)?,
                equal: r.equal.clone(),
            })
        })
        .collect()
}

fn compile_windows(windows: &[MaintenanceConfig]) -> Result<Vec<Window>, MuteConfigError> {
    windows
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let err =
                |field: &str, message: String| MuteConfigError { key: format!("maintenance[{i}].{field}"), message };
            Ok(Window {
                name: w.name.clone(),
                cron: parse_cron(&w.schedule).map_err(|m| err("schedule", m))?,
                duration: chrono::Duration::from_std(w.duration.get()).map_err(|e| err("duration", e.to_string()))?,
                tz: w.timezone.parse().map_err(|_| err("timezone", format!("unknown time zone {:?}", w.timezone)))?,
                matchers: Matchers::compile(&w.matchers).map_err(|m| err("matchers", m))?,
            })
        })
        .collect()
}

/// Checks the muting parts of a configuration, for `config check`.
pub fn validate(config: &Config) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if let Err(e) = compile_rules(&config.inhibit_rules) {
        errors.push((e.key, e.message));
    }
    if let Err(e) = compile_windows(&config.maintenance) {
        errors.push((e.key, e.message));
    }
    errors
}

impl Muting {
    pub fn new(config: &Config) -> Result<Muting, MuteConfigError> {
        Ok(Muting {
            silences: Vec::new(),
            rules: compile_rules(&config.inhibit_rules)?,
            windows: compile_windows(&config.maintenance)?,
            inhibitors: HashMap::new(),
        })
    }

    /// Replaces the silences (after one was added or expired).
    pub fn set_silences(&mut self, silences: Vec<Silence>) {
        self.silences = silences
            .into_iter()
            .filter_map(|s| match Matchers::compile(&s.matchers) {
                Ok(m) => Some((s, m)),
                Err(e) => {
                    tracing::warn!(silence = %s.id, error = %e, "ignoring a silence with invalid matchers");
                    None
                }
            })
            .collect();
    }

    pub fn silences(&self) -> impl Iterator<Item = &Silence> {
        self.silences.iter().map(|(s, _)| s)
    }

    /// Keeps the inhibition index current; call with every alert after it changed.
    pub fn track(&mut self, alert: &Alert) {
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.source.as_ref().is_none_or(|g| g.is_match(&alert.kind)) {
                continue;
            }
            let key = (i, rule.key(&alert.labels));
            if alert.is_firing() {
                self.inhibitors.entry(key).or_default().insert(alert.fingerprint.clone());
            } else if let Some(set) = self.inhibitors.get_mut(&key) {
                set.remove(&alert.fingerprint);
                if set.is_empty() {
                    self.inhibitors.remove(&key);
                }
            }
        }
    }

    /// Rebuilds the inhibition index from scratch (after rules changed on reload).
    pub fn retrack<'a>(&mut self, alerts: impl Iterator<Item = &'a Alert>) {
        self.inhibitors.clear();
        for alert in alerts {
            self.track(alert);
        }
    }

    /// Why something of this kind and labels is muted now, if it is.
    pub fn muted_by(
        &self,
        fingerprint: &str,
        kind: &str,
        labels: &dyn LabelLookup,
        now: DateTime<Utc>,
    ) -> Option<String> {
        if let Some((s, _)) = self.silences.iter().find(|(s, m)| s.is_active(now) && m.matches(kind, labels)) {
            return Some(format!("silence {}", s.id));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.target.as_ref().is_none_or(|g| g.is_match(kind)) {
                continue;
            }
            if let Some(set) = self.inhibitors.get(&(i, rule.key(labels))) {
                if let Some(source) = set.iter().find(|fp| fp.as_str() != fingerprint) {
                    return Some(format!("inhibited by {source}"));
                }
            }
        }
        self.windows
            .iter()
            .find(|w| w.matchers.matches(kind, labels) && w.is_open(now))
            .map(|w| format!("maintenance {}", w.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{AlertStatus, Severity};
    use std::collections::BTreeMap;

    fn config(extra: &str) -> Config {
        crate::config::load_str(extra, std::path::Path::new("t.toml")).unwrap()
    }

    fn alert(fp: &str, kind: &str, cluster: &str, status: AlertStatus) -> Alert {
        let now = Utc::now();
        Alert {
            fingerprint: fp.into(),
            kind: kind.into(),
            severity: Severity::Error,
            labels: (&BTreeMap::from([("cluster".to_string(), cluster.to_string())])).into(),
            status,
            started_at: now,
            updated_at: now,
            resolved_at: None,
            title: None,
            last_event_id: uuid::Uuid::nil(),
            transitions: vec![],
            flapping: false,
            notified: Default::default(),
            announced: false,
            muted_by: None,
            acknowledged_by: None,
        }
    }

    #[test]
    fn unreachable_cluster_inhibits_its_missing_indices_only() {
        let mut m = Muting::new(&config(
            "[[inhibit_rules]]\nsource_kinds = [\"es.unreachable\"]\ntarget_kinds = [\"es.index_*\"]\nequal = [\"cluster\"]\n",
        ))
        .unwrap();
        let labels = |c: &str| BTreeMap::from([("cluster".to_string(), c.to_string())]);
        let now = Utc::now();
        assert!(m.muted_by("x", "es.index_missing", &labels("a"), now).is_none());
        m.track(&alert("down-a", "es.unreachable", "a", AlertStatus::Firing));
        assert_eq!(m.muted_by("x", "es.index_missing", &labels("a"), now).as_deref(), Some("inhibited by down-a"));
        assert!(m.muted_by("x", "es.index_missing", &labels("b"), now).is_none());
        assert!(m.muted_by("x", "user.registered", &labels("a"), now).is_none());
        m.track(&alert("down-a", "es.unreachable", "a", AlertStatus::Resolved));
        assert!(m.muted_by("x", "es.index_missing", &labels("a"), now).is_none());
    }

    #[test]
    fn silences_and_maintenance_windows() {
        let mut m = Muting::new(&config(
            "[[maintenance]]\nname = \"deploy\"\nschedule = \"0 3 * * *\"\nduration = \"30m\"\ntimezone = \"UTC\"\nmatchers = { kind = \"deploy.*\" }\n",
        ))
        .unwrap();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let none = BTreeMap::new();
        assert!(m.muted_by("f", "deploy.failed", &none, at("2026-11-21T03:10:00Z")).is_some());
        assert!(m.muted_by("f", "deploy.failed", &none, at("2026-11-21T03:31:00Z")).is_none());
        assert!(m.muted_by("f", "user.registered", &none, at("2026-11-21T03:10:00Z")).is_none());

        let now = at("2026-11-21T12:00:00Z");
        let silence = Silence {
            id: uuid::Uuid::nil(),
            matchers: BTreeMap::from([("kind".into(), "user.*".into())]),
            starts_at: now,
            ends_at: now + chrono::Duration::hours(1),
            comment: String::new(),
            created_by: String::new(),
            created_at: now,
        };
        m.set_silences(vec![silence]);
        assert!(m.muted_by("f", "user.registered", &none, now).is_some());
        assert!(m.muted_by("f", "user.registered", &none, now + chrono::Duration::hours(2)).is_none());
    }
}
