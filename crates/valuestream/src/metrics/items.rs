//! `GET /api/v1/dora/items`: the rows behind each DORA count, for the
//! dashboard's drill-down drawer and its CSV download.
//!
//! Each key's statement reads the same rows, under the same conditions, as
//! the statement in `dora.rs` that counts them (the scope, the rework
//! condition, the incident causes and the next successful deploy are shared),
//! so a list's length is the count `/api/v1/dora` shows for the same filters.

use super::dora::{REWORK, Scope, caused, next_success};
use super::{DoraFilter, Window, aggregated};
use crate::store::{Store, StoreError};
use serde_json::{Map, Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use valuestream_core::stats::percentile;
use valuestream_core::time::Timestamp;
use valuestream_core::vocab::kind::{DEPLOY, INCIDENT};
use valuestream_core::vocab::outcome::{FAILURE, SUCCESS};
use valuestream_core::vocab::{attr, is_revert};

/// A count of `/api/v1/dora` whose rows can be listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemKey {
    /// `deployment_frequency.deployments`: successful production deploys.
    Deployments,
    /// `lead_time_for_changes.changes`: the changes those deploys shipped.
    Changes,
    /// `change_failure_rate.failed`: deploys that failed or caused an incident.
    Failed,
    /// `time_to_restore.incidents`: incidents closed in the window.
    Incidents,
    /// `failed_deployment_recovery_time.failures`: failed deploys.
    Failures,
    /// `deployment_rework_rate.rework`: deploys that are rework.
    Rework,
}

impl ItemKey {
    pub const ALL: [ItemKey; 6] = [
        ItemKey::Deployments,
        ItemKey::Changes,
        ItemKey::Failed,
        ItemKey::Incidents,
        ItemKey::Failures,
        ItemKey::Rework,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ItemKey::Deployments => "deployments",
            ItemKey::Changes => "changes",
            ItemKey::Failed => "failed",
            ItemKey::Incidents => "incidents",
            ItemKey::Failures => "failures",
            ItemKey::Rework => "rework",
        }
    }

    /// Parses `key=`; the error lists the accepted names.
    pub fn parse(value: &str) -> Result<ItemKey, String> {
        ItemKey::ALL.into_iter().find(|k| k.name() == value).ok_or_else(|| {
            let names: Vec<&str> = ItemKey::ALL.iter().map(|k| k.name()).collect();
            format!("`key` must be one of {}; got {value:?}", names.join(", "))
        })
    }

    /// The fields of each of this key's rows, in CSV column order.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            ItemKey::Deployments => &[
                "time",
                "span_key",
                "trace_id",
                "span_id",
                "name",
                "repo",
                "environment",
                "sha",
                "outcome",
                "value",
                "median_lead_time_seconds",
                "incident_key",
                "rework",
                "reason",
            ],
            ItemKey::Changes => &[
                "time",
                "span_key",
                "trace_id",
                "span_id",
                "name",
                "repo",
                "environment",
                "sha",
                "deploy_key",
                "value",
                "coding_seconds",
                "pickup_seconds",
                "review_seconds",
                "deploy_seconds",
                "reason",
            ],
            ItemKey::Failed => &[
                "time",
                "span_key",
                "trace_id",
                "span_id",
                "name",
                "repo",
                "environment",
                "sha",
                "outcome",
                "incident_key",
                "value",
                "reason",
            ],
            ItemKey::Incidents => {
                &["time", "span_key", "trace_id", "span_id", "name", "repo", "deploy_key", "value", "reason"]
            }
            ItemKey::Failures => &[
                "time",
                "span_key",
                "trace_id",
                "span_id",
                "name",
                "repo",
                "environment",
                "sha",
                "recovered_by",
                "value",
                "reason",
            ],
            ItemKey::Rework => &[
                "time",
                "span_key",
                "trace_id",
                "span_id",
                "name",
                "repo",
                "environment",
                "sha",
                "made_by",
                "value",
                "reason",
            ],
        }
    }
}

/// The rows behind `key` in `window`, newest first: each a JSON object with
/// the key's [`ItemKey::columns`] (and `bucket`, the start of the row's
/// bucket, when `buckets` are given).
pub async fn dora_items(
    store: &Store,
    window: Window,
    filter: &DoraFilter,
    key: ItemKey,
    buckets: Option<&[Window]>,
) -> Result<Vec<Map<String, Value>>, StoreError> {
    Ok(dora_items_page(store, window, filter, key, buckets, None).await?.0)
}

/// The first `limit` of [`dora_items`] (all without one), and how many
/// there are in all: the count `/api/v1/dora` shows.
pub async fn dora_items_page(
    store: &Store,
    window: Window,
    filter: &DoraFilter,
    key: ItemKey,
    buckets: Option<&[Window]>,
    limit: Option<usize>,
) -> Result<(Vec<Map<String, Value>>, u64), StoreError> {
    let scope = Scope::new(filter);
    let mut sql = statement(&scope, key);
    // Rework reads a row per reworking change, so it is cut after grouping.
    let cut_in_sql = limit.filter(|_| key != ItemKey::Rework);
    let total = match limit {
        None => None,
        Some(_) => {
            let counted = if key == ItemKey::Changes { "COUNT(*)" } else { "COUNT(DISTINCT span_key)" };
            let row = scope.fetch_one(store, window, format!("SELECT {counted} FROM ({sql}) rows")).await?;
            Some(row.try_get::<i64, _>(0)?.max(0) as u64)
        }
    };
    if let Some(limit) = cut_in_sql {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    let rows = scope.fetch_all(store, window, sql).await?;
    let mut items = Vec::with_capacity(rows.len());
    let mut last_key: Option<String> = None;
    for row in &rows {
        // Rework reads one row per reworking change: the first names the deploy.
        let span_key: String = row.try_get("span_key")?;
        if key == ItemKey::Rework && last_key.as_deref() == Some(span_key.as_str()) {
            continue;
        }
        last_key = Some(span_key);
        let mut item = common(row)?;
        let reason = match key {
            ItemKey::Deployments => deployment(row, &mut item)?.to_string(),
            ItemKey::Changes => change(row, &mut item)?,
            ItemKey::Failed => failed(row, &mut item)?.to_string(),
            ItemKey::Incidents => incident(row, &mut item)?.to_string(),
            ItemKey::Failures => failure(row, &mut item)?.to_string(),
            ItemKey::Rework => rework(store, row, &mut item).await?.to_string(),
        };
        item.insert("reason".into(), json!(reason));
        debug_assert!(key.columns().iter().all(|c| item.contains_key(*c)), "{key:?} fills its columns");
        if let Some(buckets) = buckets {
            let time: i64 = row.try_get("time_ns")?;
            let bucket = buckets.iter().find(|b| b.since.nanos() <= time && time < b.until.nanos());
            item.insert("bucket".into(), json!(bucket.map(|b| b.since)));
        }
        items.push(item);
    }
    let total = total.unwrap_or(items.len() as u64);
    if let Some(limit) = limit {
        items.truncate(limit);
    }
    Ok((items, total))
}

/// The columns every statement starts with: those of the row's own span,
/// under `alias`.
fn own(alias: &str) -> String {
    format!("{alias}.key AS span_key, {alias}.trace_id, {alias}.span_id, {alias}.name, {alias}.repo")
}

fn statement(scope: &Scope, key: ItemKey) -> String {
    let window = "d.end_ns >= $1 AND d.end_ns < $2";
    let deploys = &scope.deploys("d");
    let d = own("d");
    match key {
        // With what the Delivery page's recent deploys show beside each: the
        // lead times of its changes (as the leads statement of dora.rs reads
        // them), the first incident attributed to it, and whether it is rework.
        ItemKey::Deployments => format!(
            "SELECT {d}, d.end_ns AS time_ns, d.environment, d.revision AS sha, d.outcome, c.changes,
                (SELECT string_agg(CAST(d.end_ns - COALESCE(cc.pr_first_commit_ns, cc.pr_opened_ns, cc.committed_at) AS TEXT), ',')
                 FROM change_set_commits cc WHERE cc.deploy_key = d.key) AS lead_ns,
                (SELECT MIN(ic.incident_key) FROM incident_causes ic JOIN spans i ON i.key = ic.incident_key
                 WHERE ic.deploy_key = d.key{}) AS incident_key,
                CAST(CASE WHEN {REWORK} THEN 1 ELSE 0 END AS BIGINT) AS rework
             FROM spans d LEFT JOIN change_sets c ON c.deploy_key = d.key
             WHERE d.kind = '{DEPLOY}' AND d.outcome = '{SUCCESS}' AND {window}{deploys}
             ORDER BY d.end_ns DESC, d.key",
            scope.incidents("i"),
        ),
        // A change that came through a pull request opens that pull request;
        // any other its deploy.
        ItemKey::Changes => format!(
            "SELECT {}, d.end_ns AS time_ns, d.environment, c.sha, d.key AS deploy_key,
                d.end_ns - COALESCE(c.pr_first_commit_ns, c.pr_opened_ns, c.committed_at) AS lead_ns,
                c.pr_opened_ns - c.pr_first_commit_ns AS coding_ns,
                c.pr_reviewed_ns - c.pr_opened_ns AS pickup_ns,
                c.pr_merged_ns - c.pr_reviewed_ns AS review_ns,
                d.end_ns - c.pr_merged_ns AS deploy_ns,
                CASE WHEN c.pr_first_commit_ns IS NOT NULL THEN 'first_commit'
                     WHEN c.pr_opened_ns IS NOT NULL THEN 'pull_request_opened'
                     ELSE 'commit' END AS starts_at
             FROM spans d JOIN change_set_commits c ON c.deploy_key = d.key
               LEFT JOIN spans p ON p.key = c.pull_request_key
               JOIN spans s ON s.key = COALESCE(p.key, d.key)
             WHERE d.kind = '{DEPLOY}' AND d.outcome = '{SUCCESS}' AND {window}{deploys}
             ORDER BY d.end_ns DESC, d.key, c.position, c.sha",
            own("s"),
        ),
        // Failed, or the cause of an incident (the first by key, with what
        // tells how it was attributed).
        ItemKey::Failed => {
            let incidents = &scope.incidents("i");
            let caused = caused(scope);
            format!(
                "SELECT {d}, d.end_ns AS time_ns, d.environment, d.revision AS sha, d.outcome,
                    i.key AS incident_key,
                    CAST(CASE WHEN i.key IS NULL THEN 0 ELSE {} END AS BIGINT) AS root_cause_matched
                 FROM spans d
                   LEFT JOIN spans i ON i.key = (SELECT MIN(c.incident_key) FROM incident_causes c
                                                 JOIN spans i ON i.key = c.incident_key
                                                 WHERE c.deploy_key = d.key{incidents})
                 WHERE d.kind = '{DEPLOY}' AND d.outcome IN ('{SUCCESS}', '{FAILURE}') AND {window}{deploys}
                   AND (d.outcome = '{FAILURE}' OR d.key IN ({caused}))
                 ORDER BY d.end_ns DESC, d.key",
                root_cause_matched("i", "d"),
            )
        }
        ItemKey::Incidents => format!(
            "SELECT {}, i.end_ns AS time_ns, i.end_ns - i.start_ns AS restore_ns, c.deploy_key,
                CAST(CASE WHEN d.key IS NULL THEN 0 ELSE {} END AS BIGINT) AS root_cause_matched
             FROM spans i
               LEFT JOIN incident_causes c ON c.incident_key = i.key LEFT JOIN spans d ON d.key = c.deploy_key
             WHERE i.kind = '{INCIDENT}' AND i.end_ns >= $1 AND i.end_ns < $2{}
             ORDER BY i.end_ns DESC, i.key",
            own("i"),
            root_cause_matched("i", "d"),
            scope.incidents("i"),
        ),
        ItemKey::Failures => {
            let next = next_success(scope);
            format!(
                "SELECT {d}, d.end_ns AS time_ns, d.environment, d.revision AS sha,
                    (SELECT MIN(n.end_ns) {next}) - d.end_ns AS recovery_ns,
                    (SELECT n.key {next} ORDER BY n.end_ns, n.key LIMIT 1) AS recovered_by
                 FROM spans d
                 WHERE d.kind = '{DEPLOY}' AND d.outcome = '{FAILURE}' AND {window}{deploys}
                 ORDER BY d.end_ns DESC, d.key"
            )
        }
        // One row per reworking change (none when only an incident above
        // the deploy makes it rework), in the change set's order.
        ItemKey::Rework => format!(
            "SELECT {d}, d.end_ns AS time_ns, d.environment, d.revision AS sha,
                cc.sha AS change_sha, cc.revert, cc.pull_request_key, p.attributes AS pr_attributes,
                CAST(CASE WHEN r.span_key IS NULL THEN 0 ELSE 1 END AS BIGINT) AS pr_marked,
                p.after_incident AS pr_after_incident
             FROM spans d
               LEFT JOIN change_set_commits cc ON cc.deploy_key = d.key AND (cc.revert = 1 OR cc.pr_rework = 1)
               LEFT JOIN spans p ON p.key = cc.pull_request_key
               LEFT JOIN rework_spans r ON r.span_key = cc.pull_request_key
             WHERE d.kind = '{DEPLOY}' AND d.outcome IN ('{SUCCESS}', '{FAILURE}') AND {window}{deploys}
               AND {REWORK}
             ORDER BY d.end_ns DESC, d.key, cc.position, cc.sha"
        ),
    }
}

/// 1 when incident `incident`'s root cause names deploy `deploy`: the
/// deploy's sha starts with it, or a change the deploy shipped does (what
/// the writer's attribution looks for first); else 0.
fn root_cause_matched(incident: &str, deploy: &str) -> String {
    let cause = format!("lower({incident}.revision)");
    let starts = |column: &str| format!("substr(lower({column}), 1, length({cause})) = {cause}");
    format!(
        "CASE WHEN COALESCE({incident}.revision, '') = '' THEN 0
              WHEN {} THEN 1
              WHEN EXISTS (SELECT 1 FROM change_set_commits m WHERE m.deploy_key = {deploy}.key AND {}) THEN 1
              ELSE 0 END",
        starts(&format!("{deploy}.revision")),
        starts("m.sha"),
    )
}

fn common(row: &AnyRow) -> Result<Map<String, Value>, StoreError> {
    let mut item = Map::new();
    item.insert("time".into(), json!(Timestamp(row.try_get("time_ns")?)));
    for column in ["span_key", "trace_id", "span_id", "name"] {
        item.insert(column.into(), json!(row.try_get::<String, _>(column)?));
    }
    item.insert("repo".into(), json!(row.try_get::<Option<String>, _>("repo")?));
    Ok(item)
}

fn copy_text(row: &AnyRow, item: &mut Map<String, Value>, columns: &[&str]) -> Result<(), StoreError> {
    for column in columns {
        item.insert(column.to_string(), json!(row.try_get::<Option<String>, _>(*column)?));
    }
    Ok(())
}

/// Seconds from a nanosecond column (NULL stays null).
fn seconds(row: &AnyRow, column: &str) -> Result<Value, StoreError> {
    Ok(json!(row.try_get::<Option<i64>, _>(column)?.map(|n| n as f64 / 1e9)))
}

fn deployment(row: &AnyRow, item: &mut Map<String, Value>) -> Result<&'static str, StoreError> {
    copy_text(row, item, &["environment", "sha", "outcome", "incident_key"])?;
    let changes = row.try_get::<Option<i64>, _>("changes")?;
    item.insert("value".into(), json!(changes));
    let mut leads: Vec<f64> = aggregated(row.try_get("lead_ns")?)?.into_iter().map(|n| n as f64 / 1e9).collect();
    leads.sort_by(f64::total_cmp);
    item.insert("median_lead_time_seconds".into(), json!(percentile(&leads, 0.5)));
    item.insert("rework".into(), json!(row.try_get::<i64, _>("rework")? == 1));
    // Without a change set its sha is among no recorded commits
    // (`unmatched_deploys`).
    Ok(if changes.is_some() { "shipped" } else { "unknown_sha" })
}

fn change(row: &AnyRow, item: &mut Map<String, Value>) -> Result<String, StoreError> {
    copy_text(row, item, &["environment", "sha", "deploy_key"])?;
    item.insert("value".into(), seconds(row, "lead_ns")?);
    for (column, name) in [
        ("coding_ns", "coding_seconds"),
        ("pickup_ns", "pickup_seconds"),
        ("review_ns", "review_seconds"),
        ("deploy_ns", "deploy_seconds"),
    ] {
        item.insert(name.into(), seconds(row, column)?);
    }
    Ok(row.try_get("starts_at")?)
}

/// How an incident was attributed to its deploy.
fn attribution(row: &AnyRow) -> Result<&'static str, StoreError> {
    Ok(if row.try_get::<i64, _>("root_cause_matched")? == 1 { "root_cause" } else { "last_deploy_before" })
}

fn failed(row: &AnyRow, item: &mut Map<String, Value>) -> Result<&'static str, StoreError> {
    copy_text(row, item, &["environment", "sha", "outcome", "incident_key"])?;
    item.insert("value".into(), Value::Null);
    if row.try_get::<Option<String>, _>("outcome")?.as_deref() == Some(FAILURE) {
        return Ok("failed");
    }
    Ok(match attribution(row)? {
        "root_cause" => "incident_root_cause",
        _ => "incident_last_deploy_before",
    })
}

fn incident(row: &AnyRow, item: &mut Map<String, Value>) -> Result<&'static str, StoreError> {
    copy_text(row, item, &["deploy_key"])?;
    item.insert("value".into(), seconds(row, "restore_ns")?);
    if row.try_get::<Option<String>, _>("deploy_key")?.is_none() {
        return Ok("unattributed");
    }
    attribution(row)
}

fn failure(row: &AnyRow, item: &mut Map<String, Value>) -> Result<&'static str, StoreError> {
    copy_text(row, item, &["environment", "sha", "recovered_by"])?;
    let recovery = seconds(row, "recovery_ns")?;
    let reason = if recovery.is_null() { "not_recovered" } else { "recovered" };
    item.insert("value".into(), recovery);
    Ok(reason)
}

/// Why a deploy is rework, and the span (or, for a revert pushed straight
/// to the branch, the commit) that made it so: a revert first, then a
/// hotfix, then an incident above a pull request it ships or above it.
async fn rework(store: &Store, row: &AnyRow, item: &mut Map<String, Value>) -> Result<&'static str, StoreError> {
    copy_text(row, item, &["environment", "sha"])?;
    item.insert("value".into(), Value::Null);
    let change_sha = row.try_get::<Option<String>, _>("change_sha")?;
    let pull_request = row.try_get::<Option<String>, _>("pull_request_key")?;
    let (reason, made_by) = if row.try_get::<Option<i64>, _>("revert")? == Some(1) {
        ("revert", pull_request.or(change_sha))
    } else if row.try_get::<i64, _>("pr_marked")? == 1 {
        let attributes: Option<String> = row.try_get("pr_attributes")?;
        let title = attributes
            .and_then(|a| serde_json::from_str::<Map<String, Value>>(&a).ok())
            .and_then(|a| a.get(attr::CHANGE_TITLE).and_then(Value::as_str).map(str::to_string));
        (if title.as_deref().is_some_and(is_revert) { "revert" } else { "hotfix" }, pull_request)
    } else if row.try_get::<Option<i64>, _>("pr_after_incident")? == Some(1) {
        ("incident", incident_above(store, pull_request).await?)
    } else {
        ("incident", incident_above(store, Some(row.try_get("span_key")?)).await?)
    };
    item.insert("made_by".into(), json!(made_by));
    Ok(reason)
}

/// The nearest incident among the parents of span `key`: one small read of
/// `(parent_key, kind)` per step up the chain.
async fn incident_above(store: &Store, key: Option<String>) -> Result<Option<String>, StoreError> {
    let step = |key: String| async move {
        let row = sqlx::query("SELECT parent_key, kind FROM spans WHERE key = $1")
            .bind(key)
            .fetch_optional(store.pool())
            .await?;
        Ok::<_, StoreError>(match row {
            Some(row) => Some((row.try_get::<Option<String>, _>(0)?, row.try_get::<String, _>(1)?)),
            None => None,
        })
    };
    let mut next = match key {
        Some(key) => step(key).await?.and_then(|(parent, _)| parent),
        None => None,
    };
    // Parent chains are short; the bound only guards against a cycle.
    for _ in 0..64 {
        let Some(key) = next else { return Ok(None) };
        let Some((parent, kind)) = step(key.clone()).await? else { return Ok(None) };
        if kind == INCIDENT {
            return Ok(Some(key));
        }
        next = parent;
    }
    Ok(None)
}

/// The items as CSV: a header of the key's columns (and `bucket` first when
/// the items have one), then one line per item.
pub fn items_csv(key: ItemKey, items: &[Map<String, Value>]) -> String {
    let mut columns: Vec<&str> = key.columns().to_vec();
    if items.first().is_some_and(|i| i.contains_key("bucket")) {
        columns.insert(0, "bucket");
    }
    let rows = items.iter().map(|item| columns.iter().map(|c| item.get(*c).cloned().unwrap_or(Value::Null)).collect());
    crate::csv::table(&columns, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_by_name_and_a_wrong_one_lists_the_names() {
        for key in ItemKey::ALL {
            assert_eq!(ItemKey::parse(key.name()), Ok(key));
        }
        let error = ItemKey::parse("deploys").unwrap_err();
        assert!(error.contains("deployments, changes, failed, incidents, failures, rework"), "{error}");
    }
}
