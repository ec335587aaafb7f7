//! Reliability of the veapi pipeline end to end: SIGKILL at random instants, a fault soak, a full
//! or read-only disk, upstream changing its mind, and secrets under all of it. (The property tests
//! of the pure functions are in `tests/fuzz/`.)
//!
//! Every random choice comes from a seed that is printed (`ORDERSYNC_RELIABILITY_SEED=N` replays
//! it); `ORDERSYNC_SOAK=1` runs longer variants (more kills, larger worlds). Only
//! veapi is live today: the checks that compare a database with an upstream go through
//! [`Upstream`], which another source implements for its simulator when its pipeline goes live.

use ordersync_sim::Simulator;
use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration as StdDuration;

use chrono::{Duration, NaiveDate, NaiveDateTime};
use ordersync::model::OrderRow;
use ordersync::planner::Window;
use ordersync::sources::veapi;
use ordersync::store::{self, PageCommit, Progress};
use ordersync_sim::faults::FaultCounts;
use ordersync_sim::{beijing_now, Faults, VeOrder, VeapiSim};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::Connection;
use serde_json::{json, Value};

use crate::common::*;

// ---- what the checks need from an upstream -------------------------------------------------------

/// One order of an upstream's ground truth, as the source-independent checks see it.
#[derive(Debug, Clone)]
struct TruthOrder {
    order_id: String,
    status_raw: String,
    /// The time backfills query by.
    paid_at: NaiveDateTime,
    /// The time live syncs query by.
    updated_at: NaiveDateTime,
}

/// What the reliability checks need from a simulated upstream. veapi is the only live source; a
/// source joins these tests by implementing this for its simulator.
trait Upstream {
    const SOURCE: &'static str;
    fn truth_orders(&self) -> Vec<TruthOrder>;
}

impl Upstream for VeapiSim {
    const SOURCE: &'static str = "veapi";
    fn truth_orders(&self) -> Vec<TruthOrder> {
        self.truth()
            .into_iter()
            .map(|o| TruthOrder {
                order_id: o.order_id,
                status_raw: o.flow_point,
                paid_at: o.pay_success_time,
                updated_at: o.update_time,
            })
            .collect()
    }
}

/// Every range the `coverage` table calls finished really is in the database: each truth order
/// whose time (pay time for a backfill, update time for live) lies in a covered range is stored —
/// for live, in exactly the version upstream has now. Upstream times are whole seconds, so an
/// order at second `t` is in `[a, b)` when `a <= t < b`.
fn assert_coverage_is_real<U: Upstream>(conn: &Connection, truth: &[TruthOrder]) {
    let stored: HashMap<String, (Option<String>, Option<String>, String)> = {
        let mut stmt = conn
            .prepare(
                "SELECT order_id, paid_at, updated_at, status_raw FROM orders WHERE source = ?1",
            )
            .expect("prepare");
        stmt.query_map([U::SOURCE], |r| {
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
            let t = if live { o.updated_at } else { o.paid_at };
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
                Some(fmt_s(o.paid_at).as_str()),
                "order {}",
                o.order_id
            );
            if live {
                assert_eq!(
                    (updated.as_deref(), status.as_str()),
                    (Some(fmt_s(o.updated_at).as_str()), o.status_raw.as_str()),
                    "{scope} {start} .. {end} is finished, but order {} is stored in an older version",
                    o.order_id
                );
            }
        }
    }
}

fn fmt_s(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Every stored veapi order is a version upstream really had: never ahead of upstream's update
/// time, and field for field equal to upstream when it has the same update time (no torn row).
/// Each order has exactly its one line.
fn assert_stored_rows_are_real_versions(conn: &Connection, truth: &[VeOrder]) {
    let by_id: HashMap<&str, &VeOrder> = truth.iter().map(|o| (o.order_id.as_str(), o)).collect();
    for s in stored_orders(conn) {
        let t = by_id
            .get(s.order_id.as_str())
            .unwrap_or_else(|| panic!("stored order {} is not upstream", s.order_id));
        let want = expected(t);
        assert!(
            s.updated_at <= want.updated_at,
            "stored order {} is ahead of upstream",
            s.order_id
        );
        if s.updated_at == want.updated_at {
            assert_eq!(s, want);
        }
    }
    let bad_lines: i64 = scalar(
        conn,
        "SELECT COUNT(*) FROM orders o WHERE (SELECT COUNT(*) FROM sub_orders s \
         WHERE s.source = o.source AND s.order_id = o.order_id) <> 1",
    );
    assert_eq!(bad_lines, 0, "orders without exactly one line");
}

fn status_json(h: &Harness) -> Value {
    let out = h.run(&["status", "--json"]);
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

// ---- 1. crash loop ------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct CrashTally {
    kills_sync: u32,
    kills_backfill: u32,
    finished: u32,
    mutated: usize,
}

impl CrashTally {
    fn kills(&self) -> u32 {
        self.kills_sync + self.kills_backfill
    }
}

/// What must hold at any instant a process can be killed at.
fn check_after_kill(h: &Harness) {
    let conn = h.db();
    assert_integrity(&conn);
    assert_no_duplicate_history(&conn);
    let truth = h.sim.truth();
    assert_stored_rows_are_real_versions(&conn, &truth);
    assert_coverage_is_real::<VeapiSim>(&conn, &h.sim.truth_orders());
}

#[test]
fn crash_loop_sigkill_at_random_instants_loses_and_duplicates_nothing() {
    let seed = seed_for("crash loop");
    let (orders, days, kills_wanted) = if soak() {
        (12_000, 330, 300)
    } else {
        (6000, 200, 50)
    };
    // Every answer slow, so one pass of `sync` or `backfill` takes seconds and a kill lands in
    // startup, between pages, mid-page or mid-commit.
    let slow = Faults {
        p_slow: 1.0,
        slow_ms: 40,
        seed,
        ..Faults::default()
    };
    let h = Harness::veapi_with(seed, VEKEY, orders, days, slow);
    let from = (h.now - Duration::days(days + 1))
        .format("%Y-%m-%d")
        .to_string();
    let backfill = ["backfill", "ve", "--from", from.as_str()];
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tally = CrashTally::default();
    let mut attempts = 0;
    let mut last_mutation = std::time::Instant::now();
    while tally.kills() < kills_wanted {
        attempts += 1;
        assert!(
            attempts <= kills_wanted * 4,
            "only {tally:?} after {attempts} attempts"
        );
        let is_sync = rng.gen_bool(0.5);
        let args: &[&str] = if is_sync { &["sync"] } else { &backfill };
        let delay = rng.gen_range(0..=400u64);
        let mut child = h
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        std::thread::sleep(StdDuration::from_millis(delay));
        let _ = child.kill(); // SIGKILL; a process that already exited is left as it ended
        let out = child.wait_with_output().expect("wait");
        match out.status.signal() {
            Some(9) if is_sync => tally.kills_sync += 1,
            Some(9) => tally.kills_backfill += 1,
            _ => {
                assert_ok(&out);
                assert_no_panic(&out);
                tally.finished += 1;
            }
        }
        // No process is alive now: no run may be shown as running.
        let status = status_json(&h);
        let last = &status[0]["last_run"]["outcome"];
        assert_ne!(
            last, "running",
            "status shows a dead process's run as running: {status}"
        );
        check_after_kill(&h);
        if attempts % 8 == 0 {
            // Upstream moves on between crashes (at a whole second no finished range reaches).
            tally.mutated += h.sim.mutate(rng.gen_range(10..40), beijing_now()).len();
            last_mutation = std::time::Instant::now();
        }
    }

    h.sim.set_faults(Faults::default());
    // A change at second S is fetched by a sync whose settled end (now − 1 s, on a whole second)
    // is past S: let the last one settle.
    let settled = StdDuration::from_millis(2100);
    if let Some(rest) = settled.checked_sub(last_mutation.elapsed()) {
        std::thread::sleep(rest);
    }
    for args in [&["sync"][..], &backfill[..]] {
        let out = h.run(args);
        assert_ok(&out);
        assert_no_panic(&out);
    }
    assert_equals_truth(&h);
    let conn = h.db();
    check_after_kill(&h);
    // Each order's history has its current status exactly once.
    let missing: i64 = scalar(
        &conn,
        "SELECT COUNT(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM order_status_history s \
         WHERE s.source = o.source AND s.order_id = o.order_id AND s.status_raw = o.status_raw)",
    );
    assert_eq!(missing, 0, "orders whose current status has no history row");
    // Both tracks are one finished range each, from their start to (about) now.
    let ranges = table_text(
        &conn,
        "SELECT scope, range_start, range_end FROM coverage ORDER BY scope",
    );
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert!(
        ranges[0].contains(&format!("{from} 00:00:00.000")),
        "backfill covers from --from: {ranges:?}"
    );
    // No run is left running; killed runs are abandoned, the others ok.
    let outcomes = outcomes(&conn);
    let abandoned = outcomes.get("abandoned").copied().unwrap_or(0);
    assert!(
        outcomes.keys().all(|k| k == "ok" || k == "abandoned"),
        "{outcomes:?}"
    );
    assert!(
        abandoned >= 1 && abandoned <= i64::from(tally.kills()),
        "{outcomes:?} after {tally:?}"
    );
    let counted: i64 = scalar(&conn, "SELECT SUM(requests) FROM runs");
    assert!(
        counted as u64 <= h.sim.requests(),
        "runs count {counted} requests, upstream saw {}",
        h.sim.requests()
    );
    // Where the kills landed: before the run was recorded (startup), before its first page
    // committed, or after some pages (mid-run: between pages, in a request or in a commit).
    let before_first_page: i64 = scalar(
        &conn,
        "SELECT COUNT(*) FROM runs WHERE outcome = 'abandoned' AND requests = 0",
    );
    println!(
        "crash loop: {} kills survived ({} sync, {} backfill): {} in startup, {} before the first \
         page committed, {} mid-run; {} runs finished before their kill, {} orders mutated between \
         kills, {} requests upstream",
        tally.kills(),
        tally.kills_sync,
        tally.kills_backfill,
        i64::from(tally.kills()) - abandoned,
        before_first_page,
        abandoned - before_first_page,
        tally.finished,
        tally.mutated,
        h.sim.requests()
    );
}

// ---- 2. fault soak ------------------------------------------------------------------------------

#[test]
fn fault_soak_retries_every_fault_honours_retry_after_and_ends_exact() {
    let seed = seed_for("fault soak");
    let faults = Faults {
        p_5xx: 0.10,
        p_429: 0.05,
        retry_after_secs: 1,
        p_body_rate_limit: 0.03,
        p_truncated: 0.015,
        p_malformed: 0.015,
        p_slow: 0.02,
        slow_ms: 1500, // well past the 300ms timeout
        seed,
    };
    let (orders, days, rounds) = if soak() {
        (10_000, 330, 6)
    } else {
        (2500, 200, 1)
    };
    let h = Harness::veapi_with(seed, VEKEY, orders, days, faults);
    h.write_config("timeout = \"300ms\"");
    let from = (h.now - Duration::days(days + 1))
        .format("%Y-%m-%d")
        .to_string();
    let mut commands: Vec<Vec<&str>> = vec![
        vec!["sync"],
        vec!["backfill", "ve", "--from", from.as_str()],
    ];
    commands.extend((0..rounds).map(|_| vec!["sync"]));
    let mut log = Vec::new();
    for (i, args) in commands.iter().enumerate() {
        if i >= 2 {
            h.sim.mutate(30, beijing_now() - Duration::seconds(2));
        }
        let out = h
            .command(&[&["--log-format", "json"][..], &args[..]].concat())
            .env("RUST_LOG", "ordersync=debug")
            .output()
            .expect("runs");
        assert_ok(&out);
        assert_no_panic(&out);
        log.extend(retries(&out.stderr));
    }
    // Top up until every kind of fault has been met (a loaded machine's extra timeouts shift the
    // seeded sequence), bounded.
    let all_kinds = |c: FaultCounts| {
        c.too_many_requests > 0
            && c.server_error > 0
            && c.body_rate_limit > 0
            && c.truncated + c.malformed > 0
            && c.slow > 0
    };
    for _ in 0..20 {
        if all_kinds(h.sim.fault_counts()) {
            break;
        }
        h.sim.mutate(200, beijing_now() - Duration::seconds(2));
        let out = h
            .command(&["--log-format", "json", "sync"])
            .env("RUST_LOG", "ordersync=debug")
            .output()
            .expect("runs");
        assert_ok(&out);
        assert_no_panic(&out);
        log.extend(retries(&out.stderr));
    }
    assert_equals_truth(&h);
    let conn = h.db();
    assert_integrity(&conn);
    assert_no_duplicate_history(&conn);
    let counted: i64 = scalar(&conn, "SELECT SUM(requests) FROM runs");
    assert_eq!(
        counted as u64,
        h.sim.requests(),
        "every request, retried ones included, is counted"
    );
    assert_eq!(outcomes(&conn).keys().collect::<Vec<_>>(), vec!["ok"]);

    // Every injected fault cost exactly one retry, of the right kind; 429s waited Retry-After.
    let c = h.sim.fault_counts();
    let count = |pat: &str| log.iter().filter(|(e, _)| e.contains(pat)).count() as u64;
    let (r429, r5xx, rbody, rmalformed, rtimeout) = (
        count("HTTP 429"),
        count("HTTP 502") + count("HTTP 503"),
        count("upstream code 10009"),
        count("upstream code malformed"),
        count("upstream code timeout"),
    );
    for (e, wait) in log.iter().filter(|(e, _)| e.contains("HTTP 429")) {
        assert!(
            *wait >= 1000,
            "a 429 with Retry-After: 1 was retried after {wait} ms: {e}"
        );
    }
    assert_eq!(r429, c.too_many_requests, "{c:?}");
    assert_eq!(r5xx, c.server_error, "{c:?}");
    assert_eq!(rbody, c.body_rate_limit, "{c:?}");
    assert_eq!(rmalformed, c.truncated + c.malformed, "{c:?}");
    // A slow answer always times out; a loaded machine may time out an ordinary one too.
    assert!(rtimeout >= c.slow, "{rtimeout} timeouts for {c:?}");
    assert_eq!(
        r429 + r5xx + rbody + rmalformed + rtimeout,
        log.len() as u64,
        "unexpected retries: {log:?}"
    );
    if seed_is_default() {
        // The default seed meets every kind (another may not: its counts are printed).
        assert!(all_kinds(c), "{c:?}");
    }
    println!(
        "fault soak: {} requests, {} faults injected ({c:?}), {} retries ({} after 429, all waiting ≥ 1 s)",
        h.sim.requests(),
        c.total(),
        log.len(),
        r429
    );
}

#[test]
fn total_5xx_with_max_retries_2_fails_after_exactly_three_requests_and_keeps_the_checkpoint() {
    let h = Harness::veapi(300, 30, Faults::default());
    h.write_config("max_retries = 2");
    assert_ok(&h.run(&["sync"]));
    let conn = h.db();
    let live = |conn: &Connection| {
        (
            table_text(conn, "SELECT * FROM checkpoints WHERE scope = 'live'"),
            table_text(conn, "SELECT * FROM coverage ORDER BY scope, range_start"),
        )
    };
    let before = live(&conn);
    let orders_before = orders_snapshot(&conn);
    h.sim.set_faults(Faults {
        p_5xx: 1.0,
        seed: 7,
        ..Faults::default()
    });
    let from = (h.now - Duration::days(10)).format("%Y-%m-%d").to_string();
    for args in [
        &["sync"][..],
        &["backfill", "ve", "--from", from.as_str()][..],
    ] {
        let n0 = h.sim.requests();
        let out = h.run(args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert_no_panic(&out);
        assert_eq!(
            h.sim.requests() - n0,
            3,
            "one try and two retries of the first page"
        );
        let errors = error_sentences(&out);
        assert_eq!(errors.len(), 1, "{}", text(&out));
        assert!(
            errors[0].contains("`ve`")
                && errors[0].contains("HTTP 50")
                && errors[0].contains("3 attempts"),
            "{errors:?}"
        );
        let (outcome, error, requests): (String, String, i64) = conn
            .query_row(
                "SELECT outcome, error, requests FROM runs ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("last run");
        assert_eq!((outcome.as_str(), requests), ("failed", 3));
        assert!(error.contains("HTTP 50"), "{error}");
    }
    assert_eq!(live(&conn), before, "checkpoint and coverage unmoved");
    assert_eq!(orders_snapshot(&conn), orders_before);
    let backfill_state = table_text(
        &conn,
        "SELECT watermark, window_start, cursor FROM checkpoints WHERE scope LIKE 'backfill %'",
    );
    assert_eq!(
        backfill_state,
        vec!["Null|Null|Null"],
        "the failed backfill finished nothing"
    );

    h.sim.set_faults(Faults::default());
    assert_ok(&h.run(&["sync"]));
    assert_equals_truth(&h);
}

// ---- 4. a full or read-only disk -------------------------------------------------------------------

/// A failed `sync` said so in one sentence that names the pipeline and the database, without a panic.
fn assert_failed_cleanly(out: &Output, words: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    assert_no_panic(out);
    let errors = error_sentences(out);
    assert_eq!(errors.len(), 1, "one error sentence:\n{}", text(out));
    for w in words {
        assert!(errors[0].contains(w), "`{w}` missing from {errors:?}");
    }
}

/// After the condition is gone: the next sync completes and the database is exact and sound.
fn assert_recovers(h: &Harness) {
    let out = h.run(&["sync"]);
    assert_ok(&out);
    assert_no_panic(&out);
    assert_equals_truth(h);
    let conn = h.db();
    assert_integrity(&conn);
    assert_no_duplicate_history(&conn);
    let running: i64 = scalar(&conn, "SELECT COUNT(*) FROM runs WHERE outcome = 'running'");
    assert_eq!(running, 0);
}

/// A tmpfs mounted over a directory for the life of the value.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(at.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn disk_full_mid_sync_fails_in_one_sentence_and_the_next_sync_recovers() {
    let h = Harness::veapi(3000, 200, Faults::default());
    // ENOSPC for real: a 1 MiB tmpfs over the harness directory (the database outgrows it within
    // a few pages). Mounting needs root with CAP_SYS_ADMIN; the file-size-limit test below covers
    // the same path without privileges.
    let fs = match Tmpfs::mount(h.dir.path(), "1m") {
        Ok(fs) => fs,
        Err(e) => {
            println!("disk full: skipped, cannot mount a tmpfs here ({e})");
            return;
        }
    };
    h.write_config(""); // the mount hides the first one
    let out = h.run(&["sync"]);
    assert_failed_cleanly(&out, &["`ve`", "database", "full"]);
    let stored: i64 = scalar(&h.db(), "SELECT COUNT(*) FROM orders");
    assert!(
        stored > 0 && stored < 3000,
        "failed mid-sync: {stored} stored"
    );
    fs.resize("512m");
    assert_recovers(&h);
    println!("disk full: failed after {stored} orders, recovered");
}

#[test]
fn file_size_limit_mid_sync_fails_in_one_sentence_and_the_next_sync_recovers() {
    let h = Harness::veapi(3000, 200, Faults::default());
    // RLIMIT_FSIZE through the shell (2048 blocks: 1 MiB under dash, 2 MiB under bash), with
    // SIGXFSZ ignored so a write past it fails with EFBIG instead of killing the process.
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -f \"$1\" && trap '' XFSZ && shift && exec \"$@\"")
        .arg("sh")
        .arg("2048")
        .arg(env!("CARGO_BIN_EXE_ordersync"))
        .arg("--config")
        .arg(h.config_path())
        .arg("sync")
        .env("TEST_VEKEY", VEKEY)
        .env_remove("ORDERSYNC_CONFIG")
        .output()
        .expect("sh runs");
    assert_failed_cleanly(&out, &["`ve`", "database"]);
    let stored: i64 = scalar(&h.db(), "SELECT COUNT(*) FROM orders");
    assert!(
        stored > 0 && stored < 3000,
        "failed mid-sync: {stored} stored\n{}",
        text(&out)
    );
    assert_recovers(&h);
    println!("file size limit: failed after {stored} orders, recovered");
}

/// Makes a file refuse writes for the life of the value. Root ignores permission bits, so as root
/// the file is made immutable (`chattr +i`, which binds root too); otherwise it is made read-only.
struct ReadOnly(PathBuf, bool);

impl ReadOnly {
    fn set(path: &Path) -> Result<ReadOnly, String> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if root {
            let out = Command::new("chattr")
                .arg("+i")
                .arg(path)
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
            }
        } else {
            let mut perms = std::fs::metadata(path)
                .map_err(|e| e.to_string())?
                .permissions();
            perms.set_readonly(true);
            std::fs::set_permissions(path, perms).map_err(|e| e.to_string())?;
        }
        Ok(ReadOnly(path.to_path_buf(), root))
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self.1 {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        } else if let Ok(m) = std::fs::metadata(&self.0) {
            let mut perms = m.permissions();
            #[allow(clippy::permissions_set_readonly_false)] // restoring what the test took away
            perms.set_readonly(false);
            let _ = std::fs::set_permissions(&self.0, perms);
        }
    }
}

#[test]
fn read_only_database_fails_in_one_sentence_and_the_next_sync_recovers() {
    let h = Harness::veapi(800, 60, Faults::default());
    assert_ok(&h.run(&["sync"]));
    let changed = h.sim.mutate(30, beijing_now() - Duration::seconds(2));
    assert!(!changed.is_empty());
    {
        let _guard = match ReadOnly::set(&h.db_path()) {
            Ok(g) => g,
            Err(e) => {
                println!("read-only database: skipped, cannot make the file read-only here ({e})");
                return;
            }
        };
        // Really unwritable, even to this (possibly root) process.
        assert!(std::fs::OpenOptions::new()
            .append(true)
            .open(h.db_path())
            .is_err());
        let out = h.run(&["sync"]);
        assert_failed_cleanly(&out, &["`ve`", "database"]);
    }
    assert_recovers(&h);
}

// ---- 5. upstream changes its mind -------------------------------------------------------------------

/// The fixture's row with some fields replaced, normalised by the real veapi source.
fn veapi_row(order_id: &str, flow_point: &str, update_time: &str, commission: &str) -> OrderRow {
    let mut row = fixture("tests/fixtures/veapi/sample_page.json")["data"][0].clone();
    row["order_id"] = json!(order_id);
    row["flow_point"] = json!(flow_point);
    row["update_time"] = json!(update_time);
    row["estimated_commission"] = json!(commission);
    veapi::normalise(&row).expect("a well-formed row")
}

fn store_state(conn: &Connection) -> (Vec<String>, Vec<String>, Vec<String>) {
    (
        orders_snapshot(conn),
        table_text(conn, "SELECT * FROM sub_orders ORDER BY order_id"),
        table_text(
            conn,
            "SELECT source, order_id, status, status_raw FROM order_status_history ORDER BY id",
        ),
    )
}

#[test]
fn an_older_or_vanished_upstream_copy_never_regresses_the_stored_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = store::open_connection(&dir.path().join("m.db")).expect("open");
    store::ensure_track(&conn, "p", "live", None).expect("track");
    let run = store::begin_run(&mut conn, "p", "sync", "live").expect("run");
    let window = Window {
        start: NaiveDate::from_ymd_opt(2024, 4, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("date"),
        end: NaiveDate::from_ymd_opt(2024, 4, 10)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("date"),
    };
    let commit = |conn: &mut Connection, orders: Vec<OrderRow>| {
        let page = PageCommit {
            run_id: run,
            pipeline: "p".into(),
            scope: "live".into(),
            source: ordersync::sources::SourceKind::Veapi,
            orders,
            rejected: Vec::new(),
            asked: (window, String::new()),
            requests: 1,
            progress: Progress::Next {
                window,
                cursor: "c".into(),
            },
        };
        store::commit_page(conn, &page).expect("commit").changed
    };
    let id = "6928535482621498461";
    let paid = veapi_row(id, "PAY_SUCC", "1712311307", "1");
    let refunded = veapi_row(id, "REFUND", "1712400000", "1");
    let settled = veapi_row(id, "SETTLE", "1712500000", "2.5");
    assert_eq!(commit(&mut conn, vec![paid.clone()]), 1);
    assert_eq!(commit(&mut conn, vec![refunded.clone()]), 1);
    let newest = store_state(&conn);

    // Upstream goes back to an older update time: nothing changes, no history row.
    assert_eq!(commit(&mut conn, vec![paid.clone()]), 0);
    assert_eq!(
        store_state(&conn),
        newest,
        "an older copy regressed the row"
    );
    // Upstream loses the update time ("0" is veapi's "no time"): it cannot be shown newer.
    let timeless = veapi_row(id, "PAY_SUCC", "0", "1");
    assert_eq!(timeless.updated_at, None);
    assert_eq!(commit(&mut conn, vec![timeless]), 0);
    assert_eq!(
        store_state(&conn),
        newest,
        "a copy without an update time regressed the row"
    );
    // The order disappears from upstream: later pages without it leave it as it was.
    assert_eq!(
        commit(
            &mut conn,
            vec![veapi_row(
                "6928535482621498999",
                "PAY_SUCC",
                "1712311307",
                "1"
            )]
        ),
        1
    );
    let (orders, _, _) = store_state(&conn);
    assert!(
        orders.contains(&newest.0[0]),
        "the vanished order's row changed"
    );
    assert_eq!(commit(&mut conn, vec![]), 0);

    // Old and new copies in one page, either way round: the newest wins, one history row each.
    assert_eq!(
        commit(
            &mut conn,
            vec![settled.clone(), refunded.clone(), paid.clone()]
        ),
        1
    );
    let settled_state = store_state(&conn);
    assert_eq!(commit(&mut conn, vec![paid, refunded, settled]), 0);
    assert_eq!(store_state(&conn), settled_state);
    let history: Vec<String> = rows(
        &conn,
        &format!("SELECT status_raw FROM order_status_history WHERE order_id = '{id}' ORDER BY id"),
    );
    assert_eq!(history, vec!["PAY_SUCC", "REFUND", "SETTLE"]);
    let commission: i64 = scalar(
        &conn,
        &format!("SELECT commission FROM orders WHERE order_id = '{id}'"),
    );
    assert_eq!(commission, 3, "2.5 fen rounds half up");
}

#[test]
fn stored_rows_newer_than_upstream_survive_a_full_backfill() {
    // From the database's side, upstream "goes back in time" when it sends a copy older than the
    // stored one: here the stored rows are made newer than anything upstream has.
    let h = Harness::veapi(600, 60, Faults::default());
    assert_ok(&h.run(&["sync"]));
    let conn = h.db();
    let tampered = conn
        .execute(
            "UPDATE orders SET updated_at = '2099-01-01 00:00:00', status = 'settled', status_raw = 'SETTLE', \
             raw = '{\"newer\":true}' WHERE order_id IN (SELECT order_id FROM orders ORDER BY order_id LIMIT 7)",
            [],
        )
        .expect("update");
    assert_eq!(tampered, 7);
    let before = orders_snapshot(&conn);
    let from = (h.now - Duration::days(61)).format("%Y-%m-%d").to_string();
    let out = h.run(&["backfill", "ve", "--from", &from]);
    assert_ok(&out);
    assert_eq!(
        orders_snapshot(&conn),
        before,
        "a backfill of older copies changed stored rows"
    );
    let (seen, changed): (i64, i64) = conn
        .query_row(
            "SELECT rows_seen, rows_changed FROM runs ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("last run");
    assert_eq!((seen, changed), (600, 0));
}

// ---- 6. secrets ------------------------------------------------------------------------------------

/// Beyond `veapi::no_secret_in_trace_logs_status_or_database`: a key that URL encoding changes, a
/// backfill killed mid-way (its WAL still on disk), JSON trace logs under every fault kind,
/// failing `backfill` and `check --online`, and a run that gives up.
#[test]
fn secrets_never_leak_through_encoding_kills_faults_or_failures() {
    let key = "Ve+Key/9=&%x?#中-s3cr3t";
    let encoded: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
    let path_encoded: String = key
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let forms = [key, encoded.as_str(), path_encoded.as_str(), "s3cr3t"];
    let faults = Faults {
        p_5xx: 0.08,
        p_429: 0.04,
        retry_after_secs: 0,
        p_body_rate_limit: 0.04,
        p_truncated: 0.04,
        p_malformed: 0.03,
        p_slow: 0.03,
        slow_ms: 800,
        seed: seed_for("secrets"),
    };
    let h = Harness::veapi_with(11, key, 1500, 120, faults);
    h.write_config("timeout = \"300ms\"");
    let run = |args: &[&str], trace: bool| -> Output {
        let mut cmd = h.command(args);
        cmd.env("TEST_VEKEY", key);
        if trace {
            cmd.env("RUST_LOG", "trace");
        }
        cmd.output().expect("runs")
    };
    let leaks = |what: &str, bytes: &[u8]| {
        for f in forms {
            assert!(
                !bytes.windows(f.len()).any(|w| w == f.as_bytes()),
                "{what} contains the vekey as {f:?}"
            );
        }
    };
    let db_files = |when: &str| {
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", h.db_path().display()));
            if let Ok(bytes) = std::fs::read(&p) {
                leaks(&format!("{when}: {}", p.display()), &bytes);
            }
        }
    };
    let mut outputs: Vec<(String, Output)> = Vec::new();

    // A backfill killed once it has committed pages: its WAL is still there to read.
    let from = (h.now - Duration::days(121)).format("%Y-%m-%d").to_string();
    let backfill = [
        "--log-format",
        "json",
        "backfill",
        "ve",
        "--from",
        from.as_str(),
    ];
    let mut cmd = h.command(&backfill);
    cmd.env("TEST_VEKEY", key)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let deadline = std::time::Instant::now() + StdDuration::from_secs(60);
    loop {
        let seen: i64 = Connection::open(h.db_path())
            .and_then(|c| {
                c.query_row("SELECT COALESCE(SUM(rows_seen), 0) FROM runs", [], |r| {
                    r.get(0)
                })
            })
            .unwrap_or(0);
        if seen >= 200 || child.try_wait().ok().flatten().is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the backfill never got going"
        );
        std::thread::sleep(StdDuration::from_millis(20));
    }
    let _ = child.kill();
    let killed = child.wait_with_output().expect("wait");
    if killed.status.signal() == Some(9) {
        let wal = std::fs::metadata(format!("{}-wal", h.db_path().display()));
        assert!(
            wal.is_ok_and(|m| m.len() > 0),
            "a killed writer leaves its WAL behind"
        );
    }
    db_files("after kill -9");
    outputs.push(("killed backfill".into(), killed));
    outputs.push(("status after kill".into(), run(&["status"], true)));
    outputs.push((
        "status --json after kill".into(),
        run(&["status", "--json"], true),
    ));

    let resumed = run(&["backfill", "ve", "--from", from.as_str()], true);
    assert_ok(&resumed);
    assert!(
        String::from_utf8_lossy(&resumed.stderr).contains("vekey=***"),
        "the trace log shows redacted URLs: redaction was exercised"
    );
    outputs.push(("resumed backfill".into(), resumed));
    let synced = run(&["--log-format", "json", "sync"], true);
    assert_ok(&synced);
    outputs.push(("sync".into(), synced));
    assert!(h.sim.faults_injected() > 0);

    // Upstream stops accepting the key.
    h.sim.set_vekey("a-different-key");
    for (what, args, code) in [
        ("failing sync", &["sync"][..], 1),
        (
            "failing backfill",
            &["backfill", "ve", "--from", from.as_str()][..],
            1,
        ),
        ("failing check --online", &["check", "--online"][..], 2),
    ] {
        let out = run(args, true);
        assert_eq!(out.status.code(), Some(code), "{what}: {}", text(&out));
        outputs.push((what.into(), out));
    }
    // The right key, but every answer a 5xx: the run gives up and says what it saw last.
    h.sim.set_vekey(key);
    h.sim.set_faults(Faults {
        p_5xx: 1.0,
        seed: 3,
        ..Faults::default()
    });
    let gave_up = run(&["sync"], true);
    assert_eq!(gave_up.status.code(), Some(1), "{}", text(&gave_up));
    outputs.push(("run that gave up".into(), gave_up));
    outputs.push(("status".into(), run(&["status"], false)));
    outputs.push(("status --json".into(), run(&["status", "--json"], false)));

    for (what, o) in &outputs {
        leaks(&format!("{what} stdout"), &o.stdout);
        leaks(&format!("{what} stderr"), &o.stderr);
        assert_no_panic(o);
    }
    db_files("at the end");
    let conn = h.db();
    for (table, sql) in [
        ("runs", "SELECT COALESCE(error, '') FROM runs"),
        (
            "checkpoints",
            "SELECT COALESCE(cursor, '') || scope FROM checkpoints",
        ),
    ] {
        for row in rows::<String>(&conn, sql) {
            leaks(table, row.as_bytes());
        }
    }
    assert_orders_equal_truth(&h);
}

// ---- regressions found by the fuzzers ---------------------------------------------------------------

/// `settle_lag = "100000000d"` used to pass `check` and make `sync` panic (date overflow in a
/// pipeline task) and still exit 0; a multi-line string value made a multi-line error.
#[test]
fn config_fuzz_regressions_huge_durations_and_multi_line_values() {
    let h = Harness::veapi(10, 5, Faults::default());
    for (extra, key) in [
        ("settle_lag = \"100000000d\"", "settle_lag"),
        ("lookback = \"99999999d\"", "lookback"),
        ("time_type = \"\"\"\nx\ny\"\"\"", "time_type"),
        ("\"page\\nsize\" = 1", "page\\nsize"),
    ] {
        h.write_config(extra);
        for args in [&["check"][..], &["sync"]] {
            let out = h.run(args);
            assert_eq!(out.status.code(), Some(2), "{extra}: {}", text(&out));
            assert_no_panic(&out);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
            assert!(stderr.contains("`ve`") && stderr.contains(key), "{stderr}");
        }
    }
    h.write_config("settle_lag = \"36500d\"\nlookback = \"36500d\"");
    assert_ok(&h.run(&["check"]));
    assert_ok(&h.run(&["sync"]));
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
        assert_coverage_is_real::<VeapiSim>(&conn, &h.sim.truth_orders());
        let ends: Vec<String> = rows(&conn, "SELECT range_end FROM coverage");
        assert!(
            ends.iter().all(|e| e.ends_with(".000")),
            "finished ranges end on whole seconds: {ends:?}"
        );
    }
}
