//! What the store's unit tests share: a fresh database on either engine with a track and a run,
//! the macro that runs one test body on both engines, a page commit with defaults, rows built from
//! a few fields, and the few probes that must be asked differently of each engine.
//!
//! One body per behaviour: a test is `fn behaviour(db: &mut TestDb, run: i64)`, and
//! `on_both_engines!(behaviour)` makes `behaviour::sqlite` and `behaviour::postgres` of it. The
//! PostgreSQL half runs on the `ordersync-testpg` cluster (one per test process, a database per
//! test), and is skipped, saying so, where PostgreSQL is not installed, unless
//! `ORDERSYNC_REQUIRE_TOOLS` is set.

use chrono::NaiveDateTime;

use super::pg::PgTarget;
use super::sql::{Db, Dialect, Param, Row};
use super::{
    begin_run, commit_page, ensure_track, open_db, Location, PageCommit, PageStats, Progress,
    StoreError,
};
use crate::model::SourceKind;
use crate::model::{Kind, OrderRow, Status};
use crate::secret::Secret;
use crate::timefmt;

#[derive(Debug, Clone, Copy)]
pub(super) enum Engine {
    Sqlite,
    Postgres,
}

/// A fresh, migrated database of one engine, open, and what keeps it there (the SQLite file's
/// temp dir). It is the `Db` it holds: passed where one is asked for, and dereferenced to one for
/// the helpers on `dyn Db` (`query_value` …).
pub(super) struct TestDb {
    db: Box<dyn Db + Send>,
    location: Location,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A new empty database, or `None` when the engine is PostgreSQL and it is not installed.
    pub(super) fn new(engine: Engine) -> Option<TestDb> {
        let (location, dir) = match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                (Location::File(dir.path().join("t.db")), Some(dir))
            }
            Engine::Postgres => {
                let pg = ordersync_testpg::pg_database()?;
                let password = Secret::new(ordersync_testpg::PG_PASSWORD);
                let target = PgTarget::new(&pg.url(), Some(password)).unwrap();
                (Location::Postgres(Box::new(target)), None)
            }
        };
        Some(TestDb {
            db: open_db(&location).unwrap(),
            location,
            _dir: dir,
        })
    }

    pub(super) fn location(&self) -> &Location {
        &self.location
    }

    /// Another connection to the same database, as another process would open it (migrating
    /// it first, as every process does).
    pub(super) fn connect_again(&self) -> Result<Box<dyn Db + Send>, StoreError> {
        open_db(&self.location)
    }
}

impl Db for TestDb {
    fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<usize, StoreError> {
        self.db.execute(sql, params)
    }

    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        self.db.query(sql, params)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.db.batch(sql)
    }
}

impl std::ops::Deref for TestDb {
    type Target = dyn Db;

    fn deref(&self) -> &Self::Target {
        &*self.db
    }
}

impl std::ops::DerefMut for TestDb {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut *self.db
    }
}

/// Runs `body` on a fresh database of `engine` holding track `p`/`live` and a running `sync` run
/// of it (its id is the body's second argument); nothing when the engine is not installed.
pub(super) fn run_on(engine: Engine, body: fn(&mut TestDb, i64)) {
    let Some(mut db) = TestDb::new(engine) else {
        return;
    };
    ensure_track(&mut *db, "p", "live", None).unwrap();
    let run = begin_run(&mut *db, "p", "sync", "live").unwrap();
    body(&mut db, run);
}

/// `on_both_engines!(a, b, …)`: for each test body `fn a(db: &mut TestDb, run: i64)` in scope,
/// the tests `a::sqlite` and `a::postgres`.
macro_rules! on_both_engines {
    ($($body:ident),+ $(,)?) => {$(
        mod $body {
            use $crate::store::test_support::{run_on, Engine};

            #[test]
            fn sqlite() {
                run_on(Engine::Sqlite, super::$body)
            }

            #[test]
            fn postgres() {
                run_on(Engine::Postgres, super::$body)
            }
        }
    )+};
}
pub(super) use on_both_engines;

pub(super) fn t(s: &str) -> NaiveDateTime {
    timefmt::parse_user_time(s).unwrap()
}

/// A paid veapi order; `raw` is its upstream JSON (PostgreSQL keeps it as `jsonb`, so it must
/// be JSON).
pub(super) fn order(id: &str, status: &str, updated: &str, raw: &str) -> OrderRow {
    let mut o = OrderRow::new(SourceKind::Veapi, id.into(), Kind::Affiliate, raw.into());
    o.status_raw = status.into();
    o.status = Status::Paid;
    o.updated_at = Some(t(updated));
    o
}

pub(super) fn commit(
    db: &mut dyn Db,
    run: i64,
    orders: Vec<OrderRow>,
    progress: Progress,
) -> PageStats {
    commit_page(db, &page(run, orders, progress)).unwrap()
}

/// A page of pipeline `p`'s live run `run`: `orders`, then `progress`.
pub(super) fn page(run: i64, orders: Vec<OrderRow>, progress: Progress) -> PageCommit {
    let window = match &progress {
        Progress::Next { window, .. } | Progress::WindowDone { window } => *window,
    };
    PageCommit {
        run_id: run,
        pipeline: "p".into(),
        scope: "live".into(),
        source: SourceKind::Veapi,
        orders,
        rejected: Vec::new(),
        asked: (window, String::new()),
        requests: 1,
        progress,
        seen_floor: String::new(),
    }
}

/// The one integer a statement returns (`COUNT(*)`, a BIGINT column of the one row).
pub(super) fn count(db: &mut dyn Db, sql: &str) -> i64 {
    db.query_value(sql, &[]).unwrap()
}

/// The one text a statement returns.
pub(super) fn text(db: &mut dyn Db, sql: &str) -> String {
    db.query_value(sql, &[]).unwrap()
}

/// The `raw` of order `id`, parsed: SQLite keeps the upstream text as it came, PostgreSQL's
/// `jsonb` keeps its value (not its spacing or key order), so tests compare values.
pub(super) fn raw_json(db: &mut dyn Db, id: &str) -> serde_json::Value {
    let raw: String = db
        .query_value(
            "SELECT raw FROM orders WHERE order_id = ?1",
            crate::store::sql::args![id],
        )
        .unwrap();
    serde_json::from_str(&raw).unwrap()
}

/// Whether `db` is inside a transaction: SQLite refuses a `BEGIN` inside one, PostgreSQL a
/// `SAVEPOINT` outside one (its `BEGIN` inside one only warns).
pub(super) fn in_transaction(db: &mut dyn Db) -> bool {
    match db.dialect() {
        Dialect::Sqlite => {
            let began = db.batch("BEGIN").is_ok();
            if began {
                db.batch("ROLLBACK").unwrap();
            }
            !began
        }
        Dialect::Postgres => match db.batch("SAVEPOINT probe") {
            Ok(()) => {
                db.batch("RELEASE SAVEPOINT probe").unwrap();
                true
            }
            // An aborted transaction (one a failed statement left open) refuses the savepoint
            // too: it is a transaction still.
            Err(e) => e.to_string().contains("current transaction is aborted"),
        },
    }
}

/// Makes the database refuse, with an error, any order row with id `id` inserted from now on.
pub(super) fn refuse_order(db: &mut dyn Db, id: &str) {
    let sql = match db.dialect() {
        Dialect::Sqlite => format!(
            "CREATE TRIGGER refuse BEFORE INSERT ON orders WHEN NEW.order_id = '{id}' \
             BEGIN SELECT RAISE(ABORT, 'refused'); END"
        ),
        Dialect::Postgres => format!(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'refused'; END $$; \
             CREATE TRIGGER refuse BEFORE INSERT ON orders FOR EACH ROW \
             WHEN (NEW.order_id = '{id}') EXECUTE FUNCTION refuse()"
        ),
    };
    db.batch(&sql).unwrap();
}
