//! Faults a test injects into a running store: a disk that fills up (SQLite's
//! `PRAGMA max_page_count` on every connection), a COMMIT that fails after the
//! database rolled the transaction back (what SQLite does on a full disk or an
//! I/O error), and a writer that panics inside its transaction.
//!
//! Nothing sets them outside tests; unset, each costs one atomic load.

use super::{Store, StoreError};
use sqlx::{AnyConnection, Executor, Row};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// SQLite's largest `max_page_count`: no limit.
const NO_PAGE_LIMIT: u64 = 4_294_967_294;

#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// `PRAGMA max_page_count` for every connection at its next use; 0: never set.
    page_limit: AtomicU64,
    /// COMMITs of the writer still to fail.
    failing_commits: AtomicUsize,
    /// Groups the writer still panics on.
    panics: AtomicUsize,
}

impl Faults {
    /// Brings a connection in line with the faults set (run whenever the
    /// pool hands a connection out or opens one).
    pub(crate) async fn prepare(&self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        if let Some(pragma) = self.page_limit_pragma() {
            conn.execute(sqlx::AssertSqlSafe(pragma)).await?;
        }
        Ok(())
    }

    /// Just before the writer's COMMIT: when a failing commit is due, the
    /// transaction is rolled back behind sqlx's back, so the COMMIT that
    /// follows fails as it does after SQLite rolled back on its own.
    pub(crate) async fn before_commit(&self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        if self.commit_fails_now() {
            conn.execute("ROLLBACK").await?;
        }
        Ok(())
    }

    /// The statement that brings a connection in line with the page limit
    /// set, if one is ([`Faults::prepare`]; the SQLite writer's own
    /// connection runs it too, store/db.rs).
    pub(crate) fn page_limit_pragma(&self) -> Option<String> {
        let limit = self.page_limit.load(Ordering::Relaxed);
        (limit > 0).then(|| format!("PRAGMA max_page_count = {limit}"))
    }

    /// Whether this COMMIT is one of the failing ones due; if so, the caller
    /// rolls back first ([`Faults::before_commit`]; likewise store/db.rs).
    pub(crate) fn commit_fails_now(&self) -> bool {
        take(&self.failing_commits)
    }

    /// Inside the writer's transaction: panics when a panic is due.
    pub(crate) fn maybe_panic(&self) {
        if take(&self.panics) {
            panic!("injected fault: the writer panics inside its transaction");
        }
    }
}

fn take(counter: &AtomicUsize) -> bool {
    counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
}

/// Test hooks. Not part of the service's interface.
impl Store {
    /// SQLite only: from each connection's next use on, the database may grow
    /// by `pages` more pages at most, as if the disk were that close to full
    /// (writes beyond fail with "database or disk is full"); `None` makes room.
    #[doc(hidden)]
    pub async fn limit_growth(&self, pages: Option<u64>) -> Result<(), StoreError> {
        let limit = match pages {
            None => NO_PAGE_LIMIT,
            Some(pages) => {
                let count: i64 = sqlx::query("PRAGMA page_count").fetch_one(&self.pool).await?.try_get(0)?;
                count as u64 + pages
            }
        };
        self.faults.page_limit.store(limit, Ordering::Relaxed);
        Ok(())
    }

    /// SQLite only: the writer's next `count` COMMITs fail, the transaction
    /// already rolled back by the database.
    #[doc(hidden)]
    pub fn fail_commits(&self, count: usize) {
        self.faults.failing_commits.store(count, Ordering::Relaxed);
    }

    /// The writer panics on its next `count` groups, inside the transaction.
    #[doc(hidden)]
    pub fn panic_in_writer(&self, count: usize) {
        self.faults.panics.store(count, Ordering::Relaxed);
    }
}
