//! The files ordersync leaves on disk (issue 13): the database, its `-wal` and `-shm` are owner-only
//! whatever the umask; after a command that wrote exits, the `.db` file alone holds every committed
//! row; `backup PATH` copies a consistent snapshot while a sync writes; a `{ file = … }` secret is
//! read up to a limit; a database path that cannot be opened is one sentence naming it once.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use ordersync_sim::Faults;
use rusqlite::Connection;

use crate::common::*;

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `cmd` runs with this umask (set in the child between fork and exec).
fn with_umask(mut cmd: Command, mask: u32) -> Command {
    // SAFETY: umask is async-signal-safe and touches nothing but the child's own file mode mask.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(mask as libc::mode_t);
            Ok(())
        });
    }
    cmd
}

/// Kills the child if the test ends early (a failed assertion must not leave it running).
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        assert!(Instant::now() < deadline, "ordersync did not exit in time");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every page is this slow, so a sync of a few thousand orders takes seconds.
fn slow_pages(ms: u64) -> Faults {
    Faults {
        p_slow: 1.0,
        slow_ms: ms,
        ..Faults::default()
    }
}

fn assert_one_sentence_naming(out: &Output, code: i32, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
    assert_no_panic(out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.trim().lines().collect();
    assert_eq!(lines.len(), 1, "one sentence: {stderr}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` missing: {stderr}");
    }
}

// ---- 1. modes -----------------------------------------------------------------------------------

#[test]
fn database_wal_and_shm_are_0600_whatever_the_umask() {
    for umask in [0o022, 0o000] {
        let h = Harness::veapi(1500, 20, slow_pages(15));
        let child = with_umask(h.command(&["sync"]), umask)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let mut reaper = Reaper(child);
        let db = h.db_path();
        let (wal, shm) = (sibling(&db, "-wal"), sibling(&db, "-shm"));
        // While the sync writes, all three files exist: look at them then.
        wait_for("the -wal and -shm files", Duration::from_secs(20), || {
            wal.exists() && shm.exists()
        });
        for f in [&db, &wal, &shm] {
            assert_eq!(mode(f), 0o600, "{} under umask {umask:03o}", f.display());
        }
        assert_eq!(wait_exit(&mut reaper.0, Duration::from_secs(60)), Some(0));
        assert_eq!(mode(&db), 0o600, "umask {umask:03o}");
    }
}

#[test]
fn an_existing_database_readable_by_others_is_tightened_to_0600_with_a_warning() {
    let h = Harness::veapi(20, 5, Faults::default());
    assert_ok(&h.run(&["sync"]));
    let db = h.db_path();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = h.run(&["status"]);
    assert_ok(&out);
    assert_eq!(mode(&db), 0o600);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("0644") && stderr.contains(&db.display().to_string()),
        "the operator is told what changed: {stderr}"
    );
}

// ---- 2. checkpoint at exit ---------------------------------------------------------------------

/// Copies the `.db` file alone (what operators do) and checks the copy holds every order.
fn assert_db_file_alone_is_complete(h: &Harness) {
    let copy_dir = tempfile::tempdir().expect("temp dir");
    let copy = copy_dir.path().join("copy.db");
    std::fs::copy(h.db_path(), &copy).expect("copy the .db file");
    let conn = Connection::open(&copy).expect("open the copy");
    let integrity: String = scalar(&conn, "PRAGMA integrity_check");
    assert_eq!(integrity, "ok");
    let mut truth: Vec<String> = h.sim.truth().into_iter().map(|o| o.order_id).collect();
    truth.sort();
    let stored: Vec<String> = conn
        .prepare("SELECT order_id FROM orders WHERE source = 'veapi' ORDER BY order_id")
        .and_then(|mut s| {
            s.query_map([], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()
        })
        .expect("read orders from the copy");
    assert_eq!(stored.len(), truth.len(), "orders in the copied .db file");
    assert_eq!(stored, truth);
    let lines: i64 = scalar(&conn, "SELECT COUNT(*) FROM sub_orders");
    assert_eq!(lines, truth.len() as i64, "lines in the copied .db file");
}

#[test]
fn after_sync_exits_the_db_file_alone_holds_every_order() {
    let h = Harness::veapi(1200, 20, Faults::default());
    assert_ok(&h.run(&["sync"]));
    assert_db_file_alone_is_complete(&h);
}

#[test]
fn after_backfill_exits_the_db_file_alone_holds_every_order() {
    let h = Harness::veapi(1200, 20, Faults::default());
    let from = (h.now - chrono::Duration::days(21))
        .format("%Y-%m-%d")
        .to_string();
    assert_ok(&h.run(&["backfill", "ve", "--from", &from]));
    assert_db_file_alone_is_complete(&h);
}

#[test]
fn after_run_stops_on_sigterm_the_db_file_alone_holds_every_order() {
    for signal in ["-TERM", "-INT"] {
        let h = Harness::veapi(1200, 20, Faults::default());
        h.write_config("schedule = \"* * * * * *\"");
        let child = h
            .command(&["run"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let mut reaper = Reaper(child);
        let db = h.db_path();
        wait_for("a finished run", Duration::from_secs(60), || {
            Connection::open(&db)
                .and_then(|c| {
                    c.query_row("SELECT COUNT(*) FROM runs WHERE outcome = 'ok'", [], |r| {
                        r.get::<_, i64>(0)
                    })
                })
                .is_ok_and(|n| n > 0)
        });
        let sent = Command::new("kill")
            .args([signal, &reaper.0.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        assert_eq!(
            wait_exit(&mut reaper.0, Duration::from_secs(30)),
            Some(0),
            "{signal}"
        );
        assert_db_file_alone_is_complete(&h);
    }
}

// ---- 3. backup ---------------------------------------------------------------------------------

fn runs_rows_seen(db: &Path) -> i64 {
    Connection::open(db)
        .and_then(|c| {
            c.query_row("SELECT COALESCE(SUM(rows_seen), 0) FROM runs", [], |r| {
                r.get(0)
            })
        })
        .unwrap_or(0)
}

/// A backup taken while a backfill writes is a snapshot between two page commits: it passes
/// SQLite's integrity check, is owner-only, and its orders are exactly those its runs counted —
/// a copy torn between pages would hold rows its counters do not (or the reverse).
#[test]
fn backup_while_a_backfill_writes_is_a_consistent_private_copy() {
    let h = Harness::veapi(4000, 20, slow_pages(40));
    let from = (h.now - chrono::Duration::days(21))
        .format("%Y-%m-%d")
        .to_string();
    let child = h
        .command(&["backfill", "ve", "--from", &from])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut reaper = Reaper(child);
    let db = h.db_path();
    wait_for("some committed pages", Duration::from_secs(30), || {
        runs_rows_seen(&db) >= 300
    });
    let backups = tempfile::tempdir().expect("temp dir");
    let backup = backups.path().join("orders-backup.db");
    // An old file at PATH is replaced; backups run without the pipelines' secrets.
    std::fs::write(&backup, b"yesterday's backup").expect("old backup");
    std::fs::set_permissions(&backup, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    for round in 0..2 {
        let mut cmd = with_umask(h.command(&["backup", backup.to_str().unwrap()]), 0o022);
        cmd.env_remove("TEST_VEKEY");
        let out = cmd.output().expect("backup runs");
        assert_ok(&out);
        assert_eq!(
            reaper.0.try_wait().expect("wait"),
            None,
            "round {round}: the backfill was still writing when the backup finished"
        );
        assert_eq!(mode(&backup), 0o600, "round {round}");
        let conn = Connection::open(&backup).expect("open the backup");
        let integrity: String = scalar(&conn, "PRAGMA integrity_check");
        assert_eq!(integrity, "ok", "round {round}");
        let orders: i64 = scalar(&conn, "SELECT COUNT(*) FROM orders");
        let counted: i64 = scalar(&conn, "SELECT COALESCE(SUM(rows_changed), 0) FROM runs");
        let lines: i64 = scalar(&conn, "SELECT COUNT(*) FROM sub_orders");
        assert!(
            orders > 0 && orders < 4000,
            "round {round}: {orders} orders"
        );
        assert_eq!(
            orders, counted,
            "round {round}: orders against run counters"
        );
        assert_eq!(lines, orders, "round {round}: each order with its line");
        drop(conn);
        std::thread::sleep(Duration::from_millis(200));
    }
    let leftovers: Vec<String> = std::fs::read_dir(backups.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        leftovers,
        vec!["orders-backup.db".to_string()],
        "no temp files left"
    );
    let status = h.run(&["--db", backup.to_str().unwrap(), "status", "--json"]);
    assert_ok(&status);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json");
    assert_eq!(v[0]["pipeline"], "ve");
    assert!(
        v[0]["tracks"].as_array().is_some_and(|t| !t.is_empty()),
        "{v}"
    );
    assert_eq!(wait_exit(&mut reaper.0, Duration::from_secs(120)), Some(0));
}

#[test]
fn backup_failures_are_one_sentence_naming_the_path() {
    let h = Harness::veapi(20, 5, Faults::default());
    assert_ok(&h.run(&["sync"]));
    let nowhere = h.dir.path().join("no-such-dir").join("b.db");
    let out = h.run(&["backup", nowhere.to_str().unwrap()]);
    assert_one_sentence_naming(&out, 1, &[nowhere.to_str().unwrap()]);
    // The database itself is never a backup target: renaming over it would lose it.
    let db = h.db_path();
    let out = h.run(&["backup", db.to_str().unwrap()]);
    assert_one_sentence_naming(&out, 1, &[db.to_str().unwrap()]);
    let wal = sibling(&db, "-wal");
    let out = h.run(&["backup", wal.to_str().unwrap()]);
    assert_one_sentence_naming(&out, 1, &[wal.to_str().unwrap()]);
    let orders: i64 = scalar(&h.db(), "SELECT COUNT(*) FROM orders");
    assert_eq!(orders, 20, "the database is intact");
    // No database to copy: said so, and none is created.
    let missing = h.dir.path().join("missing.db");
    let out = h.run(&[
        "--db",
        missing.to_str().unwrap(),
        "backup",
        h.dir.path().join("b.db").to_str().unwrap(),
    ]);
    assert_one_sentence_naming(&out, 1, &[missing.to_str().unwrap()]);
    assert!(!missing.exists());
}

// ---- 4. secret files ---------------------------------------------------------------------------

/// The harness's config, with the key read from `path`.
fn with_secret_file(h: &Harness, path: &Path) {
    h.write_config("");
    let config = std::fs::read_to_string(h.config_path()).expect("config");
    let config = config.replace(
        "{ env = \"TEST_VEKEY\" }",
        &format!("{{ file = \"{}\" }}", path.display()),
    );
    std::fs::write(h.config_path(), config).expect("config");
}

#[test]
fn a_secret_file_is_read_up_to_64_kib_and_must_be_text() {
    let h = Harness::veapi(10, 5, Faults::default());
    // /dev/zero never ends: under a 2 GB address-space limit, reading it whole would abort.
    with_secret_file(&h, Path::new("/dev/zero"));
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("ulimit -v 2000000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_ordersync"))
        .arg("--config")
        .arg(h.config_path())
        .arg("check")
        .env_remove("ORDERSYNC_CONFIG");
    let out = sh.output().expect("check runs");
    assert_one_sentence_naming(&out, 2, &["`ve`", "auth.vekey", "/dev/zero", "64 KiB"]);

    let big = h.dir.path().join("big-secret");
    std::fs::write(&big, vec![b'k'; 64 * 1024 + 1]).expect("write");
    with_secret_file(&h, &big);
    let out = h.run(&["check"]);
    assert_one_sentence_naming(&out, 2, &["`ve`", "auth.vekey", "64 KiB"]);

    let binary = h.dir.path().join("binary-secret");
    std::fs::write(&binary, [0x6b, 0xff, 0xfe, 0x00, 0x6b]).expect("write");
    with_secret_file(&h, &binary);
    let out = h.run(&["check"]);
    assert_one_sentence_naming(&out, 2, &["`ve`", "auth.vekey", "UTF-8"]);

    // The limit itself is allowed.
    std::fs::write(&big, vec![b'k'; 64 * 1024]).expect("write");
    with_secret_file(&h, &big);
    assert_ok(&h.run(&["check"]));
}

// ---- 5. a path that cannot be opened -----------------------------------------------------------

#[test]
fn an_unopenable_database_path_is_one_sentence_naming_it_once() {
    let h = Harness::veapi(10, 5, Faults::default());
    let file = h.dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("write");
    // A parent that is a file; a directory nobody may create files in (as root too: sysfs); the
    // path of a directory.
    let mut paths = vec![
        file.join("x.db"),
        PathBuf::from("/sys/ordersync-test.db"),
        h.dir.path().to_path_buf(),
    ];
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let locked = h.dir.path().join("locked");
        std::fs::create_dir(&locked).expect("mkdir");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        paths.push(locked.join("x.db"));
    }
    for path in paths {
        let p = path.to_str().unwrap();
        for cmd in ["status", "sync"] {
            let out = h.run(&["--db", p, cmd]);
            assert_one_sentence_naming(&out, 1, &[p, "--db"]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(stderr.matches(p).count(), 1, "the path once: {stderr}");
            assert!(!stderr.contains("Error code"), "{stderr}");
        }
    }
}
