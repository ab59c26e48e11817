//! The store: deliveries, span events, spans, trace references and the export
//! outbox, in SQLite (embedded default) or PostgreSQL, through one set of SQL.
//!
//! Architecture Invariant: the SQL here is portable — times are integer
//! nanoseconds, JSON is text, placeholders are `$n`, lists are aggregated with
//! `string_agg` (PostgreSQL; SQLite 3.44+, which sqlx bundles) and partial
//! indexes are plain `WHERE kind = '…'` — so both databases run it.

mod apply;
pub mod changes;
mod columns;
mod faults;
mod query;

pub use apply::{Ack, AckStatus, Applicable, Transition};
pub use query::{ApiSpan, SpanFilter, decode_cursor, encode_cursor};

use faults::Faults;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{AnyPool, Connection, Executor};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Longest `/readyz` waits for the database to answer.
const PING_WITHIN: Duration = Duration::from_secs(2);

/// `$1, $2, …` style placeholders for a multi-row VALUES list of `rows` × `columns`.
pub(crate) fn values_list(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (1..=columns).map(|c| format!("${}", r * columns + c)).collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
}

/// Which database the store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    faults: Arc<Faults>,
}

impl Store {
    /// Connects to `url` (`sqlite://PATH`, created when missing, or `postgres://…`).
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let with_mode = if rest.contains("mode=") {
                url.to_string()
            } else if rest.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, with_mode)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let faults = Arc::new(Faults::default());
        let (on_connect, on_acquire) = (faults.clone(), faults.clone());
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                let faults = on_connect.clone();
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets the API read while the writer commits; FULL
                        // makes every commit durable before a 2xx goes out.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        // Shorter than the webhook's answer deadline, so a database
                        // locked by another process is an error the writer sees, not a hang.
                        conn.execute("PRAGMA busy_timeout = 3000").await?;
                    }
                    faults.prepare(conn).await
                })
            })
            .before_acquire(move |conn, _meta| {
                let faults = on_acquire.clone();
                Box::pin(async move {
                    faults.prepare(conn).await?;
                    Ok(true)
                })
            })
            // SQLite rolls a whole transaction back by itself on some errors (a
            // full disk, an I/O error); sqlx's ROLLBACK then fails and it still
            // counts the connection inside a transaction, so its next BEGIN would
            // only open a savepoint of a transaction that never ends. A
            // connection that comes back still counted inside a transaction (its
            // rollback failed, or has not run yet) is closed, never reused.
            .after_release(|conn, _meta| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
            .connect_with(options)
            .await?;
        Ok(Store { pool, backend, faults })
    }

    /// Applies the migrations that have not run yet, then any one-time task
    /// they left (filling new derived columns of stored spans).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&self.pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&self.pool).await?,
        }
        self.run_pending_tasks().await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for read-only queries elsewhere in the crate (metrics).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the database answers, within [`PING_WITHIN`] (for `/readyz`).
    pub async fn ping(&self) -> bool {
        let ping = sqlx::query("SELECT 1").execute(&self.pool);
        matches!(tokio::time::timeout(PING_WITHIN, ping).await, Ok(Ok(_)))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A connection for one write transaction (see [`WriteConnection`]).
    pub(crate) async fn write_connection(&self) -> Result<WriteConnection, StoreError> {
        Ok(WriteConnection { conn: self.pool.acquire().await?, clean: false })
    }
}

/// A pooled connection that goes back to the pool only after its write
/// transaction ended cleanly ([`WriteConnection::release`]). Dropped any other
/// way — an error, a failed COMMIT, a panic, a cancelled future — it is
/// closed: after such a failure neither the database's nor sqlx's idea of the
/// transaction can be trusted (SQLite may already have rolled it back).
pub(crate) struct WriteConnection {
    conn: PoolConnection<sqlx::Any>,
    clean: bool,
}

impl WriteConnection {
    /// The transaction committed: the connection may serve again.
    pub(crate) fn release(mut self) {
        self.clean = true;
    }
}

impl std::ops::Deref for WriteConnection {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for WriteConnection {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.conn
    }
}

impl Drop for WriteConnection {
    fn drop(&mut self) {
        if !self.clean {
            self.conn.close_on_drop();
        }
    }
}
