//! Index names: date templates, wildcard patterns and daily families. Pure functions.

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed '{{' in {0:?}")]
    Unclosed(String),
    #[error("{0:?}: expected {{now:FORMAT}} or {{now-1d:FORMAT}} (offset units: w, d, h, m)")]
    Syntax(String),
    #[error("{0:?}: invalid strftime format")]
    Format(String),
}

/// Replaces every `{now[±N(w|d|h|m)]:FORMAT}` with the instant formatted in `tz`, so
/// `logs-{now-1d:%Y.%m.%d}` is yesterday's index *in the check's time zone*.
pub fn render(template: &str, now: DateTime<Utc>, tz: Tz) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('}').ok_or_else(|| TemplateError::Unclosed(template.to_string()))?;
        let inner = &after[..end];
        let (spec, format) = inner.split_once(':').ok_or_else(|| TemplateError::Syntax(inner.to_string()))?;
        let offset = parse_offset(spec).ok_or_else(|| TemplateError::Syntax(inner.to_string()))?;
        if StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) || format.is_empty() {
            return Err(TemplateError::Format(format.to_string()));
        }
        let at = offset.from(now, tz);
        out.push_str(&at.format(format).to_string());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// How far from now a template looks: days and weeks count on the calendar of the check's time
/// zone (yesterday is yesterday, 23 or 25 hours ago across a clock change), hours and minutes
/// on the clock.
enum Offset {
    Days(i64),
    Exact(Duration),
}

impl Offset {
    fn from(&self, now: DateTime<Utc>, tz: Tz) -> DateTime<Tz> {
        let local = tz.from_utc_datetime(&now.naive_utc());
        match *self {
            Offset::Days(n) => {
                let moved = if n >= 0 {
                    local.checked_add_days(chrono::Days::new(n as u64))
                } else {
                    local.checked_sub_days(chrono::Days::new(n.unsigned_abs()))
                };
                // A local time the clock change skipped: whole days of 24 hours instead.
                moved.or_else(|| Duration::try_days(n).and_then(|d| exact(now, d, tz))).unwrap_or(local)
            }
            Offset::Exact(d) => exact(now, d, tz).unwrap_or(local),
        }
    }
}

fn exact(now: DateTime<Utc>, d: Duration, tz: Tz) -> Option<DateTime<Tz>> {
    now.checked_add_signed(d).map(|t| tz.from_utc_datetime(&t.naive_utc()))
}

fn parse_offset(spec: &str) -> Option<Offset> {
    let spec = spec.trim();
    let rest = spec.strip_prefix("now")?;
    if rest.is_empty() {
        return Some(Offset::Exact(Duration::zero()));
    }
    let (sign, num) = match rest.as_bytes()[0] {
        b'-' => (-1, &rest[1..]),
        b'+' => (1, &rest[1..]),
        _ => return None,
    };
    let unit = num.chars().last()?;
    let n: i64 = num[..num.len() - 1].parse().ok()?;
    let n = n.checked_mul(sign)?;
    match unit {
        'w' => Some(Offset::Days(n.checked_mul(7)?)),
        'd' => Some(Offset::Days(n)),
        'h' => Some(Offset::Exact(Duration::try_hours(n)?)),
        'm' => Some(Offset::Exact(Duration::try_minutes(n)?)),
        _ => None,
    }
}

pub fn is_pattern(name: &str) -> bool {
    name.contains('*') || name.contains('?')
}

/// Shell-style match of a whole name: `*` any run, `?` one character. Never a substring test.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Hidden and system indices (leading `.`) are only matched by patterns that name them.
pub fn pattern_covers(pattern: &str, name: &str, hidden: bool) -> bool {
    if (hidden || name.starts_with('.')) && !pattern.starts_with('.') {
        return false;
    }
    wildcard_match(pattern, name)
}

/// A daily index's family and day: `logs-2026.11.21` → (`logs-{date}`, 2026-11-21).
/// Recognizes `YYYY.MM.DD`, `YYYY-MM-DD`, `YYYY_MM_DD` and `YYYYMMDD` (the last date in the name).
pub fn daily_family(name: &str) -> Option<(String, NaiveDate)> {
    let b = name.as_bytes();
    for start in (0..b.len()).rev() {
        // Digits right before would make this part of a longer number.
        if !name.is_char_boundary(start) || (start > 0 && b[start - 1].is_ascii_digit()) {
            continue;
        }
        for (len, separated) in [(10usize, true), (8, false)] {
            let end = start + len;
            if end > b.len() || (end < b.len() && b[end].is_ascii_digit()) || !name.is_char_boundary(end) {
                continue;
            }
            if let Some(date) = parse_day(&name[start..end], separated) {
                return Some((format!("{}{{date}}{}", &name[..start], &name[end..]), date));
            }
        }
    }
    None
}

fn parse_day(s: &str, separated: bool) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let (y, m, d) = if separated {
        if b.len() != 10 || !matches!(b[4], b'.' | b'-' | b'_') || b[7] != b[4] {
            return None;
        }
        (&s[0..4], &s[5..7], &s[8..10])
    } else {
        if b.len() != 8 {
            return None;
        }
        (&s[0..4], &s[4..6], &s[6..8])
    };
    if ![y, m, d].iter().all(|p| p.bytes().all(|c| c.is_ascii_digit())) {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)?;
    (1990..=2200).contains(&date.year()).then_some(date)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn templates_use_the_check_time_zone() {
        let now = at("2026-11-22T03:00:00Z");
        assert_eq!(render("logs-{now:%Y.%m.%d}", now, chrono_tz::UTC).unwrap(), "logs-2026.11.22");
        // 22:00 the day before in New York.
        assert_eq!(render("logs-{now:%Y.%m.%d}", now, chrono_tz::America::New_York).unwrap(), "logs-2026.11.21");
        assert_eq!(render("logs-{now-1d:%Y.%m.%d}", now, chrono_tz::UTC).unwrap(), "logs-2026.11.21");
        assert_eq!(render("m-{now+2h:%H}", now, chrono_tz::UTC).unwrap(), "m-05");
        assert_eq!(render("plain", now, chrono_tz::UTC).unwrap(), "plain");
        assert!(render("logs-{now:%Y", now, chrono_tz::UTC).is_err());
        assert!(render("logs-{yesterday:%Y}", now, chrono_tz::UTC).is_err());
        assert!(render("logs-{now-1y:%Y}", now, chrono_tz::UTC).is_err());
    }

    #[test]
    fn yesterday_is_a_calendar_day_across_clock_changes() {
        let ny = chrono_tz::America::New_York;
        // Midnight in New York the day after the spring change (8 March 2026 had 23 hours).
        let after_spring = at("2026-03-09T04:00:00Z");
        assert_eq!(render("b-{now-1d:%Y.%m.%d}", after_spring, ny).unwrap(), "b-2026.03.08");
        assert_eq!(render("b-{now-1w:%Y.%m.%d}", after_spring, ny).unwrap(), "b-2026.03.02");
        // And after the autumn change (1 November 2026 had 25 hours).
        let after_autumn = at("2026-11-02T05:00:00Z");
        assert_eq!(render("b-{now-1d:%Y.%m.%d}", after_autumn, ny).unwrap(), "b-2026.11.01");
        // Hours stay on the clock.
        assert_eq!(render("h-{now-24h:%Y.%m.%d}", after_spring, ny).unwrap(), "h-2026.03.07");
        // Far out of range: no panic.
        assert!(render("x-{now-99999999999d:%Y}", after_spring, ny).is_ok());
    }

    #[test]
    fn wildcards_match_whole_names() {
        assert!(wildcard_match("logs-*", "logs-2026.11.21"));
        assert!(!wildcard_match("users_index", "users_index_old"));
        assert!(wildcard_match("a?c*", "abcdef"));
        assert!(!wildcard_match("logs-*", "app-logs-1"));
        assert!(!pattern_covers("*", ".kibana_1", false));
        assert!(pattern_covers(".kib*", ".kibana_1", false));
        assert!(!pattern_covers("*", "x", true));
    }

    #[test]
    fn families_strip_the_date() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        assert_eq!(daily_family("logs-2026.11.21"), Some(("logs-{date}".into(), d(2026, 11, 21))));
        assert_eq!(daily_family("app-20261121-v2"), Some(("app-{date}-v2".into(), d(2026, 11, 21))));
        assert_eq!(daily_family("metrics_2026-01-05"), Some(("metrics_{date}".into(), d(2026, 1, 5))));
        assert_eq!(daily_family("users_index"), None);
        assert_eq!(daily_family("id-123456789"), None);
        assert_eq!(daily_family("logs-2026.13.01"), None);
    }
}
