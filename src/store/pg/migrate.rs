//! PostgreSQL schema migrations: the `-- migration: N` sections of `pg/schema.sql`, numbered as
//! `schema.sql`'s are, so that one version means one shape on both engines.
//!
//! Invariant: `schema_version` holds every migration applied; pending ones are applied in one
//! transaction that records them, under a transaction-scoped advisory lock, so two processes
//! connecting to a new database at once never both apply one (the second waits, then finds it
//! applied). A database newer than this binary is refused, never written.

use super::{PgError, PgTarget};

const SCHEMA: &str = include_str!("schema.sql");

/// The advisory lock key the migration holds: "ordersync" in ASCII, so no other application's
/// lock is likely to collide with it.
const MIGRATION_LOCK: i64 = 0x6f72_6465_7273_796e;

fn migrations() -> Vec<(i64, &'static str)> {
    crate::store::migrate::sections(SCHEMA)
}

/// The last migration in `pg/schema.sql`.
pub fn schema_version() -> i64 {
    migrations().last().map_or(0, |(v, _)| *v)
}

/// Brings the database to [`schema_version`] (see the module's invariant).
pub fn migrate(client: &mut postgres::Client, target: &PgTarget) -> Result<(), PgError> {
    let failed = |doing: &str, e: postgres::Error| target.sql_error(doing, &e);
    let mut tx = client
        .transaction()
        .map_err(|e| failed("starting the migration", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(|e| failed("waiting for the migration lock", e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    BIGINT PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .map_err(|e| failed("creating schema_version", e))?;
    let current: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .and_then(|r| r.try_get(0))
        .map_err(|e| failed("reading schema_version", e))?;
    let known = schema_version();
    if current > known {
        return Err(PgError::TooNew {
            url: target.shown(),
            found: current,
            known,
        });
    }
    for (version, sql) in migrations() {
        if version <= current {
            continue;
        }
        tx.batch_execute(sql)
            .map_err(|e| failed(&format!("applying migration {version}"), e))?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&version],
        )
        .map_err(|e| failed("recording the schema version", e))?;
        tracing::info!(version, "PostgreSQL database migrated");
    }
    tx.commit()
        .map_err(|e| failed("committing the migration", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_is_at_the_same_schema_version_as_sqlite() {
        // A migration added to schema.sql needs its PostgreSQL twin in pg/schema.sql.
        assert_eq!(schema_version(), crate::store::schema_version());
        assert_eq!(migrations().first().map(|(v, _)| *v), Some(6));
    }
}
