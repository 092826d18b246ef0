//! Durations written as `"30s"`, `"5m"`, `"4h"`, `"30d"`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The longest duration a config may give.
const MAX: Duration = Duration::from_secs(100 * 366 * 86400);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }

    pub fn get(self) -> Duration {
        self.0
    }

    pub fn parse(s: &str) -> Result<Dur, String> {
        let d = humantime::parse_duration(s.trim())
            .map_err(|e| format!("invalid duration {s:?} ({e}); write e.g. \"30s\", \"5m\", \"4h\", \"30d\""))?;
        // Every duration is added to a date somewhere; past this, the date overflows.
        if d > MAX {
            return Err(format!("{s:?} is longer than 100 years"));
        }
        Ok(Dur(d))
    }
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Dur::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_units() {
        assert_eq!(Dur::parse("30s").unwrap().get(), Duration::from_secs(30));
        assert_eq!(Dur::parse("5m").unwrap().get(), Duration::from_secs(300));
        assert_eq!(Dur::parse("4h").unwrap().get(), Duration::from_secs(4 * 3600));
        assert_eq!(Dur::parse("30d").unwrap().get(), Duration::from_secs(30 * 86400));
        assert!(Dur::parse("soon").is_err());
        assert_eq!(Dur::parse("100y").unwrap().get(), humantime::parse_duration("100y").unwrap());
        assert_eq!(Dur::parse("300000y").unwrap_err(), "\"300000y\" is longer than 100 years");
        assert!(Dur::parse("99999999999d").is_err());
    }
}
