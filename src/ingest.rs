//! Ingest: the one way events enter the system, whatever their source (HTTP API, checks).
//!
//! Routes and renders each event, stores events and their outbox rows in one durable
//! transaction, then wakes delivery for the destinations involved.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::event::Event;
use crate::metrics::Metrics;
use crate::notify::delivery::Delivery;
use crate::pipeline::SharedPipeline;
use crate::store::{DynStore, NewEvent, StoreError};

#[derive(Clone)]
pub struct Ingest {
    store: DynStore,
    pipeline: SharedPipeline,
    delivery: Delivery,
    metrics: Arc<Metrics>,
}

impl Ingest {
    pub fn new(store: DynStore, pipeline: SharedPipeline, delivery: Delivery, metrics: Arc<Metrics>) -> Self {
        Ingest { store, pipeline, delivery, metrics }
    }

    /// Returns once the events are durably stored; delivery happens afterwards.
    pub async fn submit(&self, events: Vec<Event>) -> Result<(), StoreError> {
        let count = events.len() as u64;
        let pipeline = self.pipeline.current();
        let mut destinations = BTreeSet::new();
        let batch: Vec<NewEvent> = events
            .into_iter()
            .map(|event| {
                let deliveries = pipeline.deliveries(&event);
                destinations.extend(deliveries.iter().map(|d| d.destination.clone()));
                NewEvent { event, deliveries }
            })
            .collect();
        match self.store.insert_events(batch).await {
            Ok(()) => {
                self.metrics.events_accepted.inc_by(count);
                for destination in destinations {
                    self.delivery.wake(&destination);
                }
                Ok(())
            }
            Err(e) => {
                self.metrics.rejected("store_error", count);
                Err(e)
            }
        }
    }

    /// Stores events in the history without notifying anyone (e.g. the 37th occurrence of an
    /// error already reported): searchable, never sent.
    pub async fn store_only(&self, events: Vec<Event>) -> Result<(), StoreError> {
        let count = events.len() as u64;
        let batch = events.into_iter().map(|event| NewEvent { event, deliveries: Vec::new() }).collect();
        self.store.insert_events(batch).await?;
        self.metrics.events_accepted.inc_by(count);
        Ok(())
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }

    pub fn pipeline(&self) -> &SharedPipeline {
        &self.pipeline
    }
}
