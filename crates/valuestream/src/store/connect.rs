//! Opening the store: a database URL becomes a pool of connections set up
//! alike, or, when the database cannot be opened, one sentence naming the
//! cause within a few seconds (a missing folder, a file that is not a
//! database, a PostgreSQL that refuses the connection, the password or the
//! database name).
//!
//! Architecture Invariant: a pooled connection is never reused inside a
//! transaction. SQLite rolls a whole transaction back by itself on some
//! errors (a full disk, an I/O error), after which sqlx's ROLLBACK fails and
//! sqlx still counts the connection inside a transaction; its next BEGIN would
//! only open a savepoint. A connection that comes back to the pool still
//! counted inside a transaction is therefore closed, never handed out again.

use super::db::DirectWriter;
use super::faults::Faults;
use super::{Backend, Store, StoreError};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, Connection, Executor};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Longest the first connection may take before the database counts as unreachable.
const CONNECT_WITHIN: Duration = Duration::from_secs(4);
/// Longest a query waits for a pooled connection (a new one included) before it fails.
const ACQUIRE_WITHIN: Duration = Duration::from_secs(10);
/// How long SQLite waits for another process's lock before a statement fails, in milliseconds.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 3_000;

/// Whether opening may create a SQLite database that does not exist yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// `serve`, `migrate`, `replay`: a missing file is created (its folder must exist).
    Create,
    /// Commands that only read (`report`): a missing file is an error.
    Existing,
}

pub(super) async fn open(url: &str, mode: OpenMode) -> Result<Store, StoreError> {
    sqlx::any::install_default_drivers();
    let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
        let wanted = if mode == OpenMode::Create { "rwc" } else { "rw" };
        let with_mode = if rest.contains("mode=") {
            url.to_string()
        } else if rest.contains('?') {
            format!("{url}&mode={wanted}")
        } else {
            format!("{url}?mode={wanted}")
        };
        (Backend::Sqlite, with_mode)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        (Backend::Postgres, url.to_string())
    } else {
        return Err(StoreError::UnsupportedUrl(url.to_string()));
    };
    let file = if backend == Backend::Sqlite { sqlite_file(&url, mode)? } else { None };
    let place = Place { backend, file, host: host_of(&url) };
    let options = AnyConnectOptions::from_str(&url)
        .map_err(|e| StoreError::Open(format!("the database URL is not valid: {e}")))?;
    let faults = Arc::new(Faults::default());

    // One connection first, under a deadline, so a database that cannot be
    // opened fails in seconds with its own error (the pool would retry a
    // refused connection until its acquire timeout and then only say so).
    let first = async {
        let mut conn = AnyConnection::connect_with(&options).await?;
        prepare_session(&mut conn, backend, &faults).await?;
        conn.close().await
    };
    match tokio::time::timeout(CONNECT_WITHIN, first).await {
        Err(_) => return Err(StoreError::Open(format!("{} did not answer within {CONNECT_WITHIN:?}", place.name()))),
        Ok(Err(error)) => return Err(StoreError::Open(place.explain(&error))),
        Ok(Ok(())) => {}
    }

    let (on_connect, on_acquire) = (faults.clone(), faults.clone());
    let pool = AnyPoolOptions::new()
        .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
        .acquire_timeout(ACQUIRE_WITHIN)
        .after_connect(move |conn, _meta| {
            let faults = on_connect.clone();
            Box::pin(async move { prepare_session(conn, backend, &faults).await })
        })
        .before_acquire(move |conn, _meta| {
            let faults = on_acquire.clone();
            Box::pin(async move {
                faults.prepare(conn).await?;
                Ok(true)
            })
        })
        // A connection still counted inside a transaction (its rollback failed,
        // or has not run yet) is closed rather than reused: see the module doc.
        .after_release(|conn, _meta| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
        .connect_with(options)
        .await
        .map_err(|error| StoreError::Open(place.explain(&error)))?;
    let production = valuestream_core::vocab::PRODUCTION_ENVIRONMENTS.iter().map(|s| s.to_string()).collect();
    let direct = place.file.clone().map(|file| Arc::new(DirectWriter::new(file)));
    Ok(Store { pool, backend, faults, production: std::sync::Arc::new(production), expire_open_after: None, direct })
}

/// Session settings every connection gets.
async fn prepare_session(conn: &mut AnyConnection, backend: Backend, faults: &Faults) -> Result<(), sqlx::Error> {
    if backend == Backend::Sqlite {
        for pragma in sqlite_session() {
            conn.execute(sqlx::AssertSqlSafe(pragma)).await?;
        }
    }
    faults.prepare(conn).await
}

/// The settings of every SQLite connection, pooled or the writer's own.
pub(super) fn sqlite_session() -> [String; 4] {
    [
        // Only a new, empty file takes it (before WAL is on); a store made
        // with another page size keeps its own. A delivery's row (its
        // compressed body) is about 2 KB: a 4 KB page holds one and leaves
        // a third empty, an 8 KB page holds three (docs/benchmarks.md).
        format!("PRAGMA page_size = {SQLITE_PAGE_SIZE}"),
        // WAL lets the API read while the writer commits; FULL makes every
        // commit durable before a 2xx goes out.
        "PRAGMA journal_mode = WAL".to_string(),
        "PRAGMA synchronous = FULL".to_string(),
        // Shorter than the webhook's answer deadline, so a database locked by
        // another process is an error the writer sees, not a hang.
        format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"),
    ]
}

/// Bytes per page of a new SQLite store.
const SQLITE_PAGE_SIZE: u32 = 8192;

/// The file of a SQLite URL, checked before connecting: its folder exists,
/// it is not a folder, and for [`OpenMode::Existing`] it exists. `None` for
/// an in-memory database.
fn sqlite_file(url: &str, mode: OpenMode) -> Result<Option<PathBuf>, StoreError> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Ok(None);
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Open(format!("the database URL is not valid: {e}")))?;
    let path = options.get_filename().to_path_buf();
    if path.is_dir() {
        return Err(StoreError::Open(format!("{} is a folder, not a SQLite database file", path.display())));
    }
    if let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty())
        && !folder.is_dir()
    {
        return Err(StoreError::Open(format!(
            "the folder {} does not exist (create it, or point --database elsewhere)",
            folder.display()
        )));
    }
    if mode == OpenMode::Existing && !path.exists() {
        return Err(StoreError::Open(format!(
            "there is no database at {} (this command only reads, and never creates one: check --database or \
             VS_DATABASE_URL)",
            path.display()
        )));
    }
    Ok(Some(path))
}

/// `host:port` of a PostgreSQL URL (for messages; the password never appears).
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, rest)| rest).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = authority.rsplit_once('@').map(|(_, host)| host).unwrap_or(authority);
    if host.is_empty() { "localhost".to_string() } else { host.to_string() }
}

/// Where the database is, to name it in errors.
struct Place {
    backend: Backend,
    file: Option<PathBuf>,
    host: String,
}

impl Place {
    fn name(&self) -> String {
        match (&self.backend, &self.file) {
            (Backend::Sqlite, Some(file)) => file.display().to_string(),
            (Backend::Sqlite, None) => "the in-memory database".to_string(),
            (Backend::Postgres, _) => format!("PostgreSQL at {}", self.host),
        }
    }

    /// One sentence naming why the database cannot be opened.
    fn explain(&self, error: &sqlx::Error) -> String {
        let file = self.file.as_deref().unwrap_or(Path::new(":memory:"));
        match error {
            sqlx::Error::Database(db) => {
                let message = db.message();
                match (self.backend, db.code().as_deref()) {
                    (Backend::Sqlite, Some("26")) => {
                        format!("{} is not a SQLite database ({message})", file.display())
                    }
                    (Backend::Sqlite, Some("14" | "8" | "23")) => {
                        format!(
                            "cannot open {} ({message}): check that this user may read and write it",
                            file.display()
                        )
                    }
                    (Backend::Postgres, Some("28P01")) => {
                        format!("{} refused the password ({message})", self.name())
                    }
                    (Backend::Postgres, Some("3D000" | "28000")) => format!("{} says: {message}", self.name()),
                    _ => format!("{}: {message}", self.name()),
                }
            }
            sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                format!(
                    "nothing accepts connections at {} (connection refused): is PostgreSQL running there?",
                    self.host
                )
            }
            sqlx::Error::Io(io) => format!("cannot reach {}: {io}", self.name()),
            sqlx::Error::Tls(tls) => format!("TLS with {} failed: {tls}", self.name()),
            sqlx::Error::Configuration(config) => format!("the database URL is not valid: {config}"),
            sqlx::Error::PoolTimedOut => format!("{} did not answer within {ACQUIRE_WITHIN:?}", self.name()),
            other => format!("{}: {other}", self.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_of_a_url_leaves_out_user_and_password() {
        assert_eq!(host_of("postgres://vs:secret@db.example:5433/vs?sslmode=require"), "db.example:5433");
        assert_eq!(host_of("postgresql://db/vs"), "db");
        assert_eq!(host_of("postgres:///vs"), "localhost");
    }
}
