//! Grouping timers, as Alertmanager defines them: a group's first notification waits
//! `group_wait`; after a notification, news for the group waits until `group_interval` has
//! passed. Deliveries carry the resulting `not_before`; the delivery worker sends the due rows
//! of one group as one message.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, Default)]
struct Timer {
    /// When the group's last planned notification went (or goes) out.
    last_flush: Option<DateTime<Utc>>,
    /// A notification already planned and not yet due.
    next_flush: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
pub struct Grouper {
    timers: HashMap<String, Timer>,
}

fn add(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d).ok().and_then(|d| t.checked_add_signed(d)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl Grouper {
    /// When a new item of group `key` may be sent.
    pub fn schedule(&mut self, key: &str, wait: Duration, interval: Duration, now: DateTime<Utc>) -> DateTime<Utc> {
        let timer = self.timers.entry(key.to_string()).or_default();
        if let Some(next) = timer.next_flush {
            if next > now {
                return next;
            }
            timer.last_flush = Some(next);
            timer.next_flush = None;
        }
        let due = match timer.last_flush {
            Some(last) if add(last, interval) > now => add(last, interval),
            _ => add(now, wait),
        };
        if due > now {
            timer.next_flush = Some(due);
        } else {
            timer.last_flush = Some(due);
        }
        due
    }

    /// Forgets groups that have been quiet for longer than `idle`, so memory follows the
    /// number of active groups, not of all groups ever seen.
    pub fn evict(&mut self, now: DateTime<Utc>, idle: Duration) {
        self.timers.retain(|_, t| {
            let latest = t.next_flush.or(t.last_flush);
            latest.is_some_and(|l| add(l, idle) > now)
        });
    }

    pub fn len(&self) -> usize {
        self.timers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }
}

/// The next boundary of a fixed period (digests), aligned to the Unix epoch in UTC.
pub fn next_period_boundary(now: DateTime<Utc>, period: Duration) -> DateTime<Utc> {
    let p = period.as_micros().max(1) as i64;
    let t = now.timestamp_micros();
    let next = (t.div_euclid(p) + 1) * p;
    DateTime::from_timestamp_micros(next).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }
    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn wait_then_interval() {
        let mut g = Grouper::default();
        // First item waits group_wait; items during the wait join the same flush.
        assert_eq!(g.schedule("a", S(30), S(300), t(0)), t(30));
        assert_eq!(g.schedule("a", S(30), S(300), t(10)), t(30));
        // After the flush, news waits for group_interval from it.
        assert_eq!(g.schedule("a", S(30), S(300), t(40)), t(330));
        assert_eq!(g.schedule("a", S(30), S(300), t(200)), t(330));
        // A group quiet for longer than the interval starts over with group_wait.
        assert_eq!(g.schedule("a", S(30), S(300), t(1000)), t(1030));
        // Groups are independent.
        assert_eq!(g.schedule("b", S(0), S(300), t(1000)), t(1000));
    }

    #[test]
    fn zero_wait_sends_first_item_at_once_and_folds_the_rest() {
        let mut g = Grouper::default();
        assert_eq!(g.schedule("x", S(0), S(60), t(0)), t(0));
        assert_eq!(g.schedule("x", S(0), S(60), t(1)), t(60));
        assert_eq!(g.schedule("x", S(0), S(60), t(59)), t(60));
        assert_eq!(g.schedule("x", S(0), S(60), t(61)), t(120));
    }

    #[test]
    fn eviction_keeps_active_groups() {
        let mut g = Grouper::default();
        g.schedule("old", S(0), S(60), t(0));
        g.schedule("new", S(0), S(60), t(500));
        g.evict(t(600), S(300));
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn digest_boundaries() {
        let now = DateTime::parse_from_rfc3339("2026-11-21T16:20:00Z").unwrap().with_timezone(&Utc);
        let next = next_period_boundary(now, S(3600));
        assert_eq!(next.to_rfc3339(), "2026-11-21T17:00:00+00:00");
    }
}
