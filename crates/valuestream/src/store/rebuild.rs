//! The store's half of `valuestream rebuild`: forget everything derived from
//! the stored deliveries, hand the deliveries back in the order they arrived,
//! and remember that a rebuild is under way until it has finished.
//!
//! The deliveries themselves are never changed (beyond their status), so a
//! rebuild that stops half-way loses nothing: running it again starts over.

use super::apply::WRITER_LOCK;
use super::db::{Db, query};
use super::{Backend, Store, StoreError, decode_body};
use sqlx::{Connection, Row};
use std::collections::BTreeMap;
use valuestream_core::time::Timestamp;

/// The `pending_tasks` row that says a rebuild began and has not finished.
pub(super) const REBUILD_TASK: &str = "rebuild";

/// Every table derived from the deliveries (and so emptied by a rebuild).
/// Kept: `deliveries`; `span_exports`, what the trace backend already has, so
/// a rebuilt span that did not change is not sent again; `span_groups`, ids
/// shared by every span of a metrics group (rows are added as needed);
/// `pending_tasks`.
const DERIVED_TABLES: &[&str] = &[
    "span_events",
    "spans",
    "span_refs",
    "span_parent_refs",
    "span_link_refs",
    "span_links",
    "rework_spans",
    "pushes",
    "push_commits",
    "branch_commits",
    "change_sets",
    "change_set_commits",
    "incident_causes",
    "outbox",
];

/// Whether a rebuild is under way, inside the caller's transaction.
pub(super) async fn under_way(conn: &mut Db<'_>) -> Result<bool, StoreError> {
    let row =
        query("SELECT COUNT(*) FROM pending_tasks WHERE name = $1").bind(REBUILD_TASK).fetch_one(&mut *conn).await?;
    Ok(row.try_get::<i64, _>(0)? > 0)
}

/// One delivery as the store keeps it, body decoded.
#[derive(Debug, Clone)]
pub struct StoredDelivery {
    pub id: String,
    pub source: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub received_at: Timestamp,
}

/// A stored delivery whose row cannot be read back (headers that are not
/// JSON, a body encoding this version does not know).
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub id: String,
    pub received_at: Timestamp,
    pub reason: String,
}

/// Where the next page of [`Store::stored_deliveries`] starts: after this
/// arrival time and id.
pub type ArrivalCursor = (i64, String);

impl Store {
    /// Starts a rebuild: in one transaction under the writer lock, empties
    /// every derived table and records that a rebuild is under way. Returns
    /// how many deliveries are stored.
    pub async fn begin_rebuild(&self) -> Result<u64, StoreError> {
        let mut conn = self.write_connection().await?;
        let mut tx = conn.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITER_LOCK).execute(&mut *tx).await?;
        }
        for table in DERIVED_TABLES {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}"))).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO pending_tasks (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(REBUILD_TASK)
            .execute(&mut *tx)
            .await?;
        let stored: i64 = sqlx::query("SELECT COUNT(*) FROM deliveries").fetch_one(&mut *tx).await?.try_get(0)?;
        tx.commit().await?;
        conn.release();
        Ok(stored as u64)
    }

    /// Ends a rebuild begun by [`Store::begin_rebuild`].
    pub async fn finish_rebuild(&self) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM pending_tasks WHERE name = $1").bind(REBUILD_TASK).execute(&self.pool).await?;
        Ok(())
    }

    /// Whether a rebuild began and did not finish: the spans and metrics are
    /// then incomplete until `valuestream rebuild` runs again.
    pub async fn rebuild_unfinished(&self) -> Result<bool, StoreError> {
        under_way(&mut Db::Any(&mut *self.pool.acquire().await?)).await
    }

    /// Up to `limit` stored deliveries after `after`, in the order they
    /// arrived (then by id), with their bodies decoded. A row whose headers
    /// or body cannot be read is handed back as its id and the reason (the
    /// caller counts it and goes on: one such row must not stop a rebuild).
    pub async fn stored_deliveries(
        &self,
        after: Option<&ArrivalCursor>,
        limit: usize,
    ) -> Result<Vec<Result<StoredDelivery, Unreadable>>, StoreError> {
        let (received_at, id) = after.cloned().unwrap_or((i64::MIN, String::new()));
        let rows = sqlx::query(
            "SELECT id, source, headers, body, body_encoding, received_at FROM deliveries
             WHERE (received_at, id) > ($1, $2)
             ORDER BY received_at, id LIMIT $3",
        )
        .bind(received_at)
        .bind(id)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("id")?;
            let received_at = Timestamp(row.try_get("received_at")?);
            let headers: String = row.try_get("headers")?;
            let encoding: String = row.try_get("body_encoding")?;
            let body: Vec<u8> = row.try_get("body")?;
            let decoded = serde_json::from_str(&headers)
                .map_err(|e| format!("its headers are not a JSON object: {e}"))
                .and_then(|headers| {
                    let body = decode_body(&encoding, &body).map_err(|e| format!("its body cannot be decoded: {e}"))?;
                    Ok((headers, body))
                });
            deliveries.push(match decoded {
                Ok((headers, body)) => {
                    Ok(StoredDelivery { source: row.try_get("source")?, headers, body, received_at, id })
                }
                Err(reason) => Err(Unreadable { id, received_at, reason }),
            });
        }
        Ok(deliveries)
    }
}
