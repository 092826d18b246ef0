//! Silences: "don't tell us about these for a while", created by people over the API or CLI.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: Uuid,
    /// `kind` matches the event kind; any other key matches the label of that name. Values are
    /// globs (`es.*`, `prod-*`); every matcher must match.
    pub matchers: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl Silence {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    pub fn state(&self, now: DateTime<Utc>) -> &'static str {
        if now < self.starts_at {
            "pending"
        } else if now < self.ends_at {
            "active"
        } else {
            "expired"
        }
    }
}

/// Label and kind matchers compiled once: `kind` and label names to globs.
#[derive(Debug, Clone)]
pub struct Matchers(Vec<(String, GlobMatcher)>);

impl Matchers {
    pub fn compile(matchers: &BTreeMap<String, String>) -> Result<Matchers, String> {
        matchers
            .iter()
            .map(|(name, pattern)| {
                Glob::new(pattern)
                    .map(|g| (name.clone(), g.compile_matcher()))
                    .map_err(|e| format!("{name}: invalid pattern {pattern:?}: {}", e.kind()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Matchers)
    }

    pub fn matches(&self, kind: &str, labels: &dyn crate::alert::LabelLookup) -> bool {
        self.0.iter().all(|(name, glob)| {
            let value = if name == "kind" { Some(kind) } else { labels.label(name) };
            value.is_some_and(|v| glob.is_match(v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_need_every_one() {
        let m = Matchers::compile(&BTreeMap::from([
            ("kind".to_string(), "es.*".to_string()),
            ("cluster".to_string(), "prod-*".to_string()),
        ]))
        .unwrap();
        let labels = |c: &str| BTreeMap::from([("cluster".to_string(), c.to_string())]);
        assert!(m.matches("es.index_missing", &labels("prod-us-east-1")));
        assert!(!m.matches("es.index_missing", &labels("staging")));
        assert!(!m.matches("user.registered", &labels("prod-us-east-1")));
        assert!(!m.matches("es.index_missing", &BTreeMap::new()));
    }
}
