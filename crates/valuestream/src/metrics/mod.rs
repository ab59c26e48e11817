//! Delivery metrics (metrics.md): the summary statistics and the DORA keys,
//! computed in one place and shown by the API, `valuestream report` and the
//! dashboard. The database aggregates over narrow derived columns (see
//! `store/columns.rs`); only per-group lists of durations leave it, which
//! Rust sorts for the percentiles.

mod dora;
mod items;
mod summary;

pub use dora::{DoraFilter, dora, dora_series};
pub use items::{ItemKey, dora_items, dora_items_page, items_csv};
pub use summary::{GROUP_KEYS, SpanScope, summary, summary_series, summary_with_histogram};

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

    /// The window `since`/`until` ask for (each an RFC 3339 time or a
    /// duration back from `now`, [`parse_time`]; default the last 30 days up
    /// to `now`), as the API and `valuestream report` read it. `names` are
    /// the two settings as the caller's user spells them (`since`, `--since`).
    pub fn parse(since: Option<&str>, until: Option<&str>, names: [&str; 2], now: Timestamp) -> Result<Window, String> {
        let mut window = Window::last_30_days(now);
        if let Some(value) = since {
            window.since = parse_time(names[0], value, now)?;
        }
        if let Some(value) = until {
            window.until = parse_time(names[1], value, now)?;
        }
        if window.since >= window.until {
            return Err(format!("`{}` must be before `{}`", names[0], names[1]));
        }
        Ok(window)
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

/// A bucket of a series: a UTC day, an ISO week (from Monday) or a calendar month.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Day,
    Week,
    Month,
}

/// At most this many buckets in one series (a few years by day).
pub const MAX_BUCKETS: usize = 1_500;

impl Bucket {
    /// Parses `bucket=`; the error names the parameter.
    pub fn parse(value: &str) -> Result<Bucket, String> {
        match value {
            "day" => Ok(Bucket::Day),
            "week" => Ok(Bucket::Week),
            "month" => Ok(Bucket::Month),
            _ => Err(format!("`bucket` must be day, week or month; got {value:?}")),
        }
    }

    /// The first bucket boundary after `t` (UTC).
    fn next_boundary(self, t: Timestamp) -> Timestamp {
        use chrono::{DateTime, Datelike, NaiveDate, Utc};
        const DAY: i64 = 86_400 * 1_000_000_000;
        // 1970-01-05 was a Monday.
        const MONDAY: i64 = 4 * DAY;
        let n = t.nanos();
        match self {
            Bucket::Day => Timestamp((n.div_euclid(DAY) + 1) * DAY),
            Bucket::Week => Timestamp(MONDAY + ((n - MONDAY).div_euclid(7 * DAY) + 1) * 7 * DAY),
            Bucket::Month => {
                let date = DateTime::<Utc>::from_timestamp_nanos(n).date_naive();
                let (year, month) =
                    if date.month() == 12 { (date.year() + 1, 1) } else { (date.year(), date.month() + 1) };
                let first = NaiveDate::from_ymd_opt(year, month, 1).and_then(|d| d.and_hms_opt(0, 0, 0));
                first.and_then(|d| d.and_utc().timestamp_nanos_opt()).map_or(Timestamp(i64::MAX), Timestamp)
            }
        }
    }
}

/// The buckets of `window`: consecutive windows on the bucket's calendar
/// boundaries, the first and last cut to the window (so each bucket's rates
/// are per its own length). An error for more than [`MAX_BUCKETS`].
pub fn buckets(window: Window, bucket: Bucket) -> Result<Vec<Window>, String> {
    let mut out = Vec::new();
    let mut start = window.since;
    while start < window.until {
        if out.len() == MAX_BUCKETS {
            return Err(format!("`bucket` gives more than {MAX_BUCKETS} buckets in this window; take a longer bucket"));
        }
        let end = bucket.next_boundary(start).min(window.until);
        out.push(Window { since: start, until: end });
        start = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn a_window_reads_times_and_durations_and_names_the_setting_in_its_errors() {
        let now = t("2026-12-02T12:00:00Z");
        let api = ["since", "until"];
        assert_eq!(Window::parse(None, None, api, now), Ok(Window::last_30_days(now)));
        assert_eq!(
            Window::parse(Some("7d"), Some("2026-12-02T00:00:00Z"), api, now),
            Ok(Window { since: t("2026-11-25T12:00:00Z"), until: t("2026-12-02T00:00:00Z") })
        );
        assert_eq!(Window::parse(Some("1h"), Some("2h"), api, now), Err("`since` must be before `until`".into()));
        let flags = ["--since", "--until"];
        let error = Window::parse(Some("yesterday"), None, flags, now).unwrap_err();
        assert!(error.starts_with("`--since` must be an RFC 3339 time or a duration"), "{error}");
    }

    fn edges(since: &str, until: &str, bucket: Bucket) -> Vec<(String, String)> {
        let window = Window { since: t(since), until: t(until) };
        buckets(window, bucket).unwrap().iter().map(|w| (w.since.to_rfc3339(), w.until.to_rfc3339())).collect()
    }

    #[test]
    fn buckets_follow_the_utc_calendar_and_are_cut_to_the_window() {
        assert_eq!(
            edges("2026-11-01T12:00:00Z", "2026-11-03T06:00:00Z", Bucket::Day),
            [
                ("2026-11-01T12:00:00Z".into(), "2026-11-02T00:00:00Z".into()),
                ("2026-11-02T00:00:00Z".into(), "2026-11-03T00:00:00Z".into()),
                ("2026-11-03T00:00:00Z".into(), "2026-11-03T06:00:00Z".into()),
            ]
        );
        // 2026-11-02 and 2026-11-09 are Mondays.
        assert_eq!(
            edges("2026-11-01T00:00:00Z", "2026-11-10T00:00:00Z", Bucket::Week),
            [
                ("2026-11-01T00:00:00Z".into(), "2026-11-02T00:00:00Z".into()),
                ("2026-11-02T00:00:00Z".into(), "2026-11-09T00:00:00Z".into()),
                ("2026-11-09T00:00:00Z".into(), "2026-11-10T00:00:00Z".into()),
            ]
        );
        assert_eq!(
            edges("2026-11-15T00:00:00Z", "2027-01-02T00:00:00Z", Bucket::Month),
            [
                ("2026-11-15T00:00:00Z".into(), "2026-12-01T00:00:00Z".into()),
                ("2026-12-01T00:00:00Z".into(), "2027-01-01T00:00:00Z".into()),
                ("2027-01-01T00:00:00Z".into(), "2027-01-02T00:00:00Z".into()),
            ]
        );
        // A window on a boundary starts a whole bucket.
        assert_eq!(edges("2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z", Bucket::Week).len(), 1);
        let years = Window { since: t("2020-01-01T00:00:00Z"), until: t("2026-01-01T00:00:00Z") };
        assert!(buckets(years, Bucket::Day).unwrap_err().contains("bucket"));
        assert_eq!(buckets(years, Bucket::Month).unwrap().len(), 72);
    }
}
