//! The scheduler: one loop per scheduled check, so a check never overlaps itself.
//!
//! After downtime a check whose last recorded run is older than its latest due time runs
//! once at start (one catch-up, however many runs were missed); a run that overruns its
//! interval skips the missed slots instead of running them back to back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::run::{run_check, Clusters, Outcome, RunOptions, RunReport};
use super::schedule::{parse_tz, Schedule};
use super::CheckConfig;
use crate::config::Config;
use crate::event::Event;
use crate::store::DynStore;

/// Where findings go: the daemon's ingest, or a test's collector.
pub type Sink = Arc<dyn Fn(Vec<Event>) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Starts one loop per check that has a schedule. `None` when there is none.
pub fn start_with(
    config: &Config,
    store: DynStore,
    sink: Sink,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut jobs = Vec::new();
    for check in &config.checks {
        let c = check.common();
        let (Some(expr), Ok(tz)) = (c.schedule, parse_tz(c.timezone)) else {
            continue;
        };
        match Schedule::parse(expr, tz) {
            Ok(s) => jobs.push((check.clone(), s)),
            Err(e) => tracing::error!(check = c.name, error = %e, "check not scheduled"),
        }
    }
    if jobs.is_empty() {
        return None;
    }
    let clusters = Arc::new(Clusters::from_config(config));
    Some(tokio::spawn(async move {
        let mut set = tokio::task::JoinSet::new();
        for (check, schedule) in jobs {
            set.spawn(check_loop(check, schedule, clusters.clone(), store.clone(), sink.clone(), shutdown.clone()));
        }
        while set.join_next().await.is_some() {}
    }))
}

async fn check_loop(
    check: CheckConfig,
    schedule: Schedule,
    clusters: Arc<Clusters>,
    store: DynStore,
    sink: Sink,
    shutdown: CancellationToken,
) {
    let name = check.name().to_string();
    let last = match store.last_check_runs().await {
        Ok(runs) => runs.into_iter().find(|r| r.check == name).map(|r| r.at),
        Err(e) => {
            tracing::warn!(check = %name, error = %e, "cannot read the last run; no catch-up");
            None
        }
    };
    let now = Utc::now();
    if let Some(last) = last {
        if schedule.missed_since(last, now) {
            tracing::info!(check = %name, last_run = %last, "missed a scheduled run while down; catching up once");
            if run_with_retries(&check, &clusters, &store, &sink, &shutdown, now).await.is_none() {
                return;
            }
        }
    }
    loop {
        let Some(next) = schedule.next_after(Utc::now()) else {
            tracing::warn!(check = %name, "the schedule has no future run");
            return;
        };
        let jitter =
            check.common().jitter.map(|j| rand::thread_rng().gen_range(Duration::ZERO..=j.get())).unwrap_or_default();
        let wait = (next - Utc::now()).to_std().unwrap_or_default() + jitter;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        // `at` is the scheduled instant (the logical date), not the jittered wake-up.
        if run_with_retries(&check, &clusters, &store, &sink, &shutdown, next).await.is_none() {
            return;
        }
    }
}

/// Runs a check, retrying while it could not check a cluster. Only the final attempt is
/// committed and reported, so a blip that a retry clears raises no alert.
/// `None` when shutdown interrupted it.
pub(crate) async fn run_with_retries(
    check: &CheckConfig,
    clusters: &Clusters,
    store: &DynStore,
    sink: &Sink,
    shutdown: &CancellationToken,
    at: DateTime<Utc>,
) -> Option<RunReport> {
    let c = check.common();
    let opts = RunOptions { at, store: Some(store.clone()) };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let report = tokio::select! {
            r = run_check(check, clusters, &opts) => r,
            _ = shutdown.cancelled() => return None,
        };
        if report.outcome == Outcome::Failed && attempt <= c.retries {
            tracing::info!(check = c.name, attempt, lines = ?report.lines, "could not check; retrying in {}", c.retry_delay);
            tokio::select! {
                _ = tokio::time::sleep(c.retry_delay.get()) => continue,
                _ = shutdown.cancelled() => return None,
            }
        }
        for e in report.commit(store).await {
            tracing::warn!(check = c.name, error = %e, "check state not saved");
        }
        tracing::info!(check = c.name, outcome = report.outcome.as_str(), events = report.events.len(), "check ran");
        if !report.events.is_empty() {
            if let Err(e) = sink(report.events.clone()).await {
                tracing::error!(check = c.name, error = %e, "check findings could not be submitted");
            }
        }
        return Some(report);
    }
}
