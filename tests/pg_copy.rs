//! The PostgreSQL store against a real PostgreSQL cluster (`common::pg`): the schema is applied
//! once when two processes connect at once, and a database newer than the binary is refused.

use ordersync::secret::Secret;
use ordersync::store::pg::{PgError, PgTarget};

use crate::common::*;

#[test]
fn two_processes_connecting_at_once_apply_the_schema_once_and_a_newer_one_is_refused() {
    let Some(db) = pg_database() else { return };
    let target = PgTarget::new(&db.url(), Some(Secret::new(PG_PASSWORD))).unwrap();
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        let connects: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    target.connect_migrated().map(|_| ())
                })
            })
            .collect();
        for c in connects {
            c.join().unwrap().expect("both connect");
        }
    });
    let mut pg = db.client();
    let versions: Vec<i64> = pg
        .query("SELECT version FROM schema_version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![ordersync::store::pg::schema_version()]);
    pg.batch_execute("INSERT INTO schema_version (version) VALUES (999)")
        .unwrap();
    match target.connect_migrated() {
        Err(PgError::TooNew { found: 999, .. }) => {}
        other => panic!("a newer database was not refused: {:?}", other.map(|_| ())),
    }
}
