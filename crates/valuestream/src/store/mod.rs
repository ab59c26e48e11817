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
mod outbox;
mod query;

pub use apply::{Ack, AckStatus, Applicable, Transition};
pub use outbox::{Due, Sent};
pub use query::{ApiSpan, SpanFilter, decode_cursor, encode_cursor};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::str::FromStr;
use std::time::Duration;

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
    /// The deploy environments incidents are attributed among (metrics.md).
    production: std::sync::Arc<Vec<String>>,
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
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets the API read while the writer commits; FULL
                        // makes every commit durable before a 2xx goes out.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let production = valuestream_core::vocab::PRODUCTION_ENVIRONMENTS.iter().map(|s| s.to_string()).collect();
        Ok(Store { pool, backend, production: std::sync::Arc::new(production) })
    }

    /// Sets the production environment names (empty: the defaults). The
    /// writer attributes incidents to deploys to these environments.
    pub fn with_production_environments(mut self, names: &[String]) -> Store {
        if !names.is_empty() {
            self.production = std::sync::Arc::new(names.to_vec());
        }
        self
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

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
