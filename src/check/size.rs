//! `elasticsearch_index_size`: each index against the mean of its own earlier samples, and
//! each daily index family's newest day against its previous days.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde_json::{Map, Value};

use super::names::{daily_family, pattern_covers};
use super::run::{describe_labels, Alert, ClusterCtx, ClusterResult, RunOptions};
use super::{Metric, SizeCheck, KIND_SIZE};
use crate::store::samples::IndexSample;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Fewer than `min_samples` earlier values: no opinion yet.
    NotEnough,
    /// A zero baseline has no meaningful percentage.
    NoBaseline,
    Within {
        change_percent: f64,
    },
    Grew {
        change_percent: f64,
    },
    Shrank {
        change_percent: f64,
    },
}

pub fn verdict(current: f64, baseline: f64, samples: u32, min_samples: u32, threshold_percent: f64) -> Verdict {
    if samples < min_samples {
        return Verdict::NotEnough;
    }
    if baseline <= 0.0 {
        return Verdict::NoBaseline;
    }
    let change_percent = (current - baseline) / baseline * 100.0;
    if change_percent.abs() <= threshold_percent {
        Verdict::Within { change_percent }
    } else if change_percent > 0.0 {
        Verdict::Grew { change_percent }
    } else {
        Verdict::Shrank { change_percent }
    }
}

/// A daily family's newest day and the days before it.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyComparison {
    pub family: String,
    pub newest: String,
    pub newest_value: f64,
    pub previous: Vec<(String, f64)>,
}

/// Groups names that differ only by a date; families need two members or more. As of `today`
/// (the run's date in the check's time zone): days after it are not there yet (a run `--at` a
/// past instant), a family whose newest day is older than `window_days` is no longer written
/// and not judged, and previous days older than `window_days` before the newest are ignored.
/// One day of slack past `today`: an index dated in UTC can be a day ahead of the zone.
pub fn families(values: &[(String, f64)], window_days: i64, today: NaiveDate) -> Vec<FamilyComparison> {
    let mut groups: BTreeMap<String, Vec<(NaiveDate, &str, f64)>> = BTreeMap::new();
    for (name, v) in values {
        if let Some((family, day)) = daily_family(name) {
            if (day - today).num_days() <= 1 {
                groups.entry(family).or_default().push((day, name, *v));
            }
        }
    }
    let mut out = Vec::new();
    for (family, mut members) in groups {
        if members.len() < 2 {
            continue;
        }
        members.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)));
        let (newest_day, newest, newest_value) = *members.last().expect("two members");
        if (today - newest_day).num_days() > window_days {
            continue;
        }
        let previous = members[..members.len() - 1]
            .iter()
            .filter(|(d, _, _)| *d < newest_day && (newest_day - *d).num_days() <= window_days)
            .map(|(_, n, v)| (n.to_string(), *v))
            .collect();
        out.push(FamilyComparison { family, newest: newest.to_string(), newest_value, previous });
    }
    out
}

fn window(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        86400 => "day".into(),
        _ if s.is_multiple_of(86400) => format!("{} days", s / 86400),
        3600 => "hour".into(),
        _ if s.is_multiple_of(3600) => format!("{} hours", s / 3600),
        _ => humantime::format_duration(d).to_string(),
    }
}

pub fn human(metric: Metric, v: f64) -> String {
    match metric {
        Metric::Docs => format!("{} docs", v.round() as u64),
        Metric::Bytes => {
            let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
            let mut x = v;
            let mut u = 0;
            while x >= 1024.0 && u + 1 < units.len() {
                x /= 1024.0;
                u += 1;
            }
            if u == 0 {
                format!("{} B", v.round() as u64)
            } else {
                format!("{x:.1} {}", units[u])
            }
        }
    }
}

struct Change<'a> {
    index: &'a str,
    current: f64,
    baseline: f64,
    change_percent: f64,
    basis: String,
}

fn alert(check: &SizeCheck, ctx: &ClusterCtx<'_>, c: Change<'_>) -> Alert {
    let grew = c.change_percent > 0.0;
    let (direction, cause) = if grew {
        ("grew", "duplicated load (data ingested twice)")
    } else {
        ("shrank", "partial deletion (documents or data lost)")
    };
    let title = format!("{} {direction} {:.0}% on {}", c.index, c.change_percent.abs(), ctx.name);
    let text = format!(
        "Index {} on cluster {}{} {direction} by {:.1}%: {} now, baseline {} ({}). Likely cause: {cause}.",
        c.index,
        ctx.name,
        describe_labels(&ctx.config.labels),
        c.change_percent.abs(),
        human(check.metric, c.current),
        human(check.metric, c.baseline),
        c.basis,
    );
    let mut fields = Map::new();
    fields.insert("direction".into(), Value::String(direction.into()));
    fields.insert("change_percent".into(), Value::from((c.change_percent * 10.0).round() / 10.0));
    fields.insert("metric".into(), Value::String(check.metric.as_str().into()));
    fields.insert("current".into(), Value::from(c.current.round()));
    fields.insert("baseline".into(), Value::from(c.baseline.round()));
    fields.insert("likely_cause".into(), Value::String(cause.into()));
    Alert {
        kind: KIND_SIZE,
        index: Some(c.index.to_string()),
        about: None,
        severity: check.severity,
        title,
        text,
        fields,
    }
}

pub(crate) async fn evaluate(check: &SizeCheck, ctx: &ClusterCtx<'_>, opts: &RunOptions) -> ClusterResult {
    if let Err(e) = ctx.client.info().await {
        return ClusterResult::Blind(e.to_string());
    }
    // A red cluster's primaries are partly unassigned: their sizes would look like shrinkage.
    match ctx.client.cluster_status().await {
        Ok(status) if status == "red" => {
            return ClusterResult::Blind(
                "cluster health is red (primary shards unassigned), sizes cannot be trusted".into(),
            )
        }
        Ok(_) => {}
        Err(e) => return ClusterResult::Blind(e.to_string()),
    }
    let stats = match ctx.client.stats(&check.indices).await {
        Ok(s) => s,
        Err(e) => return ClusterResult::Blind(e.to_string()),
    };
    let mut samples: Vec<IndexSample> = stats
        .indices
        .into_iter()
        .filter(|(name, _)| check.indices.iter().any(|p| p == name || pattern_covers(p, name, false)))
        .filter_map(|(name, s)| {
            // No primaries (closed, or red without a started primary) is no measurement, not 0.
            let p = s.primaries?;
            Some(IndexSample { index: name, bytes: p.store?.size_in_bytes, docs: p.docs.map(|d| d.count).unwrap_or(0) })
        })
        .collect();
    samples.sort_by(|a, b| a.index.cmp(&b.index));
    let value = |s: &IndexSample| match check.metric {
        Metric::Bytes => s.bytes as f64,
        Metric::Docs => s.docs as f64,
    };

    let window_days = (check.baseline.get().as_secs() / 86400).max(1) as i64;
    let values: Vec<(String, f64)> = samples.iter().map(|s| (s.index.clone(), value(s))).collect();
    let tz = super::schedule::parse_tz(&check.timezone).unwrap_or(chrono_tz::UTC);
    let today = opts.at.with_timezone(&tz).date_naive();
    let fams = families(&values, window_days, today);
    let in_family: std::collections::HashSet<&str> = values
        .iter()
        .filter(|(n, _)| daily_family(n).is_some_and(|(f, _)| fams.iter().any(|c| c.family == f)))
        .map(|(n, _)| n.as_str())
        .collect();

    let mut alerts = Vec::new();
    let mut judged = 0usize;
    for f in &fams {
        let n = f.previous.len() as u32;
        let mean = if n == 0 { 0.0 } else { f.previous.iter().map(|(_, v)| v).sum::<f64>() / n as f64 };
        match verdict(f.newest_value, mean, n, check.min_samples, check.threshold_percent) {
            Verdict::Grew { change_percent } | Verdict::Shrank { change_percent } => {
                judged += 1;
                let basis = format!("mean of the {n} previous daily indices of {}", f.family);
                alerts.push(alert(
                    check,
                    ctx,
                    Change { index: &f.newest, current: f.newest_value, baseline: mean, change_percent, basis },
                ));
            }
            Verdict::Within { .. } => judged += 1,
            Verdict::NotEnough | Verdict::NoBaseline => {}
        }
    }

    let baselines: HashMap<String, crate::store::samples::Baseline> = match &opts.store {
        Some(store) => {
            let since =
                opts.at - chrono::Duration::from_std(check.baseline.get()).unwrap_or(chrono::Duration::days(30));
            match store.index_baselines(ctx.name, since, opts.at).await {
                Ok(b) => b,
                Err(e) => return ClusterResult::Blind(format!("cannot read stored samples: {e}")),
            }
        }
        None => HashMap::new(),
    };
    for s in &samples {
        if in_family.contains(s.index.as_str()) {
            continue;
        }
        let Some(b) = baselines.get(&s.index) else {
            continue;
        };
        let mean = match check.metric {
            Metric::Bytes => b.mean_bytes,
            Metric::Docs => b.mean_docs,
        };
        match verdict(value(s), mean, b.samples, check.min_samples, check.threshold_percent) {
            Verdict::Grew { change_percent } | Verdict::Shrank { change_percent } => {
                judged += 1;
                let basis = format!("mean of {} samples over the last {}", b.samples, window(check.baseline.get()));
                alerts.push(alert(
                    check,
                    ctx,
                    Change { index: &s.index, current: value(s), baseline: mean, change_percent, basis },
                ));
            }
            Verdict::Within { .. } => judged += 1,
            Verdict::NotEnough | Verdict::NoBaseline => {}
        }
    }
    let summary = format!(
        "{} indices sampled, {judged} compared with a baseline, {} beyond ±{}%",
        samples.len(),
        alerts.len(),
        check.threshold_percent
    );
    ClusterResult::Observed { alerts, summary, samples }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_either_way() {
        assert_eq!(verdict(50.0, 100.0, 3, 7, 20.0), Verdict::NotEnough);
        assert!(
            matches!(verdict(50.0, 100.0, 30, 7, 20.0), Verdict::Shrank { change_percent } if change_percent == -50.0)
        );
        assert!(
            matches!(verdict(160.0, 100.0, 30, 7, 20.0), Verdict::Grew { change_percent } if change_percent == 60.0)
        );
        assert!(matches!(verdict(115.0, 100.0, 30, 7, 20.0), Verdict::Within { .. }));
        assert_eq!(verdict(5.0, 0.0, 30, 7, 20.0), Verdict::NoBaseline);
    }

    #[test]
    fn families_compare_newest_with_previous_days() {
        let v: Vec<(String, f64)> = vec![
            ("logs-2026.11.18".into(), 100.0),
            ("logs-2026.11.19".into(), 110.0),
            ("logs-2026.11.20".into(), 90.0),
            ("logs-2026.11.21".into(), 300.0),
            ("logs-2026.09.01".into(), 5.0),
            ("users".into(), 1.0),
            ("solo-2026.11.21".into(), 1.0),
        ];
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        let f = families(&v, 30, day("2026-11-21"));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].newest, "logs-2026.11.21");
        assert_eq!(f[0].previous.len(), 3, "the September index is outside the window");
        let mean = f[0].previous.iter().map(|p| p.1).sum::<f64>() / 3.0;
        assert!(
            matches!(verdict(f[0].newest_value, mean, 3, 3, 20.0), Verdict::Grew { change_percent } if change_percent == 200.0)
        );
        // As of the 18th (a run --at then): the 20th and 21st are not there yet (the 19th is a
        // day ahead, within the slack).
        let f = families(&v, 30, day("2026-11-18"));
        assert_eq!((f[0].newest.as_str(), f[0].previous.len()), ("logs-2026.11.19", 1));
        // A day ahead is still today somewhere (an index dated in UTC, a check in New York).
        assert_eq!(families(&v, 30, day("2026-11-20"))[0].newest, "logs-2026.11.21");
        // Seven months on, the family is no longer written: nothing to judge.
        assert!(families(&v, 30, day("2027-06-01")).is_empty());
    }

    #[test]
    fn human_units() {
        assert_eq!(human(Metric::Bytes, 512.0), "512 B");
        assert_eq!(human(Metric::Bytes, 1536.0 * 1024.0 * 1024.0), "1.5 GiB");
        assert_eq!(human(Metric::Docs, 12.0), "12 docs");
    }
}
