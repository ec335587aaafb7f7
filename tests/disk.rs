//! A full or read-only disk: a sync that cannot write fails in one sentence naming the pipeline and
//! the database, without a panic, and the next sync once the condition is gone completes exactly.
//! (The ENOSPC test needs root to mount a tmpfs and skips itself otherwise; the file-size-limit
//! and read-only tests need no privileges.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::Duration;
use ordersync_sim::{beijing_now, Faults};

use crate::common::*;

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
