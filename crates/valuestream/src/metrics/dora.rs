//! `GET /api/v1/dora`: the four keys plus recovery time and rework rate,
//! exactly as metrics.md defines them.
//!
//! The database does the counting: one statement aggregates the window's
//! production deploys (frequency, failures, recovery, rework, with incidents
//! attributed to deploys inside it), one the lead times of the change sets
//! the writer stored (`store/changes.rs`), one the incidents' restore times.
//! Each returns a single row; lists of durations come back as `string_agg`
//! strings, which Rust sorts for medians.

use super::{PRODUCTION, Window, aggregated};
use crate::store::{Store, StoreError};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
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
    /// One environment; by default the production names.
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

/// Seconds from column `index`, a `string_agg` of integer nanoseconds (NULL: none).
fn seconds(row: &AnyRow, index: usize) -> Result<Vec<f64>, StoreError> {
    Ok(aggregated(row.try_get(index)?)?.into_iter().map(|n| n as f64 / 1e9).collect())
}

fn count(row: &AnyRow, index: usize) -> Result<u64, StoreError> {
    Ok(row.try_get::<Option<i64>, _>(index)?.unwrap_or(0).max(0) as u64)
}

/// The SQL shared by DORA's statements: which spans are production deploys
/// and incidents, with their placeholders. `$1` and `$2` are the window.
struct Scope {
    /// ` AND d.environment IN (…) AND d.repo = … AND d.project = …` (alias `d`).
    deploys: String,
    /// The same repository and project filters for incidents (alias `i`).
    incidents: String,
    values: Vec<String>,
}

impl Scope {
    fn new(filter: &DoraFilter) -> Scope {
        let environments: Vec<String> = match &filter.environment {
            Some(environment) => vec![environment.clone()],
            None if filter.production.is_empty() => PRODUCTION.iter().map(|s| s.to_string()).collect(),
            None => filter.production.clone(),
        };
        let mut values = environments;
        let list: Vec<String> = (0..values.len()).map(|i| format!("${}", i + 3)).collect();
        let mut deploys = format!(" AND d.environment IN ({})", list.join(", "));
        let mut incidents = String::new();
        // Repository and project match whatever the case, as GitHub treats
        // names: the name becomes the spellings stored for it, found in the
        // small `span_groups` table, so the deploy and incident indexes that
        // lead with `repo` still serve a one-repository query.
        for (column, value) in [("repo", &filter.repo), ("project", &filter.project)] {
            if let Some(value) = value {
                values.push(value.clone());
                let n = values.len() + 2;
                let spellings = format!("SELECT g.{column} FROM span_groups g WHERE lower(g.{column}) = lower(${n})");
                deploys.push_str(&format!(" AND d.{column} IN ({spellings})"));
                incidents.push_str(&format!(" AND i.{column} IN ({spellings})"));
            }
        }
        Scope { deploys, incidents, values }
    }

    /// The scope's conditions for deploys under another alias.
    fn deploys_as(&self, alias: &str) -> String {
        self.deploys.replace(" d.", &format!(" {alias}."))
    }

    async fn fetch_one(&self, store: &Store, window: Window, sql: String) -> Result<AnyRow, StoreError> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(window.since.nanos()).bind(window.until.nanos());
        for value in &self.values {
            query = query.bind(value.clone());
        }
        Ok(query.fetch_one(store.pool()).await?)
    }
}

/// The DORA object of docs/api.md.
pub async fn dora(store: &Store, window: Window, filter: &DoraFilter) -> Result<Value, StoreError> {
    let scope = Scope::new(filter);
    let days = window.days();

    // The deploys incidents are attributed to (the writer derives the causes:
    // store/changes.rs).
    let caused = format!(
        "SELECT c.deploy_key FROM incident_causes c JOIN spans i ON i.key = c.incident_key WHERE 1 = 1{}",
        scope.incidents,
    );
    // Rework (metrics.md): an incident among the deploy's ancestors or those
    // of a pull request it ships, or a revert or hotfix among its changes. Being
    // the cause of an incident is a failure, not rework.
    // The writer copies each pull request's rework into the change sets
    // (`pr_rework`), so this reads one covering index.
    let rework = "d.after_incident = 1
        OR EXISTS (SELECT 1 FROM change_set_commits cc
                   WHERE cc.deploy_key = d.key AND (cc.revert = 1 OR cc.pr_rework = 1))";
    let next_success = format!(
        "SELECT MIN(n.end_ns) FROM spans n
         WHERE n.kind = '{DEPLOY}' AND n.repo = d.repo AND n.outcome = '{SUCCESS}' AND n.end_ns > d.end_ns
           AND n.source = d.source AND n.environment = d.environment{}",
        scope.deploys_as("n"),
    );
    let deploys = scope
        .fetch_one(
            store,
            window,
            format!(
                "WITH caused AS ({caused})
                 SELECT
                    CAST(COALESCE(SUM(CASE WHEN d.outcome = '{SUCCESS}' THEN 1 ELSE 0 END), 0) AS BIGINT),
                    COUNT(*),
                    COUNT(DISTINCT CASE WHEN d.outcome = '{SUCCESS}' THEN d.end_ns / 86400000000000 END),
                    CAST(COALESCE(SUM(CASE WHEN d.outcome = '{SUCCESS}' AND c.deploy_key IS NULL THEN 1 ELSE 0 END), 0)
                         AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN d.outcome = '{FAILURE}' OR d.key IN (SELECT deploy_key FROM caused)
                                           THEN 1 ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN {rework} THEN 1 ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN d.outcome = '{FAILURE}' THEN 1 ELSE 0 END), 0) AS BIGINT),
                    string_agg(CASE WHEN d.outcome = '{FAILURE}' THEN CAST(({next_success}) - d.end_ns AS TEXT) END, ',')
                 FROM spans d LEFT JOIN change_sets c ON c.deploy_key = d.key
                 WHERE d.kind = '{DEPLOY}' AND d.end_ns >= $1 AND d.end_ns < $2
                   AND d.outcome IN ('{SUCCESS}', '{FAILURE}'){}",
                scope.deploys,
            ),
        )
        .await?;
    let successes = count(&deploys, 0)?;
    let deployments = count(&deploys, 1)?;
    let deploy_days = count(&deploys, 2)?;
    let unmatched = count(&deploys, 3)?;
    let failed = count(&deploys, 4)?;
    let rework = count(&deploys, 5)?;
    let failures = count(&deploys, 6)?;
    let recovery_median = median(seconds(&deploys, 7)?);

    // Lead time for changes: each change of a successful deploy's change set;
    // one that came through a pull request is timed by the pull request's
    // first commit when pushes to its branch told, else by its creation; any
    // other by its commit.
    let lead = scope
        .fetch_one(
            store,
            window,
            format!(
                "SELECT
                    string_agg(CAST(d.end_ns - COALESCE(c.pr_first_commit_ns, c.pr_opened_ns, c.committed_at) AS TEXT), ','),
                    string_agg(CAST(c.pr_reviewed_ns - c.pr_opened_ns AS TEXT), ','),
                    string_agg(CAST(c.pr_merged_ns - c.pr_reviewed_ns AS TEXT), ','),
                    string_agg(CAST(d.end_ns - c.pr_merged_ns AS TEXT), ','),
                    string_agg(CAST(c.pr_opened_ns - c.pr_first_commit_ns AS TEXT), ',')
                 FROM spans d JOIN change_set_commits c ON c.deploy_key = d.key
                 WHERE d.kind = '{DEPLOY}' AND d.outcome = '{SUCCESS}' AND d.end_ns >= $1 AND d.end_ns < $2{}",
                scope.deploys,
            ),
        )
        .await?;
    let leads = seconds(&lead, 0)?;
    let lead_median = median(leads.clone());

    // Time to restore service: incidents closed in the window.
    let restores = scope
        .fetch_one(
            store,
            window,
            format!(
                "SELECT string_agg(CAST(i.end_ns - i.start_ns AS TEXT), ',') FROM spans i
                 WHERE i.kind = '{INCIDENT}' AND i.end_ns >= $1 AND i.end_ns < $2{}",
                scope.incidents,
            ),
        )
        .await?;
    let restores = seconds(&restores, 0)?;
    let restore_count = restores.len();
    let restore_median = median(restores);

    let per_day = successes as f64 / days;
    let frequency_level = if successes == 0 { Level::None } else { deployment_frequency_level(per_day) };
    let failure_ratio = ratio(failed, deployments);
    Ok(json!({
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
                "coding": median(seconds(&lead, 4)?),
                "pickup": median(seconds(&lead, 1)?),
                "review": median(seconds(&lead, 2)?),
                "deploy": median(seconds(&lead, 3)?),
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
    }))
}
