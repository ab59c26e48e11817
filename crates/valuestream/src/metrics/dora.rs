//! `GET /api/v1/dora`: the four keys plus recovery time and rework rate,
//! exactly as metrics.md defines them. Reads production deploys, incidents
//! and recorded commits — not every span.

use super::{PRODUCTION, Window};
use crate::store::{Store, StoreError};
use futures_util::TryStreamExt;
use serde_json::{Value, json};
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use valuestream_core::stats::{
    Level, change_failure_level, deployment_frequency_level, lead_time_level, percentile, ratio, restore_level,
};

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

#[derive(Clone, Debug)]
struct Deploy {
    key: String,
    source: String,
    repo: Option<String>,
    environment: String,
    end: i64,
    outcome: String,
    sha: Option<String>,
    /// Only for deploys in the window (rework reads them).
    links: Vec<String>,
    trace_id: String,
    /// The deploy has a stored change set (store/changes.rs): its sha was recorded.
    matched: bool,
}

#[derive(Clone, Debug)]
struct Incident {
    repo: Option<String>,
    start: i64,
    end: Option<i64>,
    root_cause: Option<String>,
    trace_id: String,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    percentile(&values, 0.5)
}

fn p90(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    percentile(&values, 0.9)
}

/// The DORA object of contract.md.
pub async fn dora(store: &Store, window: Window, filter: &DoraFilter) -> Result<Value, StoreError> {
    let environments: Vec<String> = match &filter.environment {
        Some(environment) => vec![environment.clone()],
        None if filter.production.is_empty() => PRODUCTION.iter().map(|s| s.to_string()).collect(),
        None => filter.production.clone(),
    };
    let deploys = production_deploys(store, window, &environments, filter).await?;
    let incidents = incidents(store, filter).await?;
    let in_window = |end: i64| end >= window.since.nanos() && end < window.until.nanos();
    let window_deploys: Vec<&Deploy> =
        deploys.iter().filter(|d| in_window(d.end) && (d.outcome == "success" || d.outcome == "failure")).collect();
    let days = window.days();

    // Deployment frequency.
    let successes: Vec<&&Deploy> = window_deploys.iter().filter(|d| d.outcome == "success").collect();
    let per_day = successes.len() as f64 / days;
    let distinct_days: BTreeSet<i64> = successes.iter().map(|d| d.end.div_euclid(86_400 * 1_000_000_000)).collect();
    let frequency_level = if successes.is_empty() { Level::None } else { deployment_frequency_level(per_day) };

    // Successful deploys of each repository and environment, in time order,
    // including those before the window: they bound the change sets.
    let mut history: BTreeMap<(String, String, String), Vec<&Deploy>> = BTreeMap::new();
    for deploy in deploys.iter().filter(|d| d.outcome == "success") {
        if let Some(repo) = &deploy.repo {
            history.entry((deploy.source.clone(), repo.clone(), deploy.environment.clone())).or_default().push(deploy);
        }
    }

    // Lead time for changes, from the change sets the writer keeps.
    let unmatched = successes.iter().filter(|d| !d.matched).count() as u64;
    let lead = lead_times(store, window, &environments, filter).await?;
    let lead_median = median(lead.leads.clone());

    // Incidents attributed to deploys: a root-cause sha, else the last
    // successful production deploy of the repository before the incident.
    let mut caused: BTreeSet<String> = BTreeSet::new();
    let mut deploys_by_repo: HashMap<Option<&str>, Vec<&Deploy>> = HashMap::new();
    for deploy in &deploys {
        deploys_by_repo.entry(deploy.repo.as_deref()).or_default().push(deploy);
    }
    for incident in &incidents {
        let deploys = deploys_by_repo.get(&incident.repo.as_deref()).map(Vec::as_slice).unwrap_or(&[]);
        // The root cause names a commit; the deploy that shipped it is the
        // latest successful one of that sha before the incident, else any.
        let by_root_cause = incident.root_cause.as_ref().and_then(|root| {
            let root = root.to_ascii_lowercase();
            let shipped: Vec<&Deploy> = deploys
                .iter()
                .copied()
                .filter(|d| d.sha.as_ref().is_some_and(|s| s.to_ascii_lowercase().starts_with(&root)))
                .collect();
            shipped
                .iter()
                .filter(|d| d.outcome == "success" && d.end <= incident.start)
                .max_by_key(|d| (d.end, d.key.clone()))
                .or_else(|| shipped.first())
                .copied()
        });
        let attributed = by_root_cause.or_else(|| {
            deploys
                .iter()
                .copied()
                .filter(|d| d.outcome == "success" && d.end <= incident.start)
                .max_by_key(|d| (d.end, d.key.clone()))
        });
        if let Some(deploy) = attributed {
            caused.insert(deploy.key.clone());
        }
    }

    // Change failure rate.
    let failed = window_deploys.iter().filter(|d| d.outcome == "failure" || caused.contains(&d.key)).count() as u64;
    let failure_ratio = ratio(failed, window_deploys.len() as u64);

    // Time to restore service: incidents closed in the window.
    let restores: Vec<f64> =
        incidents.iter().filter_map(|i| i.end.filter(|e| in_window(*e)).map(|e| (e - i.start) as f64 / 1e9)).collect();
    let restore_count = restores.len();
    let restore_median = median(restores);

    // Failed deployment recovery time.
    let failures: Vec<&&Deploy> = window_deploys.iter().filter(|d| d.outcome == "failure").collect();
    let recoveries: Vec<f64> = failures
        .iter()
        .filter_map(|failed| {
            let repo = failed.repo.as_ref()?;
            history
                .get(&(failed.source.clone(), repo.clone(), failed.environment.clone()))?
                .iter()
                .find(|d| d.end > failed.end)
                .map(|next| (next.end - failed.end) as f64 / 1e9)
        })
        .collect();
    let recovery_median = median(recoveries);

    // Deployment rework rate.
    let incident_traces: BTreeSet<&str> = incidents.iter().map(|i| i.trace_id.as_str()).collect();
    let reworked = rework_spans(store, filter).await?;
    let reverting = reverting_deploys(store, window, &environments, filter).await?;
    let rework = window_deploys
        .iter()
        .filter(|deploy| {
            caused.contains(&deploy.key)
                || incident_traces.contains(deploy.trace_id.as_str())
                || reverting.contains(&deploy.key)
                || deploy.links.iter().any(|link| reworked.contains(link))
        })
        .count() as u64;

    Ok(json!({
        "since": window.since,
        "until": window.until,
        "environment": filter.environment.clone().unwrap_or_else(|| "production".to_string()),
        "repo": filter.repo,
        "deployment_frequency": {
            "deployments": successes.len(),
            "per_day": per_day,
            "deployment_days_per_week": distinct_days.len() as f64 / (days / 7.0),
            "level": frequency_level,
        },
        "lead_time_for_changes": {
            "changes": lead.leads.len(),
            "median_seconds": lead_median,
            "p90_seconds": p90(lead.leads),
            "unmatched_deploys": unmatched,
            "level": lead_time_level(lead_median),
            "breakdown": {
                // The first commit of a pull request is not in its webhooks.
                "coding": Value::Null,
                "pickup": median(lead.pickup),
                "review": median(lead.review),
                "deploy": median(lead.deploy),
            },
        },
        "change_failure_rate": {
            "deployments": window_deploys.len(),
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
            "failures": failures.len(),
            "median_seconds": recovery_median,
            "level": restore_level(recovery_median),
        },
        "deployment_rework_rate": {
            "deployments": window_deploys.len(),
            "rework": rework,
            "ratio": ratio(rework, window_deploys.len() as u64),
        },
    }))
}

/// ` AND d.column = $n` clauses for the deploy filter, numbered from `first`.
fn deploy_clauses(filter: &DoraFilter, first: usize) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut values = Vec::new();
    for (column, value) in [("repo", &filter.repo), ("project", &filter.project)] {
        if let Some(value) = value {
            sql.push_str(&format!(" AND d.{column} = ${}", first + values.len()));
            values.push(value.clone());
        }
    }
    (sql, values)
}

/// `$first, $first+1, …` for the environment names.
fn environment_list(environments: &[String], first: usize) -> String {
    (first..first + environments.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Every closed deploy to the environments, in time order: those before and
/// after the window bound change sets, recovery and incident attribution.
/// Links are read for deploys in the window only.
async fn production_deploys(
    store: &Store,
    window: Window,
    environments: &[String],
    filter: &DoraFilter,
) -> Result<Vec<Deploy>, StoreError> {
    let (filter_sql, filter_values) = deploy_clauses(filter, 3 + environments.len());
    let sql = format!(
        "SELECT d.key, d.source, d.repo, d.environment, d.end_ns, d.outcome, d.revision, d.trace_id,
                CASE WHEN d.end_ns >= $1 AND d.end_ns < $2 THEN d.links END,
                CASE WHEN c.deploy_key IS NULL THEN 0 ELSE 1 END
         FROM spans d LEFT JOIN change_sets c ON c.deploy_key = d.key
         WHERE d.kind = 'deploy' AND d.end_ns IS NOT NULL AND d.environment IN ({}){filter_sql}
         ORDER BY d.end_ns, d.key",
        environment_list(environments, 3)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(window.since.nanos()).bind(window.until.nanos());
    for value in environments.iter().chain(&filter_values) {
        query = query.bind(value.clone());
    }
    let mut rows = query.fetch(store.pool());
    let mut deploys = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let key: String = row.try_get(0)?;
        let links = match row.try_get::<Option<String>, _>(8)? {
            Some(text) => {
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("links of {key}: {e}")))?
            }
            None => Vec::new(),
        };
        deploys.push(Deploy {
            key,
            source: row.try_get(1)?,
            repo: row.try_get(2)?,
            environment: row.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
            end: row.try_get(4)?,
            outcome: row.try_get::<Option<String>, _>(5)?.unwrap_or_default(),
            sha: row.try_get(6)?,
            trace_id: row.try_get(7)?,
            links,
            matched: row.try_get::<i64, _>(9)? == 1,
        });
    }
    Ok(deploys)
}

/// Lead times and their breakdown, in seconds, of the changes shipped by the
/// successful deploys in the window.
#[derive(Default)]
struct LeadTimes {
    leads: Vec<f64>,
    pickup: Vec<f64>,
    review: Vec<f64>,
    deploy: Vec<f64>,
}

/// One query over the stored change sets: a change that came through a pull
/// request is timed by the pull request's creation, any other by its commit
/// (metrics.md). The database returns the four lists as strings.
async fn lead_times(
    store: &Store,
    window: Window,
    environments: &[String],
    filter: &DoraFilter,
) -> Result<LeadTimes, StoreError> {
    let (filter_sql, filter_values) = deploy_clauses(filter, 3 + environments.len());
    let sql = format!(
        "SELECT
            string_agg(CAST(d.end_ns - COALESCE(pr.start_ns, c.committed_at) AS TEXT), ','),
            string_agg(CAST(pr.reviewed_ns - pr.start_ns AS TEXT), ','),
            string_agg(CAST(CASE WHEN pr.outcome = 'merged' THEN pr.end_ns - pr.reviewed_ns END AS TEXT), ','),
            string_agg(CAST(CASE WHEN pr.outcome = 'merged' THEN d.end_ns - pr.end_ns END AS TEXT), ',')
         FROM spans d
         JOIN change_set_commits c ON c.deploy_key = d.key
         LEFT JOIN spans pr ON pr.key = c.pull_request_key
         WHERE d.kind = 'deploy' AND d.outcome = 'success' AND d.end_ns >= $1 AND d.end_ns < $2
           AND d.environment IN ({}){filter_sql}",
        environment_list(environments, 3)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(window.since.nanos()).bind(window.until.nanos());
    for value in environments.iter().chain(&filter_values) {
        query = query.bind(value.clone());
    }
    let row = query.fetch_one(store.pool()).await?;
    let seconds = |i: usize| -> Result<Vec<f64>, StoreError> {
        let Some(text) = row.try_get::<Option<String>, _>(i)? else { return Ok(Vec::new()) };
        text.split(',')
            .map(|n| {
                n.parse::<i64>()
                    .map(|n| n as f64 / 1e9)
                    .map_err(|_| StoreError::Corrupt(format!("aggregated value {n:?} is not an integer")))
            })
            .collect()
    };
    Ok(LeadTimes { leads: seconds(0)?, pickup: seconds(1)?, review: seconds(2)?, deploy: seconds(3)? })
}

/// Successful deploys in the window whose change set holds a revert commit.
async fn reverting_deploys(
    store: &Store,
    window: Window,
    environments: &[String],
    filter: &DoraFilter,
) -> Result<BTreeSet<String>, StoreError> {
    let (filter_sql, filter_values) = deploy_clauses(filter, 3 + environments.len());
    let sql = format!(
        "SELECT DISTINCT d.key FROM spans d JOIN change_set_commits c ON c.deploy_key = d.key
         WHERE c.revert = 1 AND d.kind = 'deploy' AND d.end_ns >= $1 AND d.end_ns < $2
           AND d.environment IN ({}){filter_sql}",
        environment_list(environments, 3)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(window.since.nanos()).bind(window.until.nanos());
    for value in environments.iter().chain(&filter_values) {
        query = query.bind(value.clone());
    }
    let mut keys = BTreeSet::new();
    for row in query.fetch_all(store.pool()).await? {
        keys.insert(row.try_get(0)?);
    }
    Ok(keys)
}

async fn incidents(store: &Store, filter: &DoraFilter) -> Result<Vec<Incident>, StoreError> {
    let mut sql = "SELECT repo, start_ns, end_ns, attributes, trace_id FROM spans WHERE kind = 'incident'".to_string();
    let mut values = Vec::new();
    if let Some(repo) = &filter.repo {
        values.push(repo.clone());
        sql.push_str(&format!(" AND repo = ${}", values.len()));
    }
    if let Some(project) = &filter.project {
        values.push(project.clone());
        sql.push_str(&format!(" AND project = ${}", values.len()));
    }
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for value in &values {
        query = query.bind(value.clone());
    }
    let mut rows = query.fetch(store.pool());
    let mut incidents = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let attributes: Value = serde_json::from_str(&row.try_get::<String, _>(3)?).unwrap_or_default();
        incidents.push(Incident {
            repo: row.try_get(0)?,
            start: row.try_get(1)?,
            end: row.try_get(2)?,
            root_cause: attributes["valuestream.root_cause"].as_str().map(str::to_string),
            trace_id: row.try_get(4)?,
        });
    }
    Ok(incidents)
}

/// The rework spans (metrics.md: pull requests titled `Revert "…"` or
/// labelled `hotfix`), from the `rework` column's partial index.
async fn rework_spans(store: &Store, filter: &DoraFilter) -> Result<BTreeSet<String>, StoreError> {
    let (filter_sql, filter_values) = deploy_clauses(filter, 1);
    let sql = format!("SELECT d.key FROM spans d WHERE d.rework = 1{filter_sql}");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for value in &filter_values {
        query = query.bind(value.clone());
    }
    let mut keys = BTreeSet::new();
    for row in query.fetch_all(store.pool()).await? {
        keys.insert(row.try_get(0)?);
    }
    Ok(keys)
}
