//! Spans that never end (docs/operations.md). A span whose close webhook
//! was missed would stay open for ever; with `--expire-open-after`, an open
//! span whose start is older than the age is `expired`. It keeps its events
//! and its fold (`end_ns` stays NULL, so it counts in no duration, lead time
//! or DORA key), shows and exports its start plus the age as its end
//! (`expired_ns`), and counts in no open count. A later close closes it as
//! any open span.
//!
//! The writer applies the rule in two places, each in its own transaction
//! under the writer lock: when it refolds a span (one that arrives, or
//! reopens, older than the age is stored expired at once; store/apply.rs),
//! and in the sweep here, which expires spans as they grow old and, once
//! after start-up, brings stored expiries in line with the setting served
//! now (another age moves their ends, none reopens them). The end depends
//! only on the start and the age, never on when the sweep ran.

use super::apply::{WRITER_LOCK, enqueue_export};
use super::db::Db;
use super::outbox;
use super::query::load_span;
use super::{Backend, Store, StoreError};
use sqlx::{Connection, Row};
use std::time::Duration;
use valuestream_core::span::{Span, SpanState, expires_at};
use valuestream_core::time::Timestamp;

/// Spans changed per sweep transaction at most: a long sweep (expiry switched
/// on over a long history) goes in steps, and deliveries commit in between.
/// A step of 200 spans, each queued for export, took about 40 ms on SQLite
/// and 150 ms on PostgreSQL (debug build, busy 2-core machine): the longest
/// a delivery waits behind one.
pub const SWEEP_STEP: usize = 200;

/// What the writer needs to decide a span's expiry as it refolds it.
#[derive(Clone, Copy, Debug)]
pub(super) struct ExpiryRule {
    /// `--expire-open-after`; `None` for a handle that expires nothing (replay).
    pub age: Option<Duration>,
    /// The delivery's receipt time.
    pub now: Timestamp,
}

impl ExpiryRule {
    /// The end `span` is stored expired with, if it is expired: an open
    /// span's start plus the age once that has passed. A handle without an
    /// age keeps the expiry the span had (`stored`): replay does not undo what
    /// the server decided. A closed span is never expired.
    pub(super) fn expired_at(&self, span: &Span, stored: Option<i64>) -> Option<Timestamp> {
        if span.state != SpanState::Open {
            return None;
        }
        match self.age {
            Some(age) => expires_at(span.start, age, self.now),
            None => stored.map(Timestamp),
        }
    }
}

/// What one sweep step changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Open spans that expired.
    pub expired: usize,
    /// Expired spans open again: younger than the age served now, or served without one.
    pub reopened: usize,
    /// Expired spans whose end moved to their start plus the age served now.
    pub redated: usize,
    /// Spans queued for export.
    pub queued: usize,
    /// A step was full: there may be more to do at once.
    pub more: bool,
}

impl Swept {
    pub fn changed(&self) -> usize {
        self.expired + self.reopened + self.redated
    }

    /// Adds `other`'s counts (the steps of one sweep).
    pub fn add(&mut self, other: Swept) {
        self.expired += other.expired;
        self.reopened += other.reopened;
        self.redated += other.redated;
        self.queued += other.queued;
        self.more = other.more;
    }
}

impl Store {
    /// One step of the writer's sweep at `now`, in one transaction under the
    /// writer lock: when `reconcile`, up to [`SWEEP_STEP`] expired spans are
    /// brought in line with this handle's age first (after start-up); then
    /// up to [`SWEEP_STEP`] open spans at least the age old expire, the
    /// oldest first, each read from a partial index of open spans by start.
    /// `export` queues what changed for the backend in the same transaction.
    pub async fn sweep_expired(&self, now: Timestamp, reconcile: bool, export: bool) -> Result<Swept, StoreError> {
        let age = self.expire_open_after.map(|age| i64::try_from(age.as_nanos()).unwrap_or(i64::MAX));
        if age.is_none() && !reconcile {
            return Ok(Swept::default());
        }
        let mut conn = self.write_connection().await?;
        let mut tx = conn.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITER_LOCK).execute(&mut *tx).await?;
        }
        let mut swept = Swept::default();
        let mut changed: Vec<String> = Vec::new();
        // Spans expired with the age served now are those started at or before the cutoff.
        let cutoff = age.map(|age| now.nanos().saturating_sub(age));

        if reconcile {
            let rows = match (age, cutoff) {
                (Some(age), Some(cutoff)) => {
                    sqlx::query(
                        "SELECT key, start_ns FROM spans WHERE state = 'expired'
                           AND (start_ns > $1 OR expired_ns IS NULL OR expired_ns <> start_ns + $2)
                         ORDER BY start_ns, key LIMIT $3",
                    )
                    .bind(cutoff)
                    .bind(age)
                    .bind(SWEEP_STEP as i64)
                    .fetch_all(&mut *tx)
                    .await?
                }
                _ => {
                    sqlx::query(
                        "SELECT key, start_ns FROM spans WHERE state = 'expired' ORDER BY start_ns, key LIMIT $1",
                    )
                    .bind(SWEEP_STEP as i64)
                    .fetch_all(&mut *tx)
                    .await?
                }
            };
            swept.more |= rows.len() == SWEEP_STEP;
            for row in rows {
                let (key, start): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
                match (age, cutoff) {
                    (Some(age), Some(cutoff)) if start <= cutoff => {
                        sqlx::query("UPDATE spans SET expired_ns = $1 WHERE key = $2")
                            .bind(start + age)
                            .bind(&key)
                            .execute(&mut *tx)
                            .await?;
                        swept.redated += 1;
                        changed.push(key);
                    }
                    _ => {
                        sqlx::query("UPDATE spans SET state = 'open', expired_ns = NULL WHERE key = $1")
                            .bind(&key)
                            .execute(&mut *tx)
                            .await?;
                        if export {
                            // Open again: an expired end still settling is not its end any more.
                            outbox::withdraw(&mut Db::Any(&mut tx), &key).await?;
                        }
                        swept.reopened += 1;
                    }
                }
            }
        }

        if let (Some(age), Some(cutoff)) = (age, cutoff) {
            let rows = sqlx::query(
                "SELECT key FROM spans WHERE state = 'open' AND start_ns <= $1 ORDER BY start_ns, key LIMIT $2",
            )
            .bind(cutoff)
            .bind(SWEEP_STEP as i64)
            .fetch_all(&mut *tx)
            .await?;
            swept.more |= rows.len() == SWEEP_STEP;
            let keys = rows.iter().map(|row| row.try_get::<String, _>(0)).collect::<Result<Vec<_>, _>>()?;
            if !keys.is_empty() {
                let placeholders: Vec<String> = (0..keys.len()).map(|i| format!("${}", i + 2)).collect();
                let sql = format!(
                    "UPDATE spans SET state = 'expired', expired_ns = start_ns + $1
                     WHERE state = 'open' AND key IN ({})",
                    placeholders.join(", ")
                );
                let mut update = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(age);
                for key in &keys {
                    update = update.bind(key.clone());
                }
                update.execute(&mut *tx).await?;
                swept.expired = keys.len();
                changed.extend(keys);
            }
        }

        if export {
            for key in &changed {
                let span = load_span(&mut Db::Any(&mut tx), key)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("span {key} vanished")))?;
                if enqueue_export(&mut Db::Any(&mut tx), &span, true, now).await? {
                    swept.queued += 1;
                }
            }
        }
        if super::rebuild::under_way(&mut Db::Any(&mut tx)).await? {
            // A `serve` left running during a rebuild: nothing is swept (the
            // rebuild sweeps once it has finished); the step is rolled back.
            tx.rollback().await?;
            conn.release();
            return Ok(Swept::default());
        }
        tx.commit().await?;
        conn.release();
        Ok(swept)
    }
}
