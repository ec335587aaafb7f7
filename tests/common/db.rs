//! Reading the database a test left behind: one value, one column, whole tables as text, and the
//! invariants every database must keep (integrity, foreign keys, no duplicated history).

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use rusqlite::Connection;

use super::Harness;

pub fn scalar<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> T {
    conn.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `orders` without `synced_at`, as text, for "nothing changed" comparisons.
pub fn orders_snapshot(conn: &Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare(
            "SELECT source, order_id, pipeline, kind, status, status_raw, pay_amount, refund_amount, commission, \
             created_at, paid_at, updated_at, refunded_at, settled_at, confirmed_at, shop_id, shop_name, product_id, \
             product_name, item_num, raw, first_seen_at FROM orders ORDER BY source, order_id",
        )
        .expect("prepare");
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        let mut parts = Vec::with_capacity(n);
        for i in 0..n {
            let v: rusqlite::types::Value = r.get(i)?;
            parts.push(format!("{v:?}"));
        }
        Ok(parts.join("|"))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

pub fn parse_db_time(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("stored time {text:?}: {e}"))
}

pub fn rows<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> Vec<T> {
    conn.prepare(sql)
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Every row of `sql`, each as one text line (for before/after comparisons).
pub fn table_text(conn: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                r.get::<_, rusqlite::types::Value>(i)
                    .map(|v| format!("{v:?}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|parts| parts.join("|"))
    })
    .and_then(|it| it.collect())
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub fn assert_integrity(conn: &Connection) {
    assert_eq!(rows::<String>(conn, "PRAGMA integrity_check"), vec!["ok"]);
    let fk = table_text(conn, "PRAGMA foreign_key_check");
    assert!(fk.is_empty(), "foreign key violations: {fk:?}");
}

/// No `(source, order_id, status_raw)` twice in the history: every simulated order reaches each of
/// its statuses once (they only move forward), so a second row would be a duplicated sighting.
pub fn assert_no_duplicate_history(conn: &Connection) {
    let dups = table_text(
        conn,
        "SELECT source, order_id, status_raw, COUNT(*) FROM order_status_history \
         GROUP BY source, order_id, status_raw HAVING COUNT(*) > 1 LIMIT 10",
    );
    assert!(dups.is_empty(), "duplicated history rows: {dups:?}");
}

pub fn outcomes(conn: &Connection) -> BTreeMap<String, i64> {
    let mut stmt = conn
        .prepare("SELECT outcome, COUNT(*) FROM runs GROUP BY outcome")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|it| it.collect())
        .expect("outcomes")
}

pub fn runs_with(h: &Harness, pipeline: &str, outcome: &str) -> i64 {
    h.db()
        .query_row(
            "SELECT COUNT(*) FROM runs WHERE pipeline = ?1 AND outcome = ?2",
            [pipeline, outcome],
            |r| r.get(0),
        )
        .unwrap_or(0)
}

/// The test cluster's database at `url` as ordersync's store reaches it (the password given).
pub fn pg_target(url: &str) -> ordersync::store::pg::PgTarget {
    ordersync::store::pg::PgTarget::new(
        url,
        Some(ordersync::secret::Secret::new(super::PG_PASSWORD)),
    )
    .expect("a valid test URL")
}
