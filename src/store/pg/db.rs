//! The store's SQL on PostgreSQL: [`PgDb`] runs the statements every store module writes once
//! (`store::sql`) on a PostgreSQL connection.
//!
//! Three things make PostgreSQL look like the SQLite the modules were written for, at this edge
//! only: `?N` parameters become `$N`; a parameter is encoded as the type PostgreSQL inferred for
//! it (a Beijing time given as text goes into a `timestamp` column, a JSON row as text into
//! `jsonb`, an integer into a `boolean`); and values come back as integers, reals and text (a
//! `timestamp` as `YYYY-MM-DD HH:MM:SS`, `jsonb` as its text). Text and JSON holding U+0000, which
//! PostgreSQL cannot store, are written with U+FFFD in its place. Statements are prepared once per
//! connection and kept.

use std::borrow::Cow;
use std::collections::HashMap;
use std::error::Error as StdError;

use bytes::{BufMut, BytesMut};
use chrono::{NaiveDate, NaiveDateTime};
use postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

use super::PgTarget;
use crate::store::sql::{Db, Dialect, Param, Row, Value};
use crate::store::StoreError;
use crate::timefmt;

type BoxError = Box<dyn StdError + Sync + Send>;

/// A PostgreSQL connection the store writes and reads through.
pub struct PgDb {
    client: postgres::Client,
    target: PgTarget,
    statements: HashMap<String, postgres::Statement>,
}

impl PgDb {
    /// Connects, migrating the schema to this binary's version.
    pub fn connect(target: &PgTarget) -> Result<PgDb, StoreError> {
        Ok(PgDb::on(target.connect_migrated()?, target))
    }

    /// Connects without touching the schema: for the read-only reports, beside a writer that
    /// migrated it.
    pub fn connect_for_reading(target: &PgTarget) -> Result<PgDb, StoreError> {
        Ok(PgDb::on(target.connect()?, target))
    }

    fn on(client: postgres::Client, target: &PgTarget) -> PgDb {
        PgDb {
            client,
            target: target.clone(),
            statements: HashMap::new(),
        }
    }

    /// Whether the connection has ended (the server restarted, the network cut it): the store's
    /// writer then connects again before its next job.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    fn failed(&self, e: &postgres::Error) -> StoreError {
        StoreError::Postgres(self.target.sql_error("running a statement", e))
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let prepared = self
            .client
            .prepare(&dollar_params(sql))
            .map_err(|e| self.failed(&e))?;
        self.statements.insert(sql.to_string(), prepared.clone());
        Ok(prepared)
    }
}

impl Db for PgDb {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<usize, StoreError> {
        let statement = self.statement(sql)?;
        let bound: Vec<Bound<'_>> = params.iter().map(|p| Bound(*p)).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b as _).collect();
        let n = self
            .client
            .execute(&statement, &refs)
            .map_err(|e| self.failed(&e))?;
        Ok(n as usize)
    }

    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql)?;
        let bound: Vec<Bound<'_>> = params.iter().map(|p| Bound(*p)).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b as _).collect();
        let rows = self
            .client
            .query(&statement, &refs)
            .map_err(|e| self.failed(&e))?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        row.try_get::<_, Read>(i)
                            .map(|r| r.0)
                            .map_err(|e| self.failed(&e))
                    })
                    .collect::<Result<Vec<Value>, StoreError>>()
                    .map(Row::new)
            })
            .collect()
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.client.batch_execute(sql).map_err(|e| self.failed(&e))
    }
}

/// `?N` → `$N`, outside quoted text and identifiers.
fn dollar_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push('$');
                continue;
            }
            None => {}
        }
        out.push(c);
    }
    out
}

/// Microseconds between the Unix epoch and PostgreSQL's, 2000-01-01.
fn pg_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

/// A parameter, encoded as whatever type PostgreSQL inferred for its place.
#[derive(Debug)]
struct Bound<'a>(Param<'a>);

impl ToSql for Bound<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let int = |n: i64, out: &mut BytesMut| -> Result<(), BoxError> {
            match *ty {
                Type::INT8 => out.put_i64(n),
                Type::INT4 => out.put_i32(i32::try_from(n)?),
                Type::INT2 => out.put_i16(i16::try_from(n)?),
                Type::BOOL => out.put_u8(u8::from(n != 0)),
                Type::FLOAT8 => out.put_f64(n as f64),
                _ => text(&n.to_string(), ty, out)?,
            }
            Ok(())
        };
        match self.0 {
            Param::Null => return Ok(IsNull::Yes),
            Param::Int(n) => int(n, out)?,
            Param::Real(x) => match *ty {
                Type::FLOAT8 => out.put_f64(x),
                Type::FLOAT4 => out.put_f32(x as f32),
                _ => text(&x.to_string(), ty, out)?,
            },
            Param::Text(s) => match *ty {
                Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL => int(s.parse()?, out)?,
                _ => text(s, ty, out)?,
            },
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Text for a place of type `ty`: a time for a `timestamp`, a day for a `date`, JSON for `jsonb`,
/// else as it is.
fn text(s: &str, ty: &Type, out: &mut BytesMut) -> Result<(), BoxError> {
    match *ty {
        Type::TIMESTAMP => {
            let t = timefmt::parse_user_time(s).ok_or_else(|| format!("{s:?} is not a time"))?;
            let micros = (t - pg_epoch())
                .num_microseconds()
                .ok_or("a time out of range")?;
            out.put_i64(micros);
        }
        Type::DATE => {
            let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| format!("{s:?} is not a day"))?;
            out.put_i32(i32::try_from((d - pg_epoch().date()).num_days())?);
        }
        Type::JSONB => {
            out.put_u8(1);
            out.put_slice(without_nul_escapes(s).as_bytes());
        }
        _ if s.contains('\0') => out.put_slice(s.replace('\0', "\u{fffd}").as_bytes()),
        _ => out.put_slice(s.as_bytes()),
    }
    Ok(())
}

/// JSON text with every escaped U+0000 (`\u0000`, legal JSON) made U+FFFD: PostgreSQL's `jsonb`
/// refuses it, and a row upstream sent with one is stored, not its page failed, the character
/// replaced as a byte that is not UTF-8 is. An escaped backslash before `u0000` is left alone.
pub(super) fn without_nul_escapes(json: &str) -> Cow<'_, str> {
    if !json.contains("\\u0000") {
        return Cow::Borrowed(json);
    }
    let bytes = json.as_bytes();
    let mut out = String::with_capacity(json.len());
    let (mut at, mut copied) = (0, 0);
    while at < bytes.len() {
        if bytes[at] != b'\\' {
            at += 1;
        } else if bytes.get(at + 1..at + 6) == Some(&b"u0000"[..]) {
            out.push_str(&json[copied..at]);
            out.push_str("\\ufffd");
            at += 6;
            copied = at;
        } else {
            at += 2;
        }
    }
    out.push_str(&json[copied..]);
    Cow::Owned(out)
}

/// A value read back, as the store's modules read SQLite's.
struct Read(Value);

impl<'a> FromSql<'a> for Read {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Read, BoxError> {
        let be8 = |raw: &[u8]| -> Result<[u8; 8], BoxError> { Ok(raw.try_into()?) };
        Ok(Read(match *ty {
            Type::INT8 => Value::Int(i64::from_be_bytes(be8(raw)?)),
            Type::INT4 => Value::Int(i64::from(i32::from_be_bytes(raw.try_into()?))),
            Type::INT2 => Value::Int(i64::from(i16::from_be_bytes(raw.try_into()?))),
            Type::BOOL => Value::Int(i64::from(raw.first().is_some_and(|b| *b != 0))),
            Type::FLOAT8 => Value::Real(f64::from_be_bytes(be8(raw)?)),
            Type::FLOAT4 => Value::Real(f64::from(f32::from_be_bytes(raw.try_into()?))),
            Type::TIMESTAMP => {
                let micros = i64::from_be_bytes(be8(raw)?);
                let t = pg_epoch() + chrono::Duration::microseconds(micros);
                Value::Text(timefmt::fmt_seconds(t))
            }
            Type::DATE => {
                let days = i32::from_be_bytes(raw.try_into()?);
                let d = pg_epoch().date() + chrono::Duration::days(i64::from(days));
                Value::Text(d.format("%Y-%m-%d").to_string())
            }
            Type::JSONB => Value::Text(std::str::from_utf8(raw.get(1..).unwrap_or(&[]))?.into()),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON => {
                Value::Text(std::str::from_utf8(raw)?.into())
            }
            _ => {
                return Err(format!(
                    "a column of type {ty} is not read by the store; cast it to BIGINT or TEXT"
                )
                .into())
            }
        }))
    }

    fn from_sql_null(_: &Type) -> Result<Read, BoxError> {
        Ok(Read(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_escaped_nul_becomes_the_replacement_character_and_nothing_else_changes() {
        let cases = [
            (r#"{"a":"x\u0000y"}"#, r#"{"a":"x\ufffdy"}"#),
            (r#"["\u0000\u0000"]"#, r#"["\ufffd\ufffd"]"#),
            // A backslash, then the text u0000: not a NUL.
            (r#"["\\u0000"]"#, r#"["\\u0000"]"#),
            (r#"["\\\u0000"]"#, r#"["\\\ufffd"]"#),
            (r#"{"名":"\u00001"}"#, r#"{"名":"\ufffd1"}"#),
            (r#"{"a":"\u0001"}"#, r#"{"a":"\u0001"}"#),
            (r#"["\u000"]"#, r#"["\u000"]"#),
        ];
        for (json, want) in cases {
            assert_eq!(without_nul_escapes(json), want, "{json}");
            if json.contains("u0000") && want.contains("ufffd") {
                let v: serde_json::Value =
                    serde_json::from_str(&without_nul_escapes(json)).unwrap();
                assert!(!v.to_string().contains('\0'));
            }
        }
        assert!(matches!(
            without_nul_escapes(r#"{"a":1}"#),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn question_mark_parameters_become_dollar_ones_outside_quotes() {
        assert_eq!(
            dollar_params("SELECT ?1, '?2', \"a?3\", x ?? y, ?10 WHERE a = ?2"),
            "SELECT $1, '?2', \"a?3\", x ?? y, $10 WHERE a = $2"
        );
    }
}
