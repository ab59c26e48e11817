//! Change sets and incident causes, kept as rows (`change_sets`,
//! `change_set_commits`, `incident_causes`). The decisions are the core's
//! (`valuestream_core::changes`): this module loads one repository's pushes,
//! merged pull requests, deploys and incidents, asks the core, and writes
//! back only what changed. The writer calls [`recompute`] in the transaction
//! of every delivery that can change them (a push, a deploy, a merged pull
//! request, an incident), so late and out-of-order data is always redone.

use super::db::{Db, Query, query};
use super::{Backend, StoreError, values_list};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use valuestream_core::changes::{
    Change, CommitRecord, DeployRecord, IncidentRecord, MergedPullRequest, PushRecord, attribute, branch_order,
    change_sets,
};
use valuestream_core::vocab::{SpanKey, is_revert, kind, outcome, pull_request_key};

pub use valuestream_core::link::{deployed_alias, sha_alias};

/// What a recomputation changed, for the writer to follow up.
#[derive(Debug, Default)]
pub struct Recomputed {
    /// Deploys whose change set changed: their links must be rebuilt.
    pub deploys: Vec<String>,
    /// Incidents whose cause changed: their parent must be resolved again.
    pub incidents: Vec<String>,
}

/// One stored change-set row: (sha, change time, pull request key, revert).
type Row5 = (String, i64, Option<String>, bool);

/// Everything of one repository the derivation reads, per source.
#[derive(Default)]
struct History {
    pushes: Vec<PushRecord>,
    merged: Vec<MergedPullRequest>,
    /// Successful, ended deploys.
    deploys: Vec<DeployRecord>,
}

/// A push commit as read: source, push before and after, position, sha,
/// commit time, pull request, the message's first characters.
type CommitRow = (String, String, String, i64, String, i64, Option<String>, String);

/// A successful deploy as read: source, key, end, environment, sha.
type DeployRow = (String, String, i64, Option<String>, Option<String>);

async fn load(conn: &mut Db<'_>, repo: &str) -> Result<BTreeMap<String, History>, StoreError> {
    let mut by_source: BTreeMap<String, History> = BTreeMap::new();
    // Commits per push: (source, before, after). Of a message, only its
    // first characters are read: what `is_revert` looks at.
    let mut commits: HashMap<(String, String, String), Vec<(i64, CommitRecord)>> = HashMap::new();
    let columns = format!(
        "source, push_before, push_after, position, sha, committed_at, pull_request, substr(message, 1, {REVERT_PREFIX})"
    );
    let sql = aggregated(conn, &columns, "FROM push_commits WHERE repo = $1");
    let rows: Vec<CommitRow> = fetch_aggregated(query(sql).bind(repo), conn).await?;
    for (source, before, after, position, sha, committed_at, pull_request, start) in rows {
        let revert = is_revert(&start);
        commits
            .entry((source, before, after))
            .or_default()
            .push((position, CommitRecord { sha, committed_at, pull_request, revert }));
    }
    let sql = aggregated(conn, "source, before_sha, after_sha, pushed_at, forced", "FROM pushes WHERE repo = $1");
    let rows: Vec<(String, String, String, i64, i64)> = fetch_aggregated(query(sql).bind(repo), conn).await?;
    for (source, before, after, pushed_at, forced) in rows {
        let mut rows = commits.remove(&(source.clone(), before.clone(), after.clone())).unwrap_or_default();
        rows.sort_by_key(|(position, _)| *position);
        by_source.entry(source).or_default().pushes.push(PushRecord {
            before,
            after,
            pushed_at,
            forced: forced != 0,
            commits: rows.into_iter().map(|(_, commit)| commit).collect(),
        });
    }
    // A merged pull request's `revision` is its merge commit (columns.rs).
    // Kinds are written into the SQL (not bound) so the partial indexes apply.
    let from = format!(
        "FROM spans WHERE kind = '{}' AND repo = $1 AND outcome = $2 AND end_ns IS NOT NULL AND revision IS NOT NULL",
        kind::PULL_REQUEST
    );
    let sql = aggregated(conn, "source, key, start_ns, end_ns, revision", &from);
    let rows: Vec<(String, String, i64, i64, String)> =
        fetch_aggregated(query(sql).bind(repo).bind(outcome::MERGED), conn).await?;
    for (source, key, opened_at, merged_at, merge_sha) in rows {
        let Some(number) = SpanKey::parse(&key).map(|k| k.id.to_string()) else { continue };
        by_source.entry(source).or_default().merged.push(MergedPullRequest { number, opened_at, merged_at, merge_sha });
    }
    let from =
        format!("FROM spans WHERE kind = '{}' AND repo = $1 AND outcome = $2 AND end_ns IS NOT NULL", kind::DEPLOY);
    let sql = aggregated(conn, "source, key, end_ns, environment, revision", &from);
    let rows: Vec<DeployRow> = fetch_aggregated(query(sql).bind(repo).bind(outcome::SUCCESS), conn).await?;
    for (source, key, end, environment, sha) in rows {
        let environment = environment.unwrap_or_default();
        by_source.entry(source).or_default().deploys.push(DeployRecord { key, end, environment, sha });
    }
    Ok(by_source)
}

/// Characters of a commit message that decide whether it is a revert
/// (`is_revert`: it starts with `Revert "`).
const REVERT_PREFIX: usize = 8;

/// A statement returning the rows `from` selects, each as a JSON array of
/// `columns`, all in one JSON array in one row (`NULL` or `[]` for none).
/// A repository's history is thousands of rows, and through sqlx each row
/// handed over from the database costs far more than parsing it from one
/// string (over the network on PostgreSQL; on a pooled SQLite connection
/// every row crosses to sqlx's thread and back; docs/benchmarks.md, issue 11).
/// On a SQLite file's own writer connection it saves building a row each.
fn aggregated(conn: &Db<'_>, columns: &str, from: &str) -> String {
    if conn.backend() == Backend::Postgres {
        format!("SELECT CAST(json_agg(json_build_array({columns})) AS TEXT) {from}")
    } else {
        format!("SELECT json_group_array(json_array({columns})) {from}")
    }
}

/// Runs a statement of [`aggregated`] and reads its rows as `T` (a tuple of
/// its columns).
async fn fetch_aggregated<'q, T: serde::de::DeserializeOwned>(
    query: Query<'q>,
    conn: &mut Db<'_>,
) -> Result<Vec<T>, StoreError> {
    let Some(json) = query.fetch_one(&mut *conn).await?.try_get::<Option<String>, _>(0)? else { return Ok(Vec::new()) };
    serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("a history row did not read back: {e}")))
}

/// Recomputes the change set of every successful deploy of `repo` and the
/// cause of every incident of `repo` (among deploys to the `production`
/// environments), and writes the ones that changed.
pub(crate) async fn recompute(conn: &mut Db<'_>, repo: &str, production: &[String]) -> Result<Recomputed, StoreError> {
    if !has_derived_state(conn, repo).await? {
        // No successful deploy and nothing derived before: nothing to ship or attribute.
        return Ok(Recomputed::default());
    }
    let history = load(conn, repo).await?;
    let mut recomputed = Recomputed::default();

    // Change sets, per source (commits are per source).
    let mut wanted: BTreeMap<String, Option<Vec<Row5>>> = BTreeMap::new();
    // Each production deploy with what it shipped, for attribution.
    let mut production_deploys: Vec<DeployRecord> = Vec::new();
    let mut shipped_by: HashMap<String, Vec<Change>> = HashMap::new();
    for (source, history) in &history {
        let changes = branch_order(&history.pushes, &history.merged);
        let sets = change_sets(&changes, &history.deploys);
        for deploy in &history.deploys {
            let set = sets
                .get(&deploy.key)
                .cloned()
                .flatten()
                .map(|set| set.iter().map(|&i| changes[i].clone()).collect::<Vec<_>>());
            let rows = set.as_ref().map(|set| {
                set.iter()
                    .map(|c| {
                        let pr = c.pull_request.as_deref().map(|n| pull_request_key(source, repo, n));
                        (c.sha.clone(), c.committed_at, pr, c.revert)
                    })
                    .collect()
            });
            if production.contains(&deploy.environment) {
                production_deploys.push(deploy.clone());
                shipped_by.insert(deploy.key.clone(), set.unwrap_or_default());
            }
            wanted.insert(deploy.key.clone(), rows);
        }
    }
    let stored = stored_change_sets(conn, repo).await?;
    for (key, rows) in &wanted {
        // No stored row and an unmatched deploy are the same thing.
        if stored.get(key).unwrap_or(&None) != rows {
            store_change_set(conn, key, rows.as_deref()).await?;
            recomputed.deploys.push(key.clone());
        }
    }
    for key in stored.keys().filter(|key| !wanted.contains_key(*key)) {
        // No longer a successful deploy of this repository.
        store_change_set(conn, key, None).await?;
        recomputed.deploys.push(key.clone());
    }

    // Incident causes, among the repository's production deploys of every source.
    let from = format!(
        "FROM spans i LEFT JOIN incident_causes c ON c.incident_key = i.key WHERE i.kind = '{}' AND i.repo = $1",
        kind::INCIDENT
    );
    let sql = aggregated(conn, "i.key, i.start_ns, i.revision, c.deploy_key", &from);
    let rows: Vec<(String, i64, Option<String>, Option<String>)> =
        fetch_aggregated(query(sql).bind(repo), conn).await?;
    let incidents =
        rows.into_iter().map(|(key, start, root_cause, stored)| (IncidentRecord { key, start, root_cause }, stored));
    for (incident, stored) in incidents {
        let cause = attribute(&incident, &production_deploys, |d| {
            shipped_by.get(&d.key).map(Vec::as_slice).unwrap_or_default()
        })
        .map(|d| d.key.clone());
        if cause != stored {
            query("DELETE FROM incident_causes WHERE incident_key = $1")
                .bind(&incident.key)
                .execute(&mut *conn)
                .await?;
            if let Some(cause) = &cause {
                query("INSERT INTO incident_causes (incident_key, deploy_key) VALUES ($1, $2)")
                    .bind(&incident.key)
                    .bind(cause)
                    .execute(&mut *conn)
                    .await?;
            }
            recomputed.incidents.push(incident.key);
        }
    }
    Ok(recomputed)
}

/// Whether `repo` has a successful deploy, or change sets or incident causes
/// stored from one: without them a recomputation has nothing to do (most
/// repositories' pull requests and issues, before any deploy is seen).
async fn has_derived_state(conn: &mut Db<'_>, repo: &str) -> Result<bool, StoreError> {
    let sql = format!(
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM spans WHERE kind = '{deploy}' AND repo = $1 AND outcome = $2)
            OR EXISTS (SELECT 1 FROM change_sets c JOIN spans d ON d.key = c.deploy_key
                       WHERE d.kind = '{deploy}' AND d.repo = $1)
            OR EXISTS (SELECT 1 FROM incident_causes c JOIN spans i ON i.key = c.incident_key
                       WHERE i.kind = '{incident}' AND i.repo = $1)",
        deploy = kind::DEPLOY,
        incident = kind::INCIDENT,
    );
    Ok(query(sql).bind(repo).bind(outcome::SUCCESS).fetch_optional(&mut *conn).await?.is_some())
}

/// The stored change sets of `repo`'s deploys, each in branch order. An
/// unmatched deploy has no row.
async fn stored_change_sets(conn: &mut Db<'_>, repo: &str) -> Result<BTreeMap<String, Option<Vec<Row5>>>, StoreError> {
    let mut sets: BTreeMap<String, Option<Vec<Row5>>> = BTreeMap::new();
    let from = format!(
        "FROM change_sets c JOIN spans d ON d.key = c.deploy_key WHERE d.kind = '{}' AND d.repo = $1",
        kind::DEPLOY
    );
    let sql = aggregated(conn, "c.deploy_key", &from);
    let keys: Vec<(String,)> = fetch_aggregated(query(sql).bind(repo), conn).await?;
    for (key,) in keys {
        sets.insert(key, Some(Vec::new()));
    }
    let from = format!(
        "FROM change_set_commits c JOIN spans d ON d.key = c.deploy_key WHERE d.kind = '{}' AND d.repo = $1",
        kind::DEPLOY
    );
    let sql = aggregated(conn, "c.deploy_key, c.position, c.sha, c.committed_at, c.pull_request_key, c.revert", &from);
    let mut rows: Vec<(String, i64, String, i64, Option<String>, i64)> =
        fetch_aggregated(query(sql).bind(repo), conn).await?;
    // Each set in position order (an aggregate keeps no order of its own).
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    for (key, _, sha, committed_at, pull_request, revert) in rows {
        let change = (sha, committed_at, pull_request, revert != 0);
        sets.entry(key).or_insert_with(|| Some(Vec::new())).get_or_insert_with(Vec::new).push(change);
    }
    Ok(sets)
}

/// Replaces the stored change set of `deploy` (`None`: unmatched, no rows).
async fn store_change_set(conn: &mut Db<'_>, deploy_key: &str, changes: Option<&[Row5]>) -> Result<(), StoreError> {
    query("DELETE FROM change_set_commits WHERE deploy_key = $1").bind(deploy_key).execute(&mut *conn).await?;
    query("DELETE FROM change_sets WHERE deploy_key = $1").bind(deploy_key).execute(&mut *conn).await?;
    let Some(changes) = changes else { return Ok(()) };
    query("INSERT INTO change_sets (deploy_key, changes, reverts) VALUES ($1, $2, $3)")
        .bind(deploy_key)
        .bind(changes.len() as i64)
        .bind(changes.iter().filter(|c| c.3).count() as i64)
        .execute(&mut *conn)
        .await?;
    for (chunk_index, chunk) in changes.chunks(CHUNK).enumerate() {
        let sql = format!(
            "INSERT INTO change_set_commits (deploy_key, sha, committed_at, pull_request_key, revert, position)
             VALUES {} ON CONFLICT (deploy_key, sha) DO NOTHING",
            values_list(chunk.len(), 6)
        );
        let mut insert = query(sql);
        for (i, (sha, committed_at, pull_request, revert)) in chunk.iter().enumerate() {
            insert = insert
                .bind(deploy_key.to_string())
                .bind(sha.clone())
                .bind(*committed_at)
                .bind(pull_request.clone())
                .bind(i64::from(*revert))
                .bind((chunk_index * CHUNK + i) as i64);
        }
        insert.execute(&mut *conn).await?;
    }
    // The pull requests' times as stored now; their writes keep them current.
    let sql = format!(
        "UPDATE change_set_commits SET
            pr_opened_ns = (SELECT p.start_ns FROM spans p WHERE p.key = change_set_commits.pull_request_key),
            pr_reviewed_ns = (SELECT p.reviewed_ns FROM spans p WHERE p.key = change_set_commits.pull_request_key),
            pr_merged_ns = (SELECT CASE WHEN p.outcome = $2 THEN p.end_ns END FROM spans p
                            WHERE p.key = change_set_commits.pull_request_key),
            pr_first_commit_ns = (SELECT p.first_commit_ns FROM spans p
                                  WHERE p.key = change_set_commits.pull_request_key),
            pr_rework = {PR_REWORK}
         WHERE deploy_key = $1 AND pull_request_key IS NOT NULL"
    );
    query(sql).bind(deploy_key).bind(outcome::MERGED).execute(&mut *conn).await?;
    Ok(())
}

/// Whether a change-set row's pull request is rework: its own rework row, or
/// an incident among its ancestors (one expression for both writers of it).
const PR_REWORK: &str =
    "CASE WHEN EXISTS (SELECT 1 FROM rework_spans r WHERE r.span_key = change_set_commits.pull_request_key)
         OR EXISTS (SELECT 1 FROM spans p WHERE p.key = change_set_commits.pull_request_key AND p.after_incident = 1)
       THEN 1 ELSE 0 END";

/// Copies whether pull request `key` is rework (its own rework row, or an
/// incident among its ancestors) into the change sets that ship it. `None`
/// refreshes every change set row (after the flags were recomputed at once).
pub(crate) async fn refresh_pr_rework(conn: &mut Db<'_>, key: Option<&str>) -> Result<(), StoreError> {
    let rework = PR_REWORK;
    match key {
        Some(key) => {
            let sql = format!("UPDATE change_set_commits SET pr_rework = {rework} WHERE pull_request_key = $1");
            query(sql).bind(key).execute(&mut *conn).await?;
        }
        None => {
            let sql = format!("UPDATE change_set_commits SET pr_rework = {rework} WHERE pull_request_key IS NOT NULL");
            query(sql).execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// Change-set rows per INSERT (6 values each, well under every bind limit).
const CHUNK: usize = 400;

/// The references of the spans a deploy's stored change set came from: each
/// commit's sha (pull requests answer to their merge and head commits) and
/// the pull request a change came through.
pub(crate) async fn change_set_refs(
    conn: &mut Db<'_>,
    source: &str,
    repo: &str,
    deploy_key: &str,
) -> Result<Vec<String>, StoreError> {
    let mut refs = BTreeSet::new();
    for row in query("SELECT sha, pull_request_key FROM change_set_commits WHERE deploy_key = $1")
        .bind(deploy_key)
        .fetch_all(&mut *conn)
        .await?
    {
        refs.insert(sha_alias(source, repo, &row.try_get::<String, _>(0)?));
        if let Some(pr) = row.try_get::<Option<String>, _>(1)? {
            refs.insert(pr.to_ascii_lowercase());
        }
    }
    Ok(refs.into_iter().collect())
}

/// The repositories whose change sets and incident causes [`recompute`]
/// derives: every repository with a deploy, an incident or a push.
pub(crate) async fn repositories(conn: &mut Db<'_>) -> Result<Vec<String>, StoreError> {
    let mut repos = BTreeSet::new();
    for row in query(
        "SELECT DISTINCT repo FROM spans WHERE kind IN ($1, $2, $3) AND repo IS NOT NULL
         UNION SELECT DISTINCT repo FROM pushes",
    )
    .bind(kind::DEPLOY)
    .bind(kind::INCIDENT)
    .bind(kind::PULL_REQUEST)
    .fetch_all(&mut *conn)
    .await?
    {
        repos.insert(row.try_get::<String, _>(0)?);
    }
    Ok(repos.into_iter().collect())
}
