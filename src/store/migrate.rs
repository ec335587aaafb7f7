//! Schema migrations: the `-- migration: N` sections of `schema.sql`, applied in order.
//!
//! Invariant: `PRAGMA user_version` is the last migration applied, and each migration is applied
//! once, in one transaction that also sets that version, so a database is always at exactly one
//! version of `schema.sql` — never half-way through one — and no foreign key is broken when a
//! migration commits. A database newer than this binary is refused, never written.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

const SCHEMA: &str = include_str!("../../schema.sql");

/// The `-- migration: N` sections of `schema.sql`, in order.
pub(super) fn migrations() -> Vec<(i64, &'static str)> {
    sections(SCHEMA)
}

/// The `-- migration: N` sections of a schema file, in order (PostgreSQL's `pg/schema.sql` too).
pub(super) fn sections(schema: &'static str) -> Vec<(i64, &'static str)> {
    let mut out = Vec::new();
    let marker = "-- migration: ";
    let mut rest = schema;
    while let Some(pos) = rest.find(marker) {
        let after = &rest[pos + marker.len()..];
        let line_end = after.find('\n').unwrap_or(after.len());
        let version: i64 = after[..line_end].trim().parse().unwrap_or(0);
        let body_end = after.find(marker).unwrap_or(after.len());
        out.push((version, &after[line_end..body_end]));
        rest = &after[body_end..];
    }
    out
}

pub fn schema_version() -> i64 {
    migrations().last().map_or(0, |(v, _)| *v)
}

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = schema_version();
    if current > known {
        return Err(StoreError::TooNew {
            found: current,
            known,
        });
    }
    if current == known {
        return Ok(());
    }
    // A migration may rebuild a table others refer to (SQLite's documented way: copy, drop,
    // rename), which foreign-key enforcement would refuse half-way; the check runs at the end.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    for (version, sql) in migrations() {
        if version <= current {
            continue;
        }
        // Immediate: another process opening the same new database waits here instead of
        // applying the same migration twice; it then sees the version this one set.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now_at: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now_at >= version {
            continue;
        }
        tx.execute_batch(sql)?;
        let broken: i64 =
            tx.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if broken > 0 {
            return Err(StoreError::Migration {
                version,
                problem: format!("{broken} rows would break a foreign key"),
            });
        }
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "database migrated");
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::open_connection;
    use crate::store::pg::PgError;
    use crate::store::sql::{Db, Dialect};
    use crate::store::test_support::{count, on_both_engines, TestDb};

    on_both_engines!(migrations_are_idempotent_and_versioned);

    #[test]
    fn a_version_2_database_migrates_to_rowid_tables_keeping_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        {
            // A database as version 2 left it, with one single-line and one two-line order.
            let conn = Connection::open(&path).unwrap();
            for (version, sql) in migrations().into_iter().filter(|(v, _)| *v <= 2) {
                conn.execute_batch(sql).unwrap();
                conn.pragma_update(None, "user_version", version).unwrap();
            }
            conn.execute_batch(
                "INSERT INTO orders (source, order_id, pipeline, kind, status, raw, first_seen_at, synced_at, pay_amount) \
                 VALUES ('veapi', '1', 'p', 'affiliate', 'paid', '{\"a\":1}', 'x', 'x', 100), \
                        ('unidesk', '2', 'u', 'sale', 'paid', '{\"sub_orders\":[]}', 'x', 'x', 30); \
                 INSERT INTO sub_orders (source, order_id, sub_order_id, status, raw, pay_amount) \
                 VALUES ('veapi', '1', '1', 'paid', '{\"a\":1}', 100), \
                        ('unidesk', '2', '21', 'paid', '{\"l\":1}', 10), ('unidesk', '2', '22', 'paid', '{\"l\":2}', 20);",
            )
            .unwrap();
        }
        let mut conn = open_connection(&path).unwrap();
        assert_eq!(count(&mut conn, "PRAGMA user_version"), schema_version());
        assert_eq!(count(&mut conn, "SELECT COUNT(*) FROM orders"), 2);
        assert_eq!(count(&mut conn, "SELECT COUNT(*) FROM sub_orders"), 3);
        assert_eq!(
            count(
                &mut conn,
                "SELECT COUNT(*) FROM sub_orders WHERE raw IS NULL"
            ),
            1,
            "only the line that repeated its order's row lost its copy"
        );
        assert_eq!(
            count(&mut conn, "SELECT SUM(pay_amount) FROM order_lines"),
            130
        );
        assert_eq!(count(&mut conn, "SELECT SUM(gmv) FROM daily_summary"), 130);
        let rowid: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE sql LIKE '%WITHOUT ROWID%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rowid, 0);
        assert_eq!(
            count(&mut conn, "SELECT COUNT(*) FROM pragma_foreign_key_check"),
            0
        );
        let fk_on: i64 = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk_on, 1, "foreign keys are enforced again after migrating");
    }

    /// The schema version a database records: SQLite's `user_version`, PostgreSQL's
    /// `schema_version` table (one row per migration applied).
    fn stored_version(db: &mut dyn Db) -> i64 {
        match db.dialect() {
            Dialect::Sqlite => count(db, "PRAGMA user_version"),
            Dialect::Postgres => count(db, "SELECT MAX(version) FROM schema_version"),
        }
    }

    /// Records `version` as applied, as a newer ordersync would have.
    fn record_version(db: &mut dyn Db, version: i64) {
        db.batch(&match db.dialect() {
            Dialect::Sqlite => format!("PRAGMA user_version = {version}"),
            Dialect::Postgres => format!("INSERT INTO schema_version (version) VALUES ({version})"),
        })
        .unwrap();
    }

    fn migrations_are_idempotent_and_versioned(db: &mut TestDb, _run: i64) {
        assert!(schema_version() >= 1);
        // Connecting again, as every process and restart does, applies nothing twice.
        drop(db.connect_again().unwrap());
        let mut again = db.connect_again().unwrap();
        assert_eq!(stored_version(&mut *again), schema_version());
        if again.dialect() == Dialect::Postgres {
            // Its first migration is SQLite's 6th (pg/schema.sql), each recorded once.
            assert_eq!(
                count(&mut *again, "SELECT COUNT(*) FROM schema_version"),
                schema_version() - 5
            );
        }
        assert_eq!(count(&mut *again, "SELECT COUNT(*) FROM runs"), 1, "kept");
        record_version(&mut *again, 999);
        drop(again);
        let refused = db.connect_again().err();
        assert!(
            matches!(
                refused,
                Some(
                    StoreError::TooNew { found: 999, .. }
                        | StoreError::Postgres(PgError::TooNew { found: 999, .. })
                )
            ),
            "{refused:?}"
        );
        // The database still answers the connection already open, unchanged.
        assert_eq!(stored_version(db), 999);
    }
}
