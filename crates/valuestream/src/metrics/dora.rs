//! `GET /api/v1/dora`: the four keys plus recovery time and rework rate,
//! exactly as metrics.md defines them.
//!
//! The database does the counting: one statement aggregates the window's
//! production deploys (frequency, failures, recovery, rework, with incidents
//! attributed to deploys inside it), one the lead times of the change sets
//! the writer stored (`store/changes.rs`), one the incidents' restore times.
//! Each returns a single row (with `bucket=`, one per group: see
//! [`dora_series`]); lists of durations come back as `string_agg` strings,
//! which Rust sorts for medians.

use super::{PRODUCTION, Window, aggregated};
use crate::store::{Store, StoreError, names};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::BTreeSet;
use valuestream_core::stats::{
    Level, change_failure_level, deployment_frequency_level, lead_time_level, percentile, ratio, restore_level,
};
use valuestream_core::vocab::kind::{DEPLOY, INCIDENT};
use valuestream_core::vocab::outcome::{FAILURE, SUCCESS};

/// Which deploys count.
#[derive(Clone, Debug, Default)]
pub struct DoraFilter {
    pub repo: Option<String>,
    pub project: Option<String>,
    /// An environment (or several, comma-separated); by default the
    /// production names.
    pub environment: Option<String>,
    /// The production environment names (configurable; empty means the
    /// defaults `production`, `prod`, `live`).
    pub production: Vec<String>,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    percentile(&values, 0.5)
}

fn p90(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    percentile(&values, 0.9)
}

/// Seconds from `column`, a `string_agg` of integer nanoseconds (NULL: none).
fn seconds(row: &AnyRow, column: &str) -> Result<Vec<f64>, StoreError> {
    Ok(aggregated(row.try_get(column)?)?.into_iter().map(|n| n as f64 / 1e9).collect())
}

fn count(row: &AnyRow, column: &str) -> Result<u64, StoreError> {
    Ok(row.try_get::<Option<i64>, _>(column)?.unwrap_or(0).max(0) as u64)
}

/// The SQL shared by DORA's statements: which spans are production deploys
/// and incidents, with their placeholders. `$1` and `$2` are the window;
/// the scope's values follow, numbered once here and written into each
/// statement under the alias it reads deploys or incidents by.
pub(super) struct Scope {
    /// The placeholders of the environment names.
    environments: Vec<String>,
    /// `(column, "lower($n), …")` of the repository and project filters,
    /// each any of its comma-separated names.
    names: Vec<(&'static str, String)>,
    values: Vec<String>,
}

impl Scope {
    pub(super) fn new(filter: &DoraFilter) -> Scope {
        let mut values: Vec<String> = match &filter.environment {
            Some(environment) => names(environment).into_iter().map(String::from).collect(),
            None if filter.production.is_empty() => PRODUCTION.iter().map(|s| s.to_string()).collect(),
            None => filter.production.clone(),
        };
        let environments = (0..values.len()).map(|i| format!("${}", i + 3)).collect();
        let mut named = Vec::new();
        for (column, value) in [("repo", &filter.repo), ("project", &filter.project)] {
            if let Some(value) = value {
                let mut placeholders = Vec::new();
                for name in names(value) {
                    values.push(name.to_string());
                    placeholders.push(format!("lower(${})", values.len() + 2));
                }
                named.push((column, placeholders.join(", ")));
            }
        }
        Scope { environments, names: named, values }
    }

    /// ` AND {alias}.environment IN (…)` and the name filters, for deploys
    /// read as `alias`.
    pub(super) fn deploys(&self, alias: &str) -> String {
        format!(" AND {alias}.environment IN ({}){}", self.environments.join(", "), self.named(alias))
    }

    /// The repository and project filters for incidents read as `alias`.
    pub(super) fn incidents(&self, alias: &str) -> String {
        self.named(alias)
    }

    /// Repository and project match whatever the case, as GitHub treats
    /// names: the name becomes the spellings stored for it, found in the
    /// small `span_groups` table, so the deploy and incident indexes that
    /// lead with `repo` still serve a one-repository query.
    fn named(&self, alias: &str) -> String {
        self.names
            .iter()
            .map(|(column, p)| {
                format!(
                    " AND {alias}.{column} IN (SELECT g.{column} FROM span_groups g WHERE lower(g.{column}) IN ({p}))"
                )
            })
            .collect()
    }

    fn query(&self, window: Window, sql: String) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(window.since.nanos()).bind(window.until.nanos());
        for value in &self.values {
            query = query.bind(value.clone());
        }
        query
    }

    pub(super) async fn fetch_one(&self, store: &Store, window: Window, sql: String) -> Result<AnyRow, StoreError> {
        Ok(self.query(window, sql).fetch_one(store.pool()).await?)
    }

    pub(super) async fn fetch_all(
        &self,
        store: &Store,
        window: Window,
        sql: String,
    ) -> Result<Vec<AnyRow>, StoreError> {
        Ok(self.query(window, sql).fetch_all(store.pool()).await?)
    }
}

/// What one statement of DORA's gathered for one window: counts and lists of
/// seconds, before any median.
#[derive(Default)]
struct Deploys {
    successes: u64,
    deployments: u64,
    deploy_days: u64,
    unmatched: u64,
    failed: u64,
    rework: u64,
    failures: u64,
    recoveries: Vec<f64>,
}

impl Deploys {
    /// Adds a group of the bucketed statement.
    fn add(&mut self, group: &Deploys) {
        self.successes += group.successes;
        self.deployments += group.deployments;
        self.deploy_days += group.deploy_days;
        self.unmatched += group.unmatched;
        self.failed += group.failed;
        self.rework += group.rework;
        self.failures += group.failures;
        self.recoveries.extend(&group.recoveries);
    }
}

#[derive(Default)]
struct Leads {
    leads: Vec<f64>,
    pickup: Vec<f64>,
    review: Vec<f64>,
    deploy: Vec<f64>,
    coding: Vec<f64>,
}

impl Leads {
    /// Adds a group of the bucketed statement.
    fn add(&mut self, group: &Leads) {
        self.leads.extend(&group.leads);
        self.pickup.extend(&group.pickup);
        self.review.extend(&group.review);
        self.deploy.extend(&group.deploy);
        self.coding.extend(&group.coding);
    }
}

/// The SELECT lists and conditions of DORA's three statements. Each reads
/// `$1`/`$2` (the window); with buckets, each also starts with the bucket of
/// the span's end (see [`bucket_of`]) and groups by it, the deploys by it and
/// by their UTC day, so any number of buckets is still one statement each.
struct Statements {
    deploys: String,
    leads: String,
    restores: String,
}

/// The index in `buckets` of the bucket holding `column`, as SQL: NULL in
/// none. A binary search over the buckets' starts written as nested CASEs,
/// so each row costs about log2(buckets) comparisons, where a join with a
/// `VALUES` list of the buckets compared it with every one. The edges are
/// the buckets' own, `since <= t < until`, so a row lands where the
/// unbucketed statements over that bucket's window count it. The buckets
/// are in order and do not overlap, as [`super::buckets`] makes them; their
/// edges are integers, written into the SQL (no quoting).
fn bucket_of(column: &str, buckets: &[Window], first: usize) -> String {
    match buckets {
        [] => "NULL".to_string(),
        [only] => format!(
            "CASE WHEN {column} >= {} AND {column} < {} THEN {first} END",
            only.since.nanos(),
            only.until.nanos()
        ),
        _ => {
            let half = buckets.len() / 2;
            format!(
                "CASE WHEN {column} < {} THEN {} ELSE {} END",
                buckets[half].since.nanos(),
                bucket_of(column, &buckets[..half], first),
                bucket_of(column, &buckets[half..], first + half),
            )
        }
    }
}

/// The deploys incidents are attributed to (the writer derives the causes:
/// store/changes.rs), as a SELECT of `deploy_key`.
pub(super) fn caused(scope: &Scope) -> String {
    format!(
        "SELECT c.deploy_key FROM incident_causes c JOIN spans i ON i.key = c.incident_key WHERE 1 = 1{}",
        scope.incidents("i")
    )
}

/// Whether deploy `d` is rework (metrics.md): an incident among the deploy's
/// ancestors or those of a pull request it ships, or a revert or hotfix among
/// its changes. Being the cause of an incident is a failure, not rework. The
/// writer copies each pull request's rework into the change sets
/// (`pr_rework`), so this reads one covering index.
pub(super) const REWORK: &str = "(d.after_incident = 1
    OR EXISTS (SELECT 1 FROM change_set_commits cc
               WHERE cc.deploy_key = d.key AND (cc.revert = 1 OR cc.pr_rework = 1)))";

/// `FROM … WHERE …` of the successful deploys `n` that recover failed deploy
/// `d`: later, same repository, source and environment.
pub(super) fn next_success(scope: &Scope) -> String {
    format!(
        "FROM spans n
         WHERE n.kind = '{DEPLOY}' AND n.repo = d.repo AND n.outcome = '{SUCCESS}' AND n.end_ns > d.end_ns
           AND n.source = d.source AND n.environment = d.environment{}",
        scope.deploys("n"),
    )
}

impl Statements {
    fn new(scope: &Scope, buckets: Option<&[Window]>) -> Statements {
        let caused = caused(scope);
        let rework = REWORK;
        let next_success = format!("SELECT MIN(n.end_ns) {}", next_success(scope));
        // A successful deploy's UTC day, for deployment days.
        let day = format!("CASE WHEN d.outcome = '{SUCCESS}' THEN d.end_ns / 86400000000000 END");
        // Bucketed: the bucket's index first (and, for deploys, the day), one
        // row per group that has any.
        let index = |alias: &str| match buckets {
            Some(buckets) => {
                format!("CAST(({}) AS BIGINT) AS bucket, ", bucket_of(&format!("{alias}.end_ns"), buckets, 0))
            }
            None => String::new(),
        };
        let (deploy_day, deploy_group, group) = match buckets {
            Some(_) => (format!("{day} AS deploy_day, "), " GROUP BY 1, 2", " GROUP BY 1"),
            None => (String::new(), "", ""),
        };
        let deploys = format!(
            "WITH caused AS ({caused})
             SELECT {}{deploy_day}
                CAST(COALESCE(SUM(CASE WHEN d.outcome = '{SUCCESS}' THEN 1 ELSE 0 END), 0) AS BIGINT) AS successes,
                COUNT(*) AS deployments,
                COUNT(DISTINCT {day}) AS deploy_days,
                CAST(COALESCE(SUM(CASE WHEN d.outcome = '{SUCCESS}' AND c.deploy_key IS NULL THEN 1 ELSE 0 END), 0)
                     AS BIGINT) AS unmatched,
                CAST(COALESCE(SUM(CASE WHEN d.outcome = '{FAILURE}' OR d.key IN (SELECT deploy_key FROM caused)
                                       THEN 1 ELSE 0 END), 0) AS BIGINT) AS failed,
                CAST(COALESCE(SUM(CASE WHEN {rework} THEN 1 ELSE 0 END), 0) AS BIGINT) AS rework,
                CAST(COALESCE(SUM(CASE WHEN d.outcome = '{FAILURE}' THEN 1 ELSE 0 END), 0) AS BIGINT) AS failures,
                string_agg(CASE WHEN d.outcome = '{FAILURE}' THEN CAST(({next_success}) - d.end_ns AS TEXT) END, ',')
                    AS recovery_ns
             FROM spans d LEFT JOIN change_sets c ON c.deploy_key = d.key
             WHERE d.kind = '{DEPLOY}' AND d.end_ns >= $1 AND d.end_ns < $2
               AND d.outcome IN ('{SUCCESS}', '{FAILURE}'){}{deploy_group}",
            index("d"),
            scope.deploys("d"),
        );
        // Lead time for changes: each change of a successful deploy's change set;
        // one that came through a pull request is timed by the pull request's
        // first commit when pushes to its branch told, else by its creation; any
        // other by its commit.
        let leads = format!(
            "SELECT {}
                string_agg(CAST(d.end_ns - COALESCE(c.pr_first_commit_ns, c.pr_opened_ns, c.committed_at) AS TEXT), ',')
                    AS lead_ns,
                string_agg(CAST(c.pr_reviewed_ns - c.pr_opened_ns AS TEXT), ',') AS pickup_ns,
                string_agg(CAST(c.pr_merged_ns - c.pr_reviewed_ns AS TEXT), ',') AS review_ns,
                string_agg(CAST(d.end_ns - c.pr_merged_ns AS TEXT), ',') AS deploy_ns,
                string_agg(CAST(c.pr_opened_ns - c.pr_first_commit_ns AS TEXT), ',') AS coding_ns
             FROM spans d JOIN change_set_commits c ON c.deploy_key = d.key
             WHERE d.kind = '{DEPLOY}' AND d.outcome = '{SUCCESS}' AND d.end_ns >= $1 AND d.end_ns < $2{}{group}",
            index("d"),
            scope.deploys("d"),
        );
        // Time to restore service: incidents closed in the window, and how
        // many of them are attributed to no deploy (the coverage strip's).
        let restores = format!(
            "SELECT {}string_agg(CAST(i.end_ns - i.start_ns AS TEXT), ',') AS restore_ns,
                SUM(CASE WHEN NOT EXISTS (SELECT 1 FROM incident_causes c WHERE c.incident_key = i.key)
                    THEN 1 ELSE 0 END) AS unattributed
             FROM spans i
             WHERE i.kind = '{INCIDENT}' AND i.end_ns >= $1 AND i.end_ns < $2{}{group}",
            index("i"),
            scope.incidents("i"),
        );
        Statements { deploys, leads, restores }
    }
}

/// Reads a row of the deploys statement, by the names it gives its columns.
fn deploys_of(row: &AnyRow) -> Result<Deploys, StoreError> {
    Ok(Deploys {
        successes: count(row, "successes")?,
        deployments: count(row, "deployments")?,
        deploy_days: count(row, "deploy_days")?,
        unmatched: count(row, "unmatched")?,
        failed: count(row, "failed")?,
        rework: count(row, "rework")?,
        failures: count(row, "failures")?,
        recoveries: seconds(row, "recovery_ns")?,
    })
}

/// What the restores statement gathers for a window or a bucket.
#[derive(Default)]
struct Restores {
    /// Seconds from opened to closed, of each incident closed.
    durations: Vec<f64>,
    /// Incidents closed that are attributed to no deploy.
    unattributed: u64,
}

impl Restores {
    fn add(&mut self, other: Restores) {
        self.durations.extend(other.durations);
        self.unattributed += other.unattributed;
    }
}

/// Reads a row of the restores statement, by the names it gives its columns.
fn restores_of(row: &AnyRow) -> Result<Restores, StoreError> {
    Ok(Restores { durations: seconds(row, "restore_ns")?, unattributed: count(row, "unattributed")? })
}

/// Reads a row of the leads statement, by the names it gives its columns.
fn leads_of(row: &AnyRow) -> Result<Leads, StoreError> {
    Ok(Leads {
        leads: seconds(row, "lead_ns")?,
        pickup: seconds(row, "pickup_ns")?,
        review: seconds(row, "review_ns")?,
        deploy: seconds(row, "deploy_ns")?,
        coding: seconds(row, "coding_ns")?,
    })
}

/// The DORA object of docs/api.md.
pub async fn dora(store: &Store, window: Window, filter: &DoraFilter) -> Result<Value, StoreError> {
    let scope = Scope::new(filter);
    let sql = Statements::new(&scope, None);
    let deploys = deploys_of(&scope.fetch_one(store, window, sql.deploys).await?)?;
    let leads = leads_of(&scope.fetch_one(store, window, sql.leads).await?)?;
    let restores = restores_of(&scope.fetch_one(store, window, sql.restores).await?)?;
    Ok(keys(window, filter, deploys, leads, restores))
}

/// The DORA object of `window` with `"series"`: the same object for each of
/// `buckets` (consecutive windows inside it, see [`super::buckets`]).
///
/// Still three statements however many buckets: each computes the bucket of
/// a row's end in SQL and groups by it (deploys also by their UTC day), and
/// the groups add up to each bucket and to the whole window, so the totals
/// and the series come from one plan and each row is read once (not once
/// for its bucket and once more for the window). Adding up is exact: counts
/// add, lists of durations are joined (medians sort them), and deployment
/// days are the distinct days of the groups, which a bucket holds once each.
pub async fn dora_series(
    store: &Store,
    window: Window,
    filter: &DoraFilter,
    buckets: &[Window],
) -> Result<Value, StoreError> {
    let scope = Scope::new(filter);
    let sql = Statements::new(&scope, Some(buckets));
    // Slot 0 is the whole window, 1… the series; a group outside every
    // bucket (NULL) counts in the whole window only.
    let slots = buckets.len() + 1;
    let slot = |row: &AnyRow| -> Result<Option<usize>, StoreError> {
        Ok(row.try_get::<Option<i64>, _>("bucket")?.map(|i| i.max(0) as usize + 1).filter(|&i| i < slots))
    };
    let mut deploys: Vec<Deploys> = (0..slots).map(|_| Deploys::default()).collect();
    let mut days = BTreeSet::new();
    for row in scope.fetch_all(store, window, sql.deploys).await? {
        let group = deploys_of(&row)?;
        days.extend(row.try_get::<Option<i64>, _>("deploy_day")?);
        if let Some(i) = slot(&row)? {
            deploys[i].add(&group);
        }
        deploys[0].add(&group);
    }
    // A day split between buckets is still one day of the window.
    deploys[0].deploy_days = days.len() as u64;
    let mut leads: Vec<Leads> = (0..slots).map(|_| Leads::default()).collect();
    for row in scope.fetch_all(store, window, sql.leads).await? {
        let group = leads_of(&row)?;
        if let Some(i) = slot(&row)? {
            leads[i].add(&group);
        }
        leads[0].add(&group);
    }
    let mut restores: Vec<Restores> = (0..slots).map(|_| Restores::default()).collect();
    for row in scope.fetch_all(store, window, sql.restores).await? {
        if let Some(i) = slot(&row)? {
            restores[i].add(restores_of(&row)?);
        }
        restores[0].add(restores_of(&row)?);
    }
    let mut objects = deploys
        .into_iter()
        .zip(leads)
        .zip(restores)
        .zip(std::iter::once(&window).chain(buckets))
        .map(|(((d, l), r), w)| keys(*w, filter, d, l, r));
    let mut total = objects.next().expect("the whole window is bucket 0");
    let series: Vec<Value> = objects
        .map(|mut object| {
            // A bucket says where it starts and ends; the filters are the total's.
            let map = object.as_object_mut().expect("an object");
            let start = map.remove("since").unwrap_or(Value::Null);
            let end = map.remove("until").unwrap_or(Value::Null);
            map.remove("environment");
            map.remove("repo");
            let mut bucket = serde_json::Map::new();
            bucket.insert("start".into(), start);
            bucket.insert("end".into(), end);
            bucket.extend(std::mem::take(map));
            Value::Object(bucket)
        })
        .collect();
    total["series"] = Value::Array(series);
    Ok(total)
}

/// The DORA object of one window from what its statements gathered.
fn keys(window: Window, filter: &DoraFilter, deploys: Deploys, lead: Leads, restores: Restores) -> Value {
    let days = window.days();
    let Deploys { successes, deployments, deploy_days, unmatched, failed, rework, failures, recoveries } = deploys;
    let recovery_median = median(recoveries);
    let leads = lead.leads;
    let lead_median = median(leads.clone());
    let Restores { durations: restores, unattributed } = restores;
    let restore_count = restores.len();
    let restore_median = median(restores);

    let per_day = successes as f64 / days;
    let frequency_level = if successes == 0 { Level::None } else { deployment_frequency_level(per_day) };
    let failure_ratio = ratio(failed, deployments);
    json!({
        "since": window.since,
        "until": window.until,
        "environment": filter.environment.clone().unwrap_or_else(|| "production".to_string()),
        "repo": filter.repo,
        "deployment_frequency": {
            "deployments": successes,
            "per_day": per_day,
            "deployment_days_per_week": deploy_days as f64 / (days / 7.0),
            "level": frequency_level,
        },
        "lead_time_for_changes": {
            "changes": leads.len(),
            "median_seconds": lead_median,
            "p90_seconds": p90(leads),
            "unmatched_deploys": unmatched,
            "level": lead_time_level(lead_median),
            "breakdown": {
                // Known where pushes to the pull request's branch arrived.
                "coding": median(lead.coding),
                "pickup": median(lead.pickup),
                "review": median(lead.review),
                "deploy": median(lead.deploy),
            },
        },
        "change_failure_rate": {
            "deployments": deployments,
            "failed": failed,
            "ratio": failure_ratio,
            "level": change_failure_level(failure_ratio),
        },
        "time_to_restore": {
            "incidents": restore_count,
            "median_seconds": restore_median,
            "unattributed_incidents": unattributed,
            "level": restore_level(restore_median),
        },
        "failed_deployment_recovery_time": {
            "failures": failures,
            "median_seconds": recovery_median,
            "level": restore_level(recovery_median),
        },
        "deployment_rework_rate": {
            "deployments": deployments,
            "rework": rework,
            "ratio": ratio(rework, deployments),
        },
    })
}
