//! The alert lifecycle: which events change an alert's state, and which changes deserve a
//! notification (fired, resolved, repeated, unmuted, flapping, settled).
//!
//! `Lifecycle` holds the state that outlives one request — the alerts, the grouping timers,
//! the muting rules — behind one lock that is never held across IO. The caller (`ingest`)
//! persists what it returns in the same transaction as the events.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::group::Grouper;
use super::mute::{MuteConfigError, Muting};
use super::Pipeline;
use crate::alert::Alert;
use crate::config::{AlertsConfig, Config};
use crate::event::{AlertStatus, Event};
use crate::silence::Silence;
use crate::store::{NewDelivery, NewEvent};

/// What an alert's latest change asks us to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Quiet,
    Fired,
    Resolved,
    /// It changed state too often: say so once, then keep quiet until it settles.
    Flapping,
    /// Still firing, and a destination has not heard of it for `repeat_interval`.
    Repeat,
}

struct State {
    alerts: HashMap<String, Alert>,
    grouper: Grouper,
    muting: Muting,
    settings: AlertsConfig,
}

pub struct Lifecycle {
    state: Mutex<State>,
}

/// A notification the periodic tick wants to send; the event it is about must be loaded
/// from the store first.
#[derive(Debug, Clone)]
pub struct Due {
    pub fingerprint: String,
    pub notice: Notice,
    /// For repeats: only these destinations.
    pub destinations: Option<Vec<String>>,
}

/// The event as its alert stands (severity and labels kept from the firing), for routing
/// what is said about the alert rather than about this one post.
fn as_alert(event: &Event, alert: &Alert) -> Event {
    Event { severity: alert.severity, labels: alert.labels.to_map(), ..event.clone() }
}

/// A resolution goes only where the firing was told.
fn told_only(deliveries: &mut Vec<NewDelivery>, alert: &Alert) {
    if !alert.notified.is_empty() {
        deliveries.retain(|d| alert.notified.get(&d.destination).is_some());
    }
}

fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// An event carrying only what routing looks at, for alerts whose event is not at hand.
fn probe(alert: &Alert) -> Event {
    Event {
        id: alert.last_event_id,
        kind: alert.kind.clone(),
        severity: alert.severity,
        title: alert.title.clone(),
        text: None,
        user: None,
        labels: alert.labels.to_map(),
        fields: Default::default(),
        fingerprint: alert.fingerprint.clone(),
        status: Some(alert.status),
        link: None,
        timestamp: alert.updated_at,
        received_at: alert.updated_at,
        source: String::new(),
        error: None,
    }
}

impl State {
    fn observe(&mut self, event: &Event, status: AlertStatus, now: DateTime<Utc>) -> (Alert, Notice) {
        let previous = self.alerts.get(&event.fingerprint);
        let was_firing = previous.is_some_and(Alert::is_firing);
        let old_severity = previous.map(|a| a.severity);
        // Labels say what the alert is about: the same fingerprint with other labels (a check's
        // alert now naming other indices) is news, as a new alert is in Alertmanager.
        let relabelled = previous.is_some_and(|a| !a.labels.same_as(&event.labels));
        let mut alert = previous.cloned().unwrap_or_else(|| Alert {
            fingerprint: event.fingerprint.clone(),
            kind: event.kind.clone(),
            severity: event.severity,
            labels: (&event.labels).into(),
            status: AlertStatus::Resolved,
            started_at: event.timestamp,
            updated_at: now,
            resolved_at: None,
            title: None,
            last_event_id: event.id,
            transitions: Vec::new(),
            flapping: false,
            notified: Default::default(),
            announced: false,
            muted_by: None,
            acknowledged_by: None,
        });
        alert.kind = event.kind.clone();
        // A resolve speaks of the alert as it fired: senders often post just the fingerprint
        // and status, and its default severity (info) or missing labels are not news.
        let resolving = status == AlertStatus::Resolved && previous.is_some();
        if !resolving {
            alert.severity = event.severity;
        }
        if !resolving || !event.labels.is_empty() {
            alert.labels = (&event.labels).into();
        }
        alert.title = event.title.clone().or(alert.title);
        alert.last_event_id = event.id;
        alert.updated_at = now;

        let changed = match (was_firing, status) {
            (false, AlertStatus::Firing) => {
                alert.status = AlertStatus::Firing;
                alert.started_at = event.timestamp;
                alert.resolved_at = None;
                alert.acknowledged_by = None;
                true
            }
            (true, AlertStatus::Resolved) => {
                alert.status = AlertStatus::Resolved;
                alert.resolved_at = Some(event.timestamp);
                true
            }
            _ => false,
        };
        let mut notice = match (changed, status) {
            (true, AlertStatus::Firing) => Notice::Fired,
            (true, AlertStatus::Resolved) if alert.announced => Notice::Resolved,
            // Worse than when we last said so: say it again.
            (false, AlertStatus::Firing) if old_severity.is_some_and(|s| event.severity > s) => Notice::Fired,
            (false, AlertStatus::Firing) if was_firing && relabelled => Notice::Fired,
            _ => Notice::Quiet,
        };
        if changed {
            let window = chrono_of(self.settings.flap_window.get());
            alert.transitions.push(now);
            alert.transitions.retain(|t| *t + window > now);
            if alert.flapping {
                notice = Notice::Quiet;
            } else if alert.transitions.len() >= self.settings.flap_threshold.max(2) {
                alert.flapping = true;
                notice = Notice::Flapping;
            }
        }
        (alert, notice)
    }

    fn deliveries(
        &mut self,
        pipeline: &Pipeline,
        event: &Event,
        notice: Notice,
        now: DateTime<Utc>,
    ) -> Vec<NewDelivery> {
        let mut deliveries = pipeline.deliveries(event, &mut self.grouper, now);
        for d in &mut deliveries {
            match notice {
                Notice::Flapping => {
                    // Whatever its last change, a flapping alert is not over: a "resolved"
                    // notice would close a PagerDuty incident and tick a Slack thread.
                    d.message.status = crate::message::MessageStatus::Firing;
                    d.message.title = format!("Flapping: {}", d.message.title);
                    d.message.text = format!(
                        "{}{}It changed state too often; tocsin stays quiet about it until it settles.",
                        d.message.text,
                        if d.message.text.is_empty() { "" } else { "\n" }
                    );
                }
                Notice::Repeat => {
                    d.message.text =
                        format!("{}{}Still firing.", d.message.text, if d.message.text.is_empty() { "" } else { "\n" });
                }
                _ => {}
            }
        }
        deliveries
    }

    /// Bookkeeping after notifications were queued for an alert.
    fn announced(alert: &mut Alert, notice: Notice, deliveries: &[NewDelivery], now: DateTime<Utc>) {
        if deliveries.is_empty() {
            return;
        }
        for d in deliveries {
            alert.notified.insert(d.destination.clone(), now);
        }
        alert.announced = notice != Notice::Resolved && alert.is_firing() || notice == Notice::Flapping;
    }

    fn process(&mut self, pipeline: &Pipeline, event: Event, now: DateTime<Utc>) -> NewEvent {
        let Some(status) = event.status else {
            let muted = self.muting.muted_by(&event.fingerprint, &event.kind, &event.labels, now).is_some();
            let deliveries = if muted { Vec::new() } else { pipeline.deliveries(&event, &mut self.grouper, now) };
            return NewEvent::new(event, deliveries, None);
        };
        // The common case under load: an alert that fires says so again. Nothing to tell and
        // nothing the store must learn; update it in place without copying it.
        if status == AlertStatus::Firing {
            if let Some(existing) = self.alerts.get_mut(&event.fingerprint) {
                if existing.is_firing()
                    && !existing.flapping
                    && event.severity <= existing.severity
                    && existing.kind == event.kind
                    && existing.labels.same_as(&event.labels)
                {
                    existing.last_event_id = event.id;
                    existing.updated_at = now;
                    if event.title.is_some() {
                        existing.title.clone_from(&event.title);
                    }
                    return NewEvent::new(event, Vec::new(), None);
                }
            }
        }
        let (mut alert, notice) = self.observe(&event, status, now);
        let deliveries = match notice {
            Notice::Quiet | Notice::Repeat => Vec::new(),
            Notice::Fired | Notice::Flapping => {
                match self.muting.muted_by(&alert.fingerprint, &alert.kind, &alert.labels, now) {
                    Some(reason) => {
                        alert.muted_by = Some(reason);
                        Vec::new()
                    }
                    None => {
                        alert.muted_by = None;
                        self.deliveries(pipeline, &event, notice, now)
                    }
                }
            }
            // A resolve that was announced is owed, even when muted since, to whoever heard
            // of the firing: routed as the alert is, not as the resolve was posted.
            Notice::Resolved => {
                alert.muted_by = None;
                let mut out = self.deliveries(pipeline, &as_alert(&event, &alert), notice, now);
                told_only(&mut out, &alert);
                out
            }
        };
        Self::announced(&mut alert, notice, &deliveries, now);
        if notice == Notice::Resolved {
            alert.announced = false;
        }
        self.muting.track(&alert);
        self.alerts.insert(alert.fingerprint.clone(), alert.clone());
        NewEvent::new(event, deliveries, Some(alert))
    }
}

impl Lifecycle {
    pub fn new(config: &Config, alerts: Vec<Alert>, silences: Vec<Silence>) -> Result<Lifecycle, MuteConfigError> {
        let mut muting = Muting::new(config)?;
        muting.set_silences(silences);
        let alerts: HashMap<String, Alert> = alerts.into_iter().map(|a| (a.fingerprint.clone(), a)).collect();
        muting.retrack(alerts.values());
        Ok(Lifecycle {
            state: Mutex::new(State { alerts, grouper: Grouper::default(), muting, settings: config.alerts.clone() }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a reloaded configuration's rules; alerts, timers and silences stay.
    pub fn reconfigure(&self, config: &Config) -> Result<(), MuteConfigError> {
        let mut muting = Muting::new(config)?;
        let mut state = self.lock();
        muting.set_silences(state.muting.silences().cloned().collect());
        muting.retrack(state.alerts.values());
        state.muting = muting;
        state.settings = config.alerts.clone();
        Ok(())
    }

    pub fn set_silences(&self, silences: Vec<Silence>) {
        self.lock().muting.set_silences(silences);
    }

    /// Decides, for each event, the alert it updates and the messages it causes.
    pub fn process(&self, pipeline: &Pipeline, events: Vec<Event>, now: DateTime<Utc>) -> Vec<NewEvent> {
        let mut state = self.lock();
        events.into_iter().map(|event| state.process(pipeline, event, now)).collect()
    }

    /// Forgets in-memory state for these fingerprints after a failed commit; the store still
    /// has the truth, which `reload_alerts` brings back.
    pub fn forget(&self, fingerprints: &[String]) {
        let mut state = self.lock();
        for fp in fingerprints {
            state.alerts.remove(fp);
        }
    }

    pub fn restore(&self, alerts: Vec<Alert>) {
        let mut state = self.lock();
        for alert in alerts {
            state.muting.track(&alert);
            state.alerts.insert(alert.fingerprint.clone(), alert);
        }
    }

    /// What is owed now without any new event: repeats, alerts whose silence ended, flapping
    /// that settled. Also updates mute reasons and forgets quiet state. Returns the notices and
    /// the alerts that changed (to be saved).
    pub fn due(&self, pipeline: &Pipeline, now: DateTime<Utc>) -> (Vec<Due>, Vec<Alert>) {
        let mut state = self.lock();
        let state = &mut *state;
        let window = chrono_of(state.settings.flap_window.get());
        let mut due = Vec::new();
        let mut changed = Vec::new();
        for alert in state.alerts.values_mut() {
            let mut dirty = false;
            if alert.flapping && alert.transitions.last().is_none_or(|t| *t + window <= now) {
                alert.flapping = false;
                alert.transitions.clear();
                if alert.is_firing() {
                    due.push(Due { fingerprint: alert.fingerprint.clone(), notice: Notice::Fired, destinations: None });
                } else if alert.announced {
                    due.push(Due {
                        fingerprint: alert.fingerprint.clone(),
                        notice: Notice::Resolved,
                        destinations: None,
                    });
                }
                // The settling notice is this tick's word on it: its last notification is from
                // before the flapping, so the repeat check below would owe a second one.
                changed.push(alert.clone());
                continue;
            }
            if alert.is_firing() && !alert.flapping {
                let muted = state.muting.muted_by(&alert.fingerprint, &alert.kind, &alert.labels, now);
                match (&alert.muted_by, muted) {
                    (Some(_), None) => {
                        alert.muted_by = None;
                        dirty = true;
                        due.push(Due {
                            fingerprint: alert.fingerprint.clone(),
                            notice: Notice::Fired,
                            destinations: None,
                        });
                    }
                    (old, Some(reason)) if old.as_deref() != Some(reason.as_str()) => {
                        alert.muted_by = Some(reason);
                        dirty = true;
                    }
                    (None, None) if alert.announced => {
                        let probe = probe(alert);
                        let stale: Vec<String> = pipeline
                            .matching_routes(&probe)
                            .into_iter()
                            .filter(|r| {
                                alert
                                    .notified
                                    .get(&r.destination())
                                    .is_some_and(|t| *t + chrono_of(r.repeat_interval) <= now)
                            })
                            .map(|r| r.destination())
                            .collect();
                        if !stale.is_empty() {
                            due.push(Due {
                                fingerprint: alert.fingerprint.clone(),
                                notice: Notice::Repeat,
                                destinations: Some(stale),
                            });
                        }
                    }
                    _ => {}
                }
            }
            if dirty {
                changed.push(alert.clone());
            }
        }
        // The tick's order is the order a grouped message lists them in: oldest first, and
        // the same after a restart, which the map's order is not.
        due.sort_by_cached_key(|d| (state.alerts.get(&d.fingerprint).map(|a| a.started_at), d.fingerprint.clone()));
        // Quiet resolved alerts and idle groups need no memory.
        state.alerts.retain(|_, a| a.is_firing() || a.flapping || a.updated_at + window > now);
        state.grouper.evict(now, Duration::from_secs(24 * 3600));
        (due, changed)
    }

    /// Renders what `due` asked for, now that the events are loaded, and records that the
    /// destinations were told. Returns the deliveries and the alerts to save.
    pub fn render_due(
        &self,
        pipeline: &Pipeline,
        due: Vec<(Due, Event)>,
        now: DateTime<Utc>,
    ) -> (Vec<NewDelivery>, Vec<Alert>) {
        let mut state = self.lock();
        let mut deliveries = Vec::new();
        let mut alerts = Vec::new();
        for (d, mut event) in due {
            let Some(alert) = state.alerts.get(&d.fingerprint).cloned() else { continue };
            // The loaded event is ours: shape it as the alert stands without another copy.
            event.status = Some(alert.status);
            event.severity = alert.severity;
            event.labels = alert.labels.to_map();
            let mut out = state.deliveries(pipeline, &event, d.notice, now);
            if let Some(only) = &d.destinations {
                out.retain(|x| only.contains(&x.destination));
            }
            if d.notice == Notice::Resolved {
                told_only(&mut out, &alert);
            }
            let mut alert = alert;
            State::announced(&mut alert, d.notice, &out, now);
            if d.notice == Notice::Resolved {
                alert.announced = false;
            }
            state.alerts.insert(alert.fingerprint.clone(), alert.clone());
            alerts.push(alert);
            deliveries.extend(out);
        }
        (deliveries, alerts)
    }

    /// Records who acknowledged a firing alert; returns it as it is now, to be saved.
    pub fn acknowledge(&self, fingerprint: &str, by: &str) -> Option<Alert> {
        let mut state = self.lock();
        let alert = state.alerts.get_mut(fingerprint).filter(|a| a.is_firing())?;
        alert.acknowledged_by = Some(by.to_string());
        Some(alert.clone())
    }

    /// The alert with this fingerprint, if it is in memory (firing or recently changed).
    pub fn alert(&self, fingerprint: &str) -> Option<Alert> {
        self.lock().alerts.get(fingerprint).cloned()
    }

    pub fn firing_count(&self) -> usize {
        self.lock().alerts.values().filter(|a| a.is_firing()).count()
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
