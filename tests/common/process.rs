//! The binary as a child process: its output (exit code, error sentences, no panic, the retries of
//! a JSON log), files it may have written, and a daemon's signals and exit.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn assert_ok(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
}

/// Lines of a failed command's stderr that are its error sentences (`ordersync: …`), as opposed to
/// log lines.
pub fn error_sentences(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.starts_with("ordersync: "))
        .map(str::to_string)
        .collect()
}

/// No panic message, backtrace or Rust debug dump reached the user.
pub fn assert_no_panic(o: &Output) {
    let all = text(o);
    for bad in [
        "panicked",
        "stack backtrace",
        "RUST_BACKTRACE",
        "SqliteFailure",
    ] {
        assert!(!all.contains(bad), "`{bad}` in the output:\n{all}");
    }
}

/// The `retrying` debug lines of a JSON log, as (error text, wait in ms).
pub fn retries(stderr: &[u8]) -> Vec<(String, u64)> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "retrying")
        .map(|v| {
            (
                v["fields"]["error"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                v["fields"]["wait_ms"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

pub fn file_contains(path: &Path, needle: &str) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
        Err(_) => false,
    }
}

/// Kills the daemon if the test ends early (a failed assertion must not leave it running).
pub struct Reaper(pub std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn sigterm(child: &std::process::Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(ok.success());
}

/// The daemon's exit code; kills it and panics if it has not exited `within`.
pub fn wait_exit(child: &mut std::process::Child, within: std::time::Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("daemon did not exit within {within:?} of SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
