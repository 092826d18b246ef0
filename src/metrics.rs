//! Prometheus metrics: one registry, created in `app` and passed down (no global state).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub notifier: String,
    /// `delivered`, `retried` or `dead`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifierLabel {
    pub notifier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

pub struct Metrics {
    registry: Registry,
    pub events_accepted: Counter,
    pub events_rejected: Family<ReasonLabel, Counter>,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub delivery_latency: Family<NotifierLabel, Histogram>,
    pub outbox_pending: Gauge,
    pub dead_letters: Gauge,
    pub destinations_disabled: Gauge,
    pub config_reloads: Family<ResultLabel, Counter>,
    pub config_last_reload_successful: Gauge,
}

fn latency_histogram() -> Histogram {
    Histogram::new([0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0])
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("tocsin");
        let events_accepted = Counter::default();
        registry.register("events_accepted", "Events accepted and durably stored", events_accepted.clone());
        let events_rejected = Family::<ReasonLabel, Counter>::default();
        registry.register("events_rejected", "Events or requests refused, by reason", events_rejected.clone());
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register("deliveries", "Delivery attempts by notifier and outcome", deliveries.clone());
        let delivery_latency =
            Family::<NotifierLabel, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "delivery_latency_seconds",
            "Time from an event's arrival to its message being delivered",
            delivery_latency.clone(),
        );
        let outbox_pending = Gauge::default();
        registry.register("outbox_pending", "Messages waiting to be delivered", outbox_pending.clone());
        let dead_letters = Gauge::default();
        registry.register("dead_letters", "Messages that exhausted their retries", dead_letters.clone());
        let destinations_disabled = Gauge::default();
        registry.register(
            "destinations_disabled",
            "Destinations that answered they are gone (revoked webhook, archived channel), until a reload",
            destinations_disabled.clone(),
        );
        let config_reloads = Family::<ResultLabel, Counter>::default();
        registry.register("config_reloads", "Configuration reloads by result", config_reloads.clone());
        let config_last_reload_successful = Gauge::default();
        config_last_reload_successful.set(1);
        registry.register(
            "config_last_reload_successful",
            "1 when the last reload succeeded (or none was tried)",
            config_last_reload_successful.clone(),
        );
        Arc::new(Metrics {
            registry,
            events_accepted,
            events_rejected,
            deliveries,
            delivery_latency,
            outbox_pending,
            dead_letters,
            destinations_disabled,
            config_reloads,
            config_last_reload_successful,
        })
    }

    pub fn rejected(&self, reason: &str, count: u64) {
        self.events_rejected.get_or_create(&ReasonLabel { reason: reason.to_string() }).inc_by(count);
    }

    pub fn delivery(&self, notifier: &str, outcome: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels { notifier: notifier.to_string(), outcome: outcome.to_string() })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
