//! The export outbox: finished spans waiting for the trace backend.
//!
//! The writer keeps at most one row per span, stamped with the receipt time of
//! the delivery that last changed it (in that delivery's transaction, so an
//! acknowledged end is never lost). The export task sends a row once it has
//! stayed unchanged for the settle delay, then records in `span_exports` the
//! end and outcome the backend now has. A later change that moves neither is
//! not queued again; one that moves either is, and counts as a re-export.

use super::db::{Db, query};
use super::{ApiSpan, Store, StoreError};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use valuestream_core::span::Attributes;
use valuestream_core::time::Timestamp;
use valuestream_core::vocab;

/// A finished span as queued in the outbox and sent to the backend, with the
/// ids known when it ended: the outbox's row (`payload`), so it belongs to
/// the store; `export/` reads it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportSpan {
    pub key: String,
    pub source: String,
    pub kind: String,
    /// As [`valuestream_core::export::name`] gives it, e.g. `pull_request hello-world#42`.
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub start: Timestamp,
    pub end: Timestamp,
    pub outcome: Option<String>,
    pub attributes: Attributes,
    pub links: Vec<ExportLink>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportLink {
    pub trace_id: String,
    pub span_id: String,
}

impl ExportSpan {
    pub fn from_api(span: &ApiSpan, links: Vec<ExportLink>) -> ExportSpan {
        let mut attributes = valuestream_core::export::attributes(
            &span.key,
            &span.kind,
            span.outcome.as_deref(),
            span.repo.as_deref(),
            &span.attributes,
        );
        if span.state == vocab::state::EXPIRED {
            // Its end is its start plus --expire-open-after, not a time any payload gave.
            attributes.insert(vocab::attr::EXPIRED.into(), true.into());
        }
        ExportSpan {
            key: span.key.clone(),
            source: span.source.clone(),
            kind: span.kind.clone(),
            name: span.name.clone(),
            trace_id: span.trace_id.clone(),
            span_id: span.span_id.clone(),
            parent_span_id: span.parent_span_id.clone(),
            start: span.start,
            end: span.end.unwrap_or(span.start),
            outcome: span.outcome.clone(),
            attributes,
            links,
        }
    }
}

/// Whether `key` has a row waiting in the outbox.
pub(super) async fn waiting(conn: &mut Db<'_>, key: &str) -> Result<bool, StoreError> {
    let row = query("SELECT COUNT(*) FROM outbox WHERE span_key = $1").bind(key).fetch_one(&mut *conn).await?;
    Ok(row.try_get::<i64, _>(0)? > 0)
}

/// Drops what waits for `key` (the span reopened: it has no end to export).
pub(super) async fn withdraw(conn: &mut Db<'_>, key: &str) -> Result<(), StoreError> {
    query("DELETE FROM outbox WHERE span_key = $1").bind(key).execute(&mut *conn).await?;
    Ok(())
}

/// Puts `span` in the outbox as changed at `changed_at`, replacing what waited
/// for it; returns whether a row was written. Nothing is queued when the
/// backend already has this end and outcome, and a row identical to the one
/// waiting keeps its stamp (the settle delay is not restarted by a delivery
/// that changed nothing).
pub(super) async fn queue(conn: &mut Db<'_>, span: &ExportSpan, changed_at: Timestamp) -> Result<bool, StoreError> {
    if sent(conn, &span.key).await?.is_some_and(|sent| sent.matches(span)) {
        withdraw(conn, &span.key).await?;
        return Ok(false);
    }
    let payload = serde_json::to_string(span).expect("export spans serialize");
    let rows = query("SELECT payload FROM outbox WHERE span_key = $1").bind(&span.key).fetch_all(&mut *conn).await?;
    if let [row] = rows.as_slice()
        && row.try_get::<String, _>("payload")? == payload
    {
        return Ok(false);
    }
    if !rows.is_empty() {
        withdraw(conn, &span.key).await?;
    }
    query("INSERT INTO outbox (span_key, payload, enqueued_at, attempts, changed_at) VALUES ($1, $2, $3, 0, $4)")
        .bind(&span.key)
        .bind(payload)
        .bind(span.end.nanos())
        .bind(changed_at.nanos())
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

/// What the backend last received of a span.
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    pub end: Timestamp,
    pub outcome: Option<String>,
}

impl Sent {
    /// Whether `span` has the end and outcome the backend already has.
    pub fn matches(&self, span: &ExportSpan) -> bool {
        self.end == span.end && self.outcome == span.outcome
    }
}

async fn sent(conn: &mut Db<'_>, key: &str) -> Result<Option<Sent>, StoreError> {
    let row = query("SELECT end_ns, outcome FROM span_exports WHERE span_key = $1")
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(row) => Some(Sent { end: Timestamp(row.try_get("end_ns")?), outcome: row.try_get("outcome")? }),
        None => None,
    })
}

/// A row of the outbox that is due for export.
#[derive(Clone, Debug)]
pub struct Due {
    pub id: i64,
    pub span: ExportSpan,
    /// What the backend already has of this span, if it was exported before.
    pub sent: Option<Sent>,
}

impl Store {
    /// The oldest rows that have not changed since `changed_before`, at most `limit`.
    /// Nothing is due while a rebuild is under way: its spans are not settled.
    pub async fn outbox_due(&self, changed_before: Timestamp, limit: usize) -> Result<Vec<Due>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.id, o.payload, e.end_ns AS sent_end_ns, e.outcome AS sent_outcome FROM outbox o
             LEFT JOIN span_exports e ON e.span_key = o.span_key
             WHERE o.changed_at <= $1
               AND NOT EXISTS (SELECT 1 FROM pending_tasks WHERE name = 'rebuild')
             ORDER BY o.id LIMIT $2",
        )
        .bind(changed_before.nanos())
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let payload: String = row.try_get("payload")?;
            let span =
                serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt(format!("outbox row {id}: {e}")))?;
            let sent = match row.try_get::<Option<i64>, _>("sent_end_ns")? {
                Some(end) => Some(Sent { end: Timestamp(end), outcome: row.try_get("sent_outcome")? }),
                None => None,
            };
            due.push(Due { id, span, sent });
        }
        Ok(due)
    }

    /// The backend acknowledged `sent`: their rows leave the outbox and their
    /// end and outcome are remembered. `dropped` rows leave it unsent (the
    /// backend already had what they hold).
    pub async fn outbox_sent(&self, sent: &[Due], dropped: &[Due]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for row in sent.iter().chain(dropped) {
            sqlx::query("DELETE FROM outbox WHERE id = $1").bind(row.id).execute(&mut *tx).await?;
        }
        for row in sent {
            sqlx::query(
                "INSERT INTO span_exports (span_key, end_ns, outcome, exports) VALUES ($1, $2, $3, 1)
                 ON CONFLICT (span_key) DO UPDATE SET
                    end_ns = excluded.end_ns, outcome = excluded.outcome, exports = span_exports.exports + 1",
            )
            .bind(&row.span.key)
            .bind(row.span.end.nanos())
            .bind(row.span.outcome.clone())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Counts a failed attempt for spans still waiting.
    pub async fn outbox_failed(&self, ids: &[i64]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query("UPDATE outbox SET attempts = attempts + 1 WHERE id = $1").bind(*id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// When the least recently changed waiting row changed, if any row waits.
    pub async fn outbox_oldest_change(&self) -> Result<Option<Timestamp>, StoreError> {
        let row = sqlx::query("SELECT MIN(changed_at) FROM outbox").fetch_one(&self.pool).await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.map(Timestamp))
    }

    /// How many spans wait for export (settling or due).
    pub async fn outbox_len(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM outbox").fetch_one(&self.pool).await?;
        Ok(row.try_get(0)?)
    }
}
