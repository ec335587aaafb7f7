//! The daemon as a child process: `ordersync run` started with its stderr collected, waited for
//! until `/healthz` answers, asked for `/metrics` until a condition holds, and stopped by SIGTERM.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{http_get, sigterm, wait_exit, Harness, Reaper};

/// A running `ordersync run` whose stderr is collected as it comes (a full pipe would stall it).
pub struct Daemon {
    pub reaper: Reaper,
    log: JoinHandle<String>,
    pub port: u16,
}

impl Daemon {
    /// Starts the daemon, with its open-file limit lowered to `fd_limit` when given, and waits
    /// until `/healthz` answers.
    pub fn start(h: &Harness, port: u16, fd_limit: Option<u64>) -> Daemon {
        let mut cmd = h.command(&["run"]);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        if let Some(limit) = fd_limit {
            // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
            unsafe {
                cmd.pre_exec(move || {
                    let rl = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = cmd.spawn().expect("daemon starts");
        let mut stderr = child.stderr.take().expect("stderr piped");
        let log = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let mut d = Daemon {
            reaper: Reaper(child),
            log,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(port, "/healthz").is_none() {
            assert!(
                d.reaper.0.try_wait().expect("try_wait").is_none(),
                "daemon exited early"
            );
            assert!(Instant::now() < deadline, "/healthz never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// SIGTERM; the exit code and everything the daemon logged.
    pub fn stop(mut self) -> (Option<i32>, String) {
        sigterm(&self.reaper.0);
        let code = wait_exit(&mut self.reaper.0, Duration::from_secs(25));
        let log = self.log.join().expect("log reader");
        (code, log)
    }

    /// `/metrics` once `done` accepts it; panics after 20 s with the last body.
    pub fn metrics_when(&mut self, mut done: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(
                self.reaper.0.try_wait().expect("try_wait").is_none(),
                "daemon exited early"
            );
            let body = match http_get(self.port, "/metrics") {
                Some((200, body)) => body,
                other => panic!("/metrics answered {other:?}"),
            };
            if done(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "gave up waiting; last:\n{body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
