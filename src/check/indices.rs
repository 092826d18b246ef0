//! `elasticsearch_indices`: expected indices exist (exact names, never substrings), are open
//! and not red; patterns match at least one open index; aliases and data streams count.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::names::{self, is_pattern, pattern_covers};
use super::run::{describe_labels, Alert, ClusterCtx, ClusterResult};
use super::{IndicesCheck, KIND_MISSING};

/// What one cluster holds, as far as names go.
#[derive(Debug, Default)]
pub struct ClusterView {
    pub indices: HashMap<String, IndexState>,
    pub aliases: HashSet<String>,
    pub data_streams: HashSet<String>,
}

#[derive(Debug, Clone, Default)]
pub struct IndexState {
    pub closed: bool,
    pub hidden: bool,
    /// `green`, `yellow`, `red`; `None` when unknown.
    pub health: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// As configured (may be a template).
    pub template: String,
    /// After date templates.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Missing,
    Closed,
    Red,
    /// A pattern that matches no open index (`closed` counts the closed ones it matches).
    NoMatch {
        closed: usize,
    },
}

impl Problem {
    fn describe(&self) -> String {
        match self {
            Problem::Missing => "missing".into(),
            Problem::Closed => "exists but is closed".into(),
            Problem::Red => "exists but is red (primary shards unassigned)".into(),
            Problem::NoMatch { closed: 0 } => "no index matches".into(),
            Problem::NoMatch { closed } => format!("matches only {closed} closed index(es)"),
        }
    }
}

pub fn expected_names(check: &IndicesCheck, now: DateTime<Utc>, tz: Tz) -> Vec<Expected> {
    check
        .expect
        .iter()
        .map(|t| Expected { template: t.clone(), name: names::render(t, now, tz).unwrap_or_else(|_| t.clone()) })
        .collect()
}

/// The heart of the check: exact set membership, never `contains`.
pub fn assess(expected: &[Expected], view: &ClusterView) -> Vec<(Expected, Problem)> {
    let mut problems = Vec::new();
    for e in expected {
        let problem = if is_pattern(&e.name) {
            let open_match = view.indices.iter().any(|(n, s)| !s.closed && pattern_covers(&e.name, n, s.hidden))
                || view.aliases.iter().chain(view.data_streams.iter()).any(|n| pattern_covers(&e.name, n, false));
            if open_match {
                None
            } else {
                let closed =
                    view.indices.iter().filter(|(n, s)| s.closed && pattern_covers(&e.name, n, s.hidden)).count();
                Some(Problem::NoMatch { closed })
            }
        } else if view.aliases.contains(&e.name) || view.data_streams.contains(&e.name) {
            None
        } else {
            match view.indices.get(&e.name) {
                None => Some(Problem::Missing),
                Some(s) if s.closed => Some(Problem::Closed),
                Some(s) if s.health.as_deref() == Some("red") => Some(Problem::Red),
                Some(_) => None,
            }
        };
        if let Some(p) = problem {
            problems.push((e.clone(), p));
        }
    }
    problems
}

async fn view(ctx: &ClusterCtx<'_>, expected: &[Expected]) -> Result<ClusterView, crate::es::EsError> {
    let info = ctx.client.info().await?;
    let mut view = ClusterView::default();
    if info.has_resolve_index() {
        let exprs: Vec<String> = expected.iter().map(|e| e.name.clone()).collect();
        let resolved = match ctx.client.resolve(&exprs).await {
            Ok(r) => Some(r),
            Err(e) if e.is_unsupported_route() => None,
            Err(e) => return Err(e),
        };
        if let Some(r) = resolved {
            for ix in r.indices {
                let state = IndexState { closed: ix.has("closed"), hidden: ix.has("hidden"), health: None };
                view.indices.insert(ix.name, state);
            }
            view.aliases = r.aliases.into_iter().map(|a| a.name).collect();
            view.data_streams = r.data_streams.into_iter().map(|d| d.name).collect();
            // Health only matters for expected indices that exist and are open.
            let need_health = expected.iter().any(|e| view.indices.get(&e.name).is_some_and(|s| !s.closed));
            if need_health {
                let health = ctx.client.health().await?;
                for (name, h) in health.indices {
                    if let Some(s) = view.indices.get_mut(&name) {
                        s.health = Some(h.status);
                    }
                }
            }
            return Ok(view);
        }
    }
    // Clusters without `_resolve/index`: one JSON listing of every index, then exact lookups.
    for row in ctx.client.cat_indices().await? {
        let closed = matches!(row.status.as_deref(), Some("close") | Some("closed"));
        view.indices.insert(row.index, IndexState { closed, hidden: false, health: row.health });
    }
    view.aliases = ctx.client.cat_aliases().await?.into_iter().map(|a| a.alias).collect();
    Ok(view)
}

pub(crate) async fn evaluate(check: &IndicesCheck, ctx: &ClusterCtx<'_>, now: DateTime<Utc>, tz: Tz) -> ClusterResult {
    let expected = expected_names(check, now, tz);
    let view = match view(ctx, &expected).await {
        Ok(v) => v,
        Err(e) => return ClusterResult::Blind(e.to_string()),
    };
    let problems = assess(&expected, &view);
    if problems.is_empty() {
        return ClusterResult::Observed {
            alerts: vec![],
            summary: format!("all {} expected indices present", expected.len()),
            samples: vec![],
        };
    }
    // A pattern whose only matches are closed is "closed", as a named index that is closed.
    let missing =
        problems.iter().filter(|(_, p)| matches!(p, Problem::Missing | Problem::NoMatch { closed: 0 })).count();
    let title = match (missing, problems.len() - missing) {
        (m, 0) => format!("{m} expected index(es) missing on {}", ctx.name),
        (0, o) => format!("{o} expected index(es) closed or red on {}", ctx.name),
        (m, o) => format!("{m} expected index(es) missing and {o} closed or red on {}", ctx.name),
    };
    let mut text = format!("Cluster {}{}:", ctx.name, describe_labels(&ctx.config.labels));
    let mut listed = Vec::new();
    for (e, p) in &problems {
        text.push_str(&format!("\n• {}: {}", e.name, p.describe()));
        if e.template != e.name {
            text.push_str(&format!(" (from {})", e.template));
        }
        listed.push(Value::String(e.name.clone()));
    }
    let mut fields = Map::new();
    fields.insert("indices".into(), Value::Array(listed));
    let summary = problems.iter().map(|(e, p)| format!("{} {}", e.name, p.describe())).collect::<Vec<_>>().join(", ");
    ClusterResult::Observed {
        alerts: vec![Alert {
            kind: KIND_MISSING,
            index: None,
            about: Some(label_for(&summary)),
            severity: check.severity,
            title,
            text,
            fields,
        }],
        summary,
        samples: vec![],
    }
}

/// The problems as a label: whole when short, else their start and a digest of all of them, so
/// that any change still changes the label (and is told) without a label of 20,000 names.
fn label_for(summary: &str) -> String {
    const MAX: usize = 200;
    if summary.chars().count() <= MAX {
        return summary.to_string();
    }
    let start: String = summary.chars().take(MAX - 30).collect();
    let mut all = std::collections::BTreeMap::new();
    all.insert("problems".to_string(), summary.to_string());
    format!("{start}… (set {})", crate::event::derive_fingerprint("indices", &all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_problems_label_is_whole_when_short_and_tells_sets_apart_when_long() {
        assert_eq!(label_for("a missing, b: closed"), "a missing, b: closed");
        let many = |last: &str| {
            (0..100).map(|i| format!("logs-{i:03} missing")).chain([last.to_string()]).collect::<Vec<_>>().join(", ")
        };
        let (x, y) = (label_for(&many("x missing")), label_for(&many("y missing")));
        assert!(x.chars().count() <= 200, "{x}");
        assert_ne!(x, y, "a change past the cut still changes the label");
    }

    fn exp(n: &str) -> Expected {
        Expected { template: n.into(), name: n.into() }
    }

    fn view() -> ClusterView {
        let mut v = ClusterView::default();
        v.indices.insert("users_index_old".into(), IndexState::default());
        v.indices.insert("accounts".into(), IndexState { closed: true, ..Default::default() });
        v.indices.insert("payments".into(), IndexState { health: Some("red".into()), ..Default::default() });
        v.indices.insert("archive-2020".into(), IndexState { closed: true, ..Default::default() });
        v.indices.insert(".kibana_1".into(), IndexState { hidden: true, ..Default::default() });
        v.aliases.insert("employees".into());
        v.data_streams.insert("logs-app".into());
        v
    }

    #[test]
    fn substring_is_not_presence() {
        let p = assess(&[exp("users_index")], &view());
        assert_eq!(p, vec![(exp("users_index"), Problem::Missing)]);
        assert!(assess(&[exp("users_index_old")], &view()).is_empty());
    }

    #[test]
    fn closed_red_aliases_streams_and_patterns() {
        let v = view();
        let p = assess(&[exp("accounts"), exp("payments"), exp("employees"), exp("logs-app")], &v);
        assert_eq!(p, vec![(exp("accounts"), Problem::Closed), (exp("payments"), Problem::Red)]);
        assert!(assess(&[exp("users_*"), exp("logs-*")], &v).is_empty());
        assert_eq!(assess(&[exp("archive-*")], &v), vec![(exp("archive-*"), Problem::NoMatch { closed: 1 })]);
        assert_eq!(assess(&[exp("*kibana*")], &v), vec![(exp("*kibana*"), Problem::NoMatch { closed: 0 })]);
        assert!(assess(&[exp(".kibana*")], &v).is_empty());
    }
}
