//! Crashes: a backfill killed with SIGKILL mid-way resumes where it stopped, loses and duplicates
//! nothing, and never touches the live checkpoint.

use ordersync_sim::Simulator;
use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use ordersync_sim::Faults;

use crate::common::*;

#[test]
fn backfill_of_205_days_survives_sigkill_and_leaves_live_alone() {
    // Slow answers so that the backfill takes seconds and the kill lands in the middle.
    let faults = Faults {
        p_slow: 1.0,
        slow_ms: 40,
        seed: 1,
        ..Faults::default()
    };
    let h = Harness::veapi(4000, 205, faults);
    let from = (h.now - Duration::days(206)).format("%Y-%m-%d").to_string();
    let args = ["backfill", "ve", "--from", from.as_str()];

    let mut child = h.command(&args).spawn().expect("spawn backfill");
    let deadline = Instant::now() + StdDuration::from_secs(60);
    let killed_after_rows = loop {
        std::thread::sleep(StdDuration::from_millis(25));
        let seen: i64 = h
            .db()
            .query_row("SELECT COALESCE(SUM(rows_seen), 0) FROM runs", [], |r| {
                r.get(0)
            })
            .unwrap_or(0);
        if seen >= 1200 {
            child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
            break seen;
        }
        assert!(Instant::now() < deadline, "backfill never got going");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("backfill finished before it could be killed: {status:?}");
        }
    };
    let _ = child.wait();
    let conn = h.db();
    let stored: i64 = scalar(&conn, "SELECT COUNT(*) FROM orders");
    assert!(
        stored >= killed_after_rows && stored < 4000,
        "killed mid-way: {stored} stored"
    );
    let abandoned_requests: i64 = scalar(&conn, "SELECT requests FROM runs");

    // The same command again continues and finishes.
    h.sim.set_faults(Faults::default());
    let out = h.run(&args);
    assert_ok(&out);
    let outcomes: Vec<String> = conn
        .prepare("SELECT outcome FROM runs ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(outcomes, vec!["abandoned", "ok"]);
    assert_equals_truth(&h);
    let windows: i64 = scalar(&conn, "SELECT SUM(windows_done) FROM runs");
    assert!(
        windows >= 3,
        "205 days need at least 3 windows of ≤ 90 days, got {windows}"
    );
    // Resumed, not restarted: the two runs together asked little more than one clean pass would.
    let resumed_requests: i64 = scalar(&conn, "SELECT requests FROM runs WHERE outcome = 'ok'");
    assert!(
        abandoned_requests + resumed_requests <= 4000 / 50 + 3 * 2 + 2,
        "{abandoned_requests} + {resumed_requests}"
    );
    let history: i64 = scalar(&conn, "SELECT COUNT(*) FROM order_status_history");
    assert_eq!(history, 4000, "no duplicated history rows");
    // The live checkpoint was never created or moved by the backfill.
    let live: i64 = scalar(
        &conn,
        "SELECT COUNT(*) FROM checkpoints WHERE scope = 'live'",
    );
    assert_eq!(live, 0);
    let finished: i64 = scalar(
        &conn,
        "SELECT COUNT(*) FROM coverage WHERE scope LIKE 'backfill %'",
    );
    assert_eq!(finished, 1, "the backfill range is one finished range");
    assert_eq!(scalar::<String>(&conn, "PRAGMA integrity_check"), "ok");

    // Running it a third time is a no-op that changes nothing.
    let out = h.run(&args);
    assert_ok(&out);
    let changed: i64 = scalar(
        &conn,
        "SELECT rows_changed FROM runs ORDER BY id DESC LIMIT 1",
    );
    assert_eq!(changed, 0);
}
