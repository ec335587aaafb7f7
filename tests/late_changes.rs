//! Late changes: an upstream change stamped older than the live watermark less the lookback (or,
//! in unidesk, a receipt with no new time at all) is missed by live syncs and found by a rescan,
//! exactly, with its history row, counted in `runs`, `status` and the metrics; the daemon's
//! scheduled rescan never overlaps the live sync and resumes after SIGKILL; `rescan` in another
//! process waits for a live sync in progress.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use ordersync_sim::{Faults, Mutation};
use rusqlite::Connection;

use crate::common::all_sources::{AllSources, Worlds, DMJ, MYQ, UD, VE};
use crate::common::*;

/// Whether the store shows each moved order as upstream now has it: for unidesk, every line of the
/// order in its truth status; elsewhere the order's `status_raw` in the state it moved to (a
/// commission revision, `from == to`, is left out: its status says nothing).
fn shown(all: &AllSources, conn: &Connection, source: &str, moves: &[Mutation]) -> Vec<bool> {
    let ud_truth: BTreeMap<(String, String), String> = all
        .ud
        .truth()
        .into_iter()
        .map(|l| ((l.order_id, l.sub_order_id), l.order_status.to_string()))
        .collect();
    moves
        .iter()
        .filter(|m| source == "unidesk" || m.from != m.to)
        .map(|m| {
            if source == "unidesk" {
                let lines: BTreeMap<(String, String), String> = query_map(
                    conn,
                    &format!(
                        "SELECT order_id, sub_order_id, status_raw FROM sub_orders \
                         WHERE source = 'unidesk' AND order_id = '{}'",
                        m.order_id
                    ),
                    |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)),
                );
                lines.iter().all(|(k, v)| ud_truth.get(k) == Some(v))
            } else {
                let stored: String = scalar(
                    conn,
                    &format!(
                        "SELECT status_raw FROM orders WHERE source = '{source}' AND order_id = '{}'",
                        m.order_id
                    ),
                );
                stored == m.to
            }
        })
        .collect()
}

/// The pipeline's last run of `command`: (rows seen, rows changed, outcome).
fn last_run_of(conn: &Connection, pipeline: &str, command: &str) -> (i64, i64, String) {
    conn.query_row(
        "SELECT rows_seen, rows_changed, outcome FROM runs WHERE pipeline = ?1 AND command = ?2 \
         ORDER BY id DESC LIMIT 1",
        [pipeline, command],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap_or_else(|e| panic!("no {command} run of {pipeline}: {e}"))
}

const LIVE_WATERMARKS: &str =
    "SELECT pipeline || ' ' || watermark FROM checkpoints WHERE scope = 'live' ORDER BY 1";

#[test]
fn a_rescan_finds_exactly_the_late_changes_live_syncs_miss_in_every_paged_source() {
    let all = AllSources::start(
        0x1a7e,
        Worlds {
            ve: (400, 20),
            myq: (400, 20),
            ud: (200, 20),
            dmj: (300, 20),
            sxt: (20, 5),
        },
        &Faults::default(),
    );
    all.write_config("2s", 8);
    assert_ok(&all.run(&["sync"]));
    let conn = all.db();

    // Yesterday, as an ERP stamps a change it makes visible today, or an affiliate settlement
    // dated when it happened: long before the watermark less the 2 h lookback.
    let late = all.now - Duration::days(1);
    let changes = [
        ("veapi", VE, all.ve.mutate(25, late)),
        ("miaoyouquan", MYQ, all.myq.mutate(25, late)),
        ("unidesk", UD, all.ud.mutate(20, late)),
        ("damaijia", DMJ, all.dmj.mutate(25, late)),
    ];
    for (source, _, moves) in &changes {
        assert!(
            moves.len() >= 10,
            "{source}: only {} orders moved",
            moves.len()
        );
    }
    assert!(
        changes[2].2.iter().any(|m| m.to == "5"),
        "no unidesk receipt (a change with no new time at all) among the moves"
    );

    // A live sync does not see them: that is what makes this test real.
    assert_ok(&all.run(&["sync"]));
    let live_watermarks: Vec<String> = rows(&conn, LIVE_WATERMARKS);
    for (source, pipeline, moves) in &changes {
        let shown = shown(&all, &conn, source, moves);
        assert!(!shown.is_empty());
        assert!(
            shown.iter().all(|s| !s),
            "{source}: a live sync saw a late change: {shown:?}"
        );
        assert_eq!(last_run_of(&conn, pipeline, "sync").1, 0, "{source}");
    }

    // A rescan does, exactly: every source equals its truth again, unidesk receipts included.
    let rescan = all.run(&["rescan", "--since", "25d"]);
    assert_ok(&rescan);
    all.assert_equals_truth(None);
    let rescan_start: String = scalar(
        &conn,
        "SELECT substr(MIN(started_at), 1, 19) FROM runs WHERE command = 'rescan'",
    );
    let out = text(&rescan);
    for (source, pipeline, moves) in &changes {
        let ids: HashSet<&str> = moves.iter().map(|m| m.order_id.as_str()).collect();
        let (seen, changed, outcome) = last_run_of(&conn, pipeline, "rescan");
        assert_eq!(outcome, "ok");
        if *source == "unidesk" {
            // A row per line: an order's lines may come on different pages.
            let lines: i64 =
                scalar(
                    &conn,
                    &format!(
                    "SELECT COUNT(*) FROM sub_orders WHERE source = 'unidesk' AND order_id IN ({})",
                    ids.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(",")
                ),
                );
            assert!(
                (ids.len() as i64..=lines).contains(&changed),
                "unidesk: {changed} changed for {} orders of {lines} lines",
                ids.len()
            );
        } else {
            assert_eq!(
                changed,
                ids.len() as i64,
                "{source}: rows the rescan changed"
            );
            // One new history row per status change, in the state it moved to.
            for m in moves.iter().filter(|m| m.from != m.to) {
                let n: i64 = scalar(
                    &conn,
                    &format!(
                        "SELECT COUNT(*) FROM order_status_history WHERE source = '{source}' \
                         AND order_id = '{}' AND status_raw = '{}' AND observed_at >= '{rescan_start}'",
                        m.order_id, m.to
                    ),
                );
                assert_eq!(n, 1, "{source} {}: history rows in {}", m.order_id, m.to);
            }
        }
        assert!(seen > changed, "{source}: {seen} re-read");
        let line = format!(
            "{pipeline}: {changed} orders changed that live syncs had missed ({seen} rows re-read)"
        );
        assert!(out.contains(&line), "{line:?} not in {out}");
    }
    assert_no_duplicate_history(&conn);
    // A rescan never moves a live watermark, and sxt (a snapshot) is not rescanned.
    assert_eq!(rows::<String>(&conn, LIVE_WATERMARKS), live_watermarks);
    assert_eq!(
        scalar::<i64>(
            &conn,
            "SELECT COUNT(*) FROM runs WHERE command = 'rescan' AND pipeline = 'ads'"
        ),
        0
    );
    // Every order the rescan re-read says so in last_seen_at: none looks vanished.
    let stale: i64 = scalar(
        &conn,
        &format!(
            "SELECT COUNT(*) FROM orders WHERE source IN ('veapi', 'miaoyouquan', 'damaijia') \
             AND updated_at >= '{}' AND updated_at < '{}' AND last_seen_at < '{rescan_start}'",
            (all.now - Duration::days(19)).format("%Y-%m-%d %H:%M:%S"),
            (all.now - Duration::hours(3)).format("%Y-%m-%d %H:%M:%S"),
        ),
    );
    assert_eq!(stale, 0, "orders upstream still returns look vanished");

    // status says what it found; a second rescan finds nothing more.
    let status = all.status_json();
    let ve = status
        .as_array()
        .and_then(|a| a.iter().find(|p| p["pipeline"] == VE))
        .expect("ve in status");
    let ve_missed = changes[0].2.len() as i64;
    assert_eq!(ve["last_rescan"]["missed"], ve_missed);
    assert_eq!(ve["last_rescan"]["run"]["outcome"], "ok");
    let text_status = text(&all.run(&["status"]));
    assert!(
        text_status.contains(&format!(
            "{ve_missed} orders changed that live syncs had missed"
        )),
        "{text_status}"
    );
    assert_ok(&all.run(&["rescan", "--since", "25d"]));
    for pipeline in [VE, MYQ, UD, DMJ] {
        assert_eq!(last_run_of(&conn, pipeline, "rescan").1, 0, "{pipeline}");
    }
    assert_integrity(&conn);
}

#[test]
fn rescan_names_what_is_missing_and_refuses_a_snapshot() {
    let h = Harness::veapi(50, 5, Faults::default());
    let out = h.run(&["rescan"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let sentences = error_sentences(&out);
    assert_eq!(sentences.len(), 1, "{sentences:?}");
    assert!(sentences[0].contains("`rescan`"), "{sentences:?}");
    let out = h.run(&["rescan", "ve", "--since", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--since"), "{}", text(&out));
    let out = h.run(&["rescan", "nope", "--since", "1d"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("`nope`"), "{}", text(&out));
    // Before any live sync there is nothing no live sync will read again: nothing is read.
    let out = h.run(&["rescan", "ve", "--since", "3d"]);
    assert_ok(&out);
    assert_eq!(last_run_of(&h.db(), "ve", "rescan").0, 0);
    assert_no_panic(&out);
}

/// Waits until `sql` (one integer) is at least `n`, or panics after `within`. A database the
/// binary has not created its tables in yet counts as 0.
fn wait_for(conn: &Connection, sql: &str, n: i64, within: StdDuration) {
    let deadline = Instant::now() + within;
    while conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap_or(0) < n {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {sql} >= {n}"
        );
        std::thread::sleep(StdDuration::from_millis(50));
    }
}

/// The runs of a pipeline as (command, started, finished) for overlap checks; a run still going
/// ends "now".
fn run_spans(conn: &Connection, pipeline: &str) -> Vec<(String, String, String)> {
    let mut spans: Vec<(String, String, String)> = conn
        .prepare(
            "SELECT command, started_at, COALESCE(finished_at, '9999') FROM runs \
             WHERE pipeline = ?1 AND command IN ('sync', 'rescan') AND outcome != 'abandoned' ORDER BY started_at",
        )
        .and_then(|mut s| {
            s.query_map([pipeline], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .expect("runs");
    spans.sort_by(|a, b| a.1.cmp(&b.1));
    spans
}

fn assert_no_overlap(spans: &[(String, String, String)]) {
    for pair in spans.windows(2) {
        assert!(
            pair[0].2 <= pair[1].1,
            "a {} run and a {} run overlapped: {pair:?}",
            pair[0].0,
            pair[1].0
        );
    }
}

#[test]
fn the_daemon_rescans_on_schedule_apart_from_live_syncs_and_resumes_a_killed_rescan() {
    // Slow answers, so that a rescan of 30 days (≈ 50 pages) takes a few seconds.
    let h = Harness::veapi(
        2500,
        30,
        Faults {
            p_slow: 1.0,
            slow_ms: 60,
            seed: 7,
            ..Faults::default()
        },
    );
    let port = free_port();
    std::fs::write(
        h.config_path(),
        format!(
            r#"[database]
path = "{db}"
[daemon]
listen = "127.0.0.1:{port}"
[defaults]
settle_lag = "1s"
retry_initial = "5ms"
[[pipeline]]
name = "ve"
source = "veapi"
endpoint = "{endpoint}"
start = "{start}"
schedule = "*/2 * * * * *"
rescan = "29d"
rescan_schedule = "*/3 * * * * *"
[pipeline.auth]
vekey = {{ env = "TEST_VEKEY" }}
"#,
            db = h.db_path().display(),
            endpoint = h.sim.endpoint(),
            start = (h.now - Duration::days(31)).format("%Y-%m-%d"),
        ),
    )
    .unwrap();
    assert_ok(&h.run(&["sync"]));
    let late = h.sim.mutate(30, h.now - Duration::days(2));
    assert!(late.len() >= 20);
    let conn = h.db();

    // First daemon: killed in the middle of a rescan (some of its pages committed).
    let child = h
        .command(&["run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = Reaper(child);
    wait_for(
        &conn,
        "SELECT COUNT(*) FROM runs WHERE command = 'rescan' AND outcome = 'running' AND windows_done = 0 \
         AND rows_seen >= 300",
        1,
        StdDuration::from_secs(60),
    );
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let (range_start, cursor): (String, Option<String>) = conn
        .query_row(
            "SELECT range_start, (SELECT MAX(cursor) FROM track_windows w WHERE w.pipeline = c.pipeline \
             AND w.scope = c.scope AND cursor != '0') FROM checkpoints c WHERE pipeline = 've' AND scope = 'rescan'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(cursor.is_some(), "killed with a window in progress");
    // The pass as the kill left it (a later pass, once this one is done, starts anew).
    let range_end: String = scalar(
        &conn,
        "SELECT range_end FROM checkpoints WHERE pipeline = 've' AND scope = 'rescan'",
    );
    let killed_seen: i64 = scalar(
        &conn,
        "SELECT rows_seen FROM runs WHERE command = 'rescan' ORDER BY id DESC LIMIT 1",
    );

    // Second daemon: the next rescan resumes that pass from its cursor, and finishes it.
    let child = h
        .command(&["run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut second = Reaper(child);
    wait_for(
        &conn,
        "SELECT COUNT(*) FROM runs WHERE command = 'rescan' AND outcome = 'ok'",
        1,
        StdDuration::from_secs(90),
    );
    wait_for(
        &conn,
        "SELECT COUNT(*) FROM runs WHERE command = 'sync' AND outcome = 'ok' \
         AND started_at > (SELECT MIN(finished_at) FROM runs WHERE command = 'rescan' AND outcome = 'ok')",
        1,
        StdDuration::from_secs(30),
    );
    let (status, body) = http_get(port, "/metrics").expect("metrics answer");
    assert_eq!(status, 200);
    let (status, page) = http_get(port, "/").expect("the status page answers");
    assert_eq!(status, 200);
    assert!(
        page.contains("Last rescan") && page.contains("orders changed that live syncs had missed"),
        "the status page shows no rescan"
    );
    sigterm(&second.0);
    assert_eq!(
        wait_exit(&mut second.0, StdDuration::from_secs(30)),
        Some(0)
    );

    let (resumed_seen, changed): (i64, i64) = conn
        .query_row(
            "SELECT rows_seen, rows_changed FROM runs WHERE command = 'rescan' AND outcome = 'ok' ORDER BY id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let in_range: i64 = scalar(
        &conn,
        &format!(
            "SELECT COUNT(*) FROM orders WHERE updated_at >= '{}' AND updated_at < '{}'",
            &range_start[..19],
            &range_end[..19]
        ),
    );
    assert!(
        resumed_seen < in_range && resumed_seen + killed_seen >= in_range - 5,
        "resumed {resumed_seen} + killed {killed_seen} against {in_range} in range"
    );
    // All 30 late changes were found between the killed and the resumed run.
    let found: i64 = scalar(
        &conn,
        "SELECT SUM(rows_changed) FROM runs WHERE command = 'rescan'",
    );
    assert_eq!(found, late.len() as i64, "resumed changed {changed}");
    let stored: BTreeMap<String, String> = query_map(
        &conn,
        "SELECT order_id, status_raw FROM orders WHERE source = 'veapi'",
        |r| Ok((r.get(0)?, r.get(1)?)),
    );
    for o in h.sim.truth() {
        assert_eq!(
            stored.get(&o.order_id),
            Some(&o.flow_point),
            "{}",
            o.order_id
        );
    }
    // Live syncs and rescans of the pipeline never overlapped.
    assert_no_overlap(&run_spans(&conn, "ve"));
    // The metric is the runs table's sum.
    let samples = parse_metrics(&body);
    let metric_changed = metric(
        &samples,
        "ordersync_rescan_rows_changed_total",
        &[("pipeline", "ve")],
    )
    .expect("ordersync_rescan_rows_changed_total{pipeline=\"ve\"}");
    assert!(
        metric_changed >= 1.0 && metric_changed <= found as f64,
        "{metric_changed}"
    );
    drop(first);
}

#[test]
fn a_rescan_in_another_process_waits_for_the_live_sync_in_progress() {
    let h = Harness::veapi(
        1500,
        20,
        Faults {
            p_slow: 1.0,
            slow_ms: 40,
            seed: 3,
            ..Faults::default()
        },
    );
    let conn = h.db();
    let sync = h
        .command(&["sync"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut sync = Reaper(sync);
    wait_for(
        &conn,
        "SELECT COUNT(*) FROM runs WHERE command = 'sync' AND outcome = 'running' AND rows_seen > 0",
        1,
        StdDuration::from_secs(30),
    );
    let rescan = h.run(&["rescan", "ve", "--since", "10d"]);
    assert_ok(&rescan);
    assert_eq!(wait_exit(&mut sync.0, StdDuration::from_secs(60)), Some(0));
    let spans = run_spans(&conn, "ve");
    assert_eq!(
        spans.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["sync", "rescan"]
    );
    assert_no_overlap(&spans);
}

#[test]
fn rewind_moves_the_live_watermark_back_and_the_next_sync_reads_again_from_there() {
    let h = Harness::veapi(600, 10, Faults::default());
    // A rewind before any sync has nothing to move back.
    let out = h.run(&["rewind", "ve", "--to", &day(h.now - Duration::days(3))]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(error_sentences(&out).len(), 1, "{}", text(&out));
    assert_ok(&h.run(&["sync"]));
    let conn = h.db();
    let watermark = || -> String {
        scalar(
            &conn,
            "SELECT watermark FROM checkpoints WHERE pipeline = 've' AND scope = 'live'",
        )
    };
    // Changes stamped three days back: live syncs never see them.
    let moves = h.sim.mutate(15, h.now - Duration::days(3));
    assert_ok(&h.run(&["sync"]));
    let stale = |conn: &Connection| {
        moves
            .iter()
            .filter(|m| m.from != m.to)
            .filter(|m| {
                scalar::<String>(
                    conn,
                    &format!(
                        "SELECT status_raw FROM orders WHERE order_id = '{}'",
                        m.order_id
                    ),
                ) != m.to
            })
            .count()
    };
    let moved = moves.iter().filter(|m| m.from != m.to).count();
    assert!(moved > 5);
    assert_eq!(
        stale(&conn),
        moved,
        "the live sync saw changes older than its lookback"
    );
    let before = watermark();
    let coverage_before: Vec<String> = rows(
        &conn,
        "SELECT scope || ' ' || range_start || ' ' || range_end FROM coverage ORDER BY 1",
    );

    // Forward, equal, before `start`, or another pipeline: one sentence, exit 2, nothing moved.
    let later = (parse_db_time(&before) + Duration::hours(1))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let start = day(h.now - Duration::days(12));
    for (to, pipeline, word) in [
        (later.as_str(), "ve", "only moves it back"),
        (&before[..19], "ve", "only moves it back"),
        (start.as_str(), "ve", "before the pipeline's start"),
        (later.as_str(), "nope", "`nope`"),
    ] {
        let out = h.run(&["rewind", pipeline, "--to", to]);
        assert_eq!(out.status.code(), Some(2), "{to}: {}", text(&out));
        let sentences = error_sentences(&out);
        assert_eq!(sentences.len(), 1, "{sentences:?}");
        assert!(sentences[0].contains(word), "{sentences:?}");
    }
    assert_eq!(watermark(), before);

    // Back four days: recorded in runs with who and from where; coverage is not un-covered.
    let to = day(h.now - Duration::days(4));
    let out = h
        .command(&["rewind", "ve", "--to", &to])
        .env("USER", "ops-anna")
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(
        text(&out).contains(&format!("to {to} 00:00:00")),
        "{}",
        text(&out)
    );
    assert_eq!(&watermark()[..19], format!("{to} 00:00:00"));
    let (command, outcome, detail): (String, String, String) = conn
        .query_row(
            "SELECT command, outcome, detail FROM runs ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((command.as_str(), outcome.as_str()), ("rewind", "ok"));
    assert!(
        detail.contains(&before[..19]) && detail.contains(&to) && detail.contains("ops-anna"),
        "{detail}"
    );
    assert_eq!(
        rows::<String>(
            &conn,
            "SELECT scope || ' ' || range_start || ' ' || range_end FROM coverage ORDER BY 1"
        ),
        coverage_before
    );
    let status = text(&h.run(&["status"]));
    assert!(status.contains("ops-anna"), "{status}");

    // The next sync reads again from there: the late changes are in, and the watermark is back.
    assert_ok(&h.run(&["sync"]));
    assert_eq!(stale(&conn), 0);
    assert!(watermark() >= before);
    let truth: BTreeMap<String, String> = h
        .sim
        .truth()
        .into_iter()
        .map(|o| (o.order_id, o.flow_point))
        .collect();
    let stored: BTreeMap<String, String> =
        query_map(&conn, "SELECT order_id, status_raw FROM orders", |r| {
            Ok((r.get(0)?, r.get(1)?))
        });
    assert_eq!(stored, truth);
}

#[test]
fn rewind_is_refused_while_the_pipeline_runs_in_another_process() {
    let h = Harness::veapi(
        1500,
        20,
        Faults {
            p_slow: 1.0,
            slow_ms: 40,
            seed: 5,
            ..Faults::default()
        },
    );
    assert_ok(&h.run(&["sync"]));
    let conn = h.db();
    let before: String = scalar(
        &conn,
        "SELECT watermark FROM checkpoints WHERE scope = 'live'",
    );
    // A backfill of the same pipeline is a run of it too.
    let backfill = h
        .command(&["backfill", "ve", "--from", &day(h.now - Duration::days(19))])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut backfill = Reaper(backfill);
    wait_for(
        &conn,
        "SELECT COUNT(*) FROM runs WHERE command = 'backfill' AND outcome = 'running' AND rows_seen > 0",
        1,
        StdDuration::from_secs(30),
    );
    let out = h.run(&["rewind", "ve", "--to", &day(h.now - Duration::days(2))]);
    let finished = backfill.0.try_wait().unwrap().is_some();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let sentences = error_sentences(&out);
    assert_eq!(sentences.len(), 1, "{sentences:?}");
    assert!(
        sentences[0].contains("in progress") && sentences[0].contains("`ve`"),
        "{sentences:?}"
    );
    assert!(!finished, "the backfill ended before the rewind was tried");
    assert_eq!(
        wait_exit(&mut backfill.0, StdDuration::from_secs(60)),
        Some(0)
    );
    let after: String = scalar(
        &conn,
        "SELECT watermark FROM checkpoints WHERE scope = 'live'",
    );
    assert_eq!(after, before);
}

fn day(t: chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%d").to_string()
}
