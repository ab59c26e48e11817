//! `GET /api/v1/summary`: per group, closed count and duration distribution,
//! open count and open ages, rate per day, success and merge ratios.

use super::Window;
use crate::store::{Store, StoreError};
use futures_util::TryStreamExt;
use serde_json::{Map, Value, json};
use sqlx::Row;
use std::collections::BTreeMap;
use valuestream_core::stats::{Ages, Distribution, ratio};

/// The span fields a summary can group by; each is a column of `spans`.
pub const GROUP_KEYS: &[&str] = &["source", "kind", "repo", "project", "environment", "outcome"];

/// Which spans count: equality filters on the grouping columns.
#[derive(Clone, Debug, Default)]
pub struct SpanScope {
    pub source: Option<String>,
    pub kind: Option<String>,
    pub repo: Option<String>,
    pub project: Option<String>,
    pub environment: Option<String>,
}

impl SpanScope {
    /// ` AND column = $n` clauses from placeholder `first` on, and their values.
    fn clauses(&self, first: usize) -> (String, Vec<String>) {
        let mut sql = String::new();
        let mut values = Vec::new();
        for (column, value) in [
            ("source", &self.source),
            ("kind", &self.kind),
            ("repo", &self.repo),
            ("project", &self.project),
            ("environment", &self.environment),
        ] {
            if let Some(value) = value {
                sql.push_str(&format!(" AND {column} = ${}", first + values.len()));
                values.push(value.clone());
            }
        }
        (sql, values)
    }
}

#[derive(Default)]
struct Group {
    closed: u64,
    durations: Distribution,
    success: u64,
    failure: u64,
    pr_closed: u64,
    merged: u64,
    open: u64,
    ages: Ages,
}

type Key = Vec<Option<String>>;

/// The summary object of contract.md for `window`, grouped by `group_by`
/// (names from [`GROUP_KEYS`]).
pub async fn summary(
    store: &Store,
    window: Window,
    group_by: &[String],
    scope: &SpanScope,
) -> Result<Value, StoreError> {
    let columns: Vec<&str> = group_by.iter().map(String::as_str).filter(|g| GROUP_KEYS.contains(g)).collect();
    let select_groups: String = columns.iter().map(|c| format!("{c}, ")).collect();
    let order_groups: String = columns.iter().map(|c| format!("{c}, ")).collect();
    let (filter_sql, filter_values) = scope.clauses(3);
    let mut groups: BTreeMap<Key, Group> = BTreeMap::new();

    // Closed spans: durations arrive sorted within each group.
    let sql = format!(
        "SELECT {select_groups}kind, outcome, end_ns - start_ns AS d FROM spans
         WHERE end_ns IS NOT NULL AND end_ns >= $1 AND end_ns < $2{filter_sql}
         ORDER BY {order_groups}d"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(window.since.nanos()).bind(window.until.nanos());
    for value in &filter_values {
        query = query.bind(value.clone());
    }
    let mut rows = query.fetch(store.pool());
    let mut current: Option<(Key, Vec<f64>)> = None;
    while let Some(row) = rows.try_next().await? {
        let key: Key = (0..columns.len()).map(|i| row.try_get::<Option<String>, _>(i)).collect::<Result<_, _>>()?;
        let kind: String = row.try_get(columns.len())?;
        let outcome: Option<String> = row.try_get(columns.len() + 1)?;
        let seconds = row.try_get::<i64, _>(columns.len() + 2)? as f64 / 1e9;
        if current.as_ref().is_none_or(|(k, _)| *k != key) {
            if let Some((done, values)) = current.take() {
                groups.entry(done).or_default().durations = Distribution::of_sorted(&values);
            }
            current = Some((key.clone(), Vec::new()));
        }
        current.as_mut().expect("set above").1.push(seconds);
        let group = groups.entry(key).or_default();
        group.closed += 1;
        match (kind.as_str(), outcome.as_deref()) {
            ("build" | "job" | "deploy", Some("success")) => group.success += 1,
            ("build" | "job" | "deploy", Some("failure")) => group.failure += 1,
            ("pull_request", Some(outcome)) => {
                group.pr_closed += 1;
                if outcome == "merged" {
                    group.merged += 1;
                }
            }
            _ => {}
        }
    }
    drop(rows);
    if let Some((done, values)) = current.take() {
        groups.entry(done).or_default().durations = Distribution::of_sorted(&values);
    }

    // Open at `until`: started before it and not ended by it; ages ascending.
    let (filter_sql, filter_values) = scope.clauses(2);
    // Two range scans (still open; ended after `until`) instead of one
    // condition with OR, which makes the database read every span.
    let select_open: String = columns.iter().map(|c| format!("{c}, ")).collect();
    let sql = format!(
        "SELECT * FROM (
            SELECT {select_open}start_ns FROM spans WHERE end_ns IS NULL AND start_ns < $1{filter_sql}
            UNION ALL
            SELECT {select_open}start_ns FROM spans WHERE end_ns >= $1 AND start_ns < $1{filter_sql}
         ) AS open_spans
         ORDER BY {order_groups}start_ns DESC"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(window.until.nanos());
    for value in &filter_values {
        query = query.bind(value.clone());
    }
    let mut rows = query.fetch(store.pool());
    let mut current: Option<(Key, Vec<f64>)> = None;
    while let Some(row) = rows.try_next().await? {
        let key: Key = (0..columns.len()).map(|i| row.try_get::<Option<String>, _>(i)).collect::<Result<_, _>>()?;
        let age = (window.until.nanos() - row.try_get::<i64, _>(columns.len())?) as f64 / 1e9;
        if current.as_ref().is_none_or(|(k, _)| *k != key) {
            if let Some((done, values)) = current.take() {
                groups.entry(done).or_default().ages = Ages::of_sorted(&values);
            }
            current = Some((key.clone(), Vec::new()));
        }
        current.as_mut().expect("set above").1.push(age);
        groups.entry(key).or_default().open += 1;
    }
    drop(rows);
    if let Some((done, values)) = current.take() {
        groups.entry(done).or_default().ages = Ages::of_sorted(&values);
    }

    let days = window.days();
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(key, group)| {
            let mut object = Map::new();
            for (column, value) in columns.iter().zip(key) {
                object.insert(column.to_string(), value.map_or(Value::Null, Value::String));
            }
            object.insert("closed".into(), json!(group.closed));
            object.insert("open".into(), json!(group.open));
            object.insert("per_day".into(), json!(group.closed as f64 / days));
            object.insert("success_ratio".into(), json!(ratio(group.success, group.success + group.failure)));
            object.insert("merge_ratio".into(), json!(ratio(group.merged, group.pr_closed)));
            object.insert("duration_seconds".into(), json!(group.durations));
            object.insert("open_age_seconds".into(), json!(group.ages));
            Value::Object(object)
        })
        .collect();
    Ok(json!({"since": window.since, "until": window.until, "groups": groups}))
}
