//! Event times as JSON, written without `core::fmt`.
//!
//! chrono serializes a `DateTime` through `Display`, and serde_json escapes that output one
//! `char` at a time: the two times of every event were 5 % of batch ingest's CPU. This writes
//! the same text as chrono (RFC 3339, `Z`, 0, 3, 6 or 9 fraction digits) into a stack buffer
//! and falls back to chrono for what it does not cover (years outside 0–9999, leap seconds).
//! Reading is chrono's own.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};

pub fn serialize<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 30];
    match write_rfc3339(time, &mut buf) {
        Some(len) => serializer.serialize_str(std::str::from_utf8(&buf[..len]).expect("digits are ASCII")),
        None => time.serialize(serializer),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff]Z`; the length written, or `None` when chrono
/// must write it.
fn write_rfc3339(time: &DateTime<Utc>, buf: &mut [u8; 30]) -> Option<usize> {
    let year = time.year();
    let nanos = time.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return None;
    }
    let mut out = Cursor { buf, at: 0 };
    out.digits(year as u32, 4);
    out.byte(b'-');
    out.digits(time.month(), 2);
    out.byte(b'-');
    out.digits(time.day(), 2);
    out.byte(b'T');
    out.digits(time.hour(), 2);
    out.byte(b':');
    out.digits(time.minute(), 2);
    out.byte(b':');
    out.digits(time.second(), 2);
    // As chrono's `SecondsFormat::AutoSi`: the shortest of none, milli, micro or nano digits.
    if nanos != 0 {
        out.byte(b'.');
        if nanos.is_multiple_of(1_000_000) {
            out.digits(nanos / 1_000_000, 3);
        } else if nanos.is_multiple_of(1_000) {
            out.digits(nanos / 1_000, 6);
        } else {
            out.digits(nanos, 9);
        }
    }
    out.byte(b'Z');
    Some(out.at)
}

struct Cursor<'a> {
    buf: &'a mut [u8; 30],
    at: usize,
}

impl Cursor<'_> {
    fn byte(&mut self, byte: u8) {
        self.buf[self.at] = byte;
        self.at += 1;
    }

    /// `value` in exactly `width` decimal digits, zero-padded.
    fn digits(&mut self, mut value: u32, width: usize) {
        for slot in self.buf[self.at..self.at + width].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
        self.at += width;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};

    fn ours(time: DateTime<Utc>) -> String {
        let mut out = Vec::new();
        serialize(&time, &mut serde_json::Serializer::new(&mut out)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_what_chrono_writes() {
        let base = Utc.with_ymd_and_hms(2026, 11, 22, 9, 5, 7).unwrap();
        for nanos in [0, 1, 7_000_000, 123_000_000, 120_000, 123_456_000, 5_000, 123_456_789, 999_999_999] {
            for offset_days in [0, -740_000, 2_000_000, 40] {
                let time = base + chrono::Duration::days(offset_days) + chrono::Duration::nanoseconds(nanos);
                assert_eq!(ours(time), serde_json::to_string(&time).unwrap(), "{time:?}");
            }
        }
    }

    #[test]
    fn leaves_leap_seconds_and_far_years_to_chrono() {
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31).unwrap().and_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap();
        let leap = Utc.from_utc_datetime(&leap);
        assert_eq!(ours(leap), "\"2016-12-31T23:59:60.500Z\"");
        let far = Utc.with_ymd_and_hms(12026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(ours(far), serde_json::to_string(&far).unwrap());
        let old = Utc.with_ymd_and_hms(-44, 3, 15, 12, 0, 0).unwrap();
        assert_eq!(ours(old), serde_json::to_string(&old).unwrap());
    }
}
