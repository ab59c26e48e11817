//! `GET /api/v1/summary`: per group, closed count and duration distribution,
//! open count and open ages, rate per day, success and merge ratios.

use super::{Window, aggregated};
use crate::store::{Store, StoreError, names};
use crate::telemetry::ORIGINAL_DURATION_BUCKETS_MS;
use futures_util::TryStreamExt;
use serde_json::{Map, Value, json};
use sqlx::Row;
use std::collections::BTreeMap;
use valuestream_core::stats::{Ages, Distribution, ratio};
use valuestream_core::vocab::{kind as kinds, outcome as outcomes};

/// The span fields a summary can group by; each is a column of `spans`.
pub const GROUP_KEYS: &[&str] = &["source", "kind", "repo", "project", "environment", "outcome"];

/// Which spans count: equality filters on the grouping columns. Source,
/// kind, repo and project match whatever the case (as GitHub treats names);
/// an environment matches exactly, as the production names do.
#[derive(Clone, Debug, Default)]
pub struct SpanScope {
    pub source: Option<String>,
    pub kind: Option<String>,
    pub repo: Option<String>,
    pub project: Option<String>,
    pub environment: Option<String>,
}

impl SpanScope {
    /// ` AND lower(g.column) IN (lower($n), …)` clauses from placeholder `first` on,
    /// and their values. `span_groups` is small (one row per distinct group)
    /// and read whole, so lower() costs no index.
    fn clauses(&self, first: usize) -> (String, Vec<String>) {
        let mut sql = String::new();
        let mut values = Vec::new();
        for (column, value, any_case) in [
            ("source", &self.source, true),
            ("kind", &self.kind, true),
            ("repo", &self.repo, true),
            ("project", &self.project, true),
            ("environment", &self.environment, false),
        ] {
            if let Some(value) = value {
                // Any of its comma-separated names (`repo=a/b,c/d`).
                let mut placeholders = Vec::new();
                for name in names(value) {
                    let n = first + values.len();
                    placeholders.push(if any_case { format!("lower(${n})") } else { format!("${n}") });
                    values.push(name.to_string());
                }
                let placeholders = placeholders.join(", ");
                if any_case {
                    sql.push_str(&format!(" AND lower(g.{column}) IN ({placeholders})"));
                } else {
                    sql.push_str(&format!(" AND g.{column} IN ({placeholders})"));
                }
            }
        }
        (sql, values)
    }
}

#[derive(Default)]
struct Group {
    /// Durations of closed spans, nanoseconds.
    durations: Vec<i64>,
    success: u64,
    failure: u64,
    pr_closed: u64,
    merged: u64,
    /// Ages of open spans at `until`, nanoseconds.
    ages: Vec<i64>,
}

type Key = Vec<Option<String>>;

/// Sorted seconds from nanoseconds.
fn sorted_seconds(mut nanos: Vec<i64>) -> Vec<f64> {
    nanos.sort_unstable();
    nanos.into_iter().map(|n| n as f64 / 1e9).collect()
}

/// The summary object of docs/api.md for `window`, grouped by `group_by`
/// (names from [`GROUP_KEYS`]).
///
/// One query: for each stored metrics group (`span_groups`: one per distinct
/// source, kind, repo, project, environment and outcome), the database
/// gathers the durations of its spans closed in the window and the ages of
/// its spans open at `until` (not expired by then: an expired span has no
/// end, and counts as neither) from the `spans_by_group` index, as one string
/// each. Only those numbers leave the database — a few thousand rows however
/// many spans — and Rust merges the groups asked for and sorts each for its
/// percentiles.
pub async fn summary(
    store: &Store,
    window: Window,
    group_by: &[String],
    scope: &SpanScope,
) -> Result<Value, StoreError> {
    summarize(store, window, group_by, scope, false).await
}

/// [`summary`] with each group's `histogram` (`histogram=true`): how many of
/// its closed spans took at most each bucket's upper bound, cumulative as
/// Prometheus counts (the buckets of `webhooks_event_duration`, 30 min to
/// 30 days, in seconds); `count` is all of them (`+Inf`).
pub async fn summary_with_histogram(
    store: &Store,
    window: Window,
    group_by: &[String],
    scope: &SpanScope,
) -> Result<Value, StoreError> {
    summarize(store, window, group_by, scope, true).await
}

/// The histogram of sorted durations (seconds) in `le` buckets.
fn histogram(sorted: &[f64]) -> Value {
    let le: Vec<f64> = ORIGINAL_DURATION_BUCKETS_MS.iter().map(|ms| ms / 1000.0).collect();
    cumulative(sorted, le)
}

/// The upper bounds of the open-age histogram, in seconds: 1 day, 3 days,
/// 1 week, 2 weeks, 4 weeks (the Open work page's aging chart).
const AGE_BOUNDS_SECONDS: [f64; 5] = [86_400.0, 259_200.0, 604_800.0, 1_209_600.0, 2_419_200.0];

/// How many of `sorted` are at most each bound, cumulative as Prometheus counts.
fn cumulative(sorted: &[f64], le: Vec<f64>) -> Value {
    let counts: Vec<usize> = le.iter().map(|bound| sorted.partition_point(|d| d <= bound)).collect();
    json!({"le_seconds": le, "counts": counts, "count": sorted.len()})
}

async fn summarize(
    store: &Store,
    window: Window,
    group_by: &[String],
    scope: &SpanScope,
    with_histogram: bool,
) -> Result<Value, StoreError> {
    let columns = grouping(group_by);
    let (filter_sql, filter_values) = scope.clauses(3);
    let sql = format!(
        "SELECT g.source, g.kind, g.repo, g.project, g.environment, g.outcome,
            (SELECT string_agg(CAST(s.end_ns - s.start_ns AS TEXT), ',') FROM spans s
              WHERE s.group_id = g.id AND s.end_ns >= $1 AND s.end_ns < $2) AS closed_durations,
            (SELECT string_agg(CAST($2 - s.start_ns AS TEXT), ',') FROM spans s
              WHERE s.group_id = g.id AND s.end_ns IS NULL AND s.start_ns < $2
                AND (s.expired_ns IS NULL OR s.expired_ns > $2)) AS open_ages,
            (SELECT string_agg(CAST($2 - s.start_ns AS TEXT), ',') FROM spans s
              WHERE s.group_id = g.id AND s.end_ns >= $2 AND s.start_ns < $2) AS ended_later_ages
         FROM span_groups g WHERE 1 = 1{filter_sql}"
    );
    let query = windowed(sql, window, &filter_values);
    let mut groups = Vec::new();
    let mut rows = query.fetch(store.pool());
    while let Some(row) = rows.try_next().await? {
        let durations = aggregated(row.try_get("closed_durations")?)?;
        let mut ages = aggregated(row.try_get("open_ages")?)?;
        ages.extend(aggregated(row.try_get("ended_later_ages")?)?);
        groups.push((stored_group(&row)?, durations, ages));
    }
    drop(rows);
    let groups = groups
        .iter_mut()
        .map(|(group, durations, ages)| (&*group, std::mem::take(durations), std::mem::take(ages)))
        .collect();
    let groups = fold_groups(groups, &columns, window.days(), with_histogram);
    Ok(json!({"since": window.since, "until": window.until, "groups": groups}))
}

/// [`summary`] (with each group's `histogram` when asked) and `"series"`:
/// for each of `buckets`, `{"start", "end", "groups"}` exactly as a summary
/// of that bucket alone would give its groups (`bucket=`).
///
/// Still one query: for each stored group, the end and duration of each
/// span closed in the window, and the start, end and expiry of each span
/// started before `until` and not ended by then; Rust sorts them into the
/// buckets (a span open at a bucket's end is one of those, or one that
/// closed later in the window).
pub async fn summary_series(
    store: &Store,
    window: Window,
    group_by: &[String],
    scope: &SpanScope,
    with_histogram: bool,
    buckets: &[Window],
) -> Result<Value, StoreError> {
    let columns = grouping(group_by);
    let (filter_sql, filter_values) = scope.clauses(3);
    let sql = format!(
        "SELECT g.source, g.kind, g.repo, g.project, g.environment, g.outcome,
            (SELECT string_agg(CAST(s.end_ns AS TEXT) || ':' || CAST(s.end_ns - s.start_ns AS TEXT), ',')
               FROM spans s WHERE s.group_id = g.id AND s.end_ns >= $1 AND s.end_ns < $2) AS closed,
            (SELECT string_agg(CAST(s.start_ns AS TEXT) || ':' || COALESCE(CAST(s.end_ns AS TEXT), '') || ':'
                               || COALESCE(CAST(s.expired_ns AS TEXT), ''), ',')
               FROM spans s WHERE s.group_id = g.id AND s.start_ns < $2
                AND (s.end_ns IS NULL OR s.end_ns >= $2)
                AND (s.end_ns IS NOT NULL OR s.expired_ns IS NULL OR s.expired_ns > $1)) AS spanning
         FROM span_groups g WHERE 1 = 1{filter_sql}"
    );
    let query = windowed(sql, window, &filter_values);
    let mut sweeps = Vec::new();
    let mut rows = query.fetch(store.pool());
    while let Some(row) = rows.try_next().await? {
        let closed = fields(row.try_get("closed")?)?;
        let spanning = fields(row.try_get("spanning")?)?;
        sweeps.push(Sweep::new(stored_group(&row)?, closed, spanning)?);
    }
    drop(rows);
    let total: Vec<_> = sweeps.iter().map(|sweep| sweep.whole(window)).collect();
    let groups = fold_groups(total, &columns, window.days(), with_histogram);
    // Buckets in order: each group's spans are swept once, not once per bucket.
    let series: Vec<Value> = buckets
        .iter()
        .map(|bucket| {
            let groups: Vec<_> = sweeps.iter_mut().map(|sweep| sweep.next_bucket(*bucket)).collect();
            json!({"start": bucket.since, "end": bucket.until,
                   "groups": fold_groups(groups, &columns, bucket.days(), with_histogram)})
        })
        .collect();
    Ok(json!({"since": window.since, "until": window.until, "groups": groups, "series": series}))
}

/// A span that may be open at the end of a bucket (nanoseconds).
struct Spanning {
    start: i64,
    end: Option<i64>,
    expired: Option<i64>,
}

impl Spanning {
    /// Whether it may still count as open at `until` or later: not ended
    /// before it, and, while it has no end, not expired by then. Once false,
    /// false for every later `until`.
    fn alive_at(&self, until: i64) -> bool {
        match self.end {
            None => self.expired.is_none_or(|e| e > until),
            Some(end) => end >= until,
        }
    }
}

/// One stored group's spans, sorted for a sweep through the buckets in order.
struct Sweep {
    group: StoredGroup,
    /// (end, duration) of the spans closed in the window, by end.
    closed: Vec<(i64, i64)>,
    /// The first of `closed` not yet counted in a bucket: buckets come in
    /// order, so a cursor walks `closed` once (a binary search per bucket
    /// and group missed the cache on every step; it was most of a year by day).
    closed_next: usize,
    /// By start.
    spanning: Vec<Spanning>,
    /// The next of `spanning` not yet started at the last bucket's end.
    next: usize,
    /// Those started and still alive at the last bucket's end.
    alive: Vec<usize>,
}

impl Sweep {
    fn new(
        group: StoredGroup,
        closed: Vec<Vec<Option<i64>>>,
        spanning: Vec<Vec<Option<i64>>>,
    ) -> Result<Sweep, StoreError> {
        let field = |f: &[Option<i64>], i: usize| f.get(i).copied().flatten();
        let bad = || StoreError::Corrupt("an aggregated span misses its start or end".into());
        let mut closed: Vec<(i64, i64)> =
            closed.iter().map(|f| Some((field(f, 0)?, field(f, 1)?))).collect::<Option<_>>().ok_or_else(bad)?;
        closed.sort_unstable();
        let mut spanning: Vec<Spanning> = spanning
            .iter()
            .map(|f| Some(Spanning { start: field(f, 0)?, end: field(f, 1), expired: field(f, 2) }))
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        // Those closed in the window were open at the ends of the buckets they span.
        spanning.extend(closed.iter().map(|&(end, duration)| Spanning {
            start: end.saturating_sub(duration),
            end: Some(end),
            expired: None,
        }));
        spanning.sort_unstable_by_key(|s| s.start);
        Ok(Sweep { group, closed, closed_next: 0, spanning, next: 0, alive: Vec::new() })
    }

    /// Durations closed in `window` and ages at its end, for the whole window.
    fn whole(&self, window: Window) -> (&StoredGroup, Vec<i64>, Vec<i64>) {
        let (since, until) = (window.since.nanos(), window.until.nanos());
        let durations = self.closed.iter().filter(|(end, _)| (since..until).contains(end)).map(|(_, d)| *d).collect();
        let ages = self
            .spanning
            .iter()
            .filter(|s| s.start < until && s.alive_at(until))
            .map(|s| until.saturating_sub(s.start))
            .collect();
        (&self.group, durations, ages)
    }

    /// The same for `bucket`, which must come after the buckets asked before.
    fn next_bucket(&mut self, bucket: Window) -> (&StoredGroup, Vec<i64>, Vec<i64>) {
        let (since, until) = (bucket.since.nanos(), bucket.until.nanos());
        let mut from = self.closed_next;
        while from < self.closed.len() && self.closed[from].0 < since {
            from += 1;
        }
        let mut to = from;
        while to < self.closed.len() && self.closed[to].0 < until {
            to += 1;
        }
        self.closed_next = to;
        let durations = self.closed[from..to].iter().map(|(_, d)| *d).collect();
        while self.next < self.spanning.len() && self.spanning[self.next].start < until {
            self.alive.push(self.next);
            self.next += 1;
        }
        let spanning = &self.spanning;
        self.alive.retain(|&i| spanning[i].alive_at(until));
        let ages = self.alive.iter().map(|&i| until.saturating_sub(spanning[i].start)).collect();
        (&self.group, durations, ages)
    }
}

/// `sql` with `$1` and `$2` the window's bounds and the scope's values after them.
fn windowed(
    sql: String,
    window: Window,
    filter_values: &[String],
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(window.since.nanos()).bind(window.until.nanos());
    for value in filter_values {
        query = query.bind(value.clone());
    }
    query
}

/// The grouping columns asked for, in the order asked, as [`GROUP_KEYS`] names them.
fn grouping(group_by: &[String]) -> Vec<&'static str> {
    group_by.iter().filter_map(|g| GROUP_KEYS.iter().copied().find(|key| key == g)).collect()
}

/// A stored metrics group: its six columns, named as [`GROUP_KEYS`] names them.
type StoredGroup = BTreeMap<&'static str, Option<String>>;

fn stored_group(row: &sqlx::any::AnyRow) -> Result<StoredGroup, StoreError> {
    GROUP_KEYS.iter().map(|column| Ok((*column, row.try_get::<Option<String>, _>(*column)?))).collect()
}

/// `a:b:c,d:e:f` as numbers, an empty field as `None`.
fn fields(text: Option<String>) -> Result<Vec<Vec<Option<i64>>>, StoreError> {
    let Some(text) = text else { return Ok(Vec::new()) };
    text.split(',')
        .map(|item| {
            item.split(':')
                .map(|n| match n {
                    "" => Ok(None),
                    n => n
                        .parse::<i64>()
                        .map(Some)
                        .map_err(|_| StoreError::Corrupt(format!("aggregated value {n:?} is not an integer"))),
                })
                .collect()
        })
        .collect()
}

/// The summary's `groups`: stored groups with their closed durations and
/// open ages (nanoseconds), merged by the `columns` asked for. A group with
/// neither is left out.
fn fold_groups(
    stored: Vec<(&StoredGroup, Vec<i64>, Vec<i64>)>,
    columns: &[&str],
    days: f64,
    with_histogram: bool,
) -> Vec<Value> {
    let mut groups: BTreeMap<Key, Group> = BTreeMap::new();
    for (row, durations, ages) in stored {
        if durations.is_empty() && ages.is_empty() {
            continue;
        }
        let key: Key = columns.iter().map(|column| row.get(column).cloned().flatten()).collect();
        let kind = row.get("kind").cloned().flatten();
        let kind = kind.as_deref().unwrap_or_default();
        let outcome = row.get("outcome").cloned().flatten();
        let closed = durations.len() as u64;
        let group = groups.entry(key).or_default();
        // Success ratios for builds, jobs and deploys; merge ratio for pull requests.
        let has_success_ratio = [kinds::BUILD, kinds::JOB, kinds::DEPLOY].contains(&kind);
        match outcome.as_deref() {
            Some(outcomes::SUCCESS) if has_success_ratio => group.success += closed,
            Some(outcomes::FAILURE) if has_success_ratio => group.failure += closed,
            Some(outcome) if kind == kinds::PULL_REQUEST => {
                group.pr_closed += closed;
                if outcome == outcomes::MERGED {
                    group.merged += closed;
                }
            }
            _ => {}
        }
        group.durations.extend(durations);
        group.ages.extend(ages);
    }
    groups
        .into_iter()
        .map(|(key, group)| {
            let mut object = Map::new();
            for (column, value) in columns.iter().zip(key) {
                object.insert(column.to_string(), value.map_or(Value::Null, Value::String));
            }
            let closed = group.durations.len() as u64;
            object.insert("closed".into(), json!(closed));
            object.insert("open".into(), json!(group.ages.len()));
            object.insert("per_day".into(), json!(closed as f64 / days));
            object.insert("success_ratio".into(), json!(ratio(group.success, group.success + group.failure)));
            object.insert("merge_ratio".into(), json!(ratio(group.merged, group.pr_closed)));
            let durations = sorted_seconds(group.durations);
            object.insert("duration_seconds".into(), json!(Distribution::of_sorted(&durations)));
            if with_histogram {
                object.insert("histogram".into(), histogram(&durations));
            }
            let ages = sorted_seconds(group.ages);
            if with_histogram {
                object.insert("open_age_histogram".into(), cumulative(&ages, AGE_BOUNDS_SECONDS.to_vec()));
            }
            object.insert("open_age_seconds".into(), json!(Ages::of_sorted(&ages)));
            Value::Object(object)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_at_most_each_bound_cumulatively_as_prometheus_does() {
        // 30 min exactly is in the first bucket (le = 1800); 31 min is not.
        let h = histogram(&[60.0, 1800.0, 1860.0, 90_000.0, 5e6]);
        assert_eq!(h["le_seconds"][0], 1800.0);
        assert_eq!(h["le_seconds"][10], 2_592_000.0);
        assert_eq!(h["counts"], json!([2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4]));
        assert_eq!(h["count"], 5, "the +Inf bucket");
    }
}
