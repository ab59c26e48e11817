//! Changes and change sets (metrics.md): the commits that reached a default
//! branch, in branch order, and which of them a deploy ships.
//!
//! Span conventions this relies on (our vocabulary, not a vendor's): a deploy
//! span has kind `deploy`, attributes `vcs.ref.head.revision` (the deployed
//! sha) and `deployment.environment.name`; a span answers to
//! `{source}:{repo}:sha:{sha}` for commits it carries and a deploy to
//! `{source}:{repo}:deployed:{sha}`.

use super::columns::is_revert;
use super::query::ApiSpan;
use super::{StoreError, values_list};
use sqlx::{AnyConnection, Row};
use std::collections::HashMap;

pub use valuestream_core::link::{deployed_alias, sha_alias};

/// One recorded commit, in branch order.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeRow {
    pub sha: String,
    pub committed_at: i64,
    pub pull_request: Option<String>,
    /// The commit message starts with `Revert "` (metrics.md, rework).
    pub revert: bool,
}

/// The commits of `repo` in the order they reached its default branch: pushes
/// chained `before` → `after` (several chains by time of their first push),
/// then each push's commits in order.
pub async fn ordered_commits(conn: &mut AnyConnection, source: &str, repo: &str) -> Result<Vec<ChangeRow>, StoreError> {
    let mut pushes: Vec<(String, String, i64)> = Vec::new();
    for row in sqlx::query("SELECT before_sha, after_sha, pushed_at FROM pushes WHERE source = $1 AND repo = $2")
        .bind(source)
        .bind(repo)
        .fetch_all(&mut *conn)
        .await?
    {
        pushes.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
    }
    let afters: std::collections::HashSet<&str> = pushes.iter().map(|(_, after, _)| after.as_str()).collect();
    let by_before: HashMap<&str, Vec<&(String, String, i64)>> = pushes.iter().fold(HashMap::new(), |mut map, push| {
        map.entry(push.0.as_str()).or_default().push(push);
        map
    });
    let mut roots: Vec<&(String, String, i64)> = pushes.iter().filter(|p| !afters.contains(p.0.as_str())).collect();
    roots.sort_by_key(|p| (p.2, p.1.clone()));
    let mut order: Vec<&str> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for root in roots {
        let mut next = Some(root);
        while let Some(push) = next {
            if !seen.insert(push.1.as_str()) {
                break;
            }
            order.push(push.1.as_str());
            next = by_before.get(push.1.as_str()).and_then(|v| v.iter().min_by_key(|p| (p.2, p.1.clone())).copied());
        }
    }
    // Pushes only reachable through a cycle (force pushes) come last, by time.
    let mut rest: Vec<&(String, String, i64)> = pushes.iter().filter(|p| !seen.contains(p.1.as_str())).collect();
    rest.sort_by_key(|p| (p.2, p.1.clone()));
    order.extend(rest.iter().map(|p| p.1.as_str()));

    let mut by_push: HashMap<String, Vec<(i64, ChangeRow)>> = HashMap::new();
    for row in sqlx::query(
        "SELECT push_after, position, sha, committed_at, pull_request, message FROM commits
         WHERE source = $1 AND repo = $2",
    )
    .bind(source)
    .bind(repo)
    .fetch_all(&mut *conn)
    .await?
    {
        let push: String = row.try_get(0)?;
        let position: i64 = row.try_get(1)?;
        by_push.entry(push).or_default().push((
            position,
            ChangeRow {
                sha: row.try_get(2)?,
                committed_at: row.try_get(3)?,
                pull_request: row.try_get(4)?,
                revert: is_revert(&row.try_get::<String, _>(5)?),
            },
        ));
    }
    let mut commits = Vec::new();
    for push in order {
        if let Some(mut rows) = by_push.remove(push) {
            rows.sort_by_key(|(position, _)| *position);
            commits.extend(rows.into_iter().map(|(_, row)| row));
        }
    }
    Ok(commits)
}

fn attribute<'a>(span: &'a ApiSpan, name: &str) -> Option<&'a str> {
    span.attributes.get(name).and_then(|v| v.as_str())
}

/// A successful deploy, as change sets need it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Shipped {
    end: i64,
    key: String,
    sha: Option<String>,
}

/// The successful deploys of `repo` to `environment`, in time order.
async fn successful_deploys(
    conn: &mut AnyConnection,
    source: &str,
    repo: &str,
    environment: &str,
) -> Result<Vec<Shipped>, StoreError> {
    let mut deploys = Vec::new();
    for row in sqlx::query(
        "SELECT end_ns, key, revision FROM spans
         WHERE kind = 'deploy' AND source = $1 AND repo = $2 AND COALESCE(environment, '') = $3
           AND outcome = 'success' AND end_ns IS NOT NULL",
    )
    .bind(source)
    .bind(repo)
    .bind(environment)
    .fetch_all(&mut *conn)
    .await?
    {
        deploys.push(Shipped { end: row.try_get(0)?, key: row.try_get(1)?, sha: row.try_get(2)? });
    }
    deploys.sort();
    Ok(deploys)
}

/// The next successful deploy after `deploy` of the same repository and
/// environment: its change set starts where `deploy`'s ends.
pub async fn next_deploy(conn: &mut AnyConnection, deploy: &ApiSpan) -> Result<Option<String>, StoreError> {
    let (Some(end), Some(repo)) = (deploy.end, &deploy.repo) else { return Ok(None) };
    let environment = attribute(deploy, "deployment.environment.name").unwrap_or("");
    let position = (end.nanos(), deploy.key.as_str());
    Ok(successful_deploys(conn, &deploy.source, repo, environment)
        .await?
        .into_iter()
        .find(|other| (other.end, other.key.as_str()) > position)
        .map(|other| other.key))
}

/// The slice of `commits` (branch order) a deploy of `sha` ships after the
/// previous deploy shipped `previous`: `None` when `sha` is not recorded.
fn slice<'a>(commits: &'a [ChangeRow], sha: &str, previous: Option<&str>) -> Option<&'a [ChangeRow]> {
    let upto = commits.iter().position(|c| c.sha.eq_ignore_ascii_case(sha))?;
    let from = previous.and_then(|p| commits.iter().position(|c| c.sha.eq_ignore_ascii_case(p))).map_or(0, |i| i + 1);
    Some(if from <= upto { &commits[from..=upto] } else { &[] })
}

/// The changes a successful deploy ships: the recorded commits up to and
/// including its sha that no earlier successful deploy of the same repository
/// and environment shipped. `None` when the deploy did not succeed or its sha
/// is unknown or not among the recorded commits (metrics.md: unmatched).
pub async fn change_set(conn: &mut AnyConnection, deploy: &ApiSpan) -> Result<Option<Vec<ChangeRow>>, StoreError> {
    let (Some(repo), Some(sha), Some(end)) = (&deploy.repo, attribute(deploy, "vcs.ref.head.revision"), deploy.end)
    else {
        return Ok(None);
    };
    if deploy.outcome.as_deref() != Some("success") {
        return Ok(None);
    }
    let commits = ordered_commits(conn, &deploy.source, repo).await?;
    let environment = attribute(deploy, "deployment.environment.name").unwrap_or("");
    // The latest earlier successful deploy of this repository and environment.
    let position = (end.nanos(), deploy.key.as_str());
    let previous = successful_deploys(conn, &deploy.source, repo, environment)
        .await?
        .into_iter()
        .rfind(|other| (other.end, other.key.as_str()) < position)
        .and_then(|other| other.sha);
    Ok(slice(&commits, sha, previous.as_deref()).map(<[ChangeRow]>::to_vec))
}

/// Recomputes and stores the change set of every successful deploy, one
/// repository at a time (its commits are read once). For stores written
/// before change sets were kept; the writer keeps them from then on.
pub async fn rebuild_change_sets(conn: &mut AnyConnection) -> Result<u64, StoreError> {
    let mut repos: Vec<(String, String, String)> = Vec::new();
    for row in sqlx::query(
        "SELECT DISTINCT source, repo, COALESCE(environment, '') FROM spans
         WHERE kind = 'deploy' AND outcome = 'success' AND end_ns IS NOT NULL AND repo IS NOT NULL
         ORDER BY 1, 2, 3",
    )
    .fetch_all(&mut *conn)
    .await?
    {
        repos.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
    }
    let mut stored = 0;
    let mut commits: Option<((String, String), Vec<ChangeRow>)> = None;
    for (source, repo, environment) in repos {
        if commits.as_ref().is_none_or(|(of, _)| *of != (source.clone(), repo.clone())) {
            let rows = ordered_commits(conn, &source, &repo).await?;
            commits = Some(((source.clone(), repo.clone()), rows));
        }
        let commits = &commits.as_ref().expect("loaded above").1;
        let mut previous: Option<String> = None;
        for deploy in successful_deploys(conn, &source, &repo, &environment).await? {
            let changes = deploy.sha.as_deref().and_then(|sha| slice(commits, sha, previous.as_deref()));
            store_change_set(conn, &deploy.key, &source, &repo, changes).await?;
            previous = deploy.sha;
            stored += 1;
        }
    }
    Ok(stored)
}

/// The span key of the pull request a change came from.
fn pull_request_key(source: &str, repo: &str, number: &str) -> String {
    format!("{source}:{repo}:pull_request:{number}")
}

/// Replaces the stored change set of `deploy` (tables `change_sets` and
/// `change_set_commits`, which DORA's lead time and rework read).
pub async fn store_change_set(
    conn: &mut AnyConnection,
    deploy_key: &str,
    source: &str,
    repo: &str,
    changes: Option<&[ChangeRow]>,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM change_set_commits WHERE deploy_key = $1").bind(deploy_key).execute(&mut *conn).await?;
    sqlx::query("DELETE FROM change_sets WHERE deploy_key = $1").bind(deploy_key).execute(&mut *conn).await?;
    let Some(changes) = changes else { return Ok(()) };
    sqlx::query("INSERT INTO change_sets (deploy_key, changes, reverts) VALUES ($1, $2, $3)")
        .bind(deploy_key)
        .bind(changes.len() as i64)
        .bind(changes.iter().filter(|c| c.revert).count() as i64)
        .execute(&mut *conn)
        .await?;
    for chunk in changes.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO change_set_commits (deploy_key, sha, committed_at, pull_request_key, revert) VALUES {}
             ON CONFLICT (deploy_key, sha) DO NOTHING",
            values_list(chunk.len(), 5)
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for change in chunk {
            insert = insert
                .bind(deploy_key.to_string())
                .bind(&change.sha)
                .bind(change.committed_at)
                .bind(change.pull_request.as_ref().map(|n| pull_request_key(source, repo, n)))
                .bind(i64::from(change.revert));
        }
        insert.execute(&mut *conn).await?;
    }
    // The pull requests' times as stored now; their writes keep them current.
    sqlx::query(
        "UPDATE change_set_commits SET
            pr_opened_ns = (SELECT p.start_ns FROM spans p WHERE p.key = change_set_commits.pull_request_key),
            pr_reviewed_ns = (SELECT p.reviewed_ns FROM spans p WHERE p.key = change_set_commits.pull_request_key),
            pr_merged_ns = (SELECT CASE WHEN p.outcome = 'merged' THEN p.end_ns END FROM spans p
                            WHERE p.key = change_set_commits.pull_request_key)
         WHERE deploy_key = $1 AND pull_request_key IS NOT NULL",
    )
    .bind(deploy_key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Change-set rows per INSERT (5 values each, well under every bind limit).
const CHUNK: usize = 500;

/// The references of the spans a deploy's change set came from: each
/// commit's sha (pull requests answer to their merge and head commits) and the
/// pull request a commit message names.
pub fn change_set_refs(deploy: &ApiSpan, changes: &[ChangeRow]) -> Vec<String> {
    let Some(repo) = &deploy.repo else { return Vec::new() };
    let mut refs = Vec::new();
    for change in changes {
        refs.push(sha_alias(&deploy.source, repo, &change.sha));
        if let Some(number) = &change.pull_request {
            refs.push(pull_request_key(&deploy.source, repo, number).to_ascii_lowercase());
        }
    }
    refs
}
