//! Secrets and PII: no key, in any encoding, and no customer PII reaches stdout, stderr (text or
//! JSON trace logs), `status`, or the database files — through faults, a writer killed mid-way,
//! wrong keys, `check --online` and a run that gives up.

use ordersync_sim::Simulator;
use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use ordersync_sim::{beijing_now, Faults};
use rusqlite::Connection;

use crate::common::all_sources::{
    secret, AllSources, Worlds, ADS, DMJ, MYQ, SECRETS, SHOP, UD, VE,
};
use crate::common::*;

// ---- the five sources ---------------------------------------------------------------------------

/// A secret as it could appear: as is, form-encoded (a query string), percent-encoded (a path).
fn secret_forms() -> Vec<String> {
    let mut forms = Vec::new();
    for (_, value) in SECRETS {
        forms.push(value.to_string());
        forms.push(url::form_urlencoded::byte_serialize(value.as_bytes()).collect());
        forms.push(
            value
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b == b'-' {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect(),
        );
    }
    forms.sort();
    forms.dedup();
    forms
}

/// The values of `wanted` that are whole alphanumeric runs of `bytes`, any non-ASCII byte counting
/// as alphanumeric (so a run of Chinese text stays whole). One pass that hashes only runs of a
/// wanted length: quick over a multi-megabyte file even in a debug build.
fn whole_runs<'a>(bytes: &'a [u8], wanted: &[String]) -> Vec<&'a str> {
    let set: HashSet<&[u8]> = wanted.iter().map(|v| v.as_bytes()).collect();
    let mut lengths = vec![false; set.iter().map(|v| v.len()).max().unwrap_or(0) + 1];
    for v in &set {
        lengths[v.len()] = true;
    }
    let mut found = Vec::new();
    let mut check = |run: &'a [u8]| {
        if lengths.get(run.len()).copied().unwrap_or(false) && set.contains(run) {
            found.push(std::str::from_utf8(run).unwrap_or("?"));
        }
    };
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if !(b.is_ascii_alphanumeric() || *b >= 0x80) {
            if i > start {
                check(&bytes[start..i]);
            }
            start = i + 1;
        }
    }
    if bytes.len() > start {
        check(&bytes[start..]);
    }
    found
}

/// Panics if `bytes` holds any secret or any PII value.
///
/// Every secret, in every form, begins with `SeCrEt`: one search for that prefix finds any of
/// them (and any part of one that keeps its beginning). PII values stand alone between JSON
/// quotes, so each is a whole alphanumeric run of the text: a set of runs checks thousands of
/// values at once. A substring search of every value (every 200th in a large file, where that is
/// slow in a debug build) also catches one inside a longer run.
fn assert_no_leak(what: &str, bytes: &[u8], forms: &[String], pii: &[String]) {
    assert!(forms.iter().all(|f| f.starts_with("SeCrEt")));
    let text = String::from_utf8_lossy(bytes);
    if let Some(i) = text.find("SeCrEt") {
        let around = text
            .char_indices()
            .skip_while(|(j, _)| *j + 80 < i)
            .take(160)
            .map(|(_, c)| c)
            .collect::<String>();
        let form = forms.iter().find(|f| text.contains(f.as_str()));
        panic!("{what} contains a secret (whole: {form:?}): …{around}…");
    }
    let leaked = whole_runs(bytes, pii);
    assert!(leaked.is_empty(), "{what} contains PII: {leaked:?}");
    let step = if bytes.len() > 256 * 1024 { 200 } else { 1 };
    if let Some(v) = pii.iter().step_by(step).find(|v| text.contains(v.as_str())) {
        panic!("{what} contains PII {v:?}");
    }
}

#[test]
fn secrets_and_pii_never_leak_anywhere_across_five_sources() {
    let seed = seed_for("all sources secrets");
    // Every fault kind, so that every retry path logs (Retry-After 0: no waiting).
    let faults = Faults {
        p_5xx: 0.05,
        p_429: 0.03,
        retry_after_secs: 0,
        p_body_rate_limit: 0.03,
        p_truncated: 0.03,
        p_malformed: 0.02,
        p_slow: 0.02,
        slow_ms: 600,
        seed,
    };
    let a = AllSources::start(
        seed,
        Worlds {
            ve: (400, 30),
            myq: (400, 30),
            ud: (200, 4),
            dmj: (400, 20),
            sxt: (120, 20),
        },
        &faults,
    );
    a.set_body_transient(0.03);
    a.write_config("300ms", 10);
    let forms = secret_forms();
    let pii = |a: &AllSources| a.dmj.pii_values();
    assert!(pii(&a).len() >= 400 * 5, "the damaijia world has PII");
    let traced = |args: &[&str]| {
        let mut cmd = a.command(args);
        cmd.env("RUST_LOG", "trace");
        cmd
    };
    let db_files = |when: &str, pii: &[String]| {
        let mut found = 0;
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", a.db_path().display()));
            if let Ok(bytes) = std::fs::read(&p) {
                found += 1;
                assert_no_leak(&format!("{when}: {}", p.display()), &bytes, &forms, pii);
            }
        }
        found
    };
    let mut outputs: Vec<(String, Output)> = Vec::new();

    // JSON trace logs of a sync of all five under faults; upstream changes; a text one.
    let out = traced(&["--log-format", "json", "sync"])
        .output()
        .expect("runs");
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("***"),
        "the trace log shows redacted URLs: redaction was exercised"
    );
    outputs.push(("json trace sync".into(), out));
    let at = beijing_now() - Duration::seconds(2);
    a.ve.mutate(30, at);
    a.myq.mutate(30, at);
    a.dmj.mutate(30, at);
    a.sxt.mutate(10, at);
    a.add_orders(5, at);
    let out = traced(&["sync"]).output().expect("runs");
    assert_ok(&out);
    outputs.push(("text trace sync".into(), out));

    // A damaijia backfill killed once it has committed pages: its WAL is still there to read.
    let from = a.start_day(DMJ);
    let mut child = traced(&["--log-format", "json", "backfill", DMJ, "--from", &from])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + StdDuration::from_secs(60);
    loop {
        let seen: i64 = Connection::open(a.db_path())
            .and_then(|c| {
                c.query_row(
                    "SELECT COALESCE(SUM(rows_seen), 0) FROM runs WHERE command = 'backfill'",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap_or(0);
        if seen >= 100 || child.try_wait().ok().flatten().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the backfill never got going");
        std::thread::sleep(StdDuration::from_millis(10));
    }
    let _ = child.kill();
    let killed = child.wait_with_output().expect("wait");
    if killed.status.signal() == Some(9) {
        let wal = std::fs::metadata(format!("{}-wal", a.db_path().display()));
        assert!(
            wal.is_ok_and(|m| m.len() > 0),
            "a killed writer leaves its WAL behind"
        );
    }
    let files_after_kill = db_files("after kill -9", &pii(&a));
    outputs.push(("killed backfill".into(), killed));
    outputs.push((
        "status after kill".into(),
        traced(&["status"]).output().expect("runs"),
    ));
    let resumed = traced(&["backfill", DMJ, "--from", &from])
        .output()
        .expect("runs");
    assert_ok(&resumed);
    outputs.push(("resumed backfill".into(), resumed));
    a.assert_equals_truth(None);
    assert!(a.total_faults().total() > 0, "faults were injected");

    // Upstream refuses every key: each pipeline fails with its code; the error paths log too.
    a.ve.set_vekey("a-different-vekey");
    a.myq.set_keys(&secret("ALL_APKEY"), "a-different-dou-key");
    a.ud.set_secret("a-different-secret");
    a.dmj.set_credentials("a-different-token", SHOP);
    a.sxt
        .set_credentials("someone-else", &secret("ALL_SXT_DYUID"));
    let failed = traced(&["sync"]).output().expect("runs");
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    for (pipeline, code) in [
        (VE, "10001"),
        (MYQ, "401"),
        (UD, "TOP 25"),
        (DMJ, "204"),
        (ADS, "401"),
    ] {
        assert!(
            stderr.lines().any(|l| l.starts_with("ordersync: ")
                && l.contains(&format!("`{pipeline}`"))
                && l.contains(code)),
            "`{pipeline}` fails naming {code}: {stderr}"
        );
    }
    outputs.push(("sync against wrong keys".into(), failed));
    for (what, args, code) in [
        (
            "backfill against a wrong key",
            vec![
                "--log-format",
                "json",
                "backfill",
                VE,
                "--from",
                from.as_str(),
            ],
            1,
        ),
        (
            "check --online against wrong keys",
            vec!["check", "--online"],
            2,
        ),
    ] {
        let out = traced(&args[..]).output().expect("runs");
        assert_eq!(out.status.code(), Some(code), "{what}: {}", text(&out));
        outputs.push((what.into(), out));
    }
    outputs.push(("status".into(), a.run(&["status"])));
    let status = a.run(&["status", "--json"]);
    assert_ok(&status);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("10001"),
        "status --json shows the last errors"
    );
    outputs.push(("status --json".into(), status));

    let pii = pii(&a);
    let mut searched = 0usize;
    for (what, o) in &outputs {
        assert_no_panic(o);
        assert_no_leak(&format!("{what} stdout"), &o.stdout, &forms, &pii);
        assert_no_leak(&format!("{what} stderr"), &o.stderr, &forms, &pii);
        searched += o.stdout.len() + o.stderr.len();
    }
    let files_at_end = db_files("at the end", &pii);
    println!(
        "all sources secrets: {} runs' output ({:.1} MB) and the database files ({files_after_kill} \
         after the kill, {files_at_end} at the end) searched for {} secret forms and {} PII values: \
         none found; {} faults injected",
        outputs.len(),
        searched as f64 / 1e6,
        forms.len(),
        pii.len(),
        a.total_faults().total()
    );
}

// ---- veapi: a key that encoding changes, a run that gives up ------------------------------------

/// Beyond `veapi::no_secret_in_trace_logs_status_or_database` and the five-source test above: a
/// key with characters URL encoding changes (`?`, `#`, non-ASCII) and a tail (`s3cr3t`) that a
/// key cut at one of them would leave behind, `status --json` after a kill, and a run that gives
/// up after its retries (every answer a 5xx) saying what it saw last.
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
    let h = Harness::veapi(1500, 120, faults);
    h.sim.set_vekey(key);
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
        ("checkpoints", "SELECT scope FROM checkpoints"),
        ("track_windows", "SELECT cursor || scope FROM track_windows"),
    ] {
        for row in rows::<String>(&conn, sql) {
            leaks(table, row.as_bytes());
        }
    }
    assert_orders_equal_truth(&h);
}
