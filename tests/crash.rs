//! Crashes: a backfill killed with SIGKILL mid-way resumes where it stopped, loses and duplicates
//! nothing, and never touches the live checkpoint; and the five sources at once, reading eight
//! windows at a time, `sync` and `backfill` killed at random instants over and over, never lose,
//! tear or duplicate a row, and leave every track one finished range.

use ordersync_sim::Simulator;
use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use ordersync_sim::{beijing_now, Faults};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::common::all_sources::{AllSources, Worlds, BACKFILLABLE, PIPELINES, UD};
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
        abandoned_requests + resumed_requests <= 4000 / 50 + 2 * windows + 2,
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

// ---- the five sources killed at random instants -------------------------------------------------

#[derive(Debug, Default)]
struct Tally {
    attempts: u32,
    kills_sync: u32,
    kills_backfill: u32,
    finished: u32,
    mutated: usize,
    added: usize,
}

impl Tally {
    fn kills(&self) -> u32 {
        self.kills_sync + self.kills_backfill
    }
}

#[test]
fn crash_loop_over_all_five_sources() {
    let seed = seed_for("all sources crash loop");
    let (worlds, kills_wanted) = if soak() {
        (
            Worlds {
                ve: (8000, 200),
                myq: (6000, 80),
                ud: (2500, 30),
                dmj: (5000, 80),
                sxt: (600, 60),
            },
            100,
        )
    } else {
        (
            Worlds {
                ve: (1500, 150),
                myq: (1200, 80),
                ud: (500, 16),
                dmj: (1000, 60),
                sxt: (300, 60),
            },
            20,
        )
    };
    // Every answer a little slow, so that a `sync` of all five takes a second or two and a kill
    // lands in startup, between pages, mid-request or mid-commit of any pipeline.
    let slow = Faults {
        p_slow: 1.0,
        slow_ms: 10,
        seed,
        ..Faults::default()
    };
    let a = AllSources::start(seed, worlds, &slow);
    // Eight windows read at once: kills land with several windows in progress in every track.
    a.add_defaults("concurrency = 8");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tally = Tally::default();
    let mut used_backfills: Vec<&str> = Vec::new();
    let mut ud_received: HashSet<String> = HashSet::new();
    // How long (ms) the last run of each kind that was let finish took.
    let mut lasts: HashMap<&str, u64> = HashMap::new();
    // Until when the last upstream change needs to settle before a sync can see it.
    let mut settled_at = Instant::now();
    let started = Instant::now();
    while tally.kills() < kills_wanted {
        tally.attempts += 1;
        assert!(
            tally.attempts <= kills_wanted * 6,
            "only {tally:?} after {} attempts",
            tally.attempts
        );
        // A sync of all five, or a backfill of one. (Both at once: see
        // `concurrent_processes_on_one_database_all_finish`.)
        let is_sync = rng.random_bool(0.5);
        let backfill_of = BACKFILLABLE[rng.random_range(0..BACKFILLABLE.len())];
        let from = a.start_day(backfill_of);
        let args: Vec<&str> = if is_sync {
            vec!["sync"]
        } else {
            if !used_backfills.contains(&backfill_of) {
                used_backfills.push(backfill_of);
            }
            vec!["backfill", backfill_of, "--from", from.as_str()]
        };
        // A random instant within about how long this kind of run took last time it was let
        // finish (at first, and at most, 1.2 s): once a track has caught up its runs are short,
        // and kills should keep landing inside them.
        let kind = if is_sync { "sync" } else { backfill_of };
        let window = lasts
            .get(kind)
            .map_or(1200, |ms| (ms * 13 / 10).clamp(50, 1200));
        let delay = StdDuration::from_millis(rng.random_range(0..=window));
        let mut child = a
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let t0 = Instant::now();
        while t0.elapsed() < delay && child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(StdDuration::from_millis(5));
        }
        let _ = child.kill(); // SIGKILL; a process that already exited is left as it ended
        let out = child.wait_with_output().expect("wait");
        match out.status.signal() {
            Some(9) if is_sync => tally.kills_sync += 1,
            Some(9) => tally.kills_backfill += 1,
            _ => {
                assert_ok(&out);
                assert_no_panic(&out);
                tally.finished += 1;
                lasts.insert(kind, t0.elapsed().as_millis() as u64);
            }
        }
        // No process is alive now: no run may be shown as running.
        let status = a.status_json();
        for p in status.as_array().expect("status --json is an array") {
            assert_ne!(
                p["last_run"]["outcome"], "running",
                "status shows a dead process's run as running: {p}"
            );
        }
        a.check_invariants();
        if tally.attempts % 4 == 0 {
            // Upstream moves on between crashes, at a whole second no finished range reaches.
            tally.mutated += a.mutate(rng.random_range(10..40), beijing_now(), &mut ud_received);
            settled_at = settled_at.max(Instant::now() + StdDuration::from_millis(2100));
            if tally.kills() + 4 < kills_wanted {
                // New orders are timed up to 5 s before `at`: past every finished range too.
                tally.added +=
                    a.add_orders(rng.random_range(2..6), beijing_now() + Duration::seconds(5));
                settled_at = settled_at.max(Instant::now() + StdDuration::from_millis(7100));
            }
        }
    }
    let loop_time = started.elapsed();

    // Faults off; once the last change has settled, a sync and the backfills finish everything.
    a.set_faults(&Faults::default());
    if let Some(rest) = settled_at.checked_duration_since(Instant::now()) {
        std::thread::sleep(rest);
    }
    let out = a.run(&["sync"]);
    assert_ok(&out);
    assert_no_panic(&out);
    for pipeline in &used_backfills {
        let out = a.run(&["backfill", pipeline, "--from", &a.start_day(pipeline)]);
        assert_ok(&out);
        assert_no_panic(&out);
    }
    a.assert_equals_truth(Some(&ud_received));
    a.check_invariants();
    let conn = a.db();
    let missing: i64 = scalar(
        &conn,
        "SELECT COUNT(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM order_status_history s \
         WHERE s.source = o.source AND s.order_id = o.order_id AND s.status_raw = o.status_raw)",
    );
    assert_eq!(missing, 0, "orders whose current status has no history row");
    // Each track is one finished range from where it began: the live one from `start`, each
    // backfill from its `--from`.
    let ranges = table_text(
        &conn,
        "SELECT pipeline, scope, range_start, range_end FROM coverage ORDER BY pipeline, scope",
    );
    for pipeline in PIPELINES {
        let mine: Vec<&String> = ranges
            .iter()
            .filter(|r| r.starts_with(&format!("Text(\"{pipeline}\")|")))
            .collect();
        let tracks = 1 + usize::from(used_backfills.contains(&pipeline));
        assert_eq!(mine.len(), tracks, "`{pipeline}`: {mine:?}");
        let begins = format!("{} 00:00:00.000", a.start_day(pipeline));
        assert!(
            mine.iter().all(|r| r.contains(&begins)),
            "`{pipeline}` tracks begin at {begins}: {mine:?}"
        );
    }
    // No run is left running; killed runs are abandoned, the others ok.
    let outcomes = outcomes(&conn);
    let abandoned = outcomes.get("abandoned").copied().unwrap_or(0);
    assert!(
        outcomes.keys().all(|k| k == "ok" || k == "abandoned"),
        "{outcomes:?}"
    );
    let most = i64::from(tally.kills_sync) * 5 + i64::from(tally.kills_backfill);
    assert!(
        abandoned >= 1 && abandoned <= most,
        "{outcomes:?} after {tally:?}"
    );
    let counted: i64 = scalar(&conn, "SELECT SUM(requests) FROM runs");
    assert!(
        counted as u64 <= a.requests(),
        "runs count {counted} requests, upstream saw {}",
        a.requests()
    );
    let before_first_page: i64 = scalar(
        &conn,
        "SELECT COUNT(*) FROM runs WHERE outcome = 'abandoned' AND requests = 0",
    );

    // unidesk shows a receipt only to a re-read of the line's window: a fresh backfill of the
    // whole range then leaves every source exactly equal to upstream.
    let from = (a.now - Duration::days(a.days(UD) + 2))
        .format("%Y-%m-%d")
        .to_string();
    let out = a.run(&["backfill", UD, "--from", &from]);
    assert_ok(&out);
    a.assert_equals_truth(None);
    a.check_invariants();
    println!(
        "all sources crash loop: {} kills survived ({} sync, {} backfill) in {} attempts over {:.1} s; \
         {} abandoned runs ({} before their first page), {} processes finished before their kill; \
         {} orders changed and {} added upstream between kills ({} unidesk orders received); \
         {} requests upstream",
        tally.kills(),
        tally.kills_sync,
        tally.kills_backfill,
        tally.attempts,
        loop_time.as_secs_f64(),
        abandoned,
        before_first_page,
        tally.finished,
        tally.mutated,
        tally.added,
        ud_received.len(),
        a.requests()
    );
}
