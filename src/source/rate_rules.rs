//! Unusual activity: for a kind pattern and a window, alert when the count of events leaves
//! fixed bounds or departs from its trailing baseline (registrations stopped, failed logins
//! spiking). Counts come from the stored events.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::config::RateRuleConfig;
use super::Sources;
use crate::event::Severity;
use crate::store::StoreError;

pub const KIND_LOW: &str = "rate.low";
pub const KIND_HIGH: &str = "rate.high";

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub kinds: Vec<String>,
    pub window: chrono::Duration,
    pub min: Option<u64>,
    pub max: Option<u64>,
    pub baseline: Option<chrono::Duration>,
    pub deviation_percent: Option<f64>,
    pub min_baseline: f64,
    pub every: chrono::Duration,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    window_text: String,
}

impl Rule {
    pub fn new(c: &RateRuleConfig) -> Rule {
        let d = |d: crate::config::Dur| chrono::Duration::from_std(d.get()).unwrap_or(chrono::Duration::days(365));
        let window = d(c.window);
        let every = c
            .every
            .map(d)
            .unwrap_or_else(|| (window / 10).clamp(chrono::Duration::seconds(10), chrono::Duration::minutes(5)));
        Rule {
            name: c.name.clone(),
            kinds: c.kinds.clone(),
            window,
            min: c.min,
            max: c.max,
            baseline: c.baseline.map(d),
            deviation_percent: c.deviation_percent,
            min_baseline: c.min_baseline,
            every,
            severity: c.severity,
            labels: c.labels.clone(),
            window_text: c.window.to_string(),
        }
    }
}

/// A rule's verdict on one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub kind: &'static str,
    pub text: String,
}

/// Pure: the verdict for `count` events in the window, given the baseline's count over the
/// baseline period (when the rule has one).
pub fn judge(rule: &Rule, count: u64, baseline_count: Option<u64>) -> Option<Verdict> {
    let what = format!("{} event(s) of {} in the last {}", count, rule.kinds.join(", "), rule.window_text);
    if let Some(min) = rule.min {
        if count < min {
            return Some(Verdict { kind: KIND_LOW, text: format!("{what}; expected at least {min}.") });
        }
    }
    if let Some(max) = rule.max {
        if count > max {
            return Some(Verdict { kind: KIND_HIGH, text: format!("{what}; expected at most {max}.") });
        }
    }
    if let (Some(base), Some(period), Some(pct)) = (baseline_count, rule.baseline, rule.deviation_percent) {
        let windows = period.num_milliseconds() as f64 / rule.window.num_milliseconds().max(1) as f64;
        let avg = base as f64 / windows.max(1e-9);
        if avg >= rule.min_baseline {
            let change = (count as f64 - avg) / avg * 100.0;
            if change.abs() > pct {
                let kind = if change > 0.0 { KIND_HIGH } else { KIND_LOW };
                return Some(Verdict {
                    kind,
                    text: format!("{what}; the usual is {avg:.1} ({change:+.0}%, alert beyond ±{pct}%)."),
                });
            }
        }
    }
    None
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RuleState {
    alert: Option<String>,
    since: Option<DateTime<Utc>>,
    /// The first evaluation: "too few" needs a whole window observed first, so a fresh start
    /// (or a new rule) does not report silence it has not watched.
    #[serde(default)]
    watching_since: Option<DateTime<Utc>>,
}

pub async fn evaluate(sources: &Sources, rule: &Rule, now: DateTime<Utc>) -> Result<(), StoreError> {
    let _serial = sources.transition().await;
    let store = sources.ingest().store();
    let start = now - rule.window;
    let count = store.count_events(&rule.kinds, start, now).await?;
    let baseline_count = match rule.baseline {
        Some(b) => Some(store.count_events(&rule.kinds, start - b, start).await?),
        None => None,
    };
    let verdict = judge(rule, count, baseline_count);
    let out = std::sync::Arc::new(std::sync::Mutex::new(None));
    let captured = out.clone();
    let window = rule.window;
    store
        .update_source_state(
            &format!("rate:{}", rule.name),
            Box::new(move |current| {
                let mut state: RuleState = current.and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();
                let first = state.watching_since.is_none();
                let watching_since = *state.watching_since.get_or_insert(now);
                let v = verdict.filter(|v| v.kind != KIND_LOW || now - watching_since >= window);
                let change = match (&state.alert, &v) {
                    (None, Some(v)) => Some(("firing", v.kind.to_string(), v.text.clone())),
                    (Some(a), Some(v)) if a != v.kind => Some(("firing", v.kind.to_string(), v.text.clone())),
                    (Some(a), None) => Some(("resolved", a.clone(), String::new())),
                    _ => None,
                };
                let Some((status, kind, _)) = change.clone() else {
                    return first.then(|| serde_json::to_value(&state).expect("state serializes"));
                };
                state.alert = (status == "firing").then_some(kind);
                state.since = Some(now);
                *captured.lock().unwrap_or_else(|e| e.into_inner()) = change;
                Some(serde_json::to_value(&state).expect("state serializes"))
            }),
            now,
        )
        .await?;
    let change = out.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some((status, kind, text)) = change else { return Ok(()) };
    let mut labels = rule.labels.clone();
    labels.insert("rule".into(), rule.name.clone());
    let (title, text) = if status == "firing" {
        let how = if kind == KIND_LOW { "too few" } else { "too many" };
        (format!("Unusual activity: {how} {} ({})", rule.kinds.join(", "), rule.name), text)
    } else {
        (
            format!("Activity back to normal: {}", rule.name),
            format!("{count} event(s) of {} in the last {}.", rule.kinds.join(", "), rule.window_text),
        )
    };
    let mut fields = json!({"count": count, "window": rule.window_text});
    if let Some(b) = baseline_count {
        fields["baseline_count"] = json!(b);
    }
    let event = super::make_event(
        json!({"kind": kind, "severity": rule.severity, "status": status, "fingerprint": format!("rate:{}", rule.name),
               "title": title, "text": text, "labels": labels, "fields": fields}),
        &format!("rate_rule:{}", rule.name),
        now,
    )?;
    sources.ingest().submit(vec![event]).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;

    fn rule() -> Rule {
        Rule::new(&RateRuleConfig {
            name: "logins".into(),
            kinds: vec!["auth.login_failed".into()],
            window: Dur::secs(600),
            min: None,
            max: None,
            baseline: Some(Dur::secs(6000)),
            deviation_percent: Some(200.0),
            min_baseline: 1.0,
            every: None,
            severity: Severity::Warning,
            labels: Default::default(),
        })
    }

    #[test]
    fn baseline_deviation() {
        // 10 windows in the baseline, 50 events: 5 per window on average.
        assert_eq!(judge(&rule(), 10, Some(50)), None);
        assert_eq!(judge(&rule(), 16, Some(50)).unwrap().kind, KIND_HIGH);
        // Too little history: no verdict.
        assert_eq!(judge(&rule(), 16, Some(5)), None);
    }
}
