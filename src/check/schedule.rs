//! Cron schedules in IANA time zones.
//!
//! DST: a time that does not exist on a spring-forward day (02:30 in New York) runs at the
//! first valid instant after the gap; a time that occurs twice on a fall-back day runs once,
//! at its first occurrence. Both come from evaluating the cron in the zone's local time
//! (croner), so "every day at 16:00 New York time" stays 16:00 local across DST changes.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    pub tz: Tz,
}

impl Schedule {
    /// Five fields (minute precision) or six (with seconds first).
    pub fn parse(expr: &str, tz: Tz) -> Result<Schedule, String> {
        let fields = expr.split_whitespace().count();
        if !expr.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "{expr:?} has {fields} fields; expected 5 (min hour dom month dow) or 6 (with seconds first)"
            ));
        }
        let cron =
            Cron::new(expr).with_seconds_optional().parse().map_err(|e| {
                format!(
                    "invalid cron {expr:?}: {e} (fields: [second 0-59] minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-7)"
                )
            })?;
        Ok(Schedule { cron, tz })
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        self.cron.find_next_occurrence(&local, false).ok().map(|t| t.with_timezone(&Utc))
    }

    /// Whether a run was due in `(since, now]`: then one catch-up run is owed, however many
    /// were missed.
    pub fn missed_since(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.next_after(since).is_some_and(|t| t <= now)
    }
}

pub fn parse_tz(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("unknown time zone {name:?}; use an IANA name such as \"America/New_York\" or \"UTC\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn daily_local_time_follows_dst() {
        let s = Schedule::parse("0 16 * * *", chrono_tz::America::New_York).unwrap();
        // EDT (UTC-4) in summer, EST (UTC-5) in winter.
        assert_eq!(s.next_after(at("2026-07-01T00:00:00Z")), Some(at("2026-07-01T20:00:00Z")));
        assert_eq!(s.next_after(at("2026-12-01T00:00:00Z")), Some(at("2026-12-01T21:00:00Z")));
    }

    #[test]
    fn spring_gap_runs_once_after_the_gap() {
        // 2026-03-08: New York clocks jump from 02:00 to 03:00.
        let s = Schedule::parse("30 2 * * *", chrono_tz::America::New_York).unwrap();
        let next = s.next_after(at("2026-03-08T05:00:00Z")).unwrap();
        assert!(next >= at("2026-03-08T07:00:00Z") && next <= at("2026-03-08T07:30:00Z"), "{next}");
        let after = s.next_after(next).unwrap();
        assert_eq!(after, at("2026-03-09T06:30:00Z"));
    }

    #[test]
    fn fall_overlap_runs_once() {
        // 2026-11-01: 01:00-02:00 happens twice in New York.
        let s = Schedule::parse("30 1 * * *", chrono_tz::America::New_York).unwrap();
        let first = s.next_after(at("2026-11-01T04:00:00Z")).unwrap();
        assert_eq!(first, at("2026-11-01T05:30:00Z"));
        let second = s.next_after(first).unwrap();
        assert_eq!(second, at("2026-11-02T06:30:00Z"));
    }

    #[test]
    fn six_fields_and_errors() {
        let s = Schedule::parse("*/10 * * * * *", chrono_tz::UTC).unwrap();
        assert_eq!(s.next_after(at("2026-01-01T00:00:01Z")), Some(at("2026-01-01T00:00:10Z")));
        assert!(Schedule::parse("0 16 * *", chrono_tz::UTC).is_err());
        assert!(Schedule::parse("0 25 * * *", chrono_tz::UTC).is_err());
        assert!(parse_tz("Mars/Olympus").is_err());
    }

    #[test]
    fn at_most_one_catch_up() {
        let s = Schedule::parse("0 * * * *", chrono_tz::UTC).unwrap();
        assert!(s.missed_since(at("2026-01-01T00:00:00Z"), at("2026-01-01T05:10:00Z")));
        assert!(!s.missed_since(at("2026-01-01T05:00:00Z"), at("2026-01-01T05:10:00Z")));
    }
}
