//! The measured child: the real `ordersync` binary run to its end and reaped with `wait4`, for its
//! own wall time, CPU (user + sys) and peak RSS (`VmHWM`, polled from `/proc`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BUILT: &str = env!("CARGO_BIN_EXE_ordersync");

/// The binary measured: the one cargo built, or `ORDERSYNC_BENCH_BIN` — another build of it, so
/// that two versions can be measured turn about in one sitting (this machine's figures drift by a
/// quarter between sittings, more than most single changes are worth).
pub fn bin() -> String {
    std::env::var("ORDERSYNC_BENCH_BIN").unwrap_or_else(|_| BUILT.to_string())
}

/// Figures of one child process.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub wall: Duration,
    pub cpu: Duration,
    pub max_rss_kb: i64,
}

/// Runs `cmd` to the end, reaping it with `wait4` to read its own rusage; it must succeed.
pub fn measure(cmd: Command) -> Measured {
    let ran = run_measured(cmd);
    assert!(ran.ok, "ordersync failed:\n{}", ran.stderr);
    ran.measured
}

/// Figures of one child process, whether it succeeded, and what it said on stderr.
pub struct Ran {
    pub measured: Measured,
    pub ok: bool,
    pub stderr: String,
}

/// Runs `cmd` to the end, reaping it with `wait4` to read its own rusage.
#[allow(clippy::zombie_processes)] // reaped by wait4, which `Child::wait` cannot replace here
pub fn run_measured(mut cmd: Command) -> Ran {
    let started = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ordersync starts");
    let pid = child.id() as libc::pid_t;
    // Drain stderr on a thread so a chatty child never blocks on a full pipe.
    let hwm = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let poller = {
        let hwm = hwm.clone();
        std::thread::spawn(move || {
            // VmHWM only grows: the last reading before the process ends is its peak (to 5 ms).
            while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                let kb = status
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok());
                match kb {
                    Some(kb) => hwm.fetch_max(kb, std::sync::atomic::Ordering::Relaxed),
                    None => break, // a zombie has no memory left to read
                };
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut stderr = child.stderr.expect("piped stderr");
    let drain = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain data that wait4 fills; `pid` is our own unreaped child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    let stderr = drain.join().unwrap_or_default();
    let _ = poller.join();
    assert_eq!(reaped, pid, "wait4 failed");
    let exited_ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ran {
        measured: Measured {
            wall,
            cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
            max_rss_kb: hwm.load(std::sync::atomic::Ordering::Relaxed) as i64,
        },
        ok: exited_ok,
        stderr: format!("(status {status})\n{stderr}"),
    }
}

pub fn sync_command(config: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--config").arg(config).arg("sync");
    cmd.env("RUST_LOG", "warn").env_remove("ORDERSYNC_CONFIG");
    cmd
}
