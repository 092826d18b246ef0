//! Durable delivery: one worker per destination drains that destination's outbox rows in
//! order, with exponential backoff and jitter, honouring Retry-After for that destination only.
//!
//! A message leaves the outbox only when its notifier succeeded (delivered) or it is
//! dead-lettered (permanent error, or retries exhausted): never silently. A crash between the
//! send and the mark re-sends the message after restart (at-least-once).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Notifier, NotifyError};
use crate::config::DeliveryConfig;
use crate::message::Message;
use crate::metrics::{Metrics, NotifierLabel};
use crate::store::{DynStore, OutboxEntry};

/// How long a destination's worker waits for news before looking at the store again: a
/// safety net, since every write that adds work also wakes the worker.
const IDLE_POLL: Duration = Duration::from_secs(30);
const BATCH: u32 = 64;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl From<&DeliveryConfig> for RetryPolicy {
    fn from(c: &DeliveryConfig) -> Self {
        RetryPolicy { max_attempts: c.max_attempts, initial: c.backoff_initial.get(), max: c.backoff_max.get() }
    }
}

impl RetryPolicy {
    /// Exponential backoff with "equal jitter": half fixed, half random, so retries from many
    /// destinations do not synchronize.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max);
        let half = capped / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=half)
    }

    /// A server's Retry-After wins over our own schedule, within reason.
    pub fn delay(&self, attempt: u32, error: &NotifyError) -> Duration {
        match error.retry_after() {
            Some(after) => {
                after.min(Duration::from_secs(3600))
                    + rand::thread_rng().gen_range(Duration::ZERO..=Duration::from_millis(250))
            }
            None => self.backoff(attempt),
        }
    }
}

/// Sends one message now, retrying retryable errors up to the policy's attempts.
/// For the command line (`tocsin send`), where there is no outbox.
pub async fn send_with_retries(
    notifier: &dyn Notifier,
    message: &Message,
    policy: &RetryPolicy,
) -> Result<(), NotifyError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match notifier.send(message).await {
            Ok(()) => return Ok(()),
            Err(e) if !e.is_retryable() || attempt >= policy.max_attempts => return Err(e),
            Err(e) => tokio::time::sleep(policy.delay(attempt, &e)).await,
        }
    }
}

pub type Notifiers = BTreeMap<String, Arc<dyn Notifier>>;

/// The handle the rest of the system uses to hand work to delivery.
#[derive(Clone)]
pub struct Delivery {
    inner: Arc<Inner>,
}

struct Inner {
    store: DynStore,
    notifiers: RwLock<Arc<Notifiers>>,
    policy: RwLock<RetryPolicy>,
    workers: Mutex<HashMap<String, Arc<Notify>>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Delivery {
    pub fn new(
        store: DynStore,
        notifiers: Notifiers,
        policy: RetryPolicy,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Delivery {
        Delivery {
            inner: Arc::new(Inner {
                store,
                notifiers: RwLock::new(Arc::new(notifiers)),
                policy: RwLock::new(policy),
                workers: Mutex::new(HashMap::new()),
                metrics,
                shutdown,
                tracker: TaskTracker::new(),
            }),
        }
    }

    /// Starts workers for destinations that had undelivered messages before a restart.
    pub async fn resume(&self) -> Result<(), crate::store::StoreError> {
        for destination in self.inner.store.pending_destinations().await? {
            self.wake(&destination);
        }
        Ok(())
    }

    /// Tells the destination's worker there is new work, starting it if needed.
    pub fn wake(&self, destination: &str) {
        let mut workers = self.inner.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(notify) = workers.get(destination) {
            notify.notify_one();
            return;
        }
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        let notify = Arc::new(Notify::new());
        workers.insert(destination.to_string(), notify.clone());
        let inner = self.inner.clone();
        let destination = destination.to_string();
        self.inner.tracker.spawn(async move { run_worker(inner, destination, notify).await });
    }

    /// Swaps notifiers and policy after a configuration reload; workers pick them up on their
    /// next message.
    pub fn reconfigure(&self, notifiers: Notifiers, policy: RetryPolicy) {
        *self.inner.notifiers.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(notifiers);
        *self.inner.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
    }

    /// Waits for workers to finish what they can after shutdown was requested.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.inner.tracker.close();
        tokio::time::timeout(grace, self.inner.tracker.wait()).await.is_ok()
    }
}

enum Outcome {
    Done,
    /// Shutdown arrived while waiting to retry; the row stays pending for the next start.
    Interrupted,
}

async fn run_worker(inner: Arc<Inner>, destination: String, notify: Arc<Notify>) {
    loop {
        let batch = match inner.store.pending_deliveries(&destination, BATCH).await {
            Ok(batch) => batch,
            Err(err) => {
                tracing::warn!(destination = %destination, error = %err, "cannot read the outbox; retrying");
                if sleep_or_shutdown(&inner.shutdown, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        if batch.is_empty() {
            // Draining on shutdown ends here: nothing left for this destination.
            if inner.shutdown.is_cancelled() {
                return;
            }
            tokio::select! {
                _ = notify.notified() => {}
                _ = inner.shutdown.cancelled() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        }
        for entry in batch {
            if let Outcome::Interrupted = deliver(&inner, &destination, entry).await {
                return;
            }
        }
    }
}

async fn deliver(inner: &Inner, destination: &str, entry: OutboxEntry) -> Outcome {
    let mut attempts = entry.attempts;
    loop {
        let notifier = inner.notifiers.read().unwrap_or_else(|e| e.into_inner()).get(&entry.notifier).cloned();
        let Some(notifier) = notifier else {
            let error = format!("notifier {:?} is no longer configured", entry.notifier);
            finish_dead(inner, &entry, attempts, &error).await;
            return Outcome::Done;
        };
        attempts += 1;
        let result = notifier.send(&entry.message).await;
        let policy = *inner.policy.read().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                let now = Utc::now();
                if let Err(err) = inner.store.mark_delivered(entry.id, now).await {
                    tracing::warn!(destination, error = %err, "delivered but could not record it; it may be sent again");
                }
                inner.metrics.delivery(&entry.notifier, "delivered");
                if let Some(first) = entry.message.events.first() {
                    let latency = (now - first.received_at).to_std().unwrap_or_default();
                    inner
                        .metrics
                        .delivery_latency
                        .get_or_create(&NotifierLabel { notifier: entry.notifier.clone() })
                        .observe(latency.as_secs_f64());
                }
                return Outcome::Done;
            }
            Err(err) if !err.is_retryable() || attempts >= policy.max_attempts => {
                finish_dead(inner, &entry, attempts, &err.to_string()).await;
                return Outcome::Done;
            }
            Err(err) => {
                inner.metrics.delivery(&entry.notifier, "retried");
                let delay = policy.delay(attempts, &err);
                tracing::info!(destination, attempt = attempts, error = %err, retry_in = ?delay, "delivery failed; will retry");
                if let Err(store_err) = inner.store.record_attempt(entry.id, attempts, &err.to_string()).await {
                    tracing::warn!(destination, error = %store_err, "could not record the failed attempt");
                }
                if sleep_or_shutdown(&inner.shutdown, delay).await {
                    return Outcome::Interrupted;
                }
            }
        }
    }
}

async fn finish_dead(inner: &Inner, entry: &OutboxEntry, attempts: u32, error: &str) {
    tracing::warn!(destination = %entry.destination, outbox_id = entry.id, attempts, error, "message dead-lettered");
    inner.metrics.delivery(&entry.notifier, "dead");
    if let Err(err) = inner.store.dead_letter(entry.id, attempts, error, Utc::now()).await {
        tracing::error!(error = %err, "could not dead-letter a message; it will be retried");
    }
}

/// Returns true when shutdown interrupted the sleep.
async fn sleep_or_shutdown(shutdown: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = shutdown.cancelled() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy { max_attempts: 10, initial: Duration::from_secs(1), max: Duration::from_secs(60) };
        for attempt in 1..=12 {
            let d = p.backoff(attempt);
            let ceiling = Duration::from_secs(1u64 << (attempt - 1).min(20)).min(Duration::from_secs(60));
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn retry_after_wins() {
        let p = RetryPolicy { max_attempts: 10, initial: Duration::from_secs(1), max: Duration::from_secs(60) };
        let e = NotifyError::Retryable { message: "429".into(), retry_after: Some(Duration::from_secs(7)) };
        let d = p.delay(1, &e);
        assert!(d >= Duration::from_secs(7) && d <= Duration::from_millis(7250));
    }
}
