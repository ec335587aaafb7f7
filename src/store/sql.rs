//! The SQL the store speaks, whichever engine holds the database: statements with `?N`
//! parameters and plain values, run through one small trait ([`Db`]), so each store module is
//! written once.
//!
//! Portable SQL is the rule: `ON CONFLICT … DO UPDATE`, `RETURNING`, `TRUE`/`FALSE`, `COALESCE`;
//! where the engines differ a module asks [`Db::dialect`]. Values are what SQLite stores — integers,
//! reals, text — and an engine with stricter types converts at its edge (a Beijing time is text
//! here whatever the column holds it as).

use rusqlite::types::{ToSqlOutput, ValueRef};

use super::StoreError;

/// Which engine a [`Db`] is, for the few statements that must differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// One parameter of a statement, borrowed from the caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}

impl From<u32> for Param<'_> {
    fn from(v: u32) -> Self {
        Param::Int(i64::from(v))
    }
}

impl From<bool> for Param<'_> {
    fn from(v: bool) -> Self {
        Param::Int(i64::from(v))
    }
}

impl From<f64> for Param<'_> {
    fn from(v: f64) -> Self {
        Param::Real(v)
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(v)
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Param::Text(v)
    }
}

impl<'a, T> From<Option<T>> for Param<'a>
where
    T: Into<Param<'a>>,
{
    fn from(v: Option<T>) -> Self {
        v.map_or(Param::Null, Into::into)
    }
}

impl<'a> From<&'a Option<String>> for Param<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_deref().map_or(Param::Null, Param::Text)
    }
}

/// `args![a, b, …]`: a statement's parameters, each converted with `Param::from`.
macro_rules! args {
    ($($p:expr),* $(,)?) => {
        &[$($crate::store::sql::Param::from($p)),*][..]
    };
}
pub(crate) use args;

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Null => ValueRef::Null,
            Param::Int(v) => ValueRef::Integer(v),
            Param::Real(v) => ValueRef::Real(v),
            Param::Text(v) => ValueRef::Text(v.as_bytes()),
        }))
    }
}

/// One value of a row read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// A row read back: its values in the order the statement selects them.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(Vec<Value>);

impl Row {
    pub(crate) fn new(values: Vec<Value>) -> Row {
        Row(values)
    }

    /// Column `i` as `T`; a NULL or a value of another type is an error unless `T` allows it.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, StoreError> {
        let value = self.0.get(i).ok_or_else(|| StoreError::Value {
            column: i,
            problem: format!("the row has {} columns", self.0.len()),
        })?;
        T::from_value(value).map_err(|problem| StoreError::Value { column: i, problem })
    }
}

/// A Rust type a column converts into.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Result<Self, String>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Int(n) => Ok(*n),
            other => Err(format!("{other:?} is not an integer")),
        }
    }
}

impl FromValue for f64 {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Real(x) => Ok(*x),
            Value::Int(n) => Ok(*n as f64),
            other => Err(format!("{other:?} is not a number")),
        }
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, String> {
        i64::from_value(v).map(|n| n != 0)
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            other => Err(format!("{other:?} is not text")),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A database connection, or a transaction on one: what every store function is given.
pub trait Db {
    fn dialect(&self) -> Dialect;
    /// Runs one statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<usize, StoreError>;
    /// Runs one statement; every row it returns.
    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError>;
    /// Runs statements without parameters (transaction control, migrations).
    fn batch(&mut self, sql: &str) -> Result<(), StoreError>;
}

impl dyn Db + '_ {
    /// The first row, if any.
    pub fn query_opt(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Every row, each made into a `T` by `f`.
    pub fn query_map<T>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        f: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.query(sql, params)?.iter().map(f).collect()
    }

    /// The first row, if any, made into a `T` by `f`.
    pub fn query_opt_map<T>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        f: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.query_opt(sql, params)?.as_ref().map(f).transpose()
    }

    /// The one value of the one row a statement must return (`SELECT COUNT(*)`, `RETURNING id`).
    pub fn query_value<T: FromValue>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<T, StoreError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::Value {
                column: 0,
                problem: "the statement returned no row".into(),
            })?
            .get(0)
    }
}

/// How a transaction takes the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// It reads, then writes: the write lock is taken at the start, so the reads stay true until
    /// it commits (SQLite: `BEGIN IMMEDIATE`, which waits its busy timeout for another writer
    /// instead of failing at the first write).
    Write,
    /// It only reads, from one snapshot of the database (SQLite: a deferred `BEGIN`, whose first
    /// read fixes the snapshot).
    Read,
}

/// A transaction in progress: rolled back when dropped without [`Tx::commit`].
pub struct Tx<'a> {
    db: &'a mut dyn Db,
    open: bool,
}

impl<'a> Tx<'a> {
    pub fn begin(db: &'a mut dyn Db, how: Begin) -> Result<Tx<'a>, StoreError> {
        match (db.dialect(), how) {
            (Dialect::Sqlite, Begin::Write) => db.batch("BEGIN IMMEDIATE")?,
            (Dialect::Sqlite, Begin::Read) => db.batch("BEGIN")?,
            // Read committed: each statement sees what committed before it. What SQLite's single
            // writer gives for free, PostgreSQL writers get from the rows they touch (upserts on
            // keys) and from leases (one worker per pipeline).
            (Dialect::Postgres, Begin::Write) => db.batch("BEGIN")?,
            (Dialect::Postgres, Begin::Read) => {
                db.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?
            }
        }
        Ok(Tx { db, open: true })
    }

    pub fn commit(mut self) -> Result<(), StoreError> {
        self.open = false;
        self.db.batch("COMMIT")
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            // A failed rollback leaves nothing to do: the engine rolls back a transaction whose
            // connection closes, and the caller already has the error that got us here.
            let _ = self.db.batch("ROLLBACK");
        }
    }
}

impl<'a> std::ops::Deref for Tx<'a> {
    type Target = dyn Db + 'a;

    fn deref(&self) -> &Self::Target {
        &*self.db
    }
}

impl std::ops::DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut *self.db
    }
}

// ---- SQLite ------------------------------------------------------------------------------------

fn sqlite_execute(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[Param<'_>],
) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached(sql)?
        .execute(rusqlite::params_from_iter(params))?)
}

fn sqlite_query(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Vec<Row>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let columns = stmt.column_count();
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(match row.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => Value::Int(n),
                ValueRef::Real(x) => Value::Real(x),
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    Value::Text(String::from_utf8_lossy(t).into_owned())
                }
            });
        }
        out.push(Row(values));
    }
    Ok(out)
}

/// The SQLite `Db`: a connection, and a rusqlite transaction too (for the store's unit tests
/// that hold one open around the functions they call); both run through the same two functions.
macro_rules! sqlite_db {
    ($t:ty) => {
        impl Db for $t {
            fn dialect(&self) -> Dialect {
                Dialect::Sqlite
            }

            fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<usize, StoreError> {
                sqlite_execute(self, sql, params)
            }

            fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
                sqlite_query(self, sql, params)
            }

            fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
                Ok(self.execute_batch(sql)?)
            }
        }
    };
}
sqlite_db!(rusqlite::Connection);
sqlite_db!(rusqlite::Transaction<'_>);
