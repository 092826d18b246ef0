//! Wiring and lifecycle: build every part from a `Config`, run, reload on SIGHUP, and shut
//! down in order (HTTP → checks → delivery → store) within a deadline.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiSettings, AppState, KeyRing};
use crate::config::Config;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::notify::delivery::{Delivery, Pacing, RetryPolicy};
use crate::notify::{build_all, NotifierContext};
use crate::pipeline::{Lifecycle, Pipeline, SharedPipeline};
use crate::shared::Shared;
use crate::store::{self, DynStore};

/// How often rows past `store.retention` are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often repeats and silence expiries are looked for.
const TICK_EVERY: Duration = Duration::from_secs(1);

/// A daemon that is running; `shutdown` stops it gracefully.
pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    /// The application event sources; tests drive their clock and checks through it.
    pub sources: crate::source::Sources,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Waits until the daemon has stopped.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("the daemon task panicked")?
    }
}

struct Parts {
    store: DynStore,
    pipeline: SharedPipeline,
    delivery: Delivery,
    delivery_stop: CancellationToken,
    settings: Shared<ApiSettings>,
    metrics: Arc<Metrics>,
    ingest: Ingest,
    sources: crate::source::Sources,
}

fn api_settings(config: &Config) -> ApiSettings {
    ApiSettings {
        keys: KeyRing::new(&config.api_keys),
        max_body_bytes: config.server.max_body_bytes,
        slack: api::SlackSettings::new(config),
    }
}

/// A destination that is gone becomes a `tocsin.destination_disabled` alert, routed like any
/// event; its first success afterwards resolves it (if it is firing, even from before a restart).
fn raise_destination_alarms(delivery: &Delivery, ingest: &Ingest) {
    let ingest = ingest.clone();
    delivery.health().on_alarm(move |alarm| {
        let fingerprint = alarm.fingerprint();
        if alarm.reason.is_none() && !ingest.lifecycle().alert(&fingerprint).is_some_and(|a| a.is_firing()) {
            return;
        }
        let ingest = ingest.clone();
        tokio::spawn(async move {
            if let Err(error) = ingest.submit(vec![alarm.event(chrono::Utc::now())]).await {
                tracing::error!(%error, fingerprint, "could not record the destination alarm");
            }
        });
    });
}

/// Builds and starts everything; returns once the HTTP listener is bound.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let shutdown = CancellationToken::new();
    // Delivery stops only after HTTP has drained, so what is accepted during the drain is
    // still delivered before exit.
    let delivery_stop = CancellationToken::new();
    let store = store::open(&config.store.url).await.context("cannot open the store")?;
    let metrics = Metrics::new();
    let notifier_ctx = NotifierContext::new(config.delivery.timeout.get()).with_store(store.clone());
    let delivery = Delivery::new(
        store.clone(),
        build_all(&config.notifiers, &notifier_ctx),
        RetryPolicy::from(&config.delivery),
        Pacing::from_config(&config),
        metrics.clone(),
        delivery_stop.clone(),
    );
    let pipeline = SharedPipeline::new(Pipeline::new(&config).context("invalid routes or templates")?);
    let now = chrono::Utc::now();
    let recent = now - chrono::Duration::from_std(config.alerts.flap_window.get()).unwrap_or_default();
    let lifecycle = Lifecycle::new(
        &config,
        store.load_alerts(recent).await.context("cannot load alerts")?,
        store.silences(now).await.context("cannot load silences")?,
    )
    .context("invalid inhibit rules or maintenance windows")?;
    let ingest = Ingest::new(store.clone(), pipeline.clone(), Arc::new(lifecycle), delivery.clone(), metrics.clone());
    raise_destination_alarms(&delivery, &ingest);
    let settings = Shared::new(api_settings(&config));
    let sources = crate::source::Sources::new(&config, ingest.clone()).context("invalid source configuration")?;
    delivery.resume().await.context("cannot read the outbox")?;
    // Before the port opens: a SIGTERM sent as soon as the daemon answers must be a graceful
    // stop, not the default kill.
    let signals = signals::Signals::install().context("cannot handle process signals")?;

    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, store = %store_kind(&config.store.url), "tocsin listening");

    let parts = Parts { store, pipeline, delivery, delivery_stop, settings, metrics, ingest, sources: sources.clone() };
    let task = tokio::spawn(run(config, parts, listener, signals, shutdown.clone()));
    Ok(Running { addr, shutdown, sources, task })
}

fn store_kind(url: &str) -> &str {
    url.split("://").next().unwrap_or("?")
}

async fn run(
    config: Config,
    parts: Parts,
    listener: TcpListener,
    mut signals: signals::Signals,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = AppState {
        ingest: parts.ingest.clone(),
        settings: parts.settings.clone(),
        metrics: parts.metrics.clone(),
        sources: parts.sources.clone(),
    };
    let router = api::router(state);
    let http_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        // The peer address feeds the browser endpoint's per-IP rate limit.
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
            .await
    });
    let sources_task = parts.sources.start(shutdown.child_token());

    let mut checks_token = shutdown.child_token();
    let mut checks = crate::check::start(&config, parts.ingest.clone(), checks_token.clone());
    let retention = Shared::new(Retention::of(&config));
    let mut pruner = tokio::spawn(prune_loop(parts.store.clone(), retention.clone(), shutdown.clone()));
    let ticker = tokio::spawn(tick_loop(parts.ingest.clone(), shutdown.clone()));

    let running = RestartOnly::of(&config);
    let mut current = config;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            reason = signals.next() => match reason {
                signals::Signal::Stop => { tracing::info!("shutting down"); shutdown.cancel(); break; }
                signals::Signal::Reload => {
                    if let Some(next) = reload(&current, &running, &parts) {
                        checks_token.cancel();
                        if let Some(handle) = checks.take() { let _ = handle.await; }
                        checks_token = shutdown.child_token();
                        checks = crate::check::start(&next, parts.ingest.clone(), checks_token.clone());
                        retention.replace(Retention::of(&next));
                        current = next;
                    }
                }
            },
        }
    }

    // In order: no new requests, then no new check runs, then deliver what is queued. Each
    // step is logged with the time it took, so a slow stop says which part held it.
    // `shutdown_grace` is one budget for all of it (the reloaded value, if it changed), not a
    // fresh one per step: a supervisor's kill timeout is sized from it.
    let stopping = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + current.server.shutdown_grace.get();
    let step = |name: &str| {
        tracing::debug!(step = name, elapsed_ms = stopping.elapsed().as_millis() as u64, "shutdown step done")
    };
    match tokio::time::timeout_at(deadline, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task failed"),
        Err(_) => tracing::warn!("requests still open after the grace period"),
    }
    step("http");
    if let Some(handle) = checks {
        let _ = tokio::time::timeout_at(deadline, handle).await;
    }
    let _ = tokio::time::timeout_at(deadline, sources_task).await;
    ticker.abort();
    step("checks and sources");
    parts.delivery_stop.cancel();
    if !parts.delivery.drain(deadline.saturating_duration_since(tokio::time::Instant::now())).await {
        tracing::warn!("deliveries still pending after the grace period; they stay in the outbox for the next start");
    }
    step("delivery");
    // Aborted half-way, a prune could leave a statement holding SQLite's write lock in the
    // pool, and the store then waited out its busy timeouts (20 s) to close: it stops at its
    // next pause instead, within the grace period.
    if tokio::time::timeout_at(deadline, &mut pruner).await.is_err() {
        pruner.abort();
    }
    parts.store.close().await;
    step("store");
    tracing::info!(elapsed_ms = stopping.elapsed().as_millis() as u64, "stopped");
    Ok(())
}

/// The settings a reload cannot change, as the process started with them.
struct RestartOnly {
    store_url: String,
    listen: std::net::SocketAddr,
    log_level: String,
    log_format: crate::config::LogFormat,
}

impl RestartOnly {
    fn of(config: &Config) -> Self {
        RestartOnly {
            store_url: config.store.url.clone(),
            listen: config.server.listen,
            log_level: config.log.level.clone(),
            log_format: config.log.format,
        }
    }

    /// The keys whose new value waits for a restart (names only: a URL may hold a password).
    fn pending(&self, next: &Config) -> Vec<&'static str> {
        let next = RestartOnly::of(next);
        [
            ("store.url", self.store_url != next.store_url),
            ("server.listen", self.listen != next.listen),
            ("log.level", self.log_level != next.log_level),
            ("log.format", self.log_format != next.log_format),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }
}

/// Applies a new configuration file; an invalid one leaves the running configuration alone.
fn reload(current: &Config, running: &RestartOnly, parts: &Parts) -> Option<Config> {
    let failed = |why: String| {
        tracing::error!(path = %current.path.display(), error = %why, "reload failed; keeping the running configuration");
        parts.metrics.config_reloads.get_or_create(&crate::metrics::ResultLabel { result: "failure".into() }).inc();
        parts.metrics.config_last_reload_successful.set(0);
        None
    };
    let next = match crate::config::load(&current.path) {
        Ok(next) => next,
        Err(errors) => {
            // One line per problem, as `config check` prints them.
            for problem in &errors.0 {
                tracing::error!(problem = %problem, "invalid configuration");
            }
            let n = errors.0.len();
            return failed(format!("{n} problem{} in the file", if n == 1 { "" } else { "s" }));
        }
    };
    let pipeline = match Pipeline::new(&next) {
        Ok(p) => p,
        Err(e) => return failed(e.to_string()),
    };
    if let Err(e) = parts.ingest.lifecycle().reconfigure(&next) {
        return failed(e.to_string());
    }
    let pending = running.pending(&next);
    if !pending.is_empty() {
        tracing::warn!(keys = %pending.join(", "), "these settings changed and take effect only after a restart");
    }
    parts.pipeline.replace(pipeline);
    parts.settings.replace(api_settings(&next));
    if let Err(e) = parts.sources.reconfigure(&next) {
        tracing::error!(error = %e, "sources keep their previous configuration");
    }
    parts.delivery.reconfigure(
        build_all(&next.notifiers, &NotifierContext::new(next.delivery.timeout.get()).with_store(parts.store.clone())),
        RetryPolicy::from(&next.delivery),
        Pacing::from_config(&next),
    );
    parts.metrics.config_reloads.get_or_create(&crate::metrics::ResultLabel { result: "success".into() }).inc();
    parts.metrics.config_last_reload_successful.set(1);
    tracing::info!(path = %next.path.display(), "configuration reloaded");
    Some(next)
}

/// Repeats, silences that ended and flapping that settled are due with time alone.
async fn tick_loop(ingest: Ingest, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = ingest.tick(chrono::Utc::now()).await {
            tracing::warn!(error = %e, "alert upkeep failed; will retry");
        }
    }
}

/// How long each kind of row is kept: `store.retention`, except that check samples also cover
/// the longest size-check baseline (a baseline of 30 days needs 30 days of samples, whatever
/// the retention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub rows: Duration,
    pub samples: Duration,
}

impl Retention {
    pub fn of(config: &Config) -> Retention {
        let rows = config.store.retention.get();
        let baseline = config
            .checks
            .iter()
            .filter_map(|check| match check {
                crate::check::CheckConfig::ElasticsearchIndexSize(size) => Some(size.baseline.get()),
                crate::check::CheckConfig::ElasticsearchIndices(_) => None,
            })
            .max()
            .unwrap_or_default();
        // A day more than the baseline, so the oldest day of the window is never half gone.
        Retention { rows, samples: rows.max(baseline + Duration::from_secs(86400)) }
    }
}

async fn prune_loop(store: DynStore, retention: Shared<Retention>, shutdown: CancellationToken) {
    loop {
        let keep = *retention.current();
        let now = chrono::Utc::now();
        let before = |d: Duration| {
            chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| now.checked_sub_signed(d))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
        };
        match store.prune(before(keep.rows)).await {
            Ok(pruned) if pruned.is_empty() => {}
            Ok(pruned) => tracing::info!(
                events = pruned.events,
                alerts = pruned.alerts,
                silences = pruned.silences,
                error_issues = pruned.error_issues,
                "pruned rows past retention"
            ),
            Err(e) => tracing::warn!(error = %e, "pruning failed"),
        }
        match store.prune_index_samples(before(keep.samples)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(samples = n, "pruned check samples past retention"),
            Err(e) => tracing::warn!(error = %e, "pruning check samples failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// `tocsin serve`: load, start, and run until SIGTERM/SIGINT.
pub async fn serve(path: &Path) -> anyhow::Result<()> {
    let config = crate::config::load(path).map_err(|errors| anyhow::anyhow!("invalid configuration:\n{errors}"))?;
    crate::telemetry::init(&config.log);
    let running = start(config).await?;
    running.wait().await
}

mod signals {
    //! Process signals as a stream of intents.

    pub enum Signal {
        Stop,
        Reload,
    }

    /// The handlers, installed once and kept: a listener created per wait would miss a signal
    /// that arrives between two waits (during a reload), and the process would ignore it.
    #[cfg(unix)]
    pub struct Signals {
        term: tokio::signal::unix::Signal,
        int: tokio::signal::unix::Signal,
        hup: tokio::signal::unix::Signal,
    }

    #[cfg(unix)]
    impl Signals {
        pub fn install() -> std::io::Result<Signals> {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                hup: signal(SignalKind::hangup())?,
            })
        }

        pub async fn next(&mut self) -> Signal {
            tokio::select! {
                _ = self.term.recv() => Signal::Stop,
                _ = self.int.recv() => Signal::Stop,
                _ = self.hup.recv() => Signal::Reload,
            }
        }
    }

    #[cfg(not(unix))]
    pub struct Signals;

    #[cfg(not(unix))]
    impl Signals {
        pub fn install() -> std::io::Result<Signals> {
            Ok(Signals)
        }

        pub async fn next(&mut self) -> Signal {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::load_str(text, std::path::Path::new("t.toml")).unwrap()
    }

    #[test]
    fn samples_outlive_a_short_retention_to_cover_the_longest_baseline() {
        let day = Duration::from_secs(86400);
        let plain = Retention::of(&config("[store]\nretention = \"90d\"\n"));
        assert_eq!(plain, Retention { rows: 90 * day, samples: 90 * day });

        let checks = r#"
[store]
retention = "7d"
[elasticsearch.prod]
url = "http://127.0.0.1:9200"
[[checks]]
name = "sizes"
type = "elasticsearch_index_size"
clusters = ["prod"]
schedule = "0 16 * * *"
[[checks]]
name = "long-sizes"
type = "elasticsearch_index_size"
clusters = ["prod"]
schedule = "0 16 * * *"
baseline = "60d"
"#;
        assert_eq!(Retention::of(&config(checks)), Retention { rows: 7 * day, samples: 61 * day });
    }
}
