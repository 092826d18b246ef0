//! Durable delivery: one worker per destination drains that destination's due outbox rows in
//! order, with exponential backoff and jitter, honouring Retry-After for that destination only.
//!
//! Due rows of one group go out as one message. A destination with a rate limit (Slack: one
//! message per second) is paced so it never provokes a 429 in steady state; when more is due
//! than the pace allows, everything due is folded into one summary instead of queueing.
//!
//! A message leaves the outbox only when its notifier succeeded (delivered) or it is
//! dead-lettered (permanent error, or retries exhausted): never silently. A crash between the
//! send and the mark re-sends the message after restart (at-least-once).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::health::Health;
use super::{Notifier, NotifyError};
use crate::config::{DeliveryConfig, RateLimitConfig};
use crate::message::Message;
use crate::metrics::{Metrics, NotifierLabel};
use crate::pipeline::fold::{fold, Fold};
use crate::store::{Batch, BatchSummary, DynStore, OutboxEntry};

/// How long a destination's worker waits for news before looking at the store again: a
/// safety net, since every write that adds work also wakes the worker.
const IDLE_POLL: Duration = Duration::from_secs(30);
/// Rows loaded to write a folded message; the rest are only counted.
const FOLD_LOAD: u32 = 50;

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

/// The longest a command waits between two attempts. A cron job or a CI step runs
/// `tocsin send`: a target asking for an hour's pause (Retry-After) gets an answer now instead.
pub const COMMAND_MAX_WAIT: Duration = Duration::from_secs(15);

/// Sends one message now, retrying retryable errors up to the policy's attempts, waiting at
/// most [`COMMAND_MAX_WAIT`] between two. For the commands (`tocsin send`, `check run`), where
/// there is no outbox.
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
            Err(e) => {
                let delay = policy.delay(attempt, &e);
                if delay > COMMAND_MAX_WAIT {
                    return Err(NotifyError::retryable(format!(
                        "{e}; the target asked to wait {} s before trying again, longer than a command waits ({} s)",
                        delay.as_secs(),
                        COMMAND_MAX_WAIT.as_secs()
                    )));
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

pub type Notifiers = BTreeMap<String, Arc<dyn Notifier>>;

/// How fast each notifier may be sent to, per destination.
#[derive(Debug, Clone, Default)]
pub struct Pacing {
    pub limits: HashMap<String, RateLimitConfig>,
    /// More due than this on a paced destination → one summary.
    pub fold_threshold: usize,
    /// Per-notifier thresholds that override `fold_threshold` (email: batch everything).
    pub fold_thresholds: HashMap<String, usize>,
}

impl Pacing {
    pub fn from_config(config: &crate::config::Config) -> Pacing {
        let mut limits: HashMap<String, RateLimitConfig> =
            config.notifiers.iter().filter_map(|(name, n)| n.default_rate_limit().map(|l| (name.clone(), l))).collect();
        for (name, limit) in &config.delivery.rate_limits {
            limits.insert(name.clone(), *limit);
        }
        limits.retain(|_, l| l.per_second > 0.0);
        let fold_thresholds =
            config.notifiers.iter().filter_map(|(name, n)| n.fold_threshold().map(|t| (name.clone(), t))).collect();
        Pacing { limits, fold_threshold: config.delivery.fold_threshold, fold_thresholds }
    }
}

/// A token bucket: `burst` sends at once, then one every `1/per_second`.
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(limit: &RateLimitConfig) -> Bucket {
        Bucket { tokens: limit.burst.max(1) as f64, last: Instant::now() }
    }

    fn refill(&mut self, limit: &RateLimitConfig) {
        let now = Instant::now();
        let burst = limit.burst.max(1) as f64;
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * limit.per_second).min(burst);
        self.last = now;
    }

    /// How long until a send is allowed.
    fn wait(&mut self, limit: &RateLimitConfig) -> Duration {
        self.refill(limit);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            // A small margin keeps us clear of the target's own clock.
            Duration::from_secs_f64((1.0 - self.tokens) / limit.per_second) + Duration::from_millis(20)
        }
    }

    fn take(&mut self, limit: &RateLimitConfig) {
        self.refill(limit);
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

/// The handle the rest of the system uses to hand work to delivery.
#[derive(Clone)]
pub struct Delivery {
    inner: Arc<Inner>,
}

struct Inner {
    store: DynStore,
    notifiers: RwLock<Arc<Notifiers>>,
    policy: RwLock<RetryPolicy>,
    pacing: RwLock<Arc<Pacing>>,
    workers: Mutex<HashMap<String, Arc<Notify>>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    health: Health,
}

impl Delivery {
    pub fn new(
        store: DynStore,
        notifiers: Notifiers,
        policy: RetryPolicy,
        pacing: Pacing,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Delivery {
        Delivery {
            inner: Arc::new(Inner {
                store,
                notifiers: RwLock::new(Arc::new(notifiers)),
                policy: RwLock::new(policy),
                pacing: RwLock::new(Arc::new(pacing)),
                workers: Mutex::new(HashMap::new()),
                metrics,
                shutdown,
                tracker: TaskTracker::new(),
                health: Health::default(),
            }),
        }
    }

    /// Which destinations are gone, and where the operator alert about them goes.
    pub fn health(&self) -> &Health {
        &self.inner.health
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
        self.inner.tracker.spawn(async move {
            run_worker(inner.clone(), destination.clone(), notify).await;
            // A worker that ended must not swallow a later wake-up.
            inner.workers.lock().unwrap_or_else(|e| e.into_inner()).remove(&destination);
        });
    }

    /// Swaps notifiers, policy and pacing after a configuration reload; workers pick them up
    /// on their next message.
    pub fn reconfigure(&self, notifiers: Notifiers, policy: RetryPolicy, pacing: Pacing) {
        *self.inner.notifiers.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(notifiers);
        *self.inner.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
        *self.inner.pacing.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pacing);
        self.inner.health.reset();
        self.inner.metrics.destinations_disabled.set(0);
    }

    /// Waits for workers to finish what they can after shutdown was requested.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.inner.tracker.close();
        tokio::time::timeout(grace, self.inner.tracker.wait()).await.is_ok()
    }
}

enum Outcome {
    /// Sent; the caller records it.
    Delivered,
    Done,
    /// Shutdown arrived while waiting to retry; the rows stay pending for the next start.
    Interrupted,
}

/// Sleeps, cutting the wait short on shutdown unless shutdown is already under way (then the
/// worker is draining and waits as usual, within the grace period).
async fn pause(shutdown: &CancellationToken, delay: Duration) {
    if shutdown.is_cancelled() {
        tokio::time::sleep(delay).await;
    } else {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}

/// Does `batch` settle `entry`?
fn covers(batch: &Batch, entry: &OutboxEntry) -> bool {
    entry.id <= batch.up_to_id
        && entry.not_before <= batch.due_by
        && batch.group_key.as_ref().is_none_or(|g| *g == entry.group_key)
}

async fn run_worker(inner: Arc<Inner>, destination: String, notify: Arc<Notify>) {
    let mut bucket: Option<Bucket> = None;
    // Sends whose "delivered" mark is still being committed: the next message goes out without
    // waiting for that commit, and rows it settles are not sent twice meanwhile.
    let mut unconfirmed: Vec<(Batch, tokio::task::JoinHandle<()>)> = Vec::new();
    loop {
        unconfirmed.retain(|(_, h)| !h.is_finished());
        let now = Utc::now();
        let fetched = inner.store.due_deliveries(&destination, now, 2 + unconfirmed.len() as u32).await;
        let mut due = match fetched {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(destination = %destination, error = %err, "cannot read the outbox; retrying");
                if sleep_or_shutdown(&inner.shutdown, Duration::from_secs(1)).await {
                    break;
                }
                continue;
            }
        };
        let before = due.len();
        due.retain(|e| !unconfirmed.iter().any(|(b, _)| covers(b, e)));
        if due.is_empty() && before > 0 {
            if let Some((_, oldest)) = unconfirmed.first_mut() {
                let _ = oldest.await;
            }
            continue;
        }
        if due.is_empty() {
            // Draining on shutdown ends here: nothing left that is due for this destination.
            if inner.shutdown.is_cancelled() {
                break;
            }
            let next = inner.store.next_due(&destination).await.ok().flatten();
            let idle = next.map_or(IDLE_POLL, |n| (n - now).to_std().unwrap_or(Duration::ZERO).min(IDLE_POLL));
            tokio::select! {
                _ = notify.notified() => {}
                _ = inner.shutdown.cancelled() => {}
                _ = tokio::time::sleep(idle) => {}
            }
            continue;
        }

        let head = due.remove(0);
        let pacing = inner.pacing.read().unwrap_or_else(|e| e.into_inner()).clone();
        let limit = pacing.limits.get(&head.notifier).copied();
        if let Some(limit) = &limit {
            let wait = bucket.get_or_insert_with(|| Bucket::new(limit)).wait(limit);
            if !wait.is_zero() {
                pause(&inner.shutdown, wait).await;
                // More may have become due meanwhile: look again, then fold.
                continue;
            }
        }

        let (batch, message) = if due.is_empty() {
            // The common case: one message due, sent as it is.
            let batch = Batch {
                destination: destination.clone(),
                group_key: Some(head.group_key.clone()),
                due_by: now,
                up_to_id: head.id,
            };
            let message = head.message.clone();
            (batch, message)
        } else {
            let threshold = pacing.fold_thresholds.get(&head.notifier).copied().unwrap_or(pacing.fold_threshold);
            match plan_fold(&inner, &destination, &head, limit.is_some(), threshold, now).await {
                Ok(Some(plan)) => plan,
                Ok(None) => continue,
                Err(err) => {
                    tracing::warn!(destination = %destination, error = %err, "cannot read the outbox; retrying");
                    if sleep_or_shutdown(&inner.shutdown, Duration::from_secs(1)).await {
                        break;
                    }
                    continue;
                }
            }
        };
        let mut pacer = Pacer { bucket: bucket.as_mut().zip(limit) };
        match deliver(&inner, &head, &batch, &message, &mut pacer).await {
            Outcome::Interrupted => break,
            Outcome::Delivered => {
                let store = inner.store.clone();
                let settled = batch.clone();
                let mark = tokio::spawn(async move {
                    if let Err(err) = store.mark_delivered(&settled, Utc::now()).await {
                        tracing::warn!(destination = %settled.destination, error = %err, "delivered but could not record it; it may be sent again");
                    }
                });
                unconfirmed.push((batch, mark));
            }
            Outcome::Done => {}
        }
    }
    for (_, mark) in unconfirmed {
        let _ = mark.await;
    }
}

/// Chooses what one send covers when several messages are due: the whole backlog when a paced
/// destination is over its threshold, else the head's group.
async fn plan_fold(
    inner: &Inner,
    destination: &str,
    head: &OutboxEntry,
    paced: bool,
    threshold: usize,
    now: chrono::DateTime<Utc>,
) -> Result<Option<(Batch, Message)>, crate::store::StoreError> {
    let everything = Batch { destination: destination.to_string(), group_key: None, due_by: now, up_to_id: i64::MAX };
    let mut plan: Option<(Batch, BatchSummary, Fold)> = None;
    if paced {
        let summary = inner.store.batch_summary(&everything).await?;
        if summary.count as usize > threshold {
            plan = Some((Batch { up_to_id: summary.max_id, ..everything.clone() }, summary, Fold::Backlog));
        }
    }
    let (batch, summary, shape) = match plan {
        Some(plan) => plan,
        None => {
            let group = Batch { group_key: Some(head.group_key.clone()), ..everything };
            let summary = inner.store.batch_summary(&group).await?;
            let shape = if head.group_key.ends_with("|digest") { Fold::Digest } else { Fold::Group };
            (Batch { up_to_id: summary.max_id, ..group }, summary, shape)
        }
    };
    if summary.count == 0 {
        return Ok(None);
    }
    let entries = inner.store.batch_entries(&batch, FOLD_LOAD).await?;
    if entries.is_empty() {
        return Ok(None);
    }
    let Some(message) = fold(shape, &entries, &summary) else {
        // Alerts that fired and resolved before anything was sent: settled, nothing to say.
        inner.store.mark_delivered(&batch, now).await?;
        return Ok(None);
    };
    Ok(Some((batch, message)))
}

/// Paces every attempt, retries included. A send counts from when its answer came back, so
/// however long the request took to arrive, the next one reaches the target at least a
/// period after it.
struct Pacer<'a> {
    bucket: Option<(&'a mut Bucket, RateLimitConfig)>,
}

impl Pacer<'_> {
    async fn ready(&mut self, shutdown: &CancellationToken) {
        if let Some((bucket, limit)) = self.bucket.as_mut() {
            let wait = bucket.wait(limit);
            if !wait.is_zero() {
                pause(shutdown, wait).await;
            }
        }
    }

    fn spent(&mut self) {
        if let Some((bucket, limit)) = self.bucket.as_mut() {
            bucket.take(limit);
        }
    }
}

async fn deliver(
    inner: &Inner,
    head: &OutboxEntry,
    batch: &Batch,
    message: &Message,
    pacer: &mut Pacer<'_>,
) -> Outcome {
    let mut attempts = head.attempts;
    if let Some(reason) = inner.health.disabled(&batch.destination) {
        let error = format!(
            "not sent: the destination is disabled since it answered {reason}; fix the notifier, then reload \
             (SIGHUP) or restart"
        );
        finish_dead(inner, head, batch, attempts, &error).await;
        return Outcome::Done;
    }
    loop {
        pacer.ready(&inner.shutdown).await;
        let notifier = inner.notifiers.read().unwrap_or_else(|e| e.into_inner()).get(&head.notifier).cloned();
        let Some(notifier) = notifier else {
            let error = format!("notifier {:?} is no longer configured", head.notifier);
            finish_dead(inner, head, batch, attempts, &error).await;
            return Outcome::Done;
        };
        attempts += 1;
        let result = notifier.send(message).await;
        pacer.spent();
        let policy = *inner.policy.read().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                let now = Utc::now();
                inner.metrics.delivery(&head.notifier, "delivered");
                inner.health.delivered(&batch.destination, &head.notifier);
                if let Some(first) = message.events.first() {
                    let latency = (now - first.received_at).to_std().unwrap_or_default();
                    inner
                        .metrics
                        .delivery_latency
                        .get_or_create(&NotifierLabel { notifier: head.notifier.clone() })
                        .observe(latency.as_secs_f64());
                }
                return Outcome::Delivered;
            }
            Err(err) if !err.is_retryable() || attempts >= policy.max_attempts => {
                finish_dead(inner, head, batch, attempts, &err.to_string()).await;
                if err.is_gone() {
                    inner.health.gone(&batch.destination, &head.notifier, &err.to_string());
                    inner.metrics.destinations_disabled.set(inner.health.disabled_count() as i64);
                }
                return Outcome::Done;
            }
            Err(err) => {
                inner.metrics.delivery(&head.notifier, "retried");
                let delay = policy.delay(attempts, &err);
                tracing::info!(destination = %batch.destination, attempt = attempts, error = %err, retry_in = ?delay, "delivery failed; will retry");
                if let Err(store_err) = inner.store.record_attempt(head.id, attempts, &err.to_string()).await {
                    tracing::warn!(destination = %batch.destination, error = %store_err, "could not record the failed attempt");
                }
                if sleep_or_shutdown(&inner.shutdown, delay).await {
                    return Outcome::Interrupted;
                }
            }
        }
    }
}

async fn finish_dead(inner: &Inner, head: &OutboxEntry, batch: &Batch, attempts: u32, error: &str) {
    tracing::warn!(destination = %batch.destination, outbox_id = head.id, attempts, error, "message dead-lettered");
    inner.metrics.delivery(&head.notifier, "dead");
    if let Err(err) = inner.store.dead_letter(batch, attempts, error, Utc::now()).await {
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
    fn bucket_paces_after_the_burst() {
        let limit = RateLimitConfig { per_second: 1.0, burst: 2 };
        let mut b = Bucket::new(&limit);
        assert!(b.wait(&limit).is_zero());
        b.take(&limit);
        assert!(b.wait(&limit).is_zero());
        b.take(&limit);
        let w = b.wait(&limit);
        assert!(w > Duration::from_millis(900) && w <= Duration::from_millis(1100), "{w:?}");
    }

    struct RateLimited {
        retry_after: Duration,
        calls: std::sync::atomic::AtomicU32,
    }

    #[async_trait::async_trait]
    impl Notifier for RateLimited {
        async fn send(&self, _: &Message) -> Result<(), NotifyError> {
            let calls = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if calls == 0 {
                Err(NotifyError::Retryable {
                    message: "slack answered 429".into(),
                    retry_after: Some(self.retry_after),
                })
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn a_command_waits_out_a_short_retry_after_and_gives_up_on_a_long_one() {
        let policy = RetryPolicy { max_attempts: 3, initial: Duration::from_secs(1), max: Duration::from_secs(60) };
        let message = crate::notify::http::testing::message();
        let short = RateLimited { retry_after: Duration::from_millis(50), calls: Default::default() };
        assert!(send_with_retries(&short, &message, &policy).await.is_ok());
        assert_eq!(short.calls.load(std::sync::atomic::Ordering::SeqCst), 2);

        let long = RateLimited { retry_after: Duration::from_secs(3600), calls: Default::default() };
        let started = std::time::Instant::now();
        let err = send_with_retries(&long, &message, &policy).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1), "it did not wait the hour");
        assert_eq!(long.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(err.to_string().contains("asked to wait 3600 s"), "{err}");
    }

    #[test]
    fn retry_after_wins() {
        let p = RetryPolicy { max_attempts: 10, initial: Duration::from_secs(1), max: Duration::from_secs(60) };
        let e = NotifyError::Retryable { message: "429".into(), retry_after: Some(Duration::from_secs(7)) };
        let d = p.delay(1, &e);
        assert!(d >= Duration::from_secs(7) && d <= Duration::from_millis(7250));
    }
}
