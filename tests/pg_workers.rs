//! Several daemons on one PostgreSQL database: three `ordersync run` workers share ten pipelines
//! (each run holding its pipeline's lock), one is killed with SIGKILL mid-run, and the others
//! finish its pipelines; no pipeline ever had two runs at once, and every order is there once. And
//! `status` names the worker running a pipeline, on both engines.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ordersync::store::pg::{PgDb, DEAD_PEER};
use ordersync::store::sql::{Db, Param};
use ordersync::store::{self};
use ordersync::timefmt;

use crate::common::all_sources::{slow, AllSources, Worlds, VE};
use crate::common::{assert_ok, pg_database, pg_target, sigterm, wait_exit, Blackhole, Reaper};

/// One run as `runs` has it.
#[derive(Debug, Clone)]
struct RunRow {
    pipeline: String,
    scope: String,
    pid: i64,
    started: String,
    finished: Option<String>,
    outcome: String,
}

fn runs(db: &mut dyn Db) -> Vec<RunRow> {
    db.query(
        "SELECT pipeline, scope, pid, started_at, finished_at, outcome FROM runs ORDER BY id",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| RunRow {
        pipeline: r.get(0).unwrap(),
        scope: r.get(1).unwrap(),
        pid: r.get(2).unwrap(),
        started: r.get(3).unwrap(),
        finished: r.get(4).unwrap(),
        outcome: r.get(5).unwrap(),
    })
    .collect()
}

/// The config's five pipelines twice over: each copy (`ve2`, …) reads the same simulator, so ten
/// pipelines write the same orders, every second.
fn ten_pipelines(a: &AllSources) -> Vec<String> {
    let text = std::fs::read_to_string(a.config_path()).unwrap();
    let (head, pipelines) = text.split_once("[[pipeline]]").unwrap();
    let blocks: Vec<String> = pipelines
        .split("[[pipeline]]")
        .map(|b| format!("[[pipeline]]{b}"))
        .collect();
    let mut names = Vec::new();
    let mut out = head.replacen(
        "[defaults]\n",
        "[defaults]\nschedule = \"* * * * * *\"\n",
        1,
    );
    for copy in ["", "2"] {
        for b in &blocks {
            let name = b
                .split("name = \"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap()
                .to_string();
            out.push_str(&b.replacen(
                &format!("name = \"{name}\""),
                &format!("name = \"{name}{copy}\""),
                1,
            ));
            out.push('\n');
            names.push(format!("{name}{copy}"));
        }
    }
    std::fs::write(a.config_path(), out).unwrap();
    names
}

#[test]
fn three_workers_share_ten_pipelines_and_finish_a_killed_ones_work() {
    let Some(pg) = pg_database() else { return };
    let a = AllSources::start(
        0x3a7,
        Worlds {
            ve: (300, 20),
            myq: (300, 20),
            ud: (150, 5),
            dmj: (300, 20),
            sxt: (30, 10),
        },
        &slow(15, 3),
    );
    a.write_config("5s", 3);
    let pipelines = ten_pipelines(&a);
    assert_eq!(pipelines.len(), 10);
    let url = pg.url();
    let worker = || -> Child {
        a.command_on(&url, &["run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // Killed if the test fails half way: a worker left running would outlive the test.
    let mut workers: Vec<Reaper> = (0..3).map(|_| Reaper(worker())).collect();
    let target = pg_target(&url);
    let mut db: Option<PgDb> = None;
    let mut watch = |want: &dyn Fn(&[RunRow]) -> bool, within: Duration, what: &str| {
        let deadline = Instant::now() + within;
        loop {
            std::thread::sleep(Duration::from_millis(100));
            if db.is_none() {
                db = PgDb::connect_for_reading(&target).ok();
            }
            if let Some(rows) = db.as_mut().and_then(|d| {
                d.query("SELECT 1 FROM runs LIMIT 1", &[]).ok()?;
                Some(runs(d))
            }) {
                if want(&rows) {
                    return rows;
                }
            }
            assert!(Instant::now() < deadline, "{what} within {within:?}");
        }
    };

    // Every pipeline has run once; then the worker that is in the middle of a run is killed.
    let pids: Vec<i64> = workers.iter().map(|w| i64::from(w.0.id())).collect();
    let ran_all = |rows: &[RunRow]| {
        pipelines
            .iter()
            .all(|p| rows.iter().any(|r| &r.pipeline == p && r.outcome == "ok"))
    };
    // Bounds for a machine busy with other builds, not expectations: on an idle one every
    // pipeline has run within ~10 s.
    watch(&ran_all, Duration::from_secs(240), "every pipeline ran");
    // The worker is frozen before it is killed, and killed only if its run is still in progress
    // then: a run seen in progress may end in the moment before a kill.
    let victim_pid = loop {
        let running = watch(
            &|rows: &[RunRow]| rows.iter().any(|r| r.outcome == "running"),
            Duration::from_secs(30),
            "a run in progress",
        );
        let pid = running
            .iter()
            .rev()
            .find(|r| r.outcome == "running")
            .map(|r| r.pid)
            .unwrap();
        // SAFETY: a signal to one of our own children, alive until reaped below.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        let now = watch(&|_: &[RunRow]| true, Duration::from_secs(30), "runs read");
        if now.iter().any(|r| r.pid == pid && r.outcome == "running") {
            break pid;
        }
        // SAFETY: as above.
        unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    };
    let victim = pids.iter().position(|p| *p == victim_pid).unwrap();
    // Its runs end at the latest here; another worker may begin one a moment later.
    let kill_sent = timefmt::fmt_millis(timefmt::beijing_now());
    workers[victim].0.kill().unwrap();
    workers[victim].0.wait().unwrap();
    let killed_at = timefmt::fmt_millis(timefmt::beijing_now());

    // The others pick up every pipeline the killed one ran, and run it to the end.
    let finished_elsewhere = |rows: &[RunRow]| {
        let victims: Vec<&RunRow> = rows.iter().filter(|r| r.pid == victim_pid).collect();
        victims.iter().all(|v| {
            rows.iter().any(|r| {
                r.pipeline == v.pipeline
                    && r.pid != victim_pid
                    && r.outcome == "ok"
                    && r.started > killed_at
            })
        })
    };
    watch(
        &finished_elsewhere,
        Duration::from_secs(180),
        "the killed worker's pipelines finished",
    );
    for (i, w) in workers.iter_mut().enumerate() {
        if i != victim {
            sigterm(&w.0);
            assert_eq!(wait_exit(&mut w.0, Duration::from_secs(30)), Some(0));
        }
    }

    let mut db = PgDb::connect(&target).unwrap();
    let all = runs(&mut db);
    assert!(all.iter().all(|r| r.outcome != "running"), "{all:?}");
    let abandoned: Vec<&RunRow> = all.iter().filter(|r| r.outcome == "abandoned").collect();
    assert!(
        !abandoned.is_empty(),
        "the killed worker's run in progress is abandoned"
    );
    assert!(
        abandoned.iter().all(|r| r.pid == victim_pid),
        "{abandoned:?}"
    );
    let mut by_track: BTreeMap<(String, String), Vec<&RunRow>> = BTreeMap::new();
    for r in &all {
        by_track
            .entry((r.pipeline.clone(), r.scope.clone()))
            .or_default()
            .push(r);
    }
    // No two runs of one pipeline at once: each run ends before the next begins; an abandoned run
    // ended when its process died, so the next begins after the kill was sent.
    for (track, rows) in &by_track {
        let mut rows = rows.clone();
        rows.sort_by(|x, y| x.started.cmp(&y.started));
        for pair in rows.windows(2) {
            if pair[0].outcome == "abandoned" {
                assert!(
                    pair[1].started >= kill_sent,
                    "{track:?} ran beside the killed run: {pair:?}"
                );
            } else {
                let end = pair[0].finished.clone().unwrap();
                assert!(pair[1].started >= end, "{track:?} overlapped: {pair:?}");
            }
        }
    }
    // Work was shared: more than one worker ran pipelines.
    let mut by_pid: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &all {
        *by_pid.entry(r.pid).or_default() += 1;
    }
    assert!(by_pid.len() >= 2, "{by_pid:?}");

    // Every order once, as a sync into SQLite stores it.
    assert_ok(&a.run(&["sync"]));
    a.assert_equals_truth(None);
    let mut sqlite = store::open_connection(&a.db_path()).unwrap();
    let sql =
        "SELECT source, order_id, status_raw, pay_amount, refund_amount, commission, updated_at \
               FROM orders ORDER BY source, order_id";
    assert_eq!(sqlite.query(sql, &[]).unwrap(), db.query(sql, &[]).unwrap());
    println!(
        "3 workers, 10 pipelines: {} runs ({by_pid:?} by pid), {} abandoned by the killed worker",
        all.len(),
        abandoned.len()
    );
}

/// `status` names the worker running a pipeline: while a sync runs, its host and pid; once the
/// process is killed, nobody (its lock went with its connection, or its pid with it). The same on
/// both engines.
fn status_names_the_worker(on_postgres: Option<&str>) {
    let a = AllSources::start(0x57a, Worlds::mostly_ve(200), &slow(400, 9));
    a.write_config("5s", 3);
    let with_db = |args: &[&str]| match on_postgres {
        Some(url) => a.command_on(url, args),
        None => a.command(args),
    };
    let status = || -> serde_json::Value {
        let out = with_db(&["status", "--json"]).output().unwrap();
        assert_ok(&out);
        let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        all.as_array()
            .unwrap()
            .iter()
            .find(|p| p["pipeline"] == VE)
            .unwrap()
            .clone()
    };
    assert_eq!(status()["running"], serde_json::json!([]));
    let mut reaper = Reaper(
        with_db(&["sync", VE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let sync = &mut reaper.0;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let worker = format!("{} pid {}", host.trim(), sync.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    let running = loop {
        let now = status();
        if now["running"].as_array().is_some_and(|r| !r.is_empty()) {
            break now["running"].clone();
        }
        assert!(Instant::now() < deadline, "the sync began within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(running.as_array().unwrap().len(), 1, "{running}");
    assert_eq!(running[0]["worker"], worker.as_str(), "{running}");
    assert_eq!(running[0]["scope"], "live");
    assert_eq!(running[0]["command"], "sync");
    let text = String::from_utf8(with_db(&["status"]).output().unwrap().stdout).unwrap();
    assert!(
        text.contains("  running:    sync live since ") && text.contains(&worker),
        "{text}"
    );

    // Killed, it holds nothing: at once on SQLite (its pid is gone), as soon as the server has
    // seen its connection close on PostgreSQL.
    sync.kill().unwrap();
    sync.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while status()["running"] != serde_json::json!([]) {
        assert!(
            Instant::now() < deadline,
            "a killed worker still holds its pipeline"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn status_names_the_worker_running_a_pipeline_on_sqlite() {
    status_names_the_worker(None);
}

#[test]
fn status_names_the_worker_running_a_pipeline_on_postgres() {
    let Some(pg) = pg_database() else { return };
    status_names_the_worker(Some(&pg.url()));
}

/// A worker whose host vanishes mid-run — its process frozen and every packet between it and the
/// server dropped: no FIN, no RST, nobody answering keepalives — loses its pipeline within
/// `DEAD_PEER`: the server gives up on the connection, the run's lock goes with it, `status` shows
/// nobody running the pipeline, and the next worker runs it to the end.
#[test]
fn a_vanished_hosts_pipeline_is_free_within_dead_peer() {
    let Some(pg) = pg_database() else { return };
    let a = AllSources::start(0xdead, Worlds::mostly_ve(200), &slow(300, 5));
    a.write_config("5s", 3);
    let url = pg.url();
    let into_pg = |args: &[&str]| a.command_on(&url, args);
    let mut reaper = Reaper(
        into_pg(&["sync", VE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let doomed = &mut reaper.0;
    let target = pg_target(&url);
    let mut watcher = PgDb::connect_for_reading(&target).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let name = format!("ordersync {} pid {}", host.trim(), doomed.id());
    // The doomed worker's connection that holds its run's lock: its server process and port.
    fn holder(db: &mut dyn Db, name: &str) -> Option<(i64, i64)> {
        let rows = db
            .query(
                "SELECT a.pid, a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = ?1",
                &[Param::Text(name)],
            )
            .unwrap();
        rows.first().map(|r| (r.get(0).unwrap(), r.get(1).unwrap()))
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let (backend, port) = loop {
        // Its run begun: the lock is taken first, in the transaction that records the run.
        // (Before its schema exists, `runs` is not there to read.)
        let begun = watcher
            .query(
                "SELECT 1 FROM runs WHERE outcome = 'running' AND pid = ?1",
                &[Param::Int(i64::from(doomed.id()))],
            )
            .is_ok_and(|rows| !rows.is_empty());
        if let Some(held) = holder(&mut watcher, &name).filter(|_| begun) {
            break held;
        }
        assert!(
            Instant::now() < deadline,
            "the doomed sync began within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    // The host vanishes.
    // SAFETY: a signal to our own child, whose pid we hold until it is reaped below.
    unsafe { libc::kill(doomed.id() as i32, libc::SIGSTOP) };
    let Some(hole) = Blackhole::between(u16::try_from(port).unwrap(), pg.port) else {
        doomed.kill().unwrap();
        doomed.wait().unwrap();
        return;
    };
    let vanished = Instant::now();
    let limit = DEAD_PEER + Duration::from_secs(10);
    let gone = "SELECT 1 FROM pg_stat_activity WHERE pid = ?1";
    while !watcher
        .query(gone, &[Param::Int(backend)])
        .unwrap()
        .is_empty()
    {
        assert!(
            vanished.elapsed() < limit,
            "the vanished worker's connection still held after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let freed_after = vanished.elapsed();
    assert!(holder(&mut watcher, &name).is_none());
    let status = into_pg(&["status", "--json"]).output().unwrap();
    assert_ok(&status);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let ve = status
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pipeline"] == VE)
        .unwrap();
    assert_eq!(ve["running"], serde_json::json!([]), "{ve}");

    // Another worker takes the pipeline over and runs it to the end.
    assert_ok(&into_pg(&["sync", VE]).output().unwrap());
    drop(hole);
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let mut db = PgDb::connect(&target).unwrap();
    let ve_runs: Vec<RunRow> = runs(&mut db)
        .into_iter()
        .filter(|r| r.pipeline == VE)
        .collect();
    assert_eq!(ve_runs.len(), 2, "{ve_runs:?}");
    assert_eq!(ve_runs[0].outcome, "abandoned");
    assert_eq!(ve_runs[1].outcome, "ok");
    assert_ok(&a.run(&["sync", VE]));
    let mut sqlite = store::open_connection(&a.db_path()).unwrap();
    let sql = "SELECT order_id, status_raw, pay_amount, commission, updated_at FROM orders \
               WHERE source = 'veapi' ORDER BY order_id";
    let want = sqlite.query(sql, &[]).unwrap();
    assert_eq!(want.len(), a.ve.truth().len());
    assert_eq!(db.query(sql, &[]).unwrap(), want);
    println!(
        "a vanished worker's run lock was freed after {freed_after:?} (DEAD_PEER {DEAD_PEER:?})"
    );
}
