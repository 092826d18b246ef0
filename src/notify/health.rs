//! Destinations that are gone: a revoked webhook, an archived channel, a refused token
//! (`slack.md`, section 6). The first such answer disables the destination, so its later
//! messages are dead-lettered without knocking on a door that is gone, and raises an operator
//! alert (`tocsin.destination_disabled`) that routes like any event, so it can reach another
//! notifier. A reload clears the disabled set (the notifier may have been fixed); the alert
//! resolves when the destination takes a message again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::event::Event;

pub const KIND: &str = "tocsin.destination_disabled";

/// What the operator is told about a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    pub destination: String,
    pub notifier: String,
    /// Why it was disabled; `None` when it delivers again.
    pub reason: Option<String>,
}

impl Alarm {
    pub fn fingerprint(&self) -> String {
        format!("{KIND}:{}", self.destination)
    }

    /// The alarm as an event of kind [`KIND`], firing or resolved.
    pub fn event(&self, now: DateTime<Utc>) -> Event {
        let labels = json!({"notifier": self.notifier, "destination": self.destination});
        let body = match &self.reason {
            Some(reason) => json!({
                "kind": KIND, "severity": "critical", "status": "firing", "fingerprint": self.fingerprint(),
                "labels": labels,
                "title": format!("Notifier {} is disabled: its destination is gone", self.notifier),
                "text": format!(
                    "{reason}\nIts messages are dead-lettered (GET /api/v1/deliveries/dead) until the notifier \
                     is fixed and the configuration reloaded (SIGHUP)."
                ),
            }),
            None => json!({
                "kind": KIND, "severity": "critical", "status": "resolved", "fingerprint": self.fingerprint(),
                "labels": labels,
                "title": format!("Notifier {} delivers again", self.notifier),
            }),
        };
        crate::event::parse_event(&body, "", "tocsin", now).expect("the alarm event is valid")
    }
}

type Raise = Arc<dyn Fn(Alarm) + Send + Sync>;

#[derive(Default)]
pub struct Health {
    state: Mutex<State>,
    raise: OnceLock<Raise>,
}

#[derive(Default)]
struct State {
    /// Destination → why it was disabled.
    disabled: HashMap<String, String>,
    /// Destinations that took a message since this process started or since they were
    /// disabled: the first success of each is checked against a firing alarm, once.
    delivering: HashSet<String>,
}

impl Health {
    /// Where alarms go; set once, when the rest of the daemon is built.
    pub fn on_alarm(&self, raise: impl Fn(Alarm) + Send + Sync + 'static) {
        let _ = self.raise.set(Arc::new(raise));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the destination is disabled, if it is.
    pub fn disabled(&self, destination: &str) -> Option<String> {
        self.lock().disabled.get(destination).cloned()
    }

    /// How many destinations are disabled now.
    pub fn disabled_count(&self) -> usize {
        self.lock().disabled.len()
    }

    /// The destination answered that it is gone.
    pub fn gone(&self, destination: &str, notifier: &str, reason: &str) {
        {
            let mut state = self.lock();
            state.delivering.remove(destination);
            if state.disabled.insert(destination.to_string(), reason.to_string()).is_some() {
                return;
            }
        }
        tracing::error!(destination, notifier, reason, "destination disabled: it is gone; fix the notifier and reload");
        self.raise(Alarm { destination: destination.into(), notifier: notifier.into(), reason: Some(reason.into()) });
    }

    /// The destination took a message.
    pub fn delivered(&self, destination: &str, notifier: &str) {
        let first = {
            let mut state = self.lock();
            !state.delivering.contains(destination) && state.delivering.insert(destination.to_string())
        };
        if first {
            self.raise(Alarm { destination: destination.into(), notifier: notifier.into(), reason: None });
        }
    }

    /// After a reload: every destination gets another chance.
    pub fn reset(&self) {
        self.lock().disabled.clear();
    }

    fn raise(&self, alarm: Alarm) {
        if let Some(raise) = self.raise.get() {
            raise(alarm);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(health: &Health) -> Arc<Mutex<Vec<Alarm>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        health.on_alarm(move |a| sink.lock().unwrap().push(a));
        seen
    }

    #[test]
    fn gone_disables_once_and_the_next_success_is_reported() {
        let health = Health::default();
        let seen = recorder(&health);
        health.delivered("hook", "hook");
        health.delivered("hook", "hook");
        assert_eq!(seen.lock().unwrap().len(), 1, "the first success of a run is checked once");

        health.gone("hook", "hook", "slack answered 403 invalid_token");
        health.gone("hook", "hook", "slack answered 403 invalid_token");
        assert_eq!(health.disabled("hook").as_deref(), Some("slack answered 403 invalid_token"));
        assert_eq!(seen.lock().unwrap().len(), 2, "one alarm however many answers");
        assert!(seen.lock().unwrap()[1].reason.is_some());

        health.reset();
        assert_eq!(health.disabled("hook"), None);
        health.delivered("hook", "hook");
        let last = seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(last.reason, None, "working again");
    }

    #[test]
    fn the_alarm_is_a_critical_alert_per_destination() {
        let alarm = Alarm { destination: "team".into(), notifier: "team".into(), reason: Some("gone".into()) };
        let e = alarm.event(Utc::now());
        assert_eq!(e.kind, KIND);
        assert_eq!(e.fingerprint, "tocsin.destination_disabled:team");
        assert_eq!(e.severity, crate::event::Severity::Critical);
        assert_eq!(e.status, Some(crate::event::AlertStatus::Firing));
        assert_eq!(e.labels.get("notifier").map(String::as_str), Some("team"));
        let back = Alarm { reason: None, ..alarm }.event(Utc::now());
        assert_eq!(back.status, Some(crate::event::AlertStatus::Resolved));
    }
}
