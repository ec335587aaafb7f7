//! The check at the end of `ordersync copy`: per source, counts and every money column summed on
//! both engines, and every table's row count; a small table to print and one sentence per
//! difference.
//!
//! Invariant: the SQLite figures come from the same snapshot the copy read, so a difference is a
//! row missing or changed in PostgreSQL (or written to SQLite after the copy began), never noise.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::copy::{CopyError, Source};
use super::tables::TABLES;
use super::PgTarget;

/// What is compared per source, in this order.
pub const FIGURES: [&str; 12] = [
    "orders",
    "lines",
    "history",
    "rejected",
    "orders.pay_amount",
    "orders.refund_amount",
    "orders.commission",
    "orders.ad_cost",
    "orders.ad_gmv",
    "lines.pay_amount",
    "lines.refund_amount",
    "lines.commission",
];

/// The queries behind [`FIGURES`], each `source` then values, written so that both engines run them
/// (sums cast to BIGINT: PostgreSQL's SUM of BIGINT is NUMERIC).
const FIGURE_QUERIES: [(&str, usize); 4] = [
    ("SELECT source, COUNT(*), 0, 0, 0, CAST(COALESCE(SUM(pay_amount), 0) AS BIGINT), CAST(COALESCE(SUM(refund_amount), 0) AS BIGINT), CAST(COALESCE(SUM(commission), 0) AS BIGINT), CAST(COALESCE(SUM(ad_cost), 0) AS BIGINT), CAST(COALESCE(SUM(ad_gmv), 0) AS BIGINT), 0, 0, 0 FROM orders GROUP BY source", 0),
    ("SELECT source, 0, COUNT(*), 0, 0, 0, 0, 0, 0, 0, CAST(COALESCE(SUM(pay_amount), 0) AS BIGINT), CAST(COALESCE(SUM(refund_amount), 0) AS BIGINT), CAST(COALESCE(SUM(commission), 0) AS BIGINT) FROM sub_orders GROUP BY source", 1),
    ("SELECT source, 0, 0, COUNT(*), 0, 0, 0, 0, 0, 0, 0, 0, 0 FROM order_status_history GROUP BY source", 2),
    ("SELECT source, 0, 0, 0, COUNT(*), 0, 0, 0, 0, 0, 0, 0, 0 FROM rejected_rows GROUP BY source", 3),
];

/// Per source, [`FIGURES`] on each engine; and every table's row count on each.
#[derive(Debug, Default)]
pub struct Verification {
    pub sources: BTreeMap<String, ([i64; 12], [i64; 12])>,
    pub tables: Vec<(&'static str, i64, i64)>,
}

impl Verification {
    /// One sentence per figure that differs.
    pub fn mismatches(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (source, (sqlite, pg)) in &self.sources {
            for (i, name) in FIGURES.iter().enumerate() {
                if sqlite[i] != pg[i] {
                    out.push(format!(
                        "{source}: {name} is {} in SQLite but {} in PostgreSQL",
                        sqlite[i], pg[i]
                    ));
                }
            }
        }
        for (table, sqlite, pg) in &self.tables {
            if sqlite != pg {
                out.push(format!(
                    "table {table}: {sqlite} rows in SQLite but {pg} in PostgreSQL"
                ));
            }
        }
        out
    }

    /// The small table `ordersync copy` prints: per source, the counts and two sums, and whether
    /// every figure (all eight money sums included) is equal on both engines.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{:<12} {:>9} {:>9} {:>9} {:>9} {:>16} {:>14}  {}\n",
            "source",
            "orders",
            "lines",
            "history",
            "rejected",
            "pay_amount fen",
            "commission fen",
            "both engines"
        );
        for (source, (sqlite, pg)) in &self.sources {
            let _ = writeln!(
                out,
                "{:<12} {:>9} {:>9} {:>9} {:>9} {:>16} {:>14}  {}",
                source,
                sqlite[0],
                sqlite[1],
                sqlite[2],
                sqlite[3],
                sqlite[4],
                sqlite[6],
                if sqlite == pg { "equal" } else { "DIFFERENT" }
            );
        }
        let equal = self.tables.iter().filter(|(_, a, b)| a == b).count();
        let _ = writeln!(
            out,
            "tables: {equal} of {} with the same row count on both engines",
            self.tables.len()
        );
        out
    }
}

pub(super) fn verify(
    source: &Source,
    client: &mut postgres::Client,
    target: &PgTarget,
) -> Result<Verification, CopyError> {
    let pg_err = |e: postgres::Error| CopyError::Pg(target.sql_error("verifying the copy", &e));
    let mut v = Verification::default();
    for (sql, _) in FIGURE_QUERIES {
        let mut stmt = source.conn.prepare(sql).map_err(|e| source.fail(e))?;
        let rows = stmt
            .query_map([], |r| {
                let mut values = [0i64; 12];
                for (i, slot) in values.iter_mut().enumerate() {
                    *slot = r.get(i + 1)?;
                }
                Ok((r.get::<_, String>(0)?, values))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| source.fail(e))?;
        for (name, values) in rows {
            let entry = v.sources.entry(name).or_default();
            for (i, x) in values.iter().enumerate() {
                entry.0[i] += x;
            }
        }
        for row in client.query(sql, &[]).map_err(pg_err)? {
            let name: String = row.try_get(0).map_err(pg_err)?;
            let entry = v.sources.entry(name).or_default();
            for i in 0..12 {
                // Literal zeros are INTEGER in PostgreSQL, the COUNTs and casts BIGINT.
                let x: i64 = row
                    .try_get::<_, i64>(i + 1)
                    .or_else(|_| row.try_get::<_, i32>(i + 1).map(i64::from))
                    .map_err(pg_err)?;
                entry.1[i] += x;
            }
        }
    }
    for table in &TABLES {
        let sqlite = source.count(table.name)? as i64;
        let pg: i64 = client
            .query_one(&format!("SELECT COUNT(*) FROM {}", table.name), &[])
            .and_then(|r| r.try_get(0))
            .map_err(pg_err)?;
        v.tables.push((table.name, sqlite, pg));
    }
    Ok(v)
}
