//! The store on PostgreSQL: the same calls, in the same order, against a fresh SQLite file and a
//! fresh PostgreSQL database (`testpg`), answer alike — runs and who is busy, tracks and their
//! windows, rescan passes, rewinds, and every report — so the engine above cannot tell them apart.

use ordersync::planner::Window;
use ordersync::store::pg::PgDb;
use ordersync::store::report;
use ordersync::store::sql::{Db, Param};
use ordersync::store::{self, Outcome, Rewind, StoreError};
use ordersync::timefmt;

use crate::common::{pg_database, pg_target, PG_PASSWORD};

fn t(s: &str) -> chrono::NaiveDateTime {
    timefmt::parse_user_time(s).expect("a time")
}

fn day(d: u32) -> Window {
    Window {
        start: t(&format!("2024-01-{d:02}")),
        end: t(&format!("2024-01-{:02}", d + 1)),
    }
}

/// What one engine answers to the same calls, each answer as text, in order. Ids and times of
/// day the store stamps itself are left out; everything else is compared. `other` is a second
/// connection to the same database, standing for another process: on PostgreSQL its session
/// holds its run's lock; on SQLite, where a run is known by its pid, its run is given pid 1.
fn scenario(db: &mut dyn Db, other: &mut dyn Db) -> Vec<String> {
    let mut said = Vec::new();
    let mut say = |what: &str, v: String| said.push(format!("{what}: {v}"));

    say(
        "empty track",
        format!("{:?}", store::ensure_track(db, "p", "live", None).unwrap()),
    );
    store::register_windows(
        db,
        "p",
        "live",
        &[(day(1), String::new()), (day(2), "c2".into())],
    )
    .unwrap();
    // Registering again keeps each window's cursor.
    store::register_windows(
        db,
        "p",
        "live",
        &[(day(2), "other".into()), (day(3), "c3".into())],
    )
    .unwrap();
    let range = Some((t("2024-01-01"), t("2024-02-01")));
    say(
        "track",
        format!(
            "{:?}",
            store::ensure_track(db, "p", "backfill x", range).unwrap()
        ),
    );
    say(
        "live track",
        format!("{:?}", store::ensure_track(db, "p", "live", None).unwrap()),
    );
    say(
        "watermark",
        format!("{:?}", store::watermark(db, "p", "live").unwrap()),
    );

    // A run of another live process (pid 1) holds its scope and its rival.
    let run = store::begin_run(other, "p", "sync", "live").unwrap();
    db.execute("UPDATE runs SET pid = 1 WHERE id = ?1", &[Param::Int(run)])
        .unwrap();
    for (command, scope) in [
        ("sync", "live"),
        ("rescan", "rescan"),
        ("backfill", "backfill x"),
    ] {
        let answer = match store::begin_run(db, "p", command, scope) {
            Ok(_) => "began".to_string(),
            Err(StoreError::Busy { scope, pid, .. }) => format!("busy with {scope} of {pid}"),
            Err(e) => panic!("{e}"),
        };
        say(scope, answer);
    }
    say(
        "rewind while busy",
        format!(
            "{:?}",
            store::rewind_live(db, "p", t("2024-01-01"), "me").map_err(|e| e.to_string())
        ),
    );
    db.execute(
        "UPDATE runs SET pid = ?1 WHERE id = ?2",
        &[Param::Int(i64::from(std::process::id())), Param::Int(run)],
    )
    .unwrap();
    store::finish_run(other, run, Outcome::Failed, Some("boom"), 3).unwrap();
    say(
        "after the other process's run",
        format!("{:?}", store::begin_run(db, "p", "sync", "live").is_ok()),
    );
    store::mark_abandoned_runs(db).unwrap();
    say(
        "rewind with no watermark",
        format!(
            "{:?}",
            store::rewind_live(db, "p", t("2024-01-01"), "me").unwrap()
        ),
    );
    let (track, range) =
        store::begin_rescan_pass(db, "p", t("2024-01-05"), t("2024-01-20")).unwrap();
    say("rescan pass", format!("{track:?} {range:?}"));
    // A pass reaching back as far resumes, its end moved on.
    let (_, range) = store::begin_rescan_pass(db, "p", t("2024-01-06"), t("2024-01-25")).unwrap();
    say("resumed pass", format!("{range:?}"));
    assert!(matches!(
        store::rewind_live(db, "p", t("2024-01-01"), "me").unwrap(),
        Rewind::NothingYet
    ));

    say("pipelines", format!("{:?}", report::pipelines(db).unwrap()));
    let last = report::last_run(db, "p").unwrap().unwrap();
    say(
        "last run",
        format!(
            "{} {} {} {:?} {}",
            last.command, last.scope, last.outcome, last.error, last.requests
        ),
    );
    say(
        "last error",
        format!("{:?}", report::last_error(db, "p").unwrap()),
    );
    say(
        "open rejections",
        format!("{:?}", report::open_rejections(db, "p").unwrap()),
    );
    say(
        "checkpoints",
        format!("{:?}", report::checkpoints(db, "p").unwrap()),
    );
    say(
        "coverage",
        format!("{:?}", report::coverage(db, "p").unwrap()),
    );
    say(
        "outcomes",
        format!("{:?}", report::runs_by_outcome(db).unwrap()),
    );
    say("totals", format!("{:?}", report::run_totals(db).unwrap()));
    say(
        "live watermarks",
        format!("{:?}", report::live_watermarks(db).unwrap()),
    );
    let health = report::live_runs(db, "p").unwrap();
    say(
        "live runs",
        format!(
            "{:?} {}",
            health.last_finished.map(|r| r.outcome),
            health.failed_in_a_row
        ),
    );
    say(
        "health",
        format!(
            "{:?}",
            report::live_run_health(db)
                .unwrap()
                .iter()
                .map(|h| h.consecutive_failures)
                .collect::<Vec<_>>()
        ),
    );
    say(
        "timeline",
        format!(
            "{:?}",
            report::runs_since(db, "2000-01-01 00:00:00")
                .unwrap()
                .iter()
                .map(|r| r.scope.clone())
                .collect::<Vec<_>>()
        ),
    );
    say(
        "daily",
        format!(
            "{:?}",
            report::daily_totals(db, "2024-01-01", "2024-01-31").unwrap()
        ),
    );
    say(
        "rejections",
        format!(
            "{:?}",
            report::rejections(db, &["p".into(), "q".into()], true)
                .unwrap()
                .len()
        ),
    );
    said
}

#[test]
fn the_store_answers_alike_on_sqlite_and_postgres() {
    let Some(pg) = pg_database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = store::open_connection(&dir.path().join("s.db")).unwrap();
    let mut sqlite_other = store::open_connection(&dir.path().join("s.db")).unwrap();
    let target = pg_target(&pg.url());
    let mut postgres = PgDb::connect(&target).unwrap();
    let mut postgres_other = PgDb::connect(&target).unwrap();

    // A run's lock lives with its connection: the server gives a vanished host's up after the
    // keepalives every connection sets, and names the process holding it.
    for (setting, want) in [
        ("tcp_keepalives_idle", "10"),
        ("tcp_keepalives_interval", "5"),
        ("tcp_keepalives_count", "3"),
        ("tcp_user_timeout", "25000"),
    ] {
        let got: String = postgres.query(&format!("SHOW {setting}"), &[]).unwrap()[0]
            .get(0)
            .unwrap();
        assert_eq!(got, want, "{setting}");
    }
    let name: String = postgres.query("SHOW application_name", &[]).unwrap()[0]
        .get(0)
        .unwrap();
    assert!(
        name.starts_with("ordersync ") && name.ends_with(&format!(" pid {}", std::process::id())),
        "{name}"
    );

    let on_sqlite = scenario(&mut sqlite, &mut sqlite_other);
    let on_postgres = scenario(&mut postgres, &mut postgres_other);
    for (s, p) in on_sqlite.iter().zip(&on_postgres) {
        assert_eq!(s, p, "SQLite, then PostgreSQL");
    }
    assert_eq!(on_sqlite.len(), on_postgres.len());
    // What the answers must be, not only alike.
    let said = |what: &str| {
        on_postgres
            .iter()
            .find(|s| s.starts_with(&format!("{what}: ")))
            .unwrap_or_else(|| panic!("{what} not said"))
            .clone()
    };
    assert_eq!(said("live"), "live: busy with live of 1");
    assert_eq!(said("rescan"), "rescan: busy with live of 1");
    assert_eq!(said("backfill x"), "backfill x: began");
    assert!(said("rewind while busy").contains("already running in process 1"));
    assert!(
        said("live track").contains("\"c2\""),
        "{}",
        said("live track")
    );
    assert!(
        !said("live track").contains("other"),
        "a registered window keeps its cursor"
    );
    // The backfill this process began and never finished is marked abandoned, after the failure.
    assert_eq!(
        said("last error"),
        "last error: Some(\"process ended without finishing the run\")"
    );
    assert!(
        said("outcomes").contains("outcome: \"failed\", runs: 1"),
        "{}",
        said("outcomes")
    );
    assert!(
        said("resumed pass").contains("2024-01-05T00:00:00, 2024-01-25T00:00:00"),
        "{}",
        said("resumed pass")
    );
}

/// The engine writes PostgreSQL as it writes SQLite: a sync of all five simulated sources into
/// each gives the same orders, lines and history, to the fen and the second (`raw` compared as
/// JSON); a second sync into PostgreSQL re-reads its lookback and changes nothing (the stored
/// copy is recognised though jsonb keeps no key order); `status` reads it.
#[test]
fn a_sync_of_every_source_into_postgres_matches_one_into_sqlite() {
    use ordersync_sim::Faults;

    use crate::common::all_sources::{AllSources, Worlds, PIPELINES};
    use crate::common::assert_ok;

    let Some(pg) = pg_database() else { return };
    let a = AllSources::start(
        0x5e9,
        Worlds {
            ve: (300, 20),
            myq: (300, 30),
            ud: (200, 5),
            dmj: (300, 20),
            sxt: (40, 10),
        },
        &Faults::default(),
    );
    a.write_config("5s", 3);
    let url = pg.url();
    let into_pg = |args: &[&str]| a.command_on(&url, args).output().expect("binary runs");
    let first = into_pg(&["sync"]);
    assert_ok(&first);
    assert_ok(&a.run(&["sync"]));
    a.assert_equals_truth(None);

    let target = pg_target(&url);
    let mut postgres = PgDb::connect(&target).unwrap();
    let mut sqlite = store::open_connection(&a.db_path()).unwrap();
    let tables = [
        // Not product_id and product_name: a unidesk order of several lines takes them from the
        // line written last, and lines of one order read by windows at once arrive in either
        // order (each line's own are compared below).
        "SELECT source, order_id, pipeline, kind, status, status_raw, pay_amount, refund_amount, \
         commission, created_at, paid_at, updated_at, refunded_at, settled_at, confirmed_at, shop_id, \
         shop_name, item_num, ad_cost, ad_plays, ad_gmv, ad_roi \
         FROM orders ORDER BY source, order_id",
        "SELECT source, order_id, sub_order_id, sku_id, product_id, product_name, item_num, pay_amount, \
         status, status_raw, refund_amount, commission, updated_at FROM sub_orders \
         ORDER BY source, order_id, sub_order_id",
        // Not unidesk's: an order that arrives line by line is derived again as each line comes,
        // and lines of one order read by windows at once arrive in either order, so the statuses
        // it passes through on the way differ from run to run (its end state is compared above).
        "SELECT source, order_id, status, status_raw FROM order_status_history \
         WHERE source != 'unidesk' ORDER BY source, order_id, id",
        // Ranges end at each sync's own now; where they start is the plan's.
        "SELECT pipeline, scope, range_start FROM coverage ORDER BY pipeline, scope, range_start",
    ];
    for sql in tables {
        let lite = sqlite.query(sql, &[]).unwrap();
        let pgrows = postgres.query(sql, &[]).unwrap();
        assert!(!lite.is_empty(), "{sql}");
        assert_eq!(lite.len(), pgrows.len(), "{sql}");
        for (l, p) in lite.iter().zip(&pgrows) {
            assert_eq!(l, p, "{sql}");
        }
    }
    let raws = |db: &mut dyn Db| -> Vec<serde_json::Value> {
        db.query("SELECT raw FROM orders ORDER BY source, order_id", &[])
            .unwrap()
            .iter()
            .map(|r| serde_json::from_str(&r.get::<String>(0).unwrap()).unwrap())
            .collect()
    };
    assert_eq!(raws(&mut sqlite), raws(&mut postgres));

    // Again: every live sync re-reads its lookback and finds nothing changed.
    assert_ok(&into_pg(&["sync"]));
    for pipeline in PIPELINES {
        let last = report::last_run(&mut postgres, pipeline).unwrap().unwrap();
        assert_eq!(last.outcome, "ok", "{pipeline}");
        assert_eq!(last.rows_changed, 0, "{pipeline}: a resync changed rows");
    }
    let seen: i64 = postgres
        .query("SELECT CAST(SUM(rows_seen) AS BIGINT) FROM runs", &[])
        .unwrap()[0]
        .get(0)
        .unwrap();
    assert!(seen > 0);
    let status = into_pg(&["status", "--json"]);
    assert_ok(&status);
    let text = String::from_utf8_lossy(&status.stdout);
    for pipeline in PIPELINES {
        assert!(
            text.contains(&format!("\"pipeline\": \"{pipeline}\"")),
            "{text}"
        );
    }
    let everything = format!(
        "{}{}{}",
        text,
        String::from_utf8_lossy(&first.stderr),
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(!everything.contains(PG_PASSWORD), "the password was shown");
}

/// A sync into PostgreSQL killed with SIGKILL mid-way: its run locks go with its connection, so
/// the next sync starts at once (not refused as busy), marks the killed run abandoned, resumes
/// from the checkpoints, and leaves every order once, as a sync into SQLite stores them.
#[test]
fn a_sync_into_postgres_killed_mid_way_is_resumed_by_the_next_one() {
    use std::time::{Duration, Instant};

    use crate::common::all_sources::{slow, AllSources, Worlds};
    use crate::common::assert_ok;

    let Some(pg) = pg_database() else { return };
    let a = AllSources::start(
        0x6b1,
        Worlds {
            ve: (600, 30),
            myq: (600, 30),
            ud: (300, 5),
            dmj: (600, 30),
            sxt: (40, 10),
        },
        &slow(30, 7),
    );
    a.write_config("5s", 3);
    let url = pg.url();
    let into_pg = |args: &[&str]| a.command_on(&url, args);
    let target = pg_target(&url);
    // Killed if the test fails half way.
    let mut reaper = crate::common::Reaper(
        into_pg(&["sync"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let child = &mut reaper.0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut watcher: Option<PgDb> = None;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        if watcher.is_none() {
            // The schema exists once the sync has migrated it.
            watcher = PgDb::connect_for_reading(&target).ok();
        }
        let orders: i64 = watcher
            .as_mut()
            .and_then(|db| db.query("SELECT COUNT(*) FROM orders", &[]).ok())
            .and_then(|rows| rows.first().and_then(|r| r.get(0).ok()))
            .unwrap_or(0);
        if orders > 100 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sync ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "no orders arrived");
    }
    child.kill().unwrap();
    child.wait().unwrap();

    assert_ok(&into_pg(&["sync"]).output().unwrap());
    assert_ok(&a.run(&["sync"]));
    a.assert_equals_truth(None);
    let mut postgres = PgDb::connect(&target).unwrap();
    let mut sqlite = store::open_connection(&a.db_path()).unwrap();
    let sql =
        "SELECT source, order_id, status_raw, pay_amount, refund_amount, commission, updated_at \
               FROM orders ORDER BY source, order_id";
    assert_eq!(
        sqlite.query(sql, &[]).unwrap(),
        postgres.query(sql, &[]).unwrap()
    );
    let outcomes = report::runs_by_outcome(&mut postgres).unwrap();
    assert!(
        outcomes.iter().any(|o| o.outcome == "abandoned"),
        "the killed sync's runs: {outcomes:?}"
    );
    let running: i64 = postgres
        .query("SELECT COUNT(*) FROM runs WHERE outcome = 'running'", &[])
        .unwrap()[0]
        .get(0)
        .unwrap();
    assert_eq!(running, 0);
}

/// U+0000 is legal JSON (`"\u0000"`), and neither PostgreSQL's `jsonb` nor its `text` can hold it.
/// A row with one, in a field nobody reads or in a product name, is stored on PostgreSQL with
/// U+FFFD in its place (as a byte that is not UTF-8 is on both engines): it never fails its page,
/// and a resync recognises the stored copy. SQLite keeps it as it came; `copy` moves it over as the
/// sync stores it.
#[test]
fn a_nul_character_from_upstream_costs_postgres_no_order() {
    use ordersync_sim::{Faults, Poison, Simulator};

    use crate::common::{assert_ok, Harness};

    let Some(pg) = pg_database() else { return };
    let h = Harness::veapi(120, 5, Faults::default());
    let ids: Vec<String> = h.sim.truth().iter().map(|o| o.order_id.clone()).collect();
    let (in_remark, in_name) = (&ids[10], &ids[20]);
    h.sim.poison(in_remark, Some(Poison::Nul));
    h.sim
        .poison(in_name, Some(Poison::NulIn("product_name".into())));
    let url = pg.url();
    let into_pg = |args: &[&str]| h.run_on(&url, args);
    assert_ok(&into_pg(&["sync"]));
    assert_ok(&h.run(&["sync"]));

    let target = pg_target(&url);
    let mut postgres = PgDb::connect(&target).unwrap();
    let mut sqlite = store::open_connection(&h.db_path()).unwrap();
    let remark = |db: &mut dyn Db| -> String {
        let raw: String = db
            .query(
                "SELECT raw FROM orders WHERE order_id = ?1",
                &[Param::Text(in_remark)],
            )
            .unwrap()[0]
            .get(0)
            .unwrap();
        let raw: serde_json::Value = serde_json::from_str(&raw).unwrap();
        raw["remark"].as_str().unwrap().to_string()
    };
    let name = |db: &mut dyn Db| -> String {
        db.query(
            "SELECT product_name FROM orders WHERE order_id = ?1",
            &[Param::Text(in_name)],
        )
        .unwrap()[0]
            .get(0)
            .unwrap()
    };
    assert_eq!(remark(&mut sqlite), "a\u{0}b");
    assert_eq!(remark(&mut postgres), "a\u{fffd}b");
    let (lite_name, pg_name) = (name(&mut sqlite), name(&mut postgres));
    assert!(lite_name.ends_with('\u{0}'), "{lite_name:?}");
    assert_eq!(pg_name, lite_name.replace('\u{0}', "\u{fffd}"));

    let totals = "SELECT COUNT(*), CAST(SUM(pay_amount) AS BIGINT), \
                  CAST(SUM(commission) AS BIGINT), (SELECT COUNT(*) FROM rejected_rows) FROM orders";
    let want = sqlite.query(totals, &[]).unwrap();
    assert_eq!(want[0].get::<i64>(0).unwrap(), ids.len() as i64);
    assert_eq!(want[0].get::<i64>(3).unwrap(), 0, "nothing rejected");
    assert_eq!(postgres.query(totals, &[]).unwrap(), want);

    assert_ok(&into_pg(&["sync"]));
    let last = report::last_run(&mut postgres, "ve").unwrap().unwrap();
    assert_eq!(last.outcome, "ok");
    assert!(last.rows_seen > 0);
    assert_eq!(last.rows_changed, 0, "the resync rewrote a stored row");

    // The SQLite file, NULs and all, copies into PostgreSQL as a sync would have written it.
    let copy_to = pg_database().expect("the cluster that served the test so far");
    assert_ok(
        &h.command(&["copy", "--to", &copy_to.url()])
            .env("PGPASSWORD", PG_PASSWORD)
            .output()
            .unwrap(),
    );
    let target = pg_target(&copy_to.url());
    let mut copied = PgDb::connect(&target).unwrap();
    assert_eq!(remark(&mut copied), "a\u{fffd}b");
    assert_eq!(name(&mut copied), pg_name);
    assert_eq!(copied.query(totals, &[]).unwrap(), want);
}
