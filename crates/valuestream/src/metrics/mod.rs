//! Delivery metrics (metrics.md): the summary statistics and the DORA keys,
//! computed in one place and shown by the API, `valuestream report` and the
//! dashboard. The database aggregates over narrow derived columns (see
//! `store/columns.rs`); only per-group lists of durations leave it, which
//! Rust sorts for the percentiles.

mod dora;
mod summary;

pub use dora::{DoraFilter, dora};
pub use summary::{GROUP_KEYS, SpanScope, summary};

use crate::store::StoreError;
use valuestream_core::time::Timestamp;

/// Parses a `string_agg` of integers (nanoseconds); `None` (no rows) is empty.
fn aggregated(text: Option<String>) -> Result<Vec<i64>, StoreError> {
    let Some(text) = text else { return Ok(Vec::new()) };
    text.split(',')
        .map(|n| n.parse::<i64>().map_err(|_| StoreError::Corrupt(format!("aggregated value {n:?} is not an integer"))))
        .collect()
}

/// A metrics window `[since, until)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub since: Timestamp,
    pub until: Timestamp,
}

impl Window {
    /// The default window: the last 30 days up to `now`.
    pub fn last_30_days(now: Timestamp) -> Window {
        Window { since: Timestamp(now.nanos() - 30 * 86_400 * 1_000_000_000), until: now }
    }

    /// The window's length in days (at least a nanosecond, never zero).
    pub fn days(&self) -> f64 {
        ((self.until.nanos() - self.since.nanos()).max(1)) as f64 / 86_400e9
    }
}

/// Production environment names by default (metrics.md).
pub use valuestream_core::vocab::PRODUCTION_ENVIRONMENTS as PRODUCTION;

/// Parses a `since`/`until` value: an RFC 3339 time, or a duration back from
/// `now` (`30d`, `12h`, `15m`, `90s`). The error names the parameter.
pub fn parse_time(name: &str, value: &str, now: Timestamp) -> Result<Timestamp, String> {
    if let Some(t) = Timestamp::parse_rfc3339(value) {
        return Ok(t);
    }
    let bad = || format!("`{name}` must be an RFC 3339 time or a duration like 30d, 12h, 15m; got {value:?}");
    let trimmed = value.trim();
    let (number, unit) = trimmed.split_at(trimmed.len().saturating_sub(1));
    let amount: i64 = number.parse().map_err(|_| bad())?;
    let unit_seconds = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(bad()),
    };
    if amount < 0 {
        return Err(bad());
    }
    let back = amount.checked_mul(unit_seconds).and_then(|s| s.checked_mul(1_000_000_000)).ok_or_else(bad)?;
    Ok(Timestamp(now.nanos().saturating_sub(back)))
}

/// `group_by`: comma-separated names from [`GROUP_KEYS`], default `source,kind`.
pub fn parse_group_by(value: Option<&str>) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    for key in value.unwrap_or("source,kind").split(',').map(str::trim).filter(|k| !k.is_empty()) {
        if !GROUP_KEYS.contains(&key) {
            return Err(format!("`group_by` takes {}; got {key:?}", GROUP_KEYS.join(", ")));
        }
        if !keys.iter().any(|k| k == key) {
            keys.push(key.to_string());
        }
    }
    Ok(keys)
}
