//! The few database operations the writer needs, over two drivers: sqlx
//! (PostgreSQL, and the API's reads on either database) and a direct SQLite
//! connection for the SQLite writer.
//!
//! Why two: sqlx runs each SQLite connection on its own worker thread and
//! hands every statement over a channel, so a writer issuing many small
//! statements pays two thread switches per statement (docs/benchmarks.md).
//! The SQLite writer instead owns one connection on a blocking thread and
//! calls SQLite directly; the SQL text is the same for both.

use super::StoreError;
use sqlx::Row as _;
use std::borrow::Cow;
use std::future::Future;

/// A bound parameter.
#[derive(Clone, Debug)]
pub enum Arg<'a> {
    Int(i64),
    Text(Cow<'a, str>),
    Blob(Cow<'a, [u8]>),
    /// A text NULL (PostgreSQL types its parameters, so NULLs carry a type).
    Null,
    /// An integer NULL.
    NullInt,
}

/// Conversion of Rust values into [`Arg`]s (`None` is SQL NULL).
pub trait IntoArg<'a> {
    fn arg(self) -> Arg<'a>;
}

impl<'a> IntoArg<'a> for i64 {
    fn arg(self) -> Arg<'a> {
        Arg::Int(self)
    }
}

impl<'a> IntoArg<'a> for Option<i64> {
    fn arg(self) -> Arg<'a> {
        self.map_or(Arg::NullInt, Arg::Int)
    }
}

impl<'a> IntoArg<'a> for &'a str {
    fn arg(self) -> Arg<'a> {
        Arg::Text(Cow::Borrowed(self))
    }
}

impl<'a> IntoArg<'a> for &'a String {
    fn arg(self) -> Arg<'a> {
        Arg::Text(Cow::Borrowed(self.as_str()))
    }
}

impl<'a> IntoArg<'a> for String {
    fn arg(self) -> Arg<'a> {
        Arg::Text(Cow::Owned(self))
    }
}

impl<'a> IntoArg<'a> for Option<String> {
    fn arg(self) -> Arg<'a> {
        self.map_or(Arg::Null, |v| Arg::Text(Cow::Owned(v)))
    }
}

impl<'a> IntoArg<'a> for Option<&'a str> {
    fn arg(self) -> Arg<'a> {
        self.map_or(Arg::Null, |v| Arg::Text(Cow::Borrowed(v)))
    }
}

impl<'a> IntoArg<'a> for &'a Option<String> {
    fn arg(self) -> Arg<'a> {
        self.as_deref().map_or(Arg::Null, |v| Arg::Text(Cow::Borrowed(v)))
    }
}

impl<'a> IntoArg<'a> for &'a [u8] {
    fn arg(self) -> Arg<'a> {
        Arg::Blob(Cow::Borrowed(self))
    }
}

/// `args![a, b]`: a slice of bound parameters, `$1`, `$2`, … in order.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::store::db::IntoArg::arg($value)),*]
    };
}
pub(crate) use args;

/// One result row, read by column index.
pub enum Row {
    Any(sqlx::any::AnyRow),
    Cells(Vec<Cell>),
}

/// A value read from SQLite directly.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// Column types the store reads.
pub trait FromRow: Sized {
    fn from_any(row: &sqlx::any::AnyRow, index: usize) -> Result<Self, StoreError>;
    fn from_cell(cell: &Cell) -> Option<Self>;
}

impl FromRow for i64 {
    fn from_any(row: &sqlx::any::AnyRow, index: usize) -> Result<Self, StoreError> {
        Ok(row.try_get(index)?)
    }
    fn from_cell(cell: &Cell) -> Option<Self> {
        match cell {
            Cell::Int(v) => Some(*v),
            _ => None,
        }
    }
}

impl FromRow for String {
    fn from_any(row: &sqlx::any::AnyRow, index: usize) -> Result<Self, StoreError> {
        Ok(row.try_get(index)?)
    }
    fn from_cell(cell: &Cell) -> Option<Self> {
        match cell {
            Cell::Text(v) => Some(v.clone()),
            _ => None,
        }
    }
}

impl<T: FromRow> FromRow for Option<T> {
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
    /// Column `index`, as `T`.
    pub fn get<T: FromRow>(&self, index: usize) -> Result<T, StoreError> {
        match self {
            Row::Any(row) => T::from_any(row, index),
            Row::Cells(cells) => cells
                .get(index)
                .and_then(T::from_cell)
                .ok_or_else(|| StoreError::Corrupt(format!("column {index} has an unexpected type"))),
        }
    }
}

/// What the write path needs from a connection inside a transaction.
pub trait Db: Send {
    /// Runs a statement; returns the number of rows it changed.
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Runs a query; returns every row.
    fn fetch_all(&mut self, sql: &str, args: &[Arg<'_>]) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send;
}

fn bind<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    args: &[Arg<'_>],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for arg in args {
        query = match arg {
            Arg::Int(v) => query.bind(*v),
            Arg::Text(v) => query.bind(v.to_string()),
            Arg::Blob(v) => query.bind(v.to_vec()),
            Arg::Null => query.bind(Option::<String>::None),
            Arg::NullInt => query.bind(Option::<i64>::None),
        };
    }
    query
}

impl Db for sqlx::AnyConnection {
    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let query = bind(sqlx::query(sqlx::AssertSqlSafe(sql.to_string())), args);
        Ok(query.execute(&mut *self).await?.rows_affected())
    }

    async fn fetch_all(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, StoreError> {
        let query = bind(sqlx::query(sqlx::AssertSqlSafe(sql.to_string())), args);
        Ok(query.fetch_all(&mut *self).await?.into_iter().map(Row::Any).collect())
    }
}

/// The SQLite writer's own connection (see the module comment).
pub struct DirectSqlite(pub rusqlite::Connection);

impl DirectSqlite {
    /// Opens the database file for writing: WAL, and every commit synced
    /// (`synchronous = FULL`) before a delivery is acknowledged.
    pub fn open(path: &str) -> Result<DirectSqlite, StoreError> {
        let connection = rusqlite::Connection::open(path).map_err(sqlite_error)?;
        connection
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;")
            .map_err(sqlite_error)?;
        connection.set_prepared_statement_cache_capacity(64);
        Ok(DirectSqlite(connection))
    }

    fn statement<'c>(&'c self, sql: &str, args: &[Arg<'_>]) -> Result<rusqlite::CachedStatement<'c>, StoreError> {
        let mut statement = self.0.prepare_cached(sql).map_err(sqlite_error)?;
        // `$n` names the n-th argument wherever it appears (as sqlx reads it).
        for index in 1..=statement.parameter_count() {
            let position = statement
                .parameter_name(index)
                .and_then(|name| name.strip_prefix('$'))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(index);
            let arg = args
                .get(position - 1)
                .ok_or_else(|| StoreError::Corrupt(format!("statement needs argument ${position}")))?;
            let bound = match arg {
                Arg::Int(v) => statement.raw_bind_parameter(index, *v),
                Arg::Text(v) => statement.raw_bind_parameter(index, v.as_ref()),
                Arg::Blob(v) => statement.raw_bind_parameter(index, v.as_ref()),
                Arg::Null | Arg::NullInt => statement.raw_bind_parameter(index, rusqlite::types::Null),
            };
            bound.map_err(sqlite_error)?;
        }
        Ok(statement)
    }
}

fn sqlite_error(error: rusqlite::Error) -> StoreError {
    StoreError::Sqlite(error.to_string())
}

impl Db for DirectSqlite {
    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let mut statement = self.statement(sql, args)?;
        Ok(statement.raw_execute().map_err(sqlite_error)? as u64)
    }

    async fn fetch_all(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, StoreError> {
        let mut statement = self.statement(sql, args)?;
        let columns = statement.column_count();
        let mut rows = statement.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sqlite_error)? {
            let mut cells = Vec::with_capacity(columns);
            for index in 0..columns {
                use rusqlite::types::ValueRef;
                cells.push(match row.get_ref(index).map_err(sqlite_error)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Real(v) => Cell::Real(v),
                    ValueRef::Text(v) => Cell::Text(String::from_utf8_lossy(v).into_owned()),
                    ValueRef::Blob(v) => Cell::Blob(v.to_vec()),
                });
            }
            out.push(Row::Cells(cells));
        }
        Ok(out)
    }
}
