//! Heartbeats of scheduled tasks, as healthchecks.io does them: a task pings when it starts,
//! succeeds or fails; a checker alerts when a run is late, failed, or running too long, and
//! resolves the alert when the task is back.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::config::HeartbeatConfig;
use super::Sources;
use crate::event::{Event, Severity};
use crate::store::StoreError;

pub const KIND_LATE: &str = "heartbeat.late";
pub const KIND_FAILED: &str = "heartbeat.failed";
pub const KIND_RUNNING_LONG: &str = "heartbeat.running_long";
pub const KIND_SUCCEEDED: &str = "heartbeat.succeeded";
/// Output tails are kept to this many bytes (the end of the output).
pub const MAX_TAIL_BYTES: usize = 10 * 1024;

pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let fields = expr.split_whitespace().count();
    if fields != 5 && fields != 6 {
        return Err(format!("a cron expression has 5 or 6 fields (6 = with seconds); this one has {fields}"));
    }
    croner::Cron::new(expr).with_seconds_optional().parse().map_err(|e| format!("invalid cron expression: {e}"))
}

#[derive(Debug, Clone)]
enum Expect {
    Period(chrono::Duration),
    Cron(Box<croner::Cron>, Tz),
}

/// A configured heartbeat, compiled.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub name: String,
    expect: Expect,
    pub grace: chrono::Duration,
    pub max_duration: Option<chrono::Duration>,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
}

fn dur(d: crate::config::Dur) -> chrono::Duration {
    chrono::Duration::from_std(d.get()).unwrap_or(chrono::Duration::MAX)
}

impl Heartbeat {
    pub fn new(c: &HeartbeatConfig) -> Result<Heartbeat, String> {
        let expect = match (&c.schedule, c.period) {
            (Some(s), _) => {
                let tz: Tz =
                    c.timezone.as_deref().unwrap_or("UTC").parse().map_err(|_| "unknown time zone".to_string())?;
                Expect::Cron(Box::new(parse_cron(s)?), tz)
            }
            (None, Some(p)) => Expect::Period(dur(p)),
            (None, None) => return Err(format!("heartbeat {:?} needs a schedule or a period", c.name)),
        };
        Ok(Heartbeat {
            name: c.name.clone(),
            expect,
            grace: dur(c.grace),
            max_duration: c.max_duration.map(dur),
            severity: c.severity,
            labels: c.labels.clone(),
        })
    }

    /// When the next run is due after one at `after`.
    pub fn next_expected(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.expect {
            Expect::Period(p) => Some(after + *p),
            Expect::Cron(cron, tz) => {
                cron.find_next_occurrence(&after.with_timezone(tz), false).ok().map(|t| t.with_timezone(&Utc))
            }
        }
    }
}

/// What is known about a heartbeat's runs (stored as JSON under `heartbeat:{name}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatState {
    /// When tocsin first knew the heartbeat: a task that never reports is late from here.
    pub created_at: DateTime<Utc>,
    pub last_ping: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    /// Start of the run in progress.
    pub started_at: Option<DateTime<Utc>>,
    pub last_duration_ms: Option<i64>,
    pub last_exit_code: Option<i32>,
    /// The alert now firing (its kind), if any.
    pub alert: Option<String>,
}

impl HeartbeatState {
    fn new(at: DateTime<Utc>) -> Self {
        HeartbeatState {
            created_at: at,
            last_ping: None,
            last_success: None,
            started_at: None,
            last_duration_ms: None,
            last_exit_code: None,
            alert: None,
        }
    }

    /// `new`, `up`, `running`, or the firing alert (`late`, `failed`, `running_long`).
    pub fn status(&self) -> &str {
        match (&self.alert, self.started_at, self.last_ping) {
            (Some(k), _, _) => k.strip_prefix("heartbeat.").unwrap_or(k),
            (None, Some(_), _) => "running",
            (None, None, None) => "new",
            (None, None, Some(_)) => "up",
        }
    }
}

/// A ping from the task.
#[derive(Debug, Clone)]
pub enum Ping {
    Start,
    Success { output: String },
    Fail { output: String, exit_code: Option<i32> },
}

/// An event a transition causes.
#[derive(Debug, Clone, PartialEq)]
pub enum Emit {
    Firing { kind: &'static str, text: String, fields: Value },
    Resolved { kind: String, text: String },
    Succeeded { duration_ms: Option<i64>, output: String },
}

fn fmt_ms(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// The state after a ping.
pub fn on_ping(
    hb: &Heartbeat,
    state: Option<HeartbeatState>,
    ping: &Ping,
    at: DateTime<Utc>,
) -> (HeartbeatState, Vec<Emit>) {
    let mut s = state.unwrap_or_else(|| HeartbeatState::new(at));
    let mut emits = Vec::new();
    let duration_ms = s.started_at.filter(|t| *t <= at).map(|t| (at - t).num_milliseconds());
    match ping {
        Ping::Start => {
            s.started_at = Some(at);
        }
        Ping::Success { output } => {
            s.started_at = None;
            s.last_ping = Some(at);
            s.last_success = Some(at);
            s.last_duration_ms = duration_ms;
            s.last_exit_code = Some(0);
            if let Some(kind) = s.alert.take() {
                let took = duration_ms.map(|ms| format!(" in {}", fmt_ms(ms))).unwrap_or_default();
                emits
                    .push(Emit::Resolved { kind, text: format!("{} succeeded{took}; it is back to normal.", hb.name) });
            }
            emits.push(Emit::Succeeded { duration_ms, output: output.clone() });
        }
        Ping::Fail { output, exit_code } => {
            s.started_at = None;
            s.last_ping = Some(at);
            s.last_duration_ms = duration_ms;
            s.last_exit_code = *exit_code;
            s.alert = Some(KIND_FAILED.into());
            let code = exit_code.map(|c| format!(" with exit code {c}")).unwrap_or_default();
            let mut text = format!("{} failed{code}.", hb.name);
            if !output.trim().is_empty() {
                text.push_str(&format!("\n```\n{}\n```", output.trim_end()));
            }
            let mut fields = json!({});
            if let Some(c) = exit_code {
                fields["exit_code"] = json!(c);
            }
            if let Some(ms) = duration_ms {
                fields["duration"] = json!(fmt_ms(ms));
            }
            emits.push(Emit::Firing { kind: KIND_FAILED, text, fields });
        }
    }
    (s, emits)
}

/// The state as of `now` without a ping: late, or running too long.
pub fn on_tick(hb: &Heartbeat, state: Option<HeartbeatState>, now: DateTime<Utc>) -> (HeartbeatState, Vec<Emit>) {
    let mut s = state.unwrap_or_else(|| HeartbeatState::new(now));
    let mut emits = Vec::new();
    if let (Some(started), Some(max)) = (s.started_at, hb.max_duration) {
        if now > started + max && s.alert.as_deref() != Some(KIND_RUNNING_LONG) {
            s.alert = Some(KIND_RUNNING_LONG.into());
            emits.push(Emit::Firing {
                kind: KIND_RUNNING_LONG,
                text: format!(
                    "{} started at {} and is still running after {} (allowed: {}).",
                    hb.name,
                    started.to_rfc3339(),
                    fmt_ms((now - started).num_milliseconds()),
                    fmt_ms(max.num_milliseconds())
                ),
                fields: json!({"started_at": started.to_rfc3339()}),
            });
        }
        return (s, emits);
    }
    if s.alert.is_some() {
        return (s, emits);
    }
    let anchor = s.last_ping.unwrap_or(s.created_at);
    if let Some(expected) = hb.next_expected(anchor) {
        if now > expected + hb.grace {
            s.alert = Some(KIND_LATE.into());
            let since = match s.last_success {
                Some(t) => format!("last success {}", t.to_rfc3339()),
                None => "no success recorded yet".to_string(),
            };
            emits.push(Emit::Firing {
                kind: KIND_LATE,
                text: format!(
                    "{} was expected by {} (grace {}) and has not reported; {since}.",
                    hb.name,
                    expected.to_rfc3339(),
                    fmt_ms(hb.grace.num_milliseconds())
                ),
                fields: json!({"expected_at": expected.to_rfc3339()}),
            });
        }
    }
    (s, emits)
}

fn state_key(name: &str) -> String {
    format!("heartbeat:{name}")
}

fn to_event(hb: &Heartbeat, emit: &Emit, now: DateTime<Utc>) -> Result<Event, StoreError> {
    let mut labels = hb.labels.clone();
    labels.insert("heartbeat".into(), hb.name.clone());
    let fingerprint = format!("heartbeat:{}", hb.name);
    let value = match emit {
        Emit::Firing { kind, text, fields } => {
            let what = match *kind {
                KIND_LATE => "is late",
                KIND_FAILED => "failed",
                _ => "is running too long",
            };
            json!({"kind": kind, "severity": hb.severity, "status": "firing", "fingerprint": fingerprint,
                   "title": format!("Scheduled task {} {what}", hb.name), "text": text, "labels": labels,
                   "fields": fields})
        }
        Emit::Resolved { kind, text } => json!({"kind": kind, "severity": hb.severity, "status": "resolved",
            "fingerprint": fingerprint, "title": format!("Scheduled task {} is back", hb.name), "text": text,
            "labels": labels}),
        Emit::Succeeded { duration_ms, output } => {
            let mut fields = json!({});
            if let Some(ms) = duration_ms {
                fields["duration_ms"] = json!(ms);
                fields["duration"] = json!(fmt_ms(*ms));
            }
            let mut v = json!({"kind": KIND_SUCCEEDED, "severity": "info",
                "title": format!("Scheduled task {} succeeded", hb.name), "labels": labels, "fields": fields});
            if !output.trim().is_empty() {
                v["text"] = json!(output);
            }
            v
        }
    };
    super::make_event(value, &format!("heartbeat:{}", hb.name), now)
}

async fn apply(
    sources: &Sources,
    hb: &Heartbeat,
    now: DateTime<Utc>,
    step: impl FnOnce(Option<HeartbeatState>) -> (HeartbeatState, Vec<Emit>) + Send + 'static,
) -> Result<HeartbeatState, StoreError> {
    let _serial = sources.transition().await;
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let captured = out.clone();
    let state = sources
        .ingest()
        .store()
        .update_source_state(
            &state_key(&hb.name),
            Box::new(move |current| {
                let current = current.and_then(|v| serde_json::from_value::<HeartbeatState>(v).ok());
                let before = current.clone();
                let (next, emits) = step(current);
                *captured.lock().unwrap_or_else(|e| e.into_inner()) = emits;
                (before.as_ref() != Some(&next)).then(|| serde_json::to_value(&next).expect("state serializes"))
            }),
            now,
        )
        .await?;
    let emits = std::mem::take(&mut *out.lock().unwrap_or_else(|e| e.into_inner()));
    if !emits.is_empty() {
        let events = emits.iter().map(|e| to_event(hb, e, now)).collect::<Result<Vec<_>, _>>()?;
        sources.ingest().submit(events).await?;
    }
    let state = state.and_then(|v| serde_json::from_value(v).ok()).unwrap_or_else(|| HeartbeatState::new(now));
    Ok(state)
}

/// Records a ping; `None` when no heartbeat has that name.
pub async fn ping(sources: &Sources, name: &str, ping: Ping) -> Result<Option<HeartbeatState>, StoreError> {
    let settings = sources.settings();
    let Some(hb) = settings.heartbeats.get(name).cloned() else {
        return Ok(None);
    };
    let now = sources.now();
    let step_hb = hb.clone();
    apply(sources, &hb, now, move |s| on_ping(&step_hb, s, &ping, now)).await.map(Some)
}

pub async fn tick(sources: &Sources, now: DateTime<Utc>) -> Result<(), StoreError> {
    let settings = sources.settings();
    for hb in settings.heartbeats.values() {
        let step_hb = hb.clone();
        apply(sources, hb, now, move |s| on_tick(&step_hb, s, now)).await?;
    }
    Ok(())
}

/// Every configured heartbeat with its state, for `GET /api/v1/heartbeats`.
pub async fn list(sources: &Sources) -> Result<Vec<Value>, StoreError> {
    let settings = sources.settings();
    let mut out = Vec::new();
    for hb in settings.heartbeats.values() {
        let state: Option<HeartbeatState> = sources
            .ingest()
            .store()
            .source_state(&state_key(&hb.name))
            .await?
            .and_then(|v| serde_json::from_value(v).ok());
        let next = state.as_ref().and_then(|s| hb.next_expected(s.last_ping.unwrap_or(s.created_at)));
        out.push(json!({
            "name": hb.name,
            "status": state.as_ref().map(|s| s.status()).unwrap_or("new"),
            "last_ping": state.as_ref().and_then(|s| s.last_ping),
            "last_success": state.as_ref().and_then(|s| s.last_success),
            "started_at": state.as_ref().and_then(|s| s.started_at),
            "last_duration_ms": state.as_ref().and_then(|s| s.last_duration_ms),
            "last_exit_code": state.as_ref().and_then(|s| s.last_exit_code),
            "next_expected": next,
        }));
    }
    Ok(out)
}

/// The end of `output`, at most [`MAX_TAIL_BYTES`], cut at a character boundary.
pub fn tail(output: &str) -> &str {
    if output.len() <= MAX_TAIL_BYTES {
        return output;
    }
    let mut start = output.len() - MAX_TAIL_BYTES;
    while !output.is_char_boundary(start) {
        start += 1;
    }
    &output[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(schedule: Option<&str>, period: Option<u64>) -> Heartbeat {
        Heartbeat::new(&HeartbeatConfig {
            name: "job".into(),
            schedule: schedule.map(str::to_string),
            timezone: Some("America/New_York".into()),
            period: period.map(crate::config::Dur::secs),
            grace: crate::config::Dur::secs(600),
            max_duration: Some(crate::config::Dur::secs(3600)),
            severity: Severity::Error,
            labels: Default::default(),
        })
        .unwrap()
    }

    #[test]
    fn cron_in_time_zone() {
        let h = hb(Some("0 2 * * *"), None);
        let after: DateTime<Utc> = "2026-11-21T12:00:00Z".parse().unwrap();
        // 02:00 in New York (UTC-5 in November) is 07:00 UTC.
        assert_eq!(h.next_expected(after).unwrap(), "2026-11-22T07:00:00Z".parse::<DateTime<Utc>>().unwrap());
    }

    #[test]
    fn late_then_back() {
        let h = hb(None, Some(3600));
        let t0: DateTime<Utc> = "2026-11-21T12:00:00Z".parse().unwrap();
        let (s, e) = on_ping(&h, None, &Ping::Success { output: String::new() }, t0);
        assert!(matches!(e[..], [Emit::Succeeded { .. }]));
        let (s, e) = on_tick(&h, Some(s), t0 + chrono::Duration::minutes(65));
        assert!(e.is_empty());
        let (s, e) = on_tick(&h, Some(s), t0 + chrono::Duration::minutes(71));
        assert!(matches!(e[..], [Emit::Firing { kind: KIND_LATE, .. }]));
        let (s, e) = on_tick(&h, Some(s), t0 + chrono::Duration::minutes(80));
        assert!(e.is_empty());
        let (s, e) = on_ping(&h, Some(s), &Ping::Success { output: String::new() }, t0 + chrono::Duration::minutes(90));
        assert!(matches!(e[..], [Emit::Resolved { .. }, Emit::Succeeded { .. }]));
        assert_eq!(s.status(), "up");
    }
}
