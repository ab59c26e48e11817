//! `GET /api/v1/dora`: the four keys plus recovery time and rework rate,
//! exactly as metrics.md defines them. Reads production deploys, incidents
//! and recorded commits — not every span.

use super::{PRODUCTION, Window};
use crate::store::changes::{ChangeRow, ordered_commits};
use crate::store::{Store, StoreError};
use futures_util::TryStreamExt;
use serde_json::{Value, json};
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use valuestream_core::stats::{
    Level, change_failure_level, deployment_frequency_level, lead_time_level, percentile, ratio, restore_level,
};
use valuestream_core::time::Timestamp;

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
    links: Vec<String>,
    trace_id: String,
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
    let deploys = production_deploys(store, &environments, filter).await?;
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

    // Lead time for changes.
    let mut conn = store.pool().acquire().await?;
    let mut leads = Vec::new();
    let mut unmatched = 0u64;
    let (mut pickup, mut review, mut deploy_stage) = (Vec::new(), Vec::new(), Vec::new());
    // One repository at a time: its commits and its pull requests' times are
    // the only history held in memory.
    let mut by_repo: BTreeMap<(String, String), Vec<&Deploy>> = BTreeMap::new();
    for deploy in &successes {
        match (&deploy.repo, &deploy.sha) {
            (Some(repo), Some(_)) => by_repo.entry((deploy.source.clone(), repo.clone())).or_default().push(deploy),
            _ => unmatched += 1,
        }
    }
    for ((source, repo), repo_deploys) in by_repo {
        let commits: Vec<ChangeRow> = ordered_commits(&mut conn, &source, &repo).await?;
        // (deploy end, commit time, the pull request the commit came from)
        let mut shipped: Vec<(i64, i64, Option<String>)> = Vec::new();
        for deploy in repo_deploys {
            let sha = deploy.sha.as_deref().unwrap_or_default();
            let Some(upto) = commits.iter().position(|c| c.sha.eq_ignore_ascii_case(sha)) else {
                unmatched += 1;
                continue;
            };
            let earlier = history[&(source.clone(), repo.clone(), deploy.environment.clone())]
                .iter()
                .rfind(|d| (d.end, &d.key) < (deploy.end, &deploy.key))
                .and_then(|d| d.sha.as_ref())
                .and_then(|p| commits.iter().position(|c| c.sha.eq_ignore_ascii_case(p)));
            let from = earlier.map_or(0, |i| i + 1);
            if from > upto {
                continue;
            }
            for change in &commits[from..=upto] {
                let pr_key = change.pull_request.as_ref().map(|n| format!("{source}:{repo}:pull_request:{n}"));
                shipped.push((deploy.end, change.committed_at, pr_key));
            }
        }
        // One query per chunk of pull requests, not one per change.
        let wanted: BTreeSet<String> = shipped.iter().filter_map(|(_, _, key)| key.clone()).collect();
        let times = pull_request_times(&mut conn, &wanted).await?;
        for (deploy_end, committed_at, pr_key) in &shipped {
            let mut changed_at = *committed_at;
            if let Some(pr) = pr_key.as_ref().and_then(|key| times.get(key)) {
                // A merged pull request's change is timed by its creation.
                changed_at = pr.opened;
                if let Some(first_review) = pr.first_review {
                    pickup.push((first_review - pr.opened) as f64 / 1e9);
                    if let Some(merged) = pr.merged {
                        review.push((merged - first_review) as f64 / 1e9);
                    }
                }
                if let Some(merged) = pr.merged {
                    deploy_stage.push((deploy_end - merged) as f64 / 1e9);
                }
            }
            leads.push((deploy_end - changed_at) as f64 / 1e9);
        }
    }
    drop(conn);
    let lead_median = median(leads.clone());

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
    let linked: BTreeSet<String> = window_deploys.iter().flat_map(|d| d.links.iter().cloned()).collect();
    let reworked = rework_spans(store, &linked).await?;
    let rework = window_deploys
        .iter()
        .filter(|deploy| {
            caused.contains(&deploy.key)
                || incident_traces.contains(deploy.trace_id.as_str())
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
            "changes": leads.len(),
            "median_seconds": lead_median,
            "p90_seconds": p90(leads),
            "unmatched_deploys": unmatched,
            "level": lead_time_level(lead_median),
            "breakdown": {
                // The first commit of a pull request is not in its webhooks.
                "coding": Value::Null,
                "pickup": median(pickup),
                "review": median(review),
                "deploy": median(deploy_stage),
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

async fn production_deploys(
    store: &Store,
    environments: &[String],
    filter: &DoraFilter,
) -> Result<Vec<Deploy>, StoreError> {
    let placeholders: Vec<String> = (1..=environments.len()).map(|i| format!("${i}")).collect();
    let mut sql = format!(
        "SELECT key, source, repo, environment, end_ns, outcome, attributes, links, trace_id FROM spans
         WHERE kind = 'deploy' AND end_ns IS NOT NULL AND environment IN ({})",
        placeholders.join(", ")
    );
    let mut values: Vec<String> = environments.to_vec();
    if let Some(repo) = &filter.repo {
        values.push(repo.clone());
        sql.push_str(&format!(" AND repo = ${}", values.len()));
    }
    if let Some(project) = &filter.project {
        values.push(project.clone());
        sql.push_str(&format!(" AND project = ${}", values.len()));
    }
    sql.push_str(" ORDER BY end_ns, key");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for value in &values {
        query = query.bind(value.clone());
    }
    let mut rows = query.fetch(store.pool());
    let mut deploys = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let attributes: Value = serde_json::from_str(&row.try_get::<String, _>(6)?).unwrap_or_default();
        deploys.push(Deploy {
            key: row.try_get(0)?,
            source: row.try_get(1)?,
            repo: row.try_get(2)?,
            environment: row.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
            end: row.try_get(4)?,
            outcome: row.try_get::<Option<String>, _>(5)?.unwrap_or_default(),
            sha: attributes["vcs.ref.head.revision"].as_str().map(str::to_string),
            links: serde_json::from_str(&row.try_get::<String, _>(7)?).unwrap_or_default(),
            trace_id: row.try_get(8)?,
        });
    }
    Ok(deploys)
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

struct PullRequestTimes {
    opened: i64,
    first_review: Option<i64>,
    merged: Option<i64>,
}

/// Keys per `IN (…)` query when loading many spans by key.
const CHUNK: usize = 500;

/// Open, first review and merge times of the pull requests `keys`, loaded in chunks.
async fn pull_request_times(
    conn: &mut sqlx::AnyConnection,
    keys: &BTreeSet<String>,
) -> Result<HashMap<String, PullRequestTimes>, StoreError> {
    let mut times = HashMap::new();
    let keys: Vec<&String> = keys.iter().collect();
    for chunk in keys.chunks(CHUNK) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT key, start_ns, end_ns, outcome, attributes FROM spans WHERE key IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for key in chunk {
            query = query.bind(key.to_string());
        }
        for row in query.fetch_all(&mut *conn).await? {
            let attributes: Value = serde_json::from_str(&row.try_get::<String, _>(4)?).unwrap_or_default();
            let first_review = attributes["valuestream.first_review_at"]
                .as_str()
                .and_then(Timestamp::parse_rfc3339)
                .map(|t| t.nanos());
            let merged = match row.try_get::<Option<String>, _>(3)?.as_deref() {
                Some("merged") => row.try_get::<Option<i64>, _>(2)?,
                _ => None,
            };
            times.insert(row.try_get(0)?, PullRequestTimes { opened: row.try_get(1)?, first_review, merged });
        }
    }
    Ok(times)
}

/// Which of `keys` are rework (metrics.md): pull requests titled
/// `Revert "…"` or labelled `hotfix`. Loaded in chunks.
async fn rework_spans(store: &Store, keys: &BTreeSet<String>) -> Result<BTreeSet<String>, StoreError> {
    let mut rework = BTreeSet::new();
    let keys: Vec<&String> = keys.iter().collect();
    for chunk in keys.chunks(CHUNK) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT key, attributes FROM spans WHERE key IN ({})", placeholders.join(", "));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for key in chunk {
            query = query.bind(key.to_string());
        }
        for row in query.fetch_all(store.pool()).await? {
            let attributes: Value = serde_json::from_str(&row.try_get::<String, _>(1)?).unwrap_or_default();
            let title = attributes["vcs.change.title"].as_str().unwrap_or("");
            let hotfix = attributes["valuestream.labels"].as_array().is_some_and(|labels| {
                labels.iter().any(|l| l.as_str().is_some_and(|l| l.eq_ignore_ascii_case("hotfix")))
            });
            if title.starts_with("Revert \"") || hotfix {
                rework.insert(row.try_get(0)?);
            }
        }
    }
    Ok(rework)
}
