//! The writer's statements, over two drivers: sqlx (PostgreSQL; SQLite for
//! reads and for in-memory databases) and, for SQLite files, a connection of
//! the writer's own that it calls directly.
//!
//! Why two: sqlx runs each SQLite connection on a thread of its own and hands
//! every statement, and every row it returns, over a channel, so a writer
//! issuing a dozen small statements per delivery spends most of its time
//! waking threads (docs/benchmarks.md, "Where the writer's time goes"). The
//! SQLite writer instead runs a whole group on one blocking thread
//! ([`Store::apply_group`](super::Store)), calling SQLite with cached
//! prepared statements. The SQL text is the same for both, `$1`, `$2`, … as
//! sqlx writes them, and [`query`] reads like `sqlx::query`, so the write
//! path is written once.

use super::connect::sqlite_session;
use super::faults::Faults;
use super::{Backend, StoreError};
use sqlx::AnyConnection;
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A connection inside the writer's transaction.
pub(crate) enum Db<'c> {
    /// A pooled sqlx connection (PostgreSQL, in-memory SQLite, reads).
    Any(&'c mut AnyConnection),
    /// The SQLite writer's own connection.
    Direct(&'c mut rusqlite::Connection),
}

impl Db<'_> {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Db::Any(conn) if conn.backend_name() == "PostgreSQL" => Backend::Postgres,
            Db::Any(_) | Db::Direct(_) => Backend::Sqlite,
        }
    }
}

/// A statement and its arguments; see [`query`].
pub(crate) struct Query<'q> {
    sql: Cow<'q, str>,
    args: Vec<Arg<'q>>,
}

/// A statement to run on a [`Db`], its arguments bound in order of `$n`.
pub(crate) fn query<'q>(sql: impl Into<Cow<'q, str>>) -> Query<'q> {
    Query { sql: sql.into(), args: Vec::new() }
}

/// A bound argument. NULLs carry their type: PostgreSQL types parameters.
#[derive(Clone, Debug)]
pub(crate) enum Arg<'q> {
    Int(i64),
    Real(f64),
    Text(Cow<'q, str>),
    Blob(Cow<'q, [u8]>),
    NullInt,
    NullReal,
    NullText,
}

/// Values [`Query::bind`] takes.
pub(crate) trait IntoArg<'q> {
    fn into_arg(self) -> Arg<'q>;
}

impl<'q> IntoArg<'q> for i64 {
    fn into_arg(self) -> Arg<'q> {
        Arg::Int(self)
    }
}

impl<'q> IntoArg<'q> for f64 {
    fn into_arg(self) -> Arg<'q> {
        Arg::Real(self)
    }
}

impl<'q> IntoArg<'q> for &'q str {
    fn into_arg(self) -> Arg<'q> {
        Arg::Text(Cow::Borrowed(self))
    }
}

impl<'q> IntoArg<'q> for &'q String {
    fn into_arg(self) -> Arg<'q> {
        Arg::Text(Cow::Borrowed(self.as_str()))
    }
}

impl<'q> IntoArg<'q> for String {
    fn into_arg(self) -> Arg<'q> {
        Arg::Text(Cow::Owned(self))
    }
}

impl<'q> IntoArg<'q> for &'q [u8] {
    fn into_arg(self) -> Arg<'q> {
        Arg::Blob(Cow::Borrowed(self))
    }
}

impl<'q> IntoArg<'q> for Vec<u8> {
    fn into_arg(self) -> Arg<'q> {
        Arg::Blob(Cow::Owned(self))
    }
}

impl<'q> IntoArg<'q> for Option<i64> {
    fn into_arg(self) -> Arg<'q> {
        self.map_or(Arg::NullInt, Arg::Int)
    }
}

impl<'q> IntoArg<'q> for Option<f64> {
    fn into_arg(self) -> Arg<'q> {
        self.map_or(Arg::NullReal, Arg::Real)
    }
}

impl<'q> IntoArg<'q> for Option<String> {
    fn into_arg(self) -> Arg<'q> {
        self.map_or(Arg::NullText, |v| Arg::Text(Cow::Owned(v)))
    }
}

impl<'q> IntoArg<'q> for Option<&'q str> {
    fn into_arg(self) -> Arg<'q> {
        self.map_or(Arg::NullText, |v| Arg::Text(Cow::Borrowed(v)))
    }
}

impl<'q> IntoArg<'q> for &'q Option<String> {
    fn into_arg(self) -> Arg<'q> {
        self.as_deref().into_arg()
    }
}

/// What a statement did.
pub(crate) struct Done {
    rows_affected: u64,
}

impl Done {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

impl<'q> Query<'q> {
    pub(crate) fn bind(mut self, value: impl IntoArg<'q>) -> Query<'q> {
        self.args.push(value.into_arg());
        self
    }

    pub(crate) async fn execute(self, db: &mut Db<'_>) -> Result<Done, StoreError> {
        match db {
            Db::Any(conn) => Ok(Done { rows_affected: self.sqlx().execute(&mut **conn).await?.rows_affected() }),
            Db::Direct(conn) => {
                let mut statement = self.prepare(conn)?;
                Ok(Done { rows_affected: statement.raw_execute().map_err(sqlite_error)? as u64 })
            }
        }
    }

    pub(crate) async fn fetch_all(self, db: &mut Db<'_>) -> Result<Vec<Row>, StoreError> {
        match db {
            Db::Any(conn) => Ok(self.sqlx().fetch_all(&mut **conn).await?.into_iter().map(Row::Any).collect()),
            Db::Direct(conn) => self.direct_rows(conn, usize::MAX),
        }
    }

    pub(crate) async fn fetch_optional(self, db: &mut Db<'_>) -> Result<Option<Row>, StoreError> {
        match db {
            Db::Any(conn) => Ok(self.sqlx().fetch_optional(&mut **conn).await?.map(Row::Any)),
            Db::Direct(conn) => Ok(self.direct_rows(conn, 1)?.pop()),
        }
    }

    pub(crate) async fn fetch_one(self, db: &mut Db<'_>) -> Result<Row, StoreError> {
        self.fetch_optional(db).await?.ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    fn sqlx(self) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(self.sql.into_owned()));
        for arg in self.args {
            query = match arg {
                Arg::Int(v) => query.bind(v),
                Arg::Real(v) => query.bind(v),
                Arg::Text(v) => query.bind(v.into_owned()),
                Arg::Blob(v) => query.bind(v.into_owned()),
                Arg::NullInt => query.bind(Option::<i64>::None),
                Arg::NullReal => query.bind(Option::<f64>::None),
                Arg::NullText => query.bind(Option::<String>::None),
            };
        }
        query
    }

    /// The statement, from the connection's cache, with its arguments bound.
    fn prepare<'c>(&self, conn: &'c rusqlite::Connection) -> Result<rusqlite::CachedStatement<'c>, StoreError> {
        let mut statement = conn.prepare_cached(&self.sql).map_err(sqlite_error)?;
        // SQLite numbers parameters in order of first appearance; `$n` names
        // the n-th argument wherever it appears, as sqlx reads it.
        for index in 1..=statement.parameter_count() {
            let name = statement.parameter_name(index).unwrap_or_default();
            let position = name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).filter(|&n| n > 0);
            let position = position.ok_or_else(|| {
                StoreError::Corrupt(format!("the statement's parameter {name:?} is not $1, $2, …: {}", self.sql))
            })?;
            let arg = self.args.get(position - 1).ok_or_else(|| {
                StoreError::Corrupt(format!("the statement needs argument ${position}: {}", self.sql))
            })?;
            let bound = match arg {
                Arg::Int(v) => statement.raw_bind_parameter(index, *v),
                Arg::Real(v) => statement.raw_bind_parameter(index, *v),
                Arg::Text(v) => statement.raw_bind_parameter(index, v.as_ref()),
                Arg::Blob(v) => statement.raw_bind_parameter(index, v.as_ref()),
                Arg::NullInt | Arg::NullReal | Arg::NullText => {
                    statement.raw_bind_parameter(index, rusqlite::types::Null)
                }
            };
            bound.map_err(sqlite_error)?;
        }
        Ok(statement)
    }

    fn direct_rows(&self, conn: &rusqlite::Connection, limit: usize) -> Result<Vec<Row>, StoreError> {
        let mut statement = self.prepare(conn)?;
        let names: Arc<[String]> = statement.column_names().into_iter().map(str::to_string).collect();
        let mut rows = statement.raw_query();
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(row) = rows.next().map_err(sqlite_error)? else { break };
            let mut cells = Vec::with_capacity(names.len());
            for index in 0..names.len() {
                use rusqlite::types::ValueRef;
                cells.push(match row.get_ref(index).map_err(sqlite_error)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Real(v) => Cell::Real(v),
                    ValueRef::Text(v) => Cell::Text(
                        String::from_utf8(v.to_vec())
                            .map_err(|_| StoreError::Corrupt(format!("column {} is not UTF-8", names[index])))?,
                    ),
                    ValueRef::Blob(v) => Cell::Blob(v.to_vec()),
                });
            }
            out.push(Row::Cells { names: names.clone(), cells });
        }
        Ok(out)
    }
}

pub(crate) fn sqlite_error(error: rusqlite::Error) -> StoreError {
    StoreError::Sqlite(error.to_string())
}

/// One result row.
pub(crate) enum Row {
    Any(sqlx::any::AnyRow),
    Cells { names: Arc<[String]>, cells: Vec<Cell> },
}

/// A value read from SQLite directly.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A column of a [`Row`]: its position or its name.
pub(crate) trait ColumnIndex: Copy + std::fmt::Debug {
    fn position(self, names: &[String]) -> Option<usize>;
    fn any_position(self, row: &sqlx::any::AnyRow) -> Result<usize, StoreError>;
}

impl ColumnIndex for usize {
    fn position(self, names: &[String]) -> Option<usize> {
        (self < names.len()).then_some(self)
    }
    fn any_position(self, _: &sqlx::any::AnyRow) -> Result<usize, StoreError> {
        Ok(self)
    }
}

impl ColumnIndex for &str {
    fn position(self, names: &[String]) -> Option<usize> {
        names.iter().position(|name| name == self)
    }
    fn any_position(self, row: &sqlx::any::AnyRow) -> Result<usize, StoreError> {
        use sqlx::{Column, Row};
        Ok(row.try_column(self)?.ordinal())
    }
}

/// Column types the store reads.
pub(crate) trait Value: Sized {
    fn from_any(row: &sqlx::any::AnyRow, index: usize) -> Result<Self, StoreError>;
    fn from_cell(cell: &Cell) -> Option<Self>;
}

/// [`Value`] for a type sqlx decodes by itself, read from the [`Cell`]s
/// the arms match.
macro_rules! value {
    ($type:ty: $($cell:pat => $value:expr),+) => {
        impl Value for $type {
            fn from_any(row: &sqlx::any::AnyRow, index: usize) -> Result<Self, StoreError> {
                Ok(sqlx::Row::try_get(row, index)?)
            }
            fn from_cell(cell: &Cell) -> Option<Self> {
                match cell {
                    $($cell => Some($value),)+
                    _ => None,
                }
            }
        }
    };
}

value!(i64: Cell::Int(v) => *v);
// An integer where a real is asked for reads as one, as sqlx does.
value!(f64: Cell::Real(v) => *v, Cell::Int(v) => *v as f64);
value!(String: Cell::Text(v) => v.clone());
value!(Vec<u8>: Cell::Blob(v) => v.clone());

impl<T: Value> Value for Option<T> {
    fn from_any(row: &sqlx::any::AnyRow, index: usize) -> Result<Self, StoreError> {
        let raw = sqlx::Row::try_get_raw(row, index)?;
        if sqlx::ValueRef::is_null(&raw) { Ok(None) } else { T::from_any(row, index).map(Some) }
    }
    fn from_cell(cell: &Cell) -> Option<Self> {
        match cell {
            Cell::Null => Some(None),
            other => T::from_cell(other).map(Some),
        }
    }
}

impl Row {
    /// Column `index` (a position or a name), as `T`.
    pub(crate) fn try_get<T: Value, I: ColumnIndex>(&self, index: I) -> Result<T, StoreError> {
        match self {
            Row::Any(row) => T::from_any(row, index.any_position(row)?),
            Row::Cells { names, cells } => {
                let position = index
                    .position(names)
                    .ok_or_else(|| StoreError::Corrupt(format!("the row has no column {index:?}")))?;
                T::from_cell(&cells[position])
                    .ok_or_else(|| StoreError::Corrupt(format!("column {index:?} has an unexpected type")))
            }
        }
    }
}

impl From<sqlx::any::AnyRow> for Row {
    fn from(row: sqlx::any::AnyRow) -> Row {
        Row::Any(row)
    }
}

/// The SQLite writer's own connection to a database file, opened at its
/// first write. Only the writer's group commits use it; everything else
/// (reads, the exporter's outbox, migrations, the expiry sweep) stays on the
/// pool.
pub(crate) struct DirectWriter {
    path: PathBuf,
    /// `None` until the first write and after a failed one: a transaction
    /// that did not end in a clean COMMIT closes its connection (SQLite may
    /// have rolled it back by itself), as `WriteConnection` does for pooled ones.
    conn: Mutex<Option<rusqlite::Connection>>,
}

/// Statements the writer keeps prepared: about forty run for every
/// delivery, beside the multi-row ones whose text varies with their rows.
const STATEMENT_CACHE: usize = 256;

/// The writer connection's page cache, in KiB.
const WRITER_CACHE_KIB: u32 = 16 * 1024;

impl DirectWriter {
    pub(crate) fn new(path: PathBuf) -> DirectWriter {
        DirectWriter { path, conn: Mutex::new(None) }
    }

    /// Closes the connection (a later write opens it again).
    pub(crate) fn close(&self) {
        drop(self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take());
    }

    fn open(&self) -> Result<rusqlite::Connection, StoreError> {
        let conn = rusqlite::Connection::open_with_flags(&self.path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(sqlite_error)?;
        // The settings of every pooled connection (connect.rs), and sqlx's
        // default of enforcing foreign keys.
        for pragma in sqlite_session() {
            conn.execute_batch(&pragma).map_err(sqlite_error)?;
        }
        conn.execute_batch("PRAGMA foreign_keys = ON").map_err(sqlite_error)?;
        // The writer re-reads the pages of the indexes every delivery
        // touches; SQLite's default 2 MB cache sends most of those reads to
        // the kernel again. One connection, so the memory is paid once.
        conn.execute_batch(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB}")).map_err(sqlite_error)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    /// Runs `work` inside one transaction on this connection, on the calling
    /// thread, and commits when it succeeds. Any other end closes the
    /// connection, which rolls back whatever the transaction wrote.
    pub(crate) fn transaction<T>(
        &self,
        faults: &Faults,
        work: impl FnOnce(&mut rusqlite::Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let taken = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let mut conn = match taken {
            Some(conn) => conn,
            None => self.open()?,
        };
        if let Some(pragma) = faults.page_limit_pragma() {
            conn.execute_batch(&pragma).map_err(sqlite_error)?;
        }
        // IMMEDIATE: the write lock from the start, so a busy database is
        // waited for once, never found out at the first write.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(sqlite_error)?;
        let done = work(&mut conn)?;
        if faults.commit_fails_now() {
            // As SQLite does by itself on a full disk: the COMMIT below fails.
            conn.execute_batch("ROLLBACK").map_err(sqlite_error)?;
        }
        conn.execute_batch("COMMIT").map_err(sqlite_error)?;
        *self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(conn);
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn direct() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER, x REAL, b BLOB, s TEXT)").unwrap();
        conn
    }

    fn now<T>(future: impl std::future::Future<Output = T>) -> T {
        future.now_or_never().expect("a direct statement never waits")
    }

    #[test]
    fn each_dollar_n_takes_the_nth_argument_wherever_it_first_appears() {
        let mut conn = direct();
        let db = &mut Db::Direct(&mut conn);
        // `$2` appears before `$1`: SQLite numbers them 1 and 2 the other way round.
        now(query("INSERT INTO t (n, k, s) VALUES ($2, $1, $1 || '!')").bind("a").bind(7i64).execute(db)).unwrap();
        let rows = now(query("SELECT k, n, s FROM t WHERE n = $1").bind(7i64).fetch_all(db)).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].try_get::<String, _>("k").unwrap(), "a");
        assert_eq!(rows[0].try_get::<i64, _>(1).unwrap(), 7);
        assert_eq!(rows[0].try_get::<String, _>("s").unwrap(), "a!");
    }

    #[test]
    fn values_read_back_as_their_types_and_nulls_as_none() {
        let mut conn = direct();
        let db = &mut Db::Direct(&mut conn);
        let done = now(query("INSERT INTO t (k, n, x, b, s) VALUES ($1, $2, $3, $4, $5)")
            .bind("a")
            .bind(Option::<i64>::None)
            .bind(1.5f64)
            .bind(vec![0u8, 1, 2])
            .bind(Option::<String>::None)
            .execute(db))
        .unwrap();
        assert_eq!(done.rows_affected(), 1);
        let row = now(query("SELECT n, x, b, s, 2 AS two FROM t").fetch_one(db)).unwrap();
        assert_eq!(row.try_get::<Option<i64>, _>("n").unwrap(), None);
        assert_eq!(row.try_get::<f64, _>("x").unwrap(), 1.5);
        assert_eq!(row.try_get::<Vec<u8>, _>("b").unwrap(), vec![0, 1, 2]);
        assert_eq!(row.try_get::<Option<String>, _>("s").unwrap(), None);
        // An integer where a real is asked for reads as one, as sqlx does.
        assert_eq!(row.try_get::<f64, _>("two").unwrap(), 2.0);
        // A wrong type or a missing column is an error that names the column, never a panic.
        assert!(row.try_get::<String, _>("x").unwrap_err().to_string().contains("\"x\""));
        assert!(row.try_get::<i64, _>("nope").unwrap_err().to_string().contains("nope"));
        assert!(now(query("SELECT 1").fetch_optional(db)).unwrap().is_some());
        assert!(now(query("SELECT k FROM t WHERE k = $1").bind("zz").fetch_optional(db)).unwrap().is_none());
    }

    #[test]
    fn a_statement_missing_an_argument_is_an_error_not_a_panic() {
        let mut conn = direct();
        let db = &mut Db::Direct(&mut conn);
        for (sql, says) in [
            ("SELECT k FROM t WHERE k = $1 AND n = $2", "$2"),
            ("SELECT k FROM t WHERE k = ?", "not $1"),
            ("SELECT k FROM t WHERE k = $0", "not $1"),
        ] {
            let Err(error) = now(query(sql).bind("a").fetch_all(db)) else { panic!("{sql} ran") };
            assert!(error.to_string().contains(says), "{sql}: {error}");
        }
    }
}
