//! Columns the metrics read, derived from a span's attributes when it is
//! written (and once by [`backfill`] for spans stored before they existed):
//! the span's metrics group, the commit it is about, a pull request's first
//! review, and whether it is rework. They keep metric queries on narrow
//! index rows instead of parsing every span's attributes.

use super::db::{Db, query};
use super::{StoreError, values_list};
use valuestream_core::span::Attributes;

pub use valuestream_core::settle::{GroupValues, MetricColumns, PullRequestTimes};

/// Makes sure `group` has its row in `span_groups` (idempotent).
pub async fn ensure_group(conn: &mut Db<'_>, group: &GroupValues) -> Result<i64, StoreError> {
    let id = group.id();
    query(
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
pub async fn store_rework(conn: &mut Db<'_>, key: &str, rework: bool) -> Result<(), StoreError> {
    let sql = if rework {
        "INSERT INTO rework_spans (span_key) VALUES ($1) ON CONFLICT (span_key) DO NOTHING"
    } else {
        "DELETE FROM rework_spans WHERE span_key = $1"
    };
    query(sql).bind(key).execute(&mut *conn).await?;
    Ok(())
}

/// Stores `key`'s links (`spans.links`) as rows of `span_links`.
pub async fn store_links(conn: &mut Db<'_>, key: &str, links: &[String]) -> Result<(), StoreError> {
    query("DELETE FROM span_links WHERE span_key = $1").bind(key).execute(&mut *conn).await?;
    for chunk in links.chunks(LINKS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO span_links (span_key, linked_key) VALUES {} ON CONFLICT (span_key, linked_key) DO NOTHING",
            values_list(chunk.len(), 2)
        );
        let mut insert = query(sql);
        for linked in chunk {
            insert = insert.bind(key.to_string()).bind(linked.clone());
        }
        insert.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Links per INSERT (2 values each).
const LINKS_PER_INSERT: usize = 500;

/// Copies a pull request's times into the change sets that ship it.
pub async fn update_pull_request_times(
    conn: &mut Db<'_>,
    key: &str,
    times: PullRequestTimes,
) -> Result<(), StoreError> {
    query(
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
pub async fn backfill(conn: &mut Db<'_>) -> Result<u64, StoreError> {
    let mut after = String::new();
    let mut updated = 0;
    let mut groups = std::collections::HashSet::new();
    loop {
        let rows = query(
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
            query("UPDATE spans SET group_id = $1, environment = $2, revision = $3, reviewed_ns = $4 WHERE key = $5")
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
