//! Timestamps: UTC nanoseconds since the Unix epoch, shown as RFC 3339.
//!
//! Integers keep the store portable (SQLite and PostgreSQL sort and subtract them
//! the same way) and make ordering events trivial.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A point in time, in nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time (the clock's; 0 past the year 2262).
    pub fn now() -> Timestamp {
        Timestamp(Utc::now().timestamp_nanos_opt().unwrap_or(0))
    }

    /// Parses an RFC 3339 time such as `2026-11-20T10:00:00Z` or `2019-05-15T15:20:33-05:00`.
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let parsed = DateTime::parse_from_rfc3339(text.trim()).ok()?;
        parsed.timestamp_nanos_opt().map(Timestamp)
    }

    /// Builds a timestamp from whole seconds since the epoch (GitHub's push times).
    pub fn from_unix_seconds(seconds: i64) -> Option<Timestamp> {
        seconds.checked_mul(1_000_000_000).map(Timestamp)
    }

    /// Builds a timestamp from milliseconds since the epoch (Jenkins times).
    pub fn from_unix_millis(millis: i64) -> Option<Timestamp> {
        millis.checked_mul(1_000_000).map(Timestamp)
    }

    pub fn nanos(self) -> i64 {
        self.0
    }

    /// The time as RFC 3339 in UTC, with as many fraction digits as it needs.
    pub fn to_rfc3339(self) -> String {
        DateTime::<Utc>::from_timestamp_nanos(self.0).to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// Seconds from `self` to `later`, as a float.
    pub fn seconds_until(self, later: Timestamp) -> f64 {
        (later.0 as f64 - self.0 as f64) / 1e9
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_rfc3339_in_utc() {
        let t = Timestamp::parse_rfc3339("2019-05-15T15:20:33-05:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2019-05-15T20:20:33Z");
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-20T10:00:00.5Z").unwrap().to_rfc3339(),
            "2026-11-20T10:00:00.500Z"
        );
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    }
}
