//! One run of one check: every cluster concurrently, then findings → events and stored state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use serde_json::{Map, Value};

use super::{CheckConfig, KIND_UNREACHABLE};
use crate::config::Config;
use crate::es::{Client, ClusterConfig};
use crate::event::{derive_fingerprint, new_event_id, AlertStatus, Event, Severity};
use crate::store::samples::{AlertRecord, CheckRunRecord, IndexSample};
use crate::store::DynStore;

/// The clusters of a configuration, each with its client (or why it could not be built).
#[derive(Clone, Default)]
pub struct Clusters {
    entries: BTreeMap<String, (ClusterConfig, Result<Arc<Client>, String>)>,
}

impl Clusters {
    pub fn from_config(config: &Config) -> Clusters {
        let mut c = Clusters::default();
        for (name, cfg) in &config.elasticsearch {
            let client = Client::new(cfg).map(Arc::new).map_err(|e| e.to_string());
            c.entries.insert(name.clone(), (cfg.clone(), client));
        }
        c
    }

    /// Replaces one cluster's client (tests and benchmarks with fixed AWS credentials).
    pub fn insert(&mut self, name: &str, config: ClusterConfig, client: Client) {
        self.entries.insert(name.to_string(), (config, Ok(Arc::new(client))));
    }

    fn get(&self, name: &str) -> Option<&(ClusterConfig, Result<Arc<Client>, String>)> {
        self.entries.get(name)
    }
}

#[derive(Clone)]
pub struct RunOptions {
    /// "Now" for the run: the scheduled time, or `--at`.
    pub at: DateTime<Utc>,
    /// Where baselines and alert state are read; nothing is written until
    /// [`RunReport::commit`].
    pub store: Option<DynStore>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Healthy,
    Alerting,
    /// At least one cluster could not be checked.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Healthy => "healthy",
            Outcome::Alerting => "alerting",
            Outcome::Failed => "failed",
        }
    }

    /// `tocsin check run`: 0 healthy, 1 alerting, 2 could not check.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Healthy => 0,
            Outcome::Alerting => 1,
            Outcome::Failed => 2,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub check: String,
    pub at: DateTime<Utc>,
    pub outcome: Outcome,
    /// Firing and resolved alerts, ready for routing.
    pub events: Vec<Event>,
    /// One line per cluster for people.
    pub lines: Vec<String>,
    /// Problems reading state; the findings themselves are still valid.
    pub store_errors: Vec<String>,
    pending: Pending,
}

/// What a run would write: kept apart so a dry run or an attempt that will be retried
/// leaves no trace.
#[derive(Debug, Clone, Default)]
struct Pending {
    firing: Vec<AlertRecord>,
    resolved: Vec<String>,
    samples: Vec<(String, Vec<IndexSample>)>,
    summary: String,
}

impl RunReport {
    /// Stores samples, alert state and the run record. Returns what could not be stored.
    pub async fn commit(&self, store: &DynStore) -> Vec<String> {
        let mut errors = Vec::new();
        for (cluster, samples) in &self.pending.samples {
            if let Err(e) = store.insert_index_samples(cluster, self.at, samples).await {
                errors.push(format!("cannot store samples of {cluster}: {e}"));
            }
        }
        if let Err(e) = store.update_check_alerts(&self.check, &self.pending.firing, &self.pending.resolved).await {
            errors.push(format!("cannot save alert state: {e}"));
        }
        let run = CheckRunRecord {
            check: self.check.clone(),
            at: self.at,
            outcome: self.outcome.as_str().into(),
            summary: self.pending.summary.clone(),
        };
        if let Err(e) = store.record_check_run(&run).await {
            errors.push(format!("cannot record the run: {e}"));
        }
        errors
    }
}

/// A condition a check found on one cluster.
#[derive(Debug, Clone)]
pub(crate) struct Alert {
    pub kind: &'static str,
    /// For per-index conditions: the index, part of the fingerprint and a label.
    pub index: Option<String>,
    /// For a cluster-wide condition: what it is about now (e.g. which indices are missing),
    /// a label, so that a change is told even though the fingerprint stays the same.
    pub about: Option<String>,
    pub severity: Severity,
    pub title: String,
    pub text: String,
    pub fields: Map<String, Value>,
}

pub(crate) enum ClusterResult {
    /// Could not reach or read the cluster: say so and claim nothing about its data.
    Blind(String),
    Observed {
        alerts: Vec<Alert>,
        summary: String,
        samples: Vec<IndexSample>,
    },
}

pub(crate) struct ClusterCtx<'a> {
    pub name: &'a str,
    pub config: &'a ClusterConfig,
    pub client: &'a Client,
}

/// Runs one check once over all its clusters.
pub async fn run_check(check: &CheckConfig, clusters: &Clusters, opts: &RunOptions) -> RunReport {
    let common = check.common();
    let tz = super::schedule::parse_tz(common.timezone).unwrap_or(chrono_tz::UTC);
    let timeout = common.timeout.get();
    let futures = common.clusters.iter().map(|name| async move {
        let result = match clusters.get(name) {
            None => ClusterResult::Blind(format!("cluster {name:?} is not configured")),
            Some((_, Err(e))) => ClusterResult::Blind(e.clone()),
            Some((config, Ok(client))) => {
                let ctx = ClusterCtx { name, config, client };
                let work = async {
                    match check {
                        CheckConfig::ElasticsearchIndices(c) => super::indices::evaluate(c, &ctx, opts.at, tz).await,
                        CheckConfig::ElasticsearchIndexSize(c) => super::size::evaluate(c, &ctx, opts).await,
                    }
                };
                match tokio::time::timeout(timeout, work).await {
                    Ok(r) => r,
                    Err(_) => ClusterResult::Blind(format!("the check did not finish within {}", common.timeout)),
                }
            }
        };
        (name.clone(), result)
    });
    let results = join_all(futures).await;

    let mut store_errors = Vec::new();
    let previous = match &opts.store {
        Some(store) => store.check_firing_alerts(common.name).await.unwrap_or_else(|e| {
            store_errors.push(format!("cannot read alert state: {e}"));
            Vec::new()
        }),
        None => Vec::new(),
    };
    let mut previous_by_cluster: HashMap<&str, Vec<&AlertRecord>> = HashMap::new();
    for p in &previous {
        previous_by_cluster.entry(p.cluster.as_str()).or_default().push(p);
    }

    let received = Utc::now();
    let mut events = Vec::new();
    let mut lines = Vec::new();
    let mut firing_records = Vec::new();
    let mut resolved = Vec::new();
    let mut samples_out = Vec::new();
    let (mut blind, mut alerting) = (false, false);

    for (cluster, result) in results {
        let cluster_labels = clusters.get(&cluster).map(|(c, _)| c.labels.clone()).unwrap_or_default();
        let mut labels = cluster_labels.clone();
        labels.insert("cluster".into(), cluster.clone());
        labels.insert("check".into(), common.name.to_string());
        let prior = previous_by_cluster.remove(cluster.as_str()).unwrap_or_default();
        match result {
            ClusterResult::Blind(reason) => {
                blind = true;
                lines.push(format!("{cluster}: could not check: {reason}"));
                let title = format!("Cannot check Elasticsearch cluster {cluster}");
                let text = format!(
                    "Check {:?} could not read cluster {cluster}{}: {reason}.\nNo index is reported missing or changed while the cluster cannot be read.",
                    common.name,
                    describe_labels(&cluster_labels)
                );
                let mut fields = Map::new();
                fields.insert("error".into(), Value::String(reason));
                let fp = fingerprint(KIND_UNREACHABLE, common.name, &cluster, None);
                events.push(event(
                    KIND_UNREACHABLE,
                    Severity::Error,
                    &title,
                    &text,
                    &labels,
                    fields,
                    &fp,
                    AlertStatus::Firing,
                    opts.at,
                    received,
                    common.name,
                ));
                let since = prior.iter().find(|p| p.fingerprint == fp).map(|p| p.since).unwrap_or(opts.at);
                firing_records.push(AlertRecord {
                    fingerprint: fp,
                    cluster: cluster.clone(),
                    kind: KIND_UNREACHABLE.into(),
                    title,
                    labels,
                    since,
                });
            }
            ClusterResult::Observed { alerts, summary, samples } => {
                lines.push(format!("{cluster}: {summary}"));
                let measured: HashSet<String> = samples.iter().map(|s| s.index.clone()).collect();
                if !samples.is_empty() {
                    samples_out.push((cluster.clone(), samples));
                }
                let mut now_firing = HashSet::new();
                for a in alerts {
                    alerting = true;
                    let mut l = labels.clone();
                    if let Some(ix) = &a.index {
                        l.insert("index".into(), ix.clone());
                    }
                    if let Some(about) = &a.about {
                        l.insert("indices".into(), about.clone());
                    }
                    let fp = fingerprint(a.kind, common.name, &cluster, a.index.as_deref());
                    let since = prior.iter().find(|p| p.fingerprint == fp).map(|p| p.since).unwrap_or(opts.at);
                    events.push(event(
                        a.kind,
                        a.severity,
                        &a.title,
                        &a.text,
                        &l,
                        a.fields,
                        &fp,
                        AlertStatus::Firing,
                        opts.at,
                        received,
                        common.name,
                    ));
                    firing_records.push(AlertRecord {
                        fingerprint: fp.clone(),
                        cluster: cluster.clone(),
                        kind: a.kind.into(),
                        title: a.title,
                        labels: l,
                        since,
                    });
                    now_firing.insert(fp);
                }
                for p in prior {
                    if now_firing.contains(&p.fingerprint) {
                        continue;
                    }
                    let title = format!("Resolved: {}", p.title);
                    let text = match p.kind.as_str() {
                        KIND_UNREACHABLE => format!("Cluster {cluster} can be read again."),
                        super::KIND_MISSING => {
                            format!("Every expected index is back on {cluster}.")
                        }
                        _ => match p.labels.get("index") {
                            // Deleted, closed or red: no size to call usual, so none is claimed.
                            Some(index) if !measured.contains(index) => format!(
                                "{index} has no current size on {cluster} (deleted, closed or red); \
                                 it is no longer compared."
                            ),
                            index => format!(
                                "{} is back within its usual size on {cluster}.",
                                index.map(String::as_str).unwrap_or("The index")
                            ),
                        },
                    };
                    let severity = if p.kind == KIND_UNREACHABLE { Severity::Error } else { common.severity };
                    events.push(event(
                        &p.kind,
                        severity,
                        &title,
                        &text,
                        &p.labels,
                        Map::new(),
                        &p.fingerprint,
                        AlertStatus::Resolved,
                        opts.at,
                        received,
                        common.name,
                    ));
                    resolved.push(p.fingerprint.clone());
                }
            }
        }
    }
    // Alerts of clusters no longer in the check: resolve them so they do not fire forever.
    for (_, prior) in previous_by_cluster {
        for p in prior {
            events.push(event(
                &p.kind,
                common.severity,
                &format!("Resolved: {}", p.title),
                "The cluster is no longer checked.",
                &p.labels,
                Map::new(),
                &p.fingerprint,
                AlertStatus::Resolved,
                opts.at,
                received,
                common.name,
            ));
            resolved.push(p.fingerprint.clone());
        }
    }

    let outcome = if blind {
        Outcome::Failed
    } else if alerting {
        Outcome::Alerting
    } else {
        Outcome::Healthy
    };
    let pending = Pending { firing: firing_records, resolved, samples: samples_out, summary: lines.join("; ") };
    RunReport { check: common.name.to_string(), at: opts.at, outcome, events, lines, store_errors, pending }
}

pub(crate) fn describe_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(" ({})", parts.join(", "))
    }
}

fn fingerprint(kind: &str, check: &str, cluster: &str, index: Option<&str>) -> String {
    let mut key = BTreeMap::new();
    key.insert("check".to_string(), check.to_string());
    key.insert("cluster".to_string(), cluster.to_string());
    if let Some(i) = index {
        key.insert("index".to_string(), i.to_string());
    }
    derive_fingerprint(kind, &key)
}

#[allow(clippy::too_many_arguments)]
fn event(
    kind: &str,
    severity: Severity,
    title: &str,
    text: &str,
    labels: &BTreeMap<String, String>,
    fields: Map<String, Value>,
    fingerprint: &str,
    status: AlertStatus,
    at: DateTime<Utc>,
    received: DateTime<Utc>,
    check: &str,
) -> Event {
    let title: String = title.chars().take(crate::event::MAX_TITLE_LEN).collect();
    let mut text = text.to_string();
    if text.len() > crate::event::MAX_TEXT_BYTES {
        let mut cut = crate::event::MAX_TEXT_BYTES - 16;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n…");
    }
    Event {
        id: new_event_id(received),
        kind: kind.to_string(),
        severity,
        title: Some(title),
        text: Some(text),
        user: None,
        labels: labels.clone(),
        fields,
        fingerprint: fingerprint.to_string(),
        status: Some(status),
        link: None,
        timestamp: at,
        received_at: received,
        source: format!("check:{check}"),
        error: None,
    }
}
