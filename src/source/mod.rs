//! Application event sources (issue 5): server errors, Stripe, browser events, heartbeats of
//! scheduled tasks, generic inbound webhooks and unusual-activity rules.
//!
//! HTTP handling lives in `crate::api`; this module holds what the sources know: parsing,
//! verification, the messages they make, their state machines and background tasks. Every
//! event they make enters through [`Ingest`] like any other.

pub mod browser;
pub mod config;
pub mod errors;
pub mod heartbeat;
pub mod inbound;
pub mod rate_rules;
pub mod scrub;
pub mod stripe;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Scope};
use crate::event::Event;
use crate::ingest::Ingest;
use crate::shared::Shared;
use crate::store::StoreError;

/// The time the sources go by. Real time unless a test sets it.
#[derive(Clone, Default)]
pub struct Clock(Arc<Mutex<Option<DateTime<Utc>>>>);

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or_else(Utc::now)
    }

    /// Freezes the clock at `t` (tests).
    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
    }

    /// Moves a frozen clock forward (freezing it at real time first if needed).
    pub fn advance(&self, d: chrono::Duration) {
        let now = self.now();
        self.set(now + d);
    }

    /// Back to real time.
    pub fn reset(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Everything the sources read from the configuration; replaced on reload.
pub struct SourceSettings {
    pub stripe: Option<config::StripeConfig>,
    pub errors: config::ErrorsConfig,
    pub scrubber: scrub::Scrubber,
    pub browser: config::BrowserConfig,
    /// Every origin some events:browser key allows (answers CORS preflights, which carry no key).
    pub browser_origins: BTreeSet<String>,
    pub heartbeats: BTreeMap<String, heartbeat::Heartbeat>,
    pub webhooks: BTreeMap<String, inbound::Webhook>,
    pub rate_rules: Vec<rate_rules::Rule>,
}

impl SourceSettings {
    pub fn new(config: &Config) -> Result<SourceSettings, String> {
        let browser_origins = config
            .api_keys
            .iter()
            .filter(|k| k.scopes.contains(&Scope::EventsBrowser) || k.scopes.contains(&Scope::Admin))
            .flat_map(|k| k.allowed_origins.iter().map(|o| browser::normalize_origin(o)))
            .collect();
        let mut heartbeats = BTreeMap::new();
        for hb in &config.heartbeats {
            heartbeats.insert(hb.name.clone(), heartbeat::Heartbeat::new(hb)?);
        }
        let mut webhooks = BTreeMap::new();
        for w in &config.webhooks {
            webhooks.insert(w.name.clone(), inbound::Webhook::new(w)?);
        }
        Ok(SourceSettings {
            stripe: config.stripe.clone(),
            errors: config.errors.clone(),
            scrubber: scrub::Scrubber::new(&config.scrub),
            browser: config.browser.clone(),
            browser_origins,
            heartbeats,
            webhooks,
            rate_rules: config.rate_rules.iter().map(rate_rules::Rule::new).collect(),
        })
    }
}

struct Inner {
    settings: Shared<SourceSettings>,
    ingest: Ingest,
    clock: Clock,
    limiter: browser::Limiter,
    /// When each rate rule was last evaluated.
    rate_evaluated: Mutex<BTreeMap<String, DateTime<Utc>>>,
    /// Held from a state change to the submission of the events it causes, so a concurrent
    /// check (the background task and a ping, or a test's tick) sees both or neither.
    transitions: tokio::sync::Mutex<()>,
}

/// The sources' shared state, cloned into the HTTP handlers and background tasks.
#[derive(Clone)]
pub struct Sources(Arc<Inner>);

/// How often the background task looks at heartbeats and rate rules.
const TICK: Duration = Duration::from_secs(5);

impl Sources {
    pub fn new(config: &Config, ingest: Ingest) -> anyhow::Result<Sources> {
        let settings = SourceSettings::new(config).map_err(|e| anyhow::anyhow!(e))?;
        Ok(Sources(Arc::new(Inner {
            settings: Shared::new(settings),
            ingest,
            clock: Clock::default(),
            limiter: browser::Limiter::default(),
            rate_evaluated: Mutex::new(BTreeMap::new()),
            transitions: tokio::sync::Mutex::new(()),
        })))
    }

    /// Applies a reloaded configuration; an error keeps the current settings.
    pub fn reconfigure(&self, config: &Config) -> Result<(), String> {
        self.0.settings.replace(SourceSettings::new(config)?);
        Ok(())
    }

    pub fn settings(&self) -> Arc<SourceSettings> {
        self.0.settings.current()
    }

    pub fn clock(&self) -> &Clock {
        &self.0.clock
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.0.clock.now()
    }

    pub fn ingest(&self) -> &Ingest {
        &self.0.ingest
    }

    pub(crate) async fn transition(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.transitions.lock().await
    }

    pub fn limiter(&self) -> &browser::Limiter {
        &self.0.limiter
    }

    /// The events API's way in: `error.*` events are scrubbed, grouped into issues and only
    /// notified when new, regressed or spiking; other events are submitted as they are.
    pub async fn accept_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        if !events.iter().any(|e| e.kind.starts_with("error.")) {
            return self.0.ingest.submit(events).await;
        }
        let settings = self.settings();
        let mut notify = Vec::new();
        let mut quiet = Vec::new();
        for mut event in events {
            if !event.kind.starts_with("error.") {
                notify.push(event);
                continue;
            }
            errors::scrub_event(&mut event, &settings.scrubber);
            errors::decorate(&mut event);
            let notice = Arc::new(Mutex::new(errors::Notice::Quiet));
            let (cfg, fp, at, out) =
                (settings.errors.clone(), event.fingerprint.clone(), event.timestamp, notice.clone());
            let issue = self
                .0
                .ingest
                .store()
                .update_error_issue(
                    &event.fingerprint,
                    Box::new(move |current| {
                        let (issue, n) = errors::advance(current, &fp, at, &cfg);
                        *out.lock().unwrap_or_else(|e| e.into_inner()) = n;
                        issue
                    }),
                )
                .await?;
            let notice = *notice.lock().unwrap_or_else(|e| e.into_inner());
            errors::annotate(&mut event, &issue, notice, &settings.errors);
            if notice == errors::Notice::Quiet {
                quiet.push(event);
            } else {
                notify.push(event);
            }
        }
        if !notify.is_empty() {
            self.0.ingest.submit(notify).await?;
        }
        if !quiet.is_empty() {
            self.0.ingest.store_only(quiet).await?;
        }
        Ok(())
    }

    /// Marks an error issue resolved: its next occurrence is notified as a regression.
    pub async fn resolve_error(&self, fingerprint: &str) -> Result<bool, StoreError> {
        let store = self.0.ingest.store();
        if store.error_issue(fingerprint).await?.is_none() {
            return Ok(false);
        }
        let at = self.now();
        store
            .update_error_issue(
                fingerprint,
                Box::new(move |current| {
                    let mut issue = current.expect("checked above");
                    issue.resolved_at = Some(at);
                    issue
                }),
            )
            .await?;
        Ok(true)
    }

    /// Looks at every heartbeat as of `now`: late runs and runs going on too long alert.
    pub async fn heartbeat_tick(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        heartbeat::tick(self, now).await
    }

    /// Evaluates every rate rule as of `now`.
    pub async fn evaluate_rate_rules(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let settings = self.settings();
        for rule in &settings.rate_rules {
            rate_rules::evaluate(self, rule, now).await?;
            self.0.rate_evaluated.lock().unwrap_or_else(|e| e.into_inner()).insert(rule.name.clone(), now);
        }
        Ok(())
    }

    async fn rate_rules_due(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let settings = self.settings();
        for rule in &settings.rate_rules {
            let last = self.0.rate_evaluated.lock().unwrap_or_else(|e| e.into_inner()).get(&rule.name).copied();
            // Also skipped when `now` is before the last evaluation (a clock set back in tests).
            if last.is_some_and(|t| now - t < rule.every) {
                continue;
            }
            rate_rules::evaluate(self, rule, now).await?;
            self.0.rate_evaluated.lock().unwrap_or_else(|e| e.into_inner()).insert(rule.name.clone(), now);
        }
        Ok(())
    }

    /// Starts the background task (heartbeat checker, rate rule evaluator); it stops when
    /// `shutdown` is cancelled.
    pub fn start(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let sources = self.clone();
        tokio::spawn(async move {
            loop {
                let now = sources.now();
                if let Err(e) = sources.heartbeat_tick(now).await {
                    tracing::warn!(error = %e, "heartbeat check failed");
                }
                if let Err(e) = sources.rate_rules_due(now).await {
                    tracing::warn!(error = %e, "rate rule evaluation failed");
                }
                sources.0.limiter.sweep();
                tokio::select! {
                    _ = tokio::time::sleep(TICK) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        })
    }
}

/// Builds an event from a JSON object the way the API does (same validation).
pub(crate) fn make_event(value: serde_json::Value, source: &str, now: DateTime<Utc>) -> Result<Event, StoreError> {
    crate::event::parse_event(&value, "", source, now)
        .map_err(|e| StoreError::Database(format!("a source built an invalid event: {e}")))
}
