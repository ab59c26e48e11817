//! Changes and change sets (metrics.md): the commits that reached a default
//! branch, in branch order, and which of them a deploy ships.
//!
//! Span conventions this relies on (our vocabulary, not a vendor's): a deploy
//! span has kind `deploy`, attributes `vcs.ref.head.revision` (the deployed
//! sha) and `deployment.environment.name`; a span answers to
//! `{source}:{repo}:sha:{sha}` for commits it carries and a deploy to
//! `{source}:{repo}:deployed:{sha}`.

use super::StoreError;
use super::query::ApiSpan;
use sqlx::{AnyConnection, Row};
use std::collections::HashMap;

pub use valuestream_core::link::{deployed_alias, sha_alias};

/// One recorded commit, in branch order.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeRow {
    pub sha: String,
    pub committed_at: i64,
    pub pull_request: Option<String>,
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
        "SELECT push_after, position, sha, committed_at, pull_request FROM commits WHERE source = $1 AND repo = $2",
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
            ChangeRow { sha: row.try_get(2)?, committed_at: row.try_get(3)?, pull_request: row.try_get(4)? },
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

/// The successful deploys of `deploy`'s repository and environment, as
/// (end, key, deployed sha), in time order.
async fn successful_deploys(
    conn: &mut AnyConnection,
    deploy: &ApiSpan,
) -> Result<Vec<(i64, String, Option<String>)>, StoreError> {
    let Some(repo) = &deploy.repo else { return Ok(Vec::new()) };
    let environment = attribute(deploy, "deployment.environment.name").unwrap_or("");
    let mut deploys = Vec::new();
    for row in sqlx::query(
        "SELECT end_ns, attributes, key FROM spans
         WHERE kind = 'deploy' AND source = $1 AND repo = $2 AND outcome = 'success' AND end_ns IS NOT NULL",
    )
    .bind(&deploy.source)
    .bind(repo)
    .fetch_all(&mut *conn)
    .await?
    {
        let attributes: serde_json::Value = serde_json::from_str(&row.try_get::<String, _>(1)?).unwrap_or_default();
        if attributes["deployment.environment.name"].as_str().unwrap_or("") == environment {
            let sha = attributes["vcs.ref.head.revision"].as_str().map(str::to_string);
            deploys.push((row.try_get(0)?, row.try_get(2)?, sha));
        }
    }
    deploys.sort();
    Ok(deploys)
}

/// The next successful deploy after `deploy` of the same repository and
/// environment: its change set starts where `deploy`'s ends.
pub async fn next_deploy(conn: &mut AnyConnection, deploy: &ApiSpan) -> Result<Option<String>, StoreError> {
    let Some(end) = deploy.end else { return Ok(None) };
    let position = (end.nanos(), deploy.key.clone());
    Ok(successful_deploys(conn, deploy)
        .await?
        .into_iter()
        .find(|(other_end, key, _)| (*other_end, key.clone()) > position)
        .map(|(_, key, _)| key))
}

/// The changes a successful deploy ships: the recorded commits up to and
/// including its sha that no earlier successful deploy of the same repository
/// and environment shipped. Empty when the sha is unknown or not recorded.
pub async fn change_set(conn: &mut AnyConnection, deploy: &ApiSpan) -> Result<Vec<ChangeRow>, StoreError> {
    let (Some(repo), Some(sha), Some(end)) = (&deploy.repo, attribute(deploy, "vcs.ref.head.revision"), deploy.end)
    else {
        return Ok(Vec::new());
    };
    if deploy.outcome.as_deref() != Some("success") {
        return Ok(Vec::new());
    }
    let commits = ordered_commits(conn, &deploy.source, repo).await?;
    let Some(upto) = commits.iter().position(|c| c.sha.eq_ignore_ascii_case(sha)) else {
        return Ok(Vec::new());
    };
    // The latest earlier successful deploy of this repository and environment.
    let position = (end.nanos(), deploy.key.clone());
    let previous_sha = successful_deploys(conn, deploy)
        .await?
        .into_iter()
        .rfind(|(other_end, key, _)| (*other_end, key.clone()) < position)
        .and_then(|(_, _, sha)| sha);
    let from =
        previous_sha.and_then(|p| commits.iter().position(|c| c.sha.eq_ignore_ascii_case(&p))).map_or(0, |i| i + 1);
    Ok(if from <= upto { commits[from..=upto].to_vec() } else { Vec::new() })
}

/// The references of the spans a deploy's change set came from: each
/// commit's sha (pull requests answer to their merge and head commits) and the
/// pull request a commit message names.
pub async fn change_set_refs(conn: &mut AnyConnection, deploy: &ApiSpan) -> Result<Vec<String>, StoreError> {
    let Some(repo) = &deploy.repo else { return Ok(Vec::new()) };
    let mut refs = Vec::new();
    for change in change_set(conn, deploy).await? {
        refs.push(sha_alias(&deploy.source, repo, &change.sha));
        if let Some(number) = &change.pull_request {
            refs.push(format!("{}:{repo}:pull_request:{number}", deploy.source).to_ascii_lowercase());
        }
    }
    Ok(refs)
}
