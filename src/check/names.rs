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
        let at = tz.from_utc_datetime(&(now + offset).naive_utc());
        out.push_str(&at.format(format).to_string());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn parse_offset(spec: &str) -> Option<Duration> {
    let spec = spec.trim();
    let rest = spec.strip_prefix("now")?;
    if rest.is_empty() {
        return Some(Duration::zero());
    }
    let (sign, num) = match rest.as_bytes()[0] {
        b'-' => (-1, &rest[1..]),
        b'+' => (1, &rest[1..]),
        _ => return None,
    };
    let unit = num.chars().last()?;
    let n: i64 = num[..num.len() - 1].parse().ok()?;
    let d = match unit {
        'w' => Duration::weeks(n),
        'd' => Duration::days(n),
        'h' => Duration::hours(n),
        'm' => Duration::minutes(n),
        _ => return None,
    };
    Some(d * sign)
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
