//! Columns the metrics read, derived from a span's attributes when it is
//! written (and once by [`backfill`] for spans stored before they existed):
//! the span's metrics group, the commit it is about, a pull request's first
//! review, and whether it is rework. They keep metric queries on narrow
//! index rows instead of parsing every span's attributes.

use super::{StoreError, values_list};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};
use valuestream_core::span::Attributes;
use valuestream_core::time::Timestamp;
use valuestream_core::vocab::{HOTFIX_LABEL, attr, is_revert, kind as kinds};

/// The values a summary can group by (`summary::GROUP_KEYS`), in that order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupValues {
    pub source: String,
    pub kind: String,
    pub repo: Option<String>,
    pub project: Option<String>,
    pub environment: Option<String>,
    pub outcome: Option<String>,
}

impl GroupValues {
    /// The group's id: the first 63 bits of the SHA-256 of its values. A hash,
    /// not a sequence, so writers on several replicas agree without a lookup.
    pub fn id(&self) -> i64 {
        let text = serde_json::to_string(&(
            &self.source,
            &self.kind,
            &self.repo,
            &self.project,
            &self.environment,
            &self.outcome,
        ))
        .expect("strings serialize");
        let digest = Sha256::digest(text.as_bytes());
        let bytes: [u8; 8] = digest[..8].try_into().expect("8 bytes");
        (u64::from_be_bytes(bytes) >> 1) as i64
    }
}

/// The derived columns of one span.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricColumns {
    pub group: GroupValues,
    /// The commit a span is about: the one a build ran on or a deploy shipped
    /// (`vcs.ref.head.revision`), a merged pull request's merge commit, or an
    /// incident's root cause (`valuestream.root_cause`, often a prefix).
    pub revision: Option<String>,
    /// A pull request's first review (`valuestream.first_review_at`).
    pub reviewed_ns: Option<i64>,
    /// A pull request titled `Revert "…"` or labelled `hotfix` (metrics.md, rework).
    pub rework: bool,
}

impl MetricColumns {
    pub fn of(
        source: &str,
        kind: &str,
        repo: Option<&str>,
        project: Option<&str>,
        outcome: Option<&str>,
        attributes: &Attributes,
    ) -> MetricColumns {
        let text = |name: &str| attributes.get(name).and_then(|v| v.as_str());
        let title = text(attr::CHANGE_TITLE).unwrap_or("");
        let hotfix = attributes.get(attr::LABELS).and_then(|v| v.as_array()).is_some_and(|labels| {
            labels.iter().any(|label| label.as_str().is_some_and(|l| l.eq_ignore_ascii_case(HOTFIX_LABEL)))
        });
        MetricColumns {
            group: GroupValues {
                source: source.to_string(),
                kind: kind.to_string(),
                repo: repo.map(str::to_string),
                project: project.map(str::to_string),
                environment: text(attr::ENVIRONMENT).map(str::to_string),
                outcome: outcome.map(str::to_string),
            },
            revision: match kind {
                kinds::INCIDENT => text(attr::ROOT_CAUSE),
                kinds::PULL_REQUEST => text(attr::MERGE_COMMIT),
                _ => text(attr::HEAD_REVISION),
            }
            .map(str::to_string),
            reviewed_ns: text(attr::FIRST_REVIEW_AT).and_then(Timestamp::parse_rfc3339).map(|t| t.nanos()),
            rework: kind == kinds::PULL_REQUEST && (is_revert(title) || hotfix),
        }
    }
}

/// Makes sure `group` has its row in `span_groups` (idempotent).
pub async fn ensure_group(conn: &mut AnyConnection, group: &GroupValues) -> Result<i64, StoreError> {
    let id = group.id();
    sqlx::query(
        "INSERT INTO span_groups (id, source, kind, repo, project, environment, outcome)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(&group.source)
    .bind(&group.kind)
    .bind(group.repo.clone())
    .bind(group.project.clone())
    .bind(group.environment.clone())
    .bind(group.outcome.clone())
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

/// Rows per page when backfilling.
const PAGE: i64 = 2_000;
/// Spans between progress lines when backfilling.
const PROGRESS: u64 = 100_000;

/// Records whether the pull request `key` is rework (`rework_spans`).
pub async fn store_rework(conn: &mut AnyConnection, key: &str, rework: bool) -> Result<(), StoreError> {
    let sql = if rework {
        "INSERT INTO rework_spans (span_key) VALUES ($1) ON CONFLICT (span_key) DO NOTHING"
    } else {
        "DELETE FROM rework_spans WHERE span_key = $1"
    };
    sqlx::query(sql).bind(key).execute(&mut *conn).await?;
    Ok(())
}

/// Stores `key`'s links (`spans.links`) as rows of `span_links`.
pub async fn store_links(conn: &mut AnyConnection, key: &str, links: &[String]) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM span_links WHERE span_key = $1").bind(key).execute(&mut *conn).await?;
    for chunk in links.chunks(LINKS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO span_links (span_key, linked_key) VALUES {} ON CONFLICT (span_key, linked_key) DO NOTHING",
            values_list(chunk.len(), 2)
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for linked in chunk {
            insert = insert.bind(key.to_string()).bind(linked.clone());
        }
        insert.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Links per INSERT (2 values each).
const LINKS_PER_INSERT: usize = 500;

/// A pull request's times, as change sets copy them (nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PullRequestTimes {
    pub opened: i64,
    /// The earliest commit pushed to its head branch before it opened.
    pub first_commit: Option<i64>,
    pub reviewed: Option<i64>,
    pub merged: Option<i64>,
}

/// Copies a pull request's times into the change sets that ship it.
pub async fn update_pull_request_times(
    conn: &mut AnyConnection,
    key: &str,
    times: PullRequestTimes,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE change_set_commits SET pr_opened_ns = $1, pr_reviewed_ns = $2, pr_merged_ns = $3,
                pr_first_commit_ns = $4
         WHERE pull_request_key = $5",
    )
    .bind(times.opened)
    .bind(times.reviewed)
    .bind(times.merged)
    .bind(times.first_commit)
    .bind(key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Fills the derived columns and link rows of every span from its stored
/// attributes and links, a page of keys at a time. Returns the number of spans
/// updated.
pub async fn backfill(conn: &mut AnyConnection) -> Result<u64, StoreError> {
    let mut after = String::new();
    let mut updated = 0;
    let mut groups = std::collections::HashSet::new();
    loop {
        let rows = sqlx::query(
            "SELECT key, source, kind, repo, project, outcome, attributes, links FROM spans
             WHERE key > $1 ORDER BY key LIMIT $2",
        )
        .bind(&after)
        .bind(PAGE)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = rows.last() else { return Ok(updated) };
        after = last.try_get(0)?;
        for row in rows {
            let key: String = row.try_get(0)?;
            let attributes: Attributes = serde_json::from_str(&row.try_get::<String, _>(6)?)
                .map_err(|e| StoreError::Corrupt(format!("attributes of {key}: {e}")))?;
            let columns = MetricColumns::of(
                &row.try_get::<String, _>(1)?,
                &row.try_get::<String, _>(2)?,
                row.try_get::<Option<String>, _>(3)?.as_deref(),
                row.try_get::<Option<String>, _>(4)?.as_deref(),
                row.try_get::<Option<String>, _>(5)?.as_deref(),
                &attributes,
            );
            let group_id = columns.group.id();
            if groups.insert(group_id) {
                ensure_group(conn, &columns.group).await?;
            }
            sqlx::query(
                "UPDATE spans SET group_id = $1, environment = $2, revision = $3, reviewed_ns = $4 WHERE key = $5",
            )
            .bind(group_id)
            .bind(columns.group.environment.clone())
            .bind(columns.revision.clone())
            .bind(columns.reviewed_ns)
            .bind(&key)
            .execute(&mut *conn)
            .await?;
            if columns.rework {
                store_rework(conn, &key, true).await?;
            }
            let links: Vec<String> = serde_json::from_str(&row.try_get::<String, _>(7)?)
                .map_err(|e| StoreError::Corrupt(format!("links of {key}: {e}")))?;
            if !links.is_empty() {
                store_links(conn, &key, &links).await?;
            }
            updated += 1;
            if updated % PROGRESS == 0 {
                tracing::info!(spans = updated, "Filled the metrics columns of stored spans so far.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn group(repo: Option<&str>, outcome: Option<&str>) -> GroupValues {
        GroupValues {
            source: "github".into(),
            kind: "build".into(),
            repo: repo.map(str::to_string),
            project: None,
            environment: None,
            outcome: outcome.map(str::to_string),
        }
    }

    #[test]
    fn group_ids_are_stable_positive_and_tell_null_from_empty() {
        let a = group(Some("org/a"), Some("success"));
        assert_eq!(a.id(), a.clone().id());
        assert!(a.id() >= 0);
        assert_ne!(a.id(), group(Some("org/a"), Some("failure")).id());
        assert_ne!(group(None, None).id(), group(Some(""), None).id());
        assert_ne!(group(Some("org/a"), None).id(), group(None, Some("org/a")).id());
    }

    #[test]
    fn columns_come_from_attributes() {
        let attributes: Attributes = serde_json::from_value(json!({
            "valuestream.merge_commit_sha": "abc123",
            "valuestream.first_review_at": "2026-01-02T03:04:05Z",
            "vcs.change.title": "Revert \"Add login\"",
            "deployment.environment.name": "production",
        }))
        .unwrap();
        let columns = MetricColumns::of("github", "pull_request", Some("org/a"), None, Some("merged"), &attributes);
        assert_eq!(columns.revision.as_deref(), Some("abc123"));
        assert_eq!(columns.reviewed_ns, Timestamp::parse_rfc3339("2026-01-02T03:04:05Z").map(|t| t.nanos()));
        assert!(columns.rework);
        assert_eq!(columns.group.environment.as_deref(), Some("production"));

        let hotfix: Attributes = serde_json::from_value(json!({"valuestream.labels": ["HotFix"]})).unwrap();
        assert!(MetricColumns::of("github", "pull_request", None, None, None, &hotfix).rework);
        // Only pull requests are rework by title or label; a build is not.
        assert!(!MetricColumns::of("github", "build", None, None, None, &hotfix).rework);
        let plain: Attributes = serde_json::from_value(json!({"vcs.change.title": "Reverting the cache"})).unwrap();
        assert!(!MetricColumns::of("github", "pull_request", None, None, None, &plain).rework);
    }
}
