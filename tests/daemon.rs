//! The daemon: `ordersync run` on a seconds-level schedule against the simulator, metrics that
//! match the `runs` table, a failing pipeline that never stops the others, and SIGTERM → exit 0.

use ordersync_sim::Simulator;
use std::io::Read;
use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use ordersync_sim::Faults;

use crate::common::*;

#[test]
fn run_syncs_on_schedule_serves_metrics_survives_a_failing_pipeline_and_stops_on_sigterm() {
    let h = Harness::veapi(800, 60, Faults::default());
    let port = free_port();
    let start = (h.now - Duration::days(61)).format("%Y-%m-%d");
    let config = format!(
        r#"[database]
path = "{db}"
[daemon]
listen = "127.0.0.1:{port}"
[defaults]
settle_lag = "1s"
retry_initial = "5ms"
max_retries = 1
schedule = "*/2 * * * * *"
start = "{start}"
[[pipeline]]
name = "ve"
source = "veapi"
endpoint = "{endpoint}"
[pipeline.auth]
vekey = {{ env = "TEST_VEKEY" }}
[[pipeline]]
name = "broken"
source = "veapi"
endpoint = "{endpoint}"
[pipeline.auth]
vekey = "not-the-key"
"#,
        db = h.db_path().display(),
        endpoint = h.sim.endpoint(),
    );
    std::fs::write(h.config_path(), config).unwrap();
    // A real notify socket, as systemd gives a Type=notify unit, with a 0.4 s watchdog.
    let notify_path = h.dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(StdDuration::from_millis(200)))
        .unwrap();
    let child = h
        .command(&["run"])
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reaper = Reaper(child);
    let child = &mut reaper.0;
    // Drain stderr as it comes, so a full pipe can never stall the daemon's logging.
    let mut child_stderr = child.stderr.take().unwrap();
    let log_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = child_stderr.read_to_string(&mut text);
        text
    });
    let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let collected = messages.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match notify.recv(&mut buf) {
                Ok(n) => collected
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).to_string()),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
        }
    });

    let deadline = Instant::now() + StdDuration::from_secs(60);
    while runs_with(&h, "ve", "ok") < 2 || runs_with(&h, "broken", "failed") < 2 {
        assert!(
            Instant::now() < deadline,
            "pipelines did not run twice on schedule"
        );
        assert!(child.try_wait().unwrap().is_none(), "daemon exited early");
        std::thread::sleep(StdDuration::from_millis(100));
    }
    let (status, health) = http_get(port, "/healthz").expect("healthz answers");
    assert_eq!((status, health.trim()), (200, "ok"));

    // Counters agree with the runs table (read before and after the scrape: runs may finish between).
    let before = runs_with(&h, "ve", "ok");
    let (status, body) = http_get(port, "/metrics").expect("metrics answers");
    let after = runs_with(&h, "ve", "ok");
    assert_eq!(status, 200);
    let all = parse_metrics(&body);
    let ok_runs = metric(
        &all,
        "ordersync_runs_total",
        &[("pipeline", "ve"), ("outcome", "ok")],
    )
    .unwrap() as i64;
    assert!(
        before <= ok_runs && ok_runs <= after,
        "{before} <= {ok_runs} <= {after}"
    );
    assert!(
        metric(
            &all,
            "ordersync_runs_total",
            &[("pipeline", "broken"), ("outcome", "failed")]
        )
        .unwrap()
            >= 2.0
    );
    assert!(
        metric(
            &all,
            "ordersync_upstream_errors_total",
            &[("pipeline", "broken"), ("code", "10001")]
        )
        .unwrap()
            >= 2.0
    );
    assert!(
        metric(
            &all,
            "ordersync_watermark_lag_seconds",
            &[("pipeline", "ve")]
        )
        .unwrap()
            < 60.0
    );
    assert!(metric(&all, "ordersync_requests_total", &[("pipeline", "ve")]).unwrap() >= 2.0);

    // systemd heard READY=1, a one-line STATUS= after runs, and watchdog pings.
    let deadline = Instant::now() + StdDuration::from_secs(10);
    loop {
        let got = messages.lock().unwrap().clone();
        let ready = got.iter().any(|m| m.lines().any(|l| l == "READY=1"));
        let status = got
            .iter()
            .any(|m| m.starts_with("STATUS=ve ok:") && m.trim_end().lines().count() == 1);
        let watchdog = got.iter().any(|m| m.lines().any(|l| l == "WATCHDOG=1"));
        if ready && status && watchdog {
            break;
        }
        assert!(Instant::now() < deadline, "notify messages: {got:?}");
        std::thread::sleep(StdDuration::from_millis(50));
    }

    sigterm(child);
    let code = wait_exit(child, StdDuration::from_secs(25));
    let stderr = log_reader.join().unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !stderr.contains(VEKEY) && !stderr.contains("not-the-key"),
        "a secret reached the log"
    );
    let running: i64 = scalar(
        &h.db(),
        "SELECT COUNT(*) FROM runs WHERE outcome = 'running'",
    );
    assert_eq!(running, 0, "a run was left running");
    assert_orders_equal_truth(&h);
    // The only refused requests are the broken pipeline's wrong key.
    let violations = h.sim.violations();
    assert!(
        violations.iter().all(|v| v.contains("vekey")),
        "{violations:?}"
    );
}
