//! Ingest: the one way events enter the system, whatever their source (HTTP API, checks).
//!
//! The lifecycle decides which alerts change and which messages are owed; the events, their
//! outbox rows and the alert states are stored in one durable transaction; then delivery is
//! woken for the destinations involved. `tick` does the same for what time alone makes due
//! (repeats, silences that ended, flapping that settled).

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::event::Event;
use crate::metrics::Metrics;
use crate::notify::delivery::Delivery;
use crate::pipeline::{Lifecycle, SharedPipeline};
use crate::store::{DynStore, NewDelivery, NewEvent, StoreError};

#[derive(Clone)]
pub struct Ingest {
    store: DynStore,
    pipeline: SharedPipeline,
    lifecycle: Arc<Lifecycle>,
    delivery: Delivery,
    metrics: Arc<Metrics>,
}

impl Ingest {
    pub fn new(
        store: DynStore,
        pipeline: SharedPipeline,
        lifecycle: Arc<Lifecycle>,
        delivery: Delivery,
        metrics: Arc<Metrics>,
    ) -> Self {
        Ingest { store, pipeline, lifecycle, delivery, metrics }
    }

    /// Returns once the events are durably stored; delivery happens afterwards.
    pub async fn submit(&self, events: Vec<Event>) -> Result<(), StoreError> {
        self.submit_at(events, Utc::now()).await
    }

    /// `submit` as if now were `now` (checks evaluated `--at` a past instant, timeline tests).
    pub async fn submit_at(&self, events: Vec<Event>, now: DateTime<Utc>) -> Result<(), StoreError> {
        let count = events.len() as u64;
        let pipeline = self.pipeline.current();
        let batch = self.lifecycle.process(&pipeline, events, now);
        let destinations: BTreeSet<String> =
            batch.iter().flat_map(|e| e.deliveries.iter().map(|d| d.destination.clone())).collect();
        let touched: Vec<String> =
            batch.iter().filter_map(|e| e.alert.as_ref().map(|a| a.fingerprint.clone())).collect();
        match self.store.insert_events(batch).await {
            Ok(()) => {
                self.metrics.events_accepted.inc_by(count);
                self.wake(destinations);
                Ok(())
            }
            Err(e) => {
                self.metrics.rejected("store_error", count);
                // Memory ran ahead of the store; bring it back to what was committed.
                self.lifecycle.forget(&touched);
                if let Ok(alerts) = self.store.load_alerts(now).await {
                    self.lifecycle.restore(alerts.into_iter().filter(|a| touched.contains(&a.fingerprint)).collect());
                }
                Err(e)
            }
        }
    }

    /// Stores events in the history without notifying anyone (e.g. the 37th occurrence of an
    /// error already reported): searchable, never sent.
    pub async fn store_only(&self, events: Vec<Event>) -> Result<(), StoreError> {
        let count = events.len() as u64;
        let batch = events.into_iter().map(|event| NewEvent::plain(event, Vec::new())).collect();
        self.store.insert_events(batch).await?;
        self.metrics.events_accepted.inc_by(count);
        Ok(())
    }

    /// Queues what time alone made due. Returns how many messages were queued.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let pipeline = self.pipeline.current();
        let (due, mut changed) = self.lifecycle.due(&pipeline, now);
        let mut loaded = Vec::with_capacity(due.len());
        for d in due {
            if let Some(event) = self.store.alert_event(&d.fingerprint).await? {
                loaded.push((d, event));
            }
        }
        let (deliveries, rendered) = self.lifecycle.render_due(&pipeline, loaded, now);
        changed.retain(|a| !rendered.iter().any(|r| r.fingerprint == a.fingerprint));
        changed.extend(rendered);
        let count = deliveries.len();
        let destinations: BTreeSet<String> = deliveries.iter().map(|d| d.destination.clone()).collect();
        self.store.enqueue(deliveries, changed).await?;
        self.wake(destinations);
        Ok(count)
    }

    /// Queues messages that were decided elsewhere (e.g. `tocsin send` through the daemon).
    pub async fn enqueue(&self, deliveries: Vec<NewDelivery>) -> Result<(), StoreError> {
        let destinations: BTreeSet<String> = deliveries.iter().map(|d| d.destination.clone()).collect();
        self.store.enqueue(deliveries, Vec::new()).await?;
        self.wake(destinations);
        Ok(())
    }

    fn wake(&self, destinations: BTreeSet<String>) {
        for destination in destinations {
            self.delivery.wake(&destination);
        }
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }

    pub fn pipeline(&self) -> &SharedPipeline {
        &self.pipeline
    }

    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }
}
