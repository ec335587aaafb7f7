//! A daemon outlives its PostgreSQL connection: the server ends the connection of a worker in the
//! middle of a run (as a restart or a failover does). That run stops — its claim on the pipeline
//! went with the connection, so it must not write on — and is marked failed; the daemon connects
//! again and its next run of the pipeline finishes from the checkpoint, with every order once.

use std::process::Stdio;
use std::time::{Duration, Instant};

use ordersync::store;
use ordersync::store::pg::PgDb;
use ordersync::store::sql::{Db, Param};

use crate::common::all_sources::{slow, AllSources, Worlds, VE};
use crate::common::{assert_ok, pg_database, pg_target, sigterm, wait_exit, Reaper};

/// `(id, pid, outcome, error)` of each run of `pipeline`, oldest first.
fn runs(db: &mut dyn Db, pipeline: &str) -> Vec<(i64, i64, String, Option<String>)> {
    db.query(
        "SELECT id, pid, outcome, error FROM runs WHERE pipeline = ?1 ORDER BY id",
        &[Param::Text(pipeline)],
    )
    .map(|rows| {
        rows.iter()
            .map(|r| {
                (
                    r.get(0).unwrap(),
                    r.get(1).unwrap(),
                    r.get(2).unwrap(),
                    r.get(3).unwrap(),
                )
            })
            .collect()
    })
    .unwrap_or_default()
}

#[test]
fn a_daemon_whose_connection_the_server_ends_stops_that_run_and_carries_on() {
    let Some(pg) = pg_database() else { return };
    let a = AllSources::start(0x0a7e, Worlds::mostly_ve(300), &slow(150, 11));
    a.write_config("5s", 3);
    a.add_defaults("schedule = \"* * * * * *\"");
    let url = pg.url();
    let mut reaper = Reaper(
        a.command_on(&url, &["run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let daemon = &mut reaper.0;
    let target = pg_target(&url);
    let mut db = PgDb::connect(&target).unwrap();
    let daemon_pid = i64::from(daemon.id());

    // The daemon's first run of ve, in progress: the server ends the connection holding it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (cut_run, backend) = loop {
        let running = runs(&mut db, VE)
            .into_iter()
            .find(|(_, pid, outcome, _)| *pid == daemon_pid && outcome == "running");
        let holder: Option<i64> = db
            .query(
                "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE ?1",
                &[Param::Text(&format!("ordersync % pid {daemon_pid}"))],
            )
            .ok()
            .and_then(|rows| rows.first().map(|r| r.get(0).unwrap()));
        if let (Some((id, ..)), Some(backend)) = (running, holder) {
            break (id, backend);
        }
        assert!(
            Instant::now() < deadline,
            "the daemon began a run of ve within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let ended: bool = db
        .query("SELECT pg_terminate_backend(?1)", &[Param::Int(backend)])
        .unwrap()[0]
        .get::<i64>(0)
        .map(|b| b != 0)
        .unwrap_or(false);
    assert!(ended, "the server ended the daemon's connection");

    // That run fails; a later one, by the same daemon, finishes.
    let deadline = Instant::now() + Duration::from_secs(120);
    let after = loop {
        let all = runs(&mut db, VE);
        let cut = all.iter().find(|r| r.0 == cut_run).unwrap();
        let later_ok = all
            .iter()
            .any(|r| r.0 > cut_run && r.1 == daemon_pid && r.2 == "ok");
        if cut.2 != "running" && later_ok {
            break all;
        }
        assert!(
            daemon.try_wait().unwrap().is_none(),
            "the daemon exited: {all:?}"
        );
        assert!(
            Instant::now() < deadline,
            "the daemon ran ve to the end again within 120 s: {all:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    sigterm(daemon);
    assert_eq!(wait_exit(daemon, Duration::from_secs(30)), Some(0));
    let cut = after.iter().find(|r| r.0 == cut_run).unwrap();
    assert_eq!(cut.2, "failed", "{after:?}");
    let error = cut.3.clone().unwrap_or_default();
    assert!(
        error.contains("connection") || error.contains("terminating"),
        "{error}"
    );

    // Every ve order once, as a sync into SQLite stores it.
    assert_ok(&a.run(&["sync", VE]));
    let mut sqlite = store::open_connection(&a.db_path()).unwrap();
    let sql = "SELECT order_id, status_raw, pay_amount, commission, updated_at FROM orders \
               WHERE source = 'veapi' ORDER BY order_id";
    let want = sqlite.query(sql, &[]).unwrap();
    assert!(!want.is_empty());
    assert_eq!(db.query(sql, &[]).unwrap(), want);
}

/// The claim is checked where it matters, at the commit: a page of a run whose lock this session
/// does not hold (the run was begun on a connection since lost) is refused whole, and the same
/// page from the session holding it commits.
#[test]
fn a_page_of_a_run_this_session_does_not_hold_is_refused_whole() {
    use ordersync::model::{Kind, OrderRow, SourceKind, Status};
    use ordersync::planner::Window;
    use ordersync::store::{PageCommit, Progress, StoreError};
    use ordersync::timefmt;

    let Some(pg) = pg_database() else { return };
    let target = pg_target(&pg.url());
    let mut holder = PgDb::connect(&target).unwrap();
    let mut other = PgDb::connect(&target).unwrap();
    store::ensure_track(&mut holder, "p", "live", None).unwrap();
    let run = store::begin_run(&mut holder, "p", "sync", "live").unwrap();
    let t = |s: &str| timefmt::parse_user_time(s).unwrap();
    let window = Window {
        start: t("2024-01-01"),
        end: t("2024-01-02"),
    };
    let mut order = OrderRow::new(
        SourceKind::Veapi,
        "1001".into(),
        Kind::Affiliate,
        r#"{"order_id":"1001"}"#.into(),
    );
    order.status = Status::Paid;
    order.status_raw = "1".into();
    order.updated_at = Some(t("2024-01-01 10:00:00"));
    let page = PageCommit {
        run_id: run,
        pipeline: "p".into(),
        scope: "live".into(),
        source: SourceKind::Veapi,
        orders: vec![order],
        rejected: Vec::new(),
        asked: (window, String::new()),
        requests: 1,
        progress: Progress::Next {
            window,
            cursor: "c2".into(),
        },
        seen_floor: String::new(),
    };
    let refused = store::commit_page(&mut other, &page);
    assert!(
        matches!(refused, Err(StoreError::RunLost { ref scope, .. }) if scope == "live"),
        "{refused:?}"
    );
    let count = |db: &mut PgDb| -> i64 {
        db.query("SELECT COUNT(*) FROM orders", &[]).unwrap()[0]
            .get(0)
            .unwrap()
    };
    assert_eq!(
        count(&mut other),
        0,
        "nothing of the refused page was written"
    );
    store::commit_page(&mut holder, &page).unwrap();
    assert_eq!(count(&mut other), 1);

    // A run begun again on the session holding an unfinished one takes the lock over, not twice:
    // once it finishes, another worker may begin.
    let again = store::begin_run(&mut holder, "p", "sync", "live").unwrap();
    store::finish_run(&mut holder, again, store::Outcome::Ok, None, 0).unwrap();
    let next = store::begin_run(&mut other, "p", "sync", "live");
    assert!(next.is_ok(), "{next:?}");
}
