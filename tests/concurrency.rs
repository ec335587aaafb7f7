//! Concurrency: one `sync` runs the five pipelines at once, and separate processes (the daemon, a
//! backfill unit, an operator's command) share one database without "database is locked".

use std::process::Stdio;

use chrono::Duration;
use ordersync_sim::{beijing_now, Faults};

use crate::common::all_sources::{AllSources, Worlds, BACKFILLABLE};
use crate::common::*;

/// With every answer a little slow, the five pipelines of one `sync` run side by side: every run
/// starts before any of them finishes, all five end ok, and the database equals the five upstreams.
#[test]
fn one_sync_runs_all_five_sources_concurrently() {
    // Every answer a little slow, so that runs that were not concurrent could not overlap.
    let slow = Faults {
        p_slow: 1.0,
        slow_ms: 15,
        seed: 6,
        ..Faults::default()
    };
    let a = AllSources::start(
        6,
        Worlds {
            ve: (150, 10),
            myq: (3000, 80),
            ud: (600, 10),
            dmj: (700, 20),
            sxt: (120, 20),
        },
        &slow,
    );
    let out = a.run(&["sync"]);
    assert_ok(&out);
    println!("{}", String::from_utf8_lossy(&out.stdout));
    a.assert_equals_truth(None);
    a.check_invariants();
    assert_eq!(
        scalar::<i64>(
            &a.db(),
            "SELECT COUNT(*) FROM orders WHERE source = 'miaoyouquan'"
        ),
        3000
    );
    // Concurrent: every run started before any of them finished.
    let (last_start, first_end): (String, String) = a
        .db()
        .query_row(
            "SELECT MAX(started_at), MIN(finished_at) FROM runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        last_start < first_end,
        "runs were sequential: last start {last_start}, first end {first_end}"
    );
    assert_eq!(
        scalar::<i64>(
            &a.db(),
            "SELECT COUNT(DISTINCT pipeline) FROM runs WHERE outcome = 'ok'"
        ),
        5
    );
}

// ---- several processes on one database ----------------------------------------------------------

/// The daemon and a backfill unit (`ordersync-backfill@`), or an operator's `backfill` beside a
/// `sync`, write one database from separate processes: each must wait for the other's page
/// commit (`busy_timeout`), never fail with "database is locked". Here a `sync` of all five and a
/// backfill of each other source start together, three times (the first time on a new database),
/// and every one of those processes must finish with exit 0.
#[test]
fn concurrent_processes_on_one_database_all_finish() {
    let seed = seed_for("all sources concurrent processes");
    let slow = Faults {
        p_slow: 1.0,
        slow_ms: 5,
        seed,
        ..Faults::default()
    };
    let a = AllSources::start(
        seed,
        Worlds {
            ve: (1500, 100),
            myq: (1500, 80),
            ud: (400, 8),
            dmj: (1000, 40),
            sxt: (200, 40),
        },
        &slow,
    );
    let mut failures: Vec<String> = Vec::new();
    let mut processes = 0;
    for round in 0..3i64 {
        if round > 0 {
            let at = beijing_now() - Duration::seconds(2);
            a.ve.mutate(30, at);
            a.myq.mutate(30, at);
            a.dmj.mutate(30, at);
            a.add_orders(5, at);
        }
        // Each round's backfills start a day earlier: a new range, read in full.
        let froms: Vec<String> = BACKFILLABLE
            .iter()
            .map(|p| {
                (a.now - Duration::days(a.days(p) + 1 + round))
                    .format("%Y-%m-%d")
                    .to_string()
            })
            .collect();
        let mut jobs: Vec<Vec<&str>> = vec![vec!["sync"]];
        for (p, from) in BACKFILLABLE.iter().zip(&froms) {
            jobs.push(vec!["backfill", p, "--from", from.as_str()]);
        }
        let children: Vec<(String, std::process::Child)> = jobs
            .iter()
            .map(|args| {
                let child = a
                    .command(args)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn");
                (args.join(" "), child)
            })
            .collect();
        for (what, child) in children {
            processes += 1;
            let out = child.wait_with_output().expect("wait");
            assert_no_panic(&out);
            if out.status.code() != Some(0) {
                failures.push(format!(
                    "round {round}, `ordersync {what}`: exit {:?}: {}",
                    out.status.code(),
                    error_sentences(&out).join(" / ")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {processes} concurrent processes failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    a.assert_equals_truth(None);
    let conn = a.db();
    assert_integrity(&conn);
    assert_no_duplicate_history(&conn);
}

/// Many processes opening one new database at the same instant (an operator's `status` while the
/// daemon starts, a backfill unit and a sync): each waits for the others instead of failing with
/// "database is locked" — SQLite answers `journal_mode = WAL` busy at once, without its busy handler,
/// while another connection is switching the new file to WAL.
#[test]
fn processes_opening_one_new_database_at_once_all_succeed() {
    let h = Harness::veapi(1, 1, Faults::default());
    let mut failures = Vec::new();
    for round in 0..12 {
        let db = h.dir.path().join(format!("new-{round}.db"));
        let children: Vec<_> = (0..16)
            .map(|_| {
                h.command(&["--db", &db.display().to_string(), "status"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().expect("wait");
            if out.status.code() != Some(0) {
                failures.push(format!(
                    "round {round}: exit {:?}: {}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
