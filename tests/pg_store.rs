//! The store on PostgreSQL: the same calls, in the same order, against a fresh SQLite file and a
//! fresh PostgreSQL database (`common::pg`), answer alike — runs and who is busy, tracks and their
//! windows, rescan passes, rewinds, and every report — so the engine above cannot tell them apart.

use ordersync::planner::Window;
use ordersync::secret::Secret;
use ordersync::store::pg::{PgDb, PgTarget};
use ordersync::store::report;
use ordersync::store::sql::{Db, Param};
use ordersync::store::{self, Outcome, Rewind, StoreError};
use ordersync::timefmt;

use crate::common::{pg_database, PG_PASSWORD};

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
/// day the store stamps itself are left out; everything else is compared.
fn scenario(db: &mut dyn Db) -> Vec<String> {
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
    let run = store::begin_run(db, "p", "sync", "live").unwrap();
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
    store::finish_run(db, run, Outcome::Failed, Some("boom"), 3).unwrap();
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
    let target = PgTarget::new(&pg.url(), Some(Secret::new(PG_PASSWORD))).unwrap();
    let mut postgres = PgDb::connect(&target).unwrap();

    let on_sqlite = scenario(&mut sqlite);
    let on_postgres = scenario(&mut postgres);
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
