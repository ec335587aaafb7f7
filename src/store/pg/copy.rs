//! `ordersync copy`: a SQLite database into an empty PostgreSQL one, table by table in key order,
//! in batches, resumably, then verified source by source.
//!
//! Invariant: each batch's rows and the progress row saying how far that table has been copied
//! (`copy_progress`: the last key copied) commit in one PostgreSQL transaction, so a copy killed at
//! any instant continues, when run again, after the last batch that committed: no row is copied
//! twice or skipped. A target is written only when it is empty or holds a copy of the same SQLite
//! database in progress (`copy_source`: its path and its first run); anything else is refused.
//!
//! The SQLite database is opened read-only and read inside one read transaction: one snapshot,
//! taken between two of the daemon's page commits, which in WAL mode neither blocks the daemon nor
//! waits for it. The verification reads the same snapshot. A copy resumed after the daemon wrote
//! more reads a newer snapshot: rows written behind the key already copied are then missing, and
//! the verification says so (copy with the daemon stopped for a final, exact copy).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};

use super::db::without_nul_escapes;
use super::tables::{Table, IDENTITY_TABLES, TABLES};
use super::verify::{verify, Verification};
use super::{PgError, PgTarget};

/// The copy's own bookkeeping in the target, apart from the versioned schema (a database the daemon
/// writes to directly never has them).
const BOOKKEEPING: &str = "
CREATE TABLE IF NOT EXISTS copy_source (
    one_row     BOOLEAN PRIMARY KEY DEFAULT true CHECK (one_row),
    path        TEXT NOT NULL,
    first_run   TEXT,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS copy_progress (
    table_name  TEXT PRIMARY KEY,
    last_key    JSONB,
    rows_copied BIGINT NOT NULL DEFAULT 0,
    done        BOOLEAN NOT NULL DEFAULT false
);";

/// Session advisory lock held for the whole copy: a second copy into the same database is refused.
const COPY_LOCK: i64 = 0x6f72_6465_7263_6f70;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("cannot copy from {path}: {problem}")]
    Source { path: String, problem: String },
    #[error(transparent)]
    Pg(#[from] PgError),
    /// The target is not one this copy may write to.
    #[error("{0}")]
    Refused(String),
}

pub struct CopyOptions {
    /// Rows per batch (one PostgreSQL transaction each).
    pub batch_rows: usize,
}

/// What a copy did and what the verification found.
#[derive(Debug)]
pub struct CopyReport {
    /// Rows copied by this run (a resumed copy: only the rest).
    pub rows_copied: u64,
    /// Whether this run continued a copy begun before.
    pub resumed: bool,
    pub verification: Verification,
}

/// Copies the SQLite database at `db` into `target` (see the module's invariant); `progress` is
/// told (rows copied so far, rows in all) after each batch.
pub fn copy(
    db: &Path,
    target: &PgTarget,
    options: &CopyOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CopyReport, CopyError> {
    let source = Source::open(db)?;
    let mut client = target.connect_migrated()?;
    let pg_err = |doing: &str, e: postgres::Error| CopyError::Pg(target.sql_error(doing, &e));
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&COPY_LOCK])
        .and_then(|r| r.try_get(0))
        .map_err(|e| pg_err("taking the copy lock", e))?;
    if !locked {
        return Err(CopyError::Refused(format!(
            "another ordersync copy into {} is running; wait for it to end",
            target.shown()
        )));
    }
    source.begin_snapshot()?;
    let resumed = claim_target(&mut client, target, &source)?;
    let total: u64 = TABLES
        .iter()
        .map(|t| source.count(t.name))
        .sum::<Result<u64, _>>()?;
    let already: i64 = client
        .query_one(
            "SELECT COALESCE(SUM(rows_copied), 0)::bigint FROM copy_progress",
            &[],
        )
        .and_then(|r| r.try_get(0))
        .map_err(|e| pg_err("reading the copy's progress", e))?;
    let mut done_rows = already.max(0) as u64;
    progress(done_rows, total);
    let mut rows_copied = 0;
    for table in &TABLES {
        let n = copy_table(&source, &mut client, target, table, options, &mut |n| {
            done_rows += n;
            progress(done_rows, total);
        })?;
        rows_copied += n;
    }
    finish(&mut client, target)?;
    let verification = verify(&source, &mut client, target)?;
    Ok(CopyReport {
        rows_copied,
        resumed,
        verification,
    })
}

/// The SQLite side: a read-only connection, and what identifies the database.
pub(super) struct Source {
    pub(super) conn: Connection,
    path: String,
}

impl Source {
    fn open(db: &Path) -> Result<Source, CopyError> {
        let path = db.display().to_string();
        let fail = |problem: String| CopyError::Source {
            path: path.clone(),
            problem,
        };
        if !db.exists() {
            return Err(fail(
                "it does not exist; check --db or [database].path".into(),
            ));
        }
        let canonical = std::fs::canonicalize(db)
            .map_err(|e| fail(crate::dbfiles::os_reason(&e)))?
            .display()
            .to_string();
        let conn = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| fail(e.to_string()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| fail(e.to_string()))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| fail(e.to_string()))?;
        let known = crate::store::schema_version();
        if version != known {
            return Err(fail(if version > known {
                format!("its schema version {version} is newer than this ordersync understands ({known}); upgrade ordersync")
            } else {
                format!("its schema version is {version}, not {known}; run `ordersync status` once to migrate it, then copy")
            }));
        }
        Ok(Source {
            conn,
            path: canonical,
        })
    }

    pub(super) fn fail(&self, problem: impl std::fmt::Display) -> CopyError {
        CopyError::Source {
            path: self.path.clone(),
            problem: problem.to_string(),
        }
    }

    /// Starts the read transaction every later read of this run comes from.
    fn begin_snapshot(&self) -> Result<(), CopyError> {
        self.conn
            .execute_batch("BEGIN DEFERRED; SELECT COUNT(*) FROM sqlite_schema;")
            .map_err(|e| self.fail(e))
    }

    /// The started_at of the database's first run: with the path, what tells this database from
    /// another one copied to the same target.
    fn first_run(&self) -> Result<Option<String>, CopyError> {
        self.conn
            .query_row(
                "SELECT (SELECT started_at FROM runs ORDER BY id LIMIT 1)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.fail(e))
    }

    pub(super) fn count(&self, table: &str) -> Result<u64, CopyError> {
        self.conn
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.fail(e))
    }

    /// Up to `limit` rows of `table` after `after` (the last key copied), in key order, as the
    /// lines of a text-format COPY, with the key of the last one.
    fn batch(
        &self,
        table: &Table,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<(String, usize, Vec<Value>), CopyError> {
        let key = table.key.join(", ");
        let placeholders: Vec<String> = (1..=table.key.len()).map(|i| format!("?{i}")).collect();
        let filter = match after {
            Some(_) => format!("WHERE ({key}) > ({})", placeholders.join(", ")),
            None => String::new(),
        };
        let sql = format!(
            "SELECT {} FROM {} {filter} ORDER BY {key} LIMIT {limit}",
            table.columns.join(", "),
            table.name
        );
        let key_at: Vec<usize> = table
            .key
            .iter()
            .filter_map(|k| table.columns.iter().position(|c| c == k))
            .collect();
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.fail(e))?;
        let params: Vec<&dyn rusqlite::ToSql> = after
            .unwrap_or_default()
            .iter()
            .map(|v| v as &dyn rusqlite::ToSql)
            .collect();
        let mut rows = stmt.query(&params[..]).map_err(|e| self.fail(e))?;
        let (mut text, mut n, mut last) = (String::new(), 0, Vec::new());
        while let Some(row) = rows.next().map_err(|e| self.fail(e))? {
            for (i, column) in table.columns.iter().enumerate() {
                if i > 0 {
                    text.push('\t');
                }
                let value = row.get_ref(i).map_err(|e| self.fail(e))?;
                push_field(&mut text, value, table.json.contains(column))
                    .map_err(|why| self.fail(format!("{}.{column}: {why}", table.name)))?;
            }
            text.push('\n');
            last = key_at
                .iter()
                .map(|&i| row.get::<_, Value>(i))
                .collect::<Result<_, _>>()
                .map_err(|e| self.fail(e))?;
            n += 1;
        }
        Ok((text, n, last))
    }
}

/// One SQLite value as a field of PostgreSQL's text COPY format. U+0000, which SQLite holds and
/// PostgreSQL cannot, becomes U+FFFD (escaped, in a `jsonb` column), as the store writes it.
fn push_field(out: &mut String, value: ValueRef<'_>, json: bool) -> Result<(), String> {
    match value {
        ValueRef::Null => out.push_str("\\N"),
        ValueRef::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        ValueRef::Real(f) => {
            let _ = write!(out, "{f}");
        }
        ValueRef::Text(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            let text = if json {
                without_nul_escapes(&text)
            } else {
                Cow::Borrowed(&*text)
            };
            for c in text.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\0' => out.push('\u{fffd}'),
                    c => out.push(c),
                }
            }
        }
        ValueRef::Blob(_) => return Err("a blob where ordersync writes text or numbers".into()),
    }
    Ok(())
}

/// Key values as stored in `copy_progress.last_key`, and back.
fn key_to_json(key: &[Value]) -> serde_json::Value {
    key.iter()
        .map(|v| match v {
            Value::Integer(i) => serde_json::Value::from(*i),
            Value::Text(t) => serde_json::Value::from(t.as_str()),
            Value::Real(f) => serde_json::Value::from(*f),
            Value::Null | Value::Blob(_) => serde_json::Value::Null,
        })
        .collect()
}

fn key_from_json(json: &serde_json::Value) -> Vec<Value> {
    json.as_array()
        .map(|items| {
            items
                .iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => Value::Text(s.clone()),
                    v => v
                        .as_i64()
                        .map(Value::Integer)
                        .or_else(|| v.as_f64().map(Value::Real))
                        .unwrap_or(Value::Null),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Makes sure the target is this copy's to write: empty (then it is claimed for this source), or
/// a copy of the same source begun before. Returns whether the copy resumes.
fn claim_target(
    client: &mut postgres::Client,
    target: &PgTarget,
    source: &Source,
) -> Result<bool, CopyError> {
    let pg_err = |doing: &str, e: postgres::Error| CopyError::Pg(target.sql_error(doing, &e));
    let first_run = source.first_run()?;
    let mut tx = client
        .transaction()
        .map_err(|e| pg_err("starting the copy", e))?;
    tx.batch_execute(BOOKKEEPING)
        .map_err(|e| pg_err("creating the copy's bookkeeping tables", e))?;
    let claimed = tx
        .query_opt("SELECT path, first_run FROM copy_source", &[])
        .map_err(|e| pg_err("reading copy_source", e))?;
    if let Some(row) = claimed {
        let path: String = row
            .try_get(0)
            .map_err(|e| pg_err("reading copy_source", e))?;
        let first: Option<String> = row
            .try_get(1)
            .map_err(|e| pg_err("reading copy_source", e))?;
        if path != source.path || first != first_run {
            return Err(CopyError::Refused(format!(
                "{} holds a copy of {path}, not of {}; copy into a new, empty database",
                target.shown(),
                source.path
            )));
        }
        return Ok(true);
    }
    for table in &TABLES {
        let used: bool = tx
            .query_one(
                &format!("SELECT EXISTS (SELECT 1 FROM {})", table.name),
                &[],
            )
            .and_then(|r| r.try_get(0))
            .map_err(|e| pg_err("checking that the target is empty", e))?;
        if used {
            return Err(CopyError::Refused(format!(
                "{} is not empty (its `{}` table has rows) and is not a copy in progress of {}; copy into a new, empty database",
                target.shown(),
                table.name,
                source.path
            )));
        }
    }
    tx.execute(
        "INSERT INTO copy_source (path, first_run) VALUES ($1, $2)",
        &[&source.path, &first_run],
    )
    .map_err(|e| pg_err("recording the copy's source", e))?;
    for table in &TABLES {
        tx.execute(
            "INSERT INTO copy_progress (table_name) VALUES ($1)",
            &[&table.name],
        )
        .map_err(|e| pg_err("recording the copy's progress", e))?;
    }
    tx.commit()
        .map_err(|e| pg_err("committing the copy's start", e))?;
    Ok(false)
}

/// Copies what is left of one table, a batch per transaction. Returns the rows copied.
fn copy_table(
    source: &Source,
    client: &mut postgres::Client,
    target: &PgTarget,
    table: &Table,
    options: &CopyOptions,
    copied: &mut dyn FnMut(u64),
) -> Result<u64, CopyError> {
    let pg_err = |doing: &str, e: postgres::Error| {
        CopyError::Pg(target.sql_error(&format!("{doing} of table {}", table.name), &e))
    };
    let row = client
        .query_one(
            "SELECT last_key, done FROM copy_progress WHERE table_name = $1",
            &[&table.name],
        )
        .map_err(|e| pg_err("reading the progress", e))?;
    let last: Option<serde_json::Value> = row
        .try_get(0)
        .map_err(|e| pg_err("reading the progress", e))?;
    let done: bool = row
        .try_get(1)
        .map_err(|e| pg_err("reading the progress", e))?;
    if done {
        return Ok(0);
    }
    let mut after = last.as_ref().map(key_from_json);
    let batch_rows = options.batch_rows.max(1);
    let mut total = 0;
    loop {
        let (text, n, last_key) = source.batch(table, after.as_deref(), batch_rows)?;
        let finished = n < batch_rows;
        let mut tx = client
            .transaction()
            .map_err(|e| pg_err("starting a batch", e))?;
        if n > 0 {
            let sql = format!(
                "COPY {} ({}) FROM STDIN",
                table.name,
                table.columns.join(", ")
            );
            let mut writer = tx.copy_in(&sql).map_err(|e| pg_err("copying a batch", e))?;
            writer.write_all(text.as_bytes()).map_err(|e| {
                CopyError::Pg(PgError::Sql {
                    url: target.shown(),
                    problem: format!("copying a batch of table {}: {e}", table.name),
                })
            })?;
            writer.finish().map_err(|e| pg_err("copying a batch", e))?;
            after = Some(last_key);
        }
        let key_json = after.as_deref().map(key_to_json);
        tx.execute(
            "UPDATE copy_progress SET last_key = $2, rows_copied = rows_copied + $3, done = $4 \
             WHERE table_name = $1",
            &[&table.name, &key_json, &(n as i64), &finished],
        )
        .map_err(|e| pg_err("recording the progress", e))?;
        tx.commit().map_err(|e| pg_err("committing a batch", e))?;
        total += n as u64;
        copied(n as u64);
        if finished {
            return Ok(total);
        }
    }
}

/// After the last batch: generated keys continue after the copied ones, and the copy is marked
/// finished.
fn finish(client: &mut postgres::Client, target: &PgTarget) -> Result<(), CopyError> {
    let mut sql = String::new();
    for table in IDENTITY_TABLES {
        let _ = writeln!(
            sql,
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), MAX(id)) FROM {table};"
        );
    }
    sql.push_str("UPDATE copy_source SET finished_at = now() WHERE finished_at IS NULL;");
    client
        .batch_execute(&format!("BEGIN; {sql} COMMIT;"))
        .map_err(|e| CopyError::Pg(target.sql_error("finishing the copy", &e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields_are_escaped_for_copy() {
        let mut out = String::new();
        push_field(&mut out, ValueRef::Text(b"a\tb\nc\\d\re"), false).unwrap();
        assert_eq!(out, "a\\tb\\nc\\\\d\\re");
        out.clear();
        push_field(&mut out, ValueRef::Null, false).unwrap();
        push_field(&mut out, ValueRef::Integer(-42), false).unwrap();
        assert_eq!(out, "\\N-42");
        assert!(push_field(&mut out, ValueRef::Blob(b"x"), false).is_err());
    }

    #[test]
    fn a_nul_is_copied_as_the_replacement_character() {
        let mut out = String::new();
        push_field(&mut out, ValueRef::Text(b"a\0b"), false).unwrap();
        assert_eq!(out, "a\u{fffd}b");
        out.clear();
        // In JSON, escaped: the COPY text doubles the backslash.
        push_field(&mut out, ValueRef::Text(br#"{"r":"a\u0000b"}"#), true).unwrap();
        assert_eq!(out, r#"{"r":"a\\ufffdb"}"#);
        out.clear();
        // Not JSON (rejected_rows.raw): kept as it came.
        push_field(&mut out, ValueRef::Text(br#"{"r":"a\u0000b"}"#), false).unwrap();
        assert_eq!(out, r#"{"r":"a\\u0000b"}"#);
    }

    #[test]
    fn keys_round_trip_through_json() {
        let key = vec![
            Value::Text("veapi".into()),
            Value::Integer(9_007_199_254_740_993),
        ];
        assert_eq!(key_from_json(&key_to_json(&key)), key);
    }

    #[test]
    fn every_schema_column_is_copied() {
        // The SQLite schema's columns, as a fresh database has them, are exactly the ones copied.
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open_connection(&dir.path().join("c.db")).unwrap();
        for table in &TABLES {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info('{}')",
                    table.name
                ))
                .unwrap();
            let mut stored: Vec<String> = stmt
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let mut copied: Vec<String> = table.columns.iter().map(|c| c.to_string()).collect();
            stored.sort();
            copied.sort();
            assert_eq!(stored, copied, "table {}", table.name);
        }
    }
}
