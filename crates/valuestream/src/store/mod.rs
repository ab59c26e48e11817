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
mod connect;
pub(crate) mod db;
mod expiry;
mod faults;
mod outbox;
mod query;
mod rebuild;
mod sql;
pub(crate) use sql::names;

pub use apply::{Ack, AckStatus, Applicable, BODY_ENCODING, Transition, compress_body, decode_body};
pub use expiry::Swept;
pub use outbox::{Due, ExportLink, ExportSpan, Sent};
pub use query::{
    ApiSpan, Meta, SpanFilter, SpanOrder, TraceFilter, TraceRoot, TraceSummary, decode_cursor, decode_trace_cursor,
    encode_cursor,
};
pub use rebuild::{ArrivalCursor, StoredDelivery, Unreadable};

pub use connect::OpenMode;

use faults::Faults;
use sqlx::AnyPool;
use sqlx::pool::PoolConnection;
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
    /// An error of the SQLite writer's own connection (see `db`).
    #[error("database error: {0}")]
    Sqlite(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// The database cannot be opened; the sentence names the cause.
    #[error("{0}")]
    Open(String),
    /// `valuestream rebuild` is re-deriving the store: new deliveries wait.
    #[error(
        "a `valuestream rebuild` of this store is under way (or stopped before its end); retry when it has finished"
    )]
    RebuildUnderway,
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
    /// Open spans older than this expire (`--expire-open-after`); `None`:
    /// this handle expires nothing and keeps the expiry stored spans have.
    expire_open_after: Option<Duration>,
    faults: Arc<Faults>,
    /// SQLite files: the writer's own connection (`db`). `None` on
    /// PostgreSQL and in memory, where the writer uses the pool.
    direct: Option<Arc<db::DirectWriter>>,
}

impl Store {
    /// Connects to `url` (`sqlite://PATH`, created when missing, or `postgres://…`).
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        connect::open(url, OpenMode::Create).await
    }

    /// Sets the production environment names (empty: the defaults). The
    /// writer attributes incidents to deploys to these environments.
    pub fn with_production_environments(mut self, names: &[String]) -> Store {
        if !names.is_empty() {
            self.production = std::sync::Arc::new(names.to_vec());
        }
        self
    }

    /// Sets the age at which open spans expire (`--expire-open-after`). The
    /// writer then expires a span that arrives older than that in its
    /// delivery's transaction, and its sweep ([`Store::sweep_expired`])
    /// expires those that grow older.
    pub fn with_expire_open_after(mut self, age: Option<Duration>) -> Store {
        self.expire_open_after = age;
        self
    }

    /// The age at which open spans expire, if any.
    pub fn expire_open_after(&self) -> Option<Duration> {
        self.expire_open_after
    }

    /// Connects to an existing database, for commands that only read: a
    /// SQLite file that does not exist is an error, never created.
    pub async fn open_existing(url: &str) -> Result<Store, StoreError> {
        connect::open(url, OpenMode::Existing).await
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
        if let Some(direct) = &self.direct {
            direct.close();
        }
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
