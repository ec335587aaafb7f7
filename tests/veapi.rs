//! veapi end to end: full sync equals ground truth, resync is a no-op, mutations are picked up,
//! faults are survived, secrets stay out of logs, status and the database, and a finished range
//! never claims a second that was not fetched.

use std::collections::HashMap;

use chrono::{Duration, NaiveDateTime};
use ordersync_sim::Simulator;
use ordersync_sim::{beijing_now, Faults, VeOrder};
use rusqlite::Connection;

use crate::common::*;

#[test]
fn full_sync_of_a_200_day_world_equals_ground_truth() {
    let h = Harness::veapi(3000, 200, Faults::default());
    let out = h.run(&["sync"]);
    assert_ok(&out);
    assert_equals_truth(&h);
    let conn = h.db();
    // A 201-day range in windows of at most 90 days: three windows, each finished.
    let windows: i64 = scalar(&conn, "SELECT windows_done FROM runs WHERE pipeline = 've'");
    assert_eq!(windows, 3);
    let history: i64 = scalar(&conn, "SELECT COUNT(*) FROM order_status_history");
    assert_eq!(history, 3000, "one history row per first sighting");
    // Requests: one per page (50 rows) per window, plus the last (possibly empty) page of each.
    let requests: i64 = scalar(&conn, "SELECT requests FROM runs");
    assert_eq!(requests as u64, h.sim.requests());
    assert!(
        requests <= 3000 / 50 + 3 * 2,
        "{requests} requests for 3000 orders"
    );
    let ids_are_exact: i64 = scalar(
        &conn,
        "SELECT COUNT(*) FROM orders WHERE length(order_id) = 19 AND typeof(order_id) = 'text'",
    );
    assert_eq!(ids_are_exact, 3000);
}

#[test]
fn resync_changes_nothing_and_mutations_add_one_history_row_per_status_change() {
    let h = Harness::veapi(1500, 120, Faults::default());
    assert_ok(&h.run(&["sync"]));
    let conn = h.db();
    let before = orders_snapshot(&conn);
    let lines_before: i64 = scalar(&conn, "SELECT COUNT(*) FROM sub_orders");

    let out = h.run(&["sync"]);
    assert_ok(&out);
    assert_eq!(
        orders_snapshot(&conn),
        before,
        "a resync must not change any order"
    );
    let changed: i64 = scalar(
        &conn,
        "SELECT rows_changed FROM runs ORDER BY id DESC LIMIT 1",
    );
    assert_eq!(changed, 0);
    assert_eq!(
        scalar::<i64>(&conn, "SELECT COUNT(*) FROM sub_orders"),
        lines_before
    );

    // Upstream moves orders along; the next sync must see every change.
    let at = beijing_now() - Duration::seconds(3);
    let mutations = h.sim.mutate(40, at);
    assert!(!mutations.is_empty());
    let added = h.sim.add_orders(5, at);
    std::thread::sleep(std::time::Duration::from_millis(1100)); // past settle_lag = 1s
    assert_ok(&h.run(&["sync"]));
    assert_equals_truth(&h);
    let status_changes = mutations.iter().filter(|m| m.from != m.to).count() as i64;
    let history: i64 = scalar(&conn, "SELECT COUNT(*) FROM order_status_history");
    assert_eq!(history, 1500 + added.len() as i64 + status_changes);
    for m in mutations.iter().filter(|m| m.from != m.to) {
        let n: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM order_status_history WHERE order_id = ?1 AND status_raw = ?2",
                [&m.order_id, &m.to],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "history row for {m:?}");
    }
}

#[test]
fn ten_percent_faults_still_give_the_exact_ground_truth() {
    let faults = Faults {
        p_5xx: 0.04,
        p_429: 0.02,
        retry_after_secs: 0,
        p_body_rate_limit: 0.01,
        p_truncated: 0.02,
        p_malformed: 0.01,
        p_slow: 0.0,
        slow_ms: 0,
        seed: 9,
    };
    let h = Harness::veapi(2500, 200, faults);
    let out = h.run(&["sync"]);
    assert_ok(&out);
    assert!(h.sim.faults_injected() > 0, "no fault was injected");
    assert_equals_truth(&h);
    let conn = h.db();
    let requests: i64 = scalar(&conn, "SELECT requests FROM runs");
    assert_eq!(
        requests as u64,
        h.sim.requests(),
        "every request, retried ones included, is counted"
    );
}

#[test]
fn slow_answers_past_the_timeout_are_retried() {
    let faults = Faults {
        p_slow: 0.2,
        slow_ms: 2500,
        seed: 3,
        ..Faults::default()
    };
    let h = Harness::veapi(300, 30, faults);
    h.write_config("timeout = \"500ms\"");
    assert_ok(&h.run(&["sync"]));
    assert_equals_truth(&h);
}

#[test]
fn wrong_vekey_fails_with_the_upstream_code_and_leaves_the_checkpoint() {
    let h = Harness::veapi(400, 60, Faults::default());
    assert_ok(&h.run(&["sync"]));
    let conn = h.db();
    let checkpoint = |conn: &rusqlite::Connection| -> Vec<String> {
        conn.prepare(
            "SELECT c.scope, c.watermark, w.window_start, w.window_end, w.cursor FROM checkpoints c \
             LEFT JOIN track_windows w USING (pipeline, scope) ORDER BY 1, 3",
        )
            .unwrap()
            .query_map([], |r| {
                Ok(format!(
                    "{:?}",
                    (r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, Option<String>>(2)?, r.get::<_, Option<String>>(3)?, r.get::<_, Option<String>>(4)?)
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let before = checkpoint(&conn);
    h.sim.set_vekey("a-different-key");
    let out = h.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("10001"), "upstream code missing: {stderr}");
    assert!(stderr.contains("`ve`"), "pipeline missing: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        checkpoint(&conn),
        before,
        "a failed run must not move the checkpoint"
    );
    let (outcome, error): (String, String) = conn
        .query_row(
            "SELECT outcome, error FROM runs ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(outcome, "failed");
    assert!(error.contains("10001"), "{error}");
    // Fatal: asked once, not retried.
    let requests: i64 = scalar(&conn, "SELECT requests FROM runs ORDER BY id DESC LIMIT 1");
    assert_eq!(requests, 1);
}

#[test]
fn no_secret_in_trace_logs_status_or_database() {
    let faults = Faults {
        p_5xx: 0.1,
        p_429: 0.05,
        p_truncated: 0.05,
        seed: 5,
        ..Faults::default()
    };
    let h = Harness::veapi(500, 60, faults);
    let mut cmd = h.command(&["sync"]);
    cmd.env("RUST_LOG", "trace");
    let out = cmd.output().unwrap();
    assert_ok(&out);
    h.sim.set_vekey("another-key");
    let mut cmd = h.command(&["sync"]);
    cmd.env("RUST_LOG", "trace");
    let failed = cmd.output().unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let status = h.run(&["status"]);
    let status_json = h.run(&["status", "--json"]);
    for (what, o) in [
        ("sync", &out),
        ("failed sync", &failed),
        ("status", &status),
        ("status --json", &status_json),
    ] {
        let all = text(o);
        assert!(!all.contains(VEKEY), "{what} leaks the vekey:\n{all}");
    }
    // The trace log really did show redacted requests: the redaction was exercised, not skipped.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("vekey=***"),
        "expected redacted URLs in the trace log"
    );
    drop(h.db());
    for suffix in ["", "-wal", "-shm"] {
        let path = std::path::PathBuf::from(format!("{}{suffix}", h.db_path().display()));
        assert!(
            !file_contains(&path, VEKEY),
            "{} contains the vekey",
            path.display()
        );
    }
}

#[test]
fn daily_summary_equals_sums_from_ground_truth() {
    let h = Harness::veapi(1200, 100, Faults::default());
    assert_ok(&h.run(&["sync"]));
    // Independently: per Beijing pay day, count, GMV (every veapi order is paid), refunds (pay amount
    // of refunded orders: veapi gives no refund amount) and commission.
    let mut want: std::collections::BTreeMap<String, (i64, i64, i64, i64)> = Default::default();
    for o in h.sim.truth() {
        let e = expected(&o);
        let day = o.pay_success_time.format("%Y-%m-%d").to_string();
        let row = want.entry(day).or_default();
        row.0 += 1;
        row.1 += o.total_pay_amount;
        if o.flow_point == "REFUND" {
            row.2 += o.total_pay_amount;
        }
        row.3 += e.commission;
    }
    let conn = h.db();
    let got: std::collections::BTreeMap<String, (i64, i64, i64, i64)> = conn
        .prepare("SELECT day, orders, gmv, refunds, commission FROM daily_summary WHERE source = 'veapi' AND pipeline = 've'")
        .unwrap()
        .query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, want);
    let paid: i64 = scalar(&conn, "SELECT SUM(paid_orders) FROM daily_summary");
    assert_eq!(paid, 1200);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let h = Harness::veapi(100, 10, Faults::default());
    let out = h.run(&["--log-format", "json", "sync"]);
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut run_lines = 0;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["fields"]["message"] == "run finished" {
            run_lines += 1;
            assert_eq!(v["fields"]["rows_seen"], 100);
            assert!(v["fields"]["duration_ms"].is_u64() && v["fields"]["watermark"].is_string());
        }
    }
    assert_eq!(run_lines, 1, "one line per run: {stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no colour codes when stderr is not a terminal"
    );
}

#[test]
fn a_cursor_that_echoes_the_key_is_followed_but_never_saved() {
    let h = Harness::veapi(300, 10, Faults::default());
    h.sim.set_key_in_cursor(true);
    // Slow answers, and the run killed once a page of the window is committed with its cursor.
    h.sim.set_faults(Faults {
        p_slow: 1.0,
        slow_ms: 200,
        ..Faults::default()
    });
    let mut child = h
        .command(&["sync"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let in_window = || -> Option<String> {
        let conn = rusqlite::Connection::open(h.db_path()).ok()?;
        conn.query_row(
            "SELECT cursor FROM track_windows WHERE pipeline = 've' AND NOT done",
            [],
            |r| r.get(0),
        )
        .ok()
    };
    let saved = loop {
        if let Some(cursor) = in_window() {
            break cursor;
        }
        assert!(std::time::Instant::now() < deadline, "no page committed");
        assert!(child.try_wait().unwrap().is_none(), "the run ended first");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        saved, "0",
        "the window starts again instead of saving the key"
    );
    let mut bytes = std::fs::read(h.db_path()).unwrap_or_default();
    bytes.extend(std::fs::read(h.db_path().with_extension("db-wal")).unwrap_or_default());
    assert!(
        !bytes.windows(VEKEY.len()).any(|w| w == VEKEY.as_bytes()),
        "the key reached the database"
    );
    // Resumed, the window is read from its start and the orders are all there.
    h.sim.set_faults(Faults::default());
    let out = h.run(&["sync"]);
    assert_ok(&out);
    assert!(!text(&out).contains(VEKEY), "{}", text(&out));
    assert_orders_equal_truth(&h);
}

fn fmt_s(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Every range the `coverage` table calls finished really is in the database: each veapi order
/// whose time (pay time for a backfill, update time for live) lies in a covered range is stored —
/// for live, in exactly the version upstream has now. Upstream times are whole seconds, so an
/// order at second `t` is in `[a, b)` when `a <= t < b`.
fn assert_coverage_is_real(conn: &Connection, truth: &[VeOrder]) {
    let stored: HashMap<String, (Option<String>, Option<String>, String)> = {
        let mut stmt = conn
            .prepare(
                "SELECT order_id, paid_at, updated_at, status_raw FROM orders WHERE source = ?1",
            )
            .expect("prepare");
        stmt.query_map(["veapi"], |r| {
            Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
        })
        .and_then(|it| it.collect())
        .expect("stored orders")
    };
    let mut stmt = conn
        .prepare("SELECT scope, range_start, range_end FROM coverage")
        .expect("prepare");
    let ranges: Vec<(String, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .and_then(|it| it.collect())
        .expect("coverage");
    for (scope, start, end) in ranges {
        let (a, b) = (parse_db_time(&start), parse_db_time(&end));
        let live = scope == "live";
        for o in truth {
            let t = if live {
                o.update_time
            } else {
                o.pay_success_time
            };
            if t < a || t >= b {
                continue;
            }
            let Some((paid, updated, status)) = stored.get(&o.order_id) else {
                panic!(
                    "{scope} says {start} .. {end} is finished, but order {} ({t}) is not stored",
                    o.order_id
                );
            };
            assert_eq!(
                paid.as_deref(),
                Some(fmt_s(o.pay_success_time).as_str()),
                "order {}",
                o.order_id
            );
            if live {
                assert_eq!(
                    (updated.as_deref(), status.as_str()),
                    (Some(fmt_s(o.update_time).as_str()), o.flow_point.as_str()),
                    "{scope} {start} .. {end} is finished, but order {} is stored in an older version",
                    o.order_id
                );
            }
        }
    }
}

/// A live window ending mid-second used to be marked finished up to its millisecond end while
/// veapi (inclusive whole seconds) was only asked up to the second before: an update in that last
/// second was claimed as covered but not fetched.
#[test]
fn coverage_never_claims_a_second_that_was_not_fetched() {
    let h = Harness::veapi(200, 10, Faults::default());
    assert_ok(&h.run(&["sync"]));
    for _ in 0..3 {
        // An update one second back: right at the settle lag of a sync started now.
        let changed = h.sim.mutate(5, beijing_now() - Duration::seconds(1));
        assert!(!changed.is_empty());
        assert_ok(&h.run(&["sync"]));
        let conn = h.db();
        assert_coverage_is_real(&conn, &h.sim.truth());
        let ends: Vec<String> = rows(&conn, "SELECT range_end FROM coverage");
        assert!(
            ends.iter().all(|e| e.ends_with(".000")),
            "finished ranges end on whole seconds: {ends:?}"
        );
    }
}
