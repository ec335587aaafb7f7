//! The daemon's `/metrics` server against clients that misbehave (idle connections by the hundred,
//! half-sent requests, under a low file-descriptor limit), and the exposition it serves, read by the
//! strict rules of the Prometheus text format with upstream error codes it must not repeat verbatim.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ordersync_sim::Faults;

use crate::common::*;

/// The daemon's open-file limit in the idle-connection test, and how many idle connections that
/// test holds: more than the limit, so a server that keeps every connection it accepts runs out of
/// descriptors whatever else the daemon has open.
const FD_LIMIT: u64 = 256;
const IDLE_CONNECTIONS: usize = 300;
/// The documented cap on the metrics server's open connections.
const MAX_CONNECTIONS: usize = 64;

/// `ordersync run` on a one-second schedule, serving on `port`; `pipelines` are `(name, auth
/// value)` pairs against the harness's simulator.
fn write_daemon_config(h: &Harness, port: u16, pipelines: &[(&str, &str)]) {
    let start = (h.now - chrono::Duration::days(h.days + 1)).format("%Y-%m-%d");
    let mut text = format!(
        r#"[database]
path = "{db}"
[daemon]
listen = "127.0.0.1:{port}"
[defaults]
settle_lag = "1s"
retry_initial = "5ms"
max_retries = 2
timeout = "2s"
schedule = "* * * * * *"
start = "{start}"
"#,
        db = h.db_path().display(),
    );
    for (name, vekey) in pipelines {
        text.push_str(&format!(
            "[[pipeline]]\nname = \"{name}\"\nsource = \"veapi\"\nendpoint = \"{}\"\n[pipeline.auth]\nvekey = {vekey}\n",
            h.sim.endpoint()
        ));
    }
    std::fs::write(h.config_path(), text).expect("write config");
}

const GOOD_KEY: &str = "{ env = \"TEST_VEKEY\" }";

#[test]
fn healthz_and_syncs_go_on_while_idle_connections_outnumber_the_fd_limit() {
    let h = Harness::veapi(200, 10, Faults::default());
    let port = free_port();
    write_daemon_config(&h, port, &[("ve", GOOD_KEY)]);
    let mut d = Daemon::start(&h, port, Some(FD_LIMIT));
    let deadline = Instant::now() + Duration::from_secs(20);
    while runs_with(&h, "ve", "ok") < 1 {
        assert!(Instant::now() < deadline, "no ok run before the test began");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Clients that connect and send nothing, or half a request line, and never go away.
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for i in 0..IDLE_CONNECTIONS {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        if i % 2 == 1 {
            s.write_all(b"GET /hea").expect("half a request line");
        }
        idle.push(s);
    }
    let ok_before = runs_with(&h, "ve", "ok");

    // A new client is served while they hold on (retried: connections queued before it go first).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match http_get(port, "/healthz") {
            Some((200, body)) if body.trim() == "ok" => break,
            other => assert!(
                Instant::now() < deadline,
                "/healthz did not answer while {IDLE_CONNECTIONS} connections were held: {other:?}"
            ),
        }
    }
    let (status, body) = http_get(port, "/metrics").expect("/metrics answers");
    assert_eq!(status, 200, "{body}");
    assert!(
        metric(
            &parse_metrics(&body),
            "ordersync_runs_total",
            &[("pipeline", "ve"), ("outcome", "ok")]
        )
        .is_some_and(|n| n >= 1.0),
        "{body}"
    );

    // The daemon keeps syncing: two more runs, so at least one began after the connections came.
    let deadline = Instant::now() + Duration::from_secs(20);
    while runs_with(&h, "ve", "ok") < ok_before + 2 {
        assert!(
            d.reaper.0.try_wait().expect("try_wait").is_none(),
            "daemon exited early"
        );
        assert!(
            Instant::now() < deadline,
            "no new ok runs while the connections were held"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The server holds no more than its cap: the rest of the idle clients were closed by it.
    let still_open = idle
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).expect("nonblocking");
            let mut s: &TcpStream = s;
            let mut byte = [0u8; 1];
            matches!(s.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    assert!(
        still_open <= MAX_CONNECTIONS,
        "{still_open} idle connections still open, cap {MAX_CONNECTIONS}"
    );

    drop(idle);
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_half_sent_request_is_closed_by_the_server() {
    let h = Harness::veapi(50, 10, Faults::default());
    let port = free_port();
    write_daemon_config(&h, port, &[("ve", GOOD_KEY)]);
    let d = Daemon::start(&h, port, None);

    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: loc")
        .expect("half a request");
    // Far longer than the server's header-read timeout: only a server that never times out waits.
    s.set_read_timeout(Some(Duration::from_secs(25)))
        .expect("read timeout");
    let mut buf = [0u8; 256];
    // A signal to this test process (another test's child exiting) interrupts the read: read again.
    let answer = loop {
        match s.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    match answer {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the server kept a half-sent request open: {other:?}"),
    }

    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn each_metric_family_has_its_type_line_right_above_its_own_samples() {
    let h = Harness::veapi(50, 10, Faults::default());
    let port = free_port();
    // A pipeline with a wrong key: its failed attempts are upstream error samples.
    write_daemon_config(&h, port, &[("ve", GOOD_KEY), ("broken", "\"not-the-key\"")]);
    let mut d = Daemon::start(&h, port, None);
    let body = d.metrics_when(|b| {
        b.lines()
            .any(|l| l.starts_with("ordersync_upstream_errors_total{"))
    });
    // parse_metrics panics on a sample under another family's TYPE line.
    let all = parse_metrics(&body);
    assert!(
        metric(
            &all,
            "ordersync_upstream_errors_total",
            &[("pipeline", "broken"), ("code", "10001")]
        )
        .is_some_and(|n| n >= 1.0),
        "{body}"
    );
    for family in [
        "ordersync_runs_total",
        "ordersync_rows_seen_total",
        "ordersync_rows_changed_total",
        "ordersync_requests_total",
        "ordersync_watermark_lag_seconds",
        "ordersync_upstream_errors_total",
        "ordersync_skipped_ticks_total",
        "ordersync_consecutive_failed_runs",
        "ordersync_last_success_timestamp_seconds",
        "ordersync_schedule_interval_seconds",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "no TYPE line for {family}:\n{body}"
        );
    }
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn the_alert_gauges_show_the_failed_streak_the_last_success_and_the_schedule() {
    let h = Harness::veapi(50, 10, Faults::default());
    let port = free_port();
    write_daemon_config(&h, port, &[("ve", GOOD_KEY), ("broken", "\"not-the-key\"")]);
    let mut d = Daemon::start(&h, port, None);
    let first = parse_metrics(&d.metrics_when(|_| true));
    // Skipped ticks are counted from 0, before any tick is skipped: a series that first appears
    // at 1 would be invisible to an alert's increase().
    for p in ["ve", "broken"] {
        assert!(
            metric(&first, "ordersync_skipped_ticks_total", &[("pipeline", p)]).is_some(),
            "{p}: {first:?}"
        );
    }
    let body = d.metrics_when(|b| {
        let all = parse_metrics(b);
        metric(
            &all,
            "ordersync_consecutive_failed_runs",
            &[("pipeline", "broken")],
        )
        .is_some_and(|n| n >= 2.0)
            && metric(
                &all,
                "ordersync_last_success_timestamp_seconds",
                &[("pipeline", "ve")],
            )
            .is_some()
    });
    let all = parse_metrics(&body);
    assert_eq!(
        metric(
            &all,
            "ordersync_consecutive_failed_runs",
            &[("pipeline", "ve")]
        ),
        Some(0.0),
        "{body}"
    );
    // The broken pipeline never succeeded: a streak, and no last success to show.
    assert!(
        metric(
            &all,
            "ordersync_last_success_timestamp_seconds",
            &[("pipeline", "broken")]
        )
        .is_none(),
        "{body}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let last = metric(
        &all,
        "ordersync_last_success_timestamp_seconds",
        &[("pipeline", "ve")],
    )
    .expect("ve succeeded");
    // A Unix timestamp (not Beijing wall-clock read as UTC, which is 8 h ahead) of a run that
    // finished within the test.
    assert!(
        now - 30.0 < last && last <= now + 1.0,
        "last {last}, now {now}"
    );
    // The schedule is every second.
    for p in ["ve", "broken"] {
        assert_eq!(
            metric(
                &all,
                "ordersync_schedule_interval_seconds",
                &[("pipeline", p)]
            ),
            Some(1.0),
            "{body}"
        );
    }
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// The `code` label values a veapi pipeline may carry, written out from the documented set.
const VEAPI_CODE_LABELS: &[&str] = &[
    "0",
    "10001",
    "10002",
    "10009",
    "HTTP 429",
    "HTTP 5xx",
    "HTTP 4xx",
    "timeout",
    "connect",
    "body",
    "network",
    "malformed",
    "drift",
    "cursor",
    "config",
    "body_too_large",
    "redirect",
    "other",
];

#[test]
fn an_upstream_code_outside_the_known_set_is_counted_as_other() {
    // Some 5xx answers (counted as `HTTP 5xx`, never per status), then a fatal code veapi never
    // documented, carrying text a label must not repeat.
    let faults = Faults {
        p_5xx: 0.3,
        seed: 7,
        ..Faults::default()
    };
    let h = Harness::veapi(50, 10, faults);
    const ODD_CODE: &str = "echo-SeCrEt-7f3a";
    h.sim.set_forced_code(Some((
        ODD_CODE.into(),
        "upstream said something new".into(),
    )));
    let port = free_port();
    write_daemon_config(&h, port, &[("ve", GOOD_KEY)]);
    let mut d = Daemon::start(&h, port, None);

    let body = d.metrics_when(|b| {
        assert!(
            !b.contains(ODD_CODE),
            "the upstream code became a label:\n{b}"
        );
        let all = parse_metrics(b);
        let count = |code| {
            metric(
                &all,
                "ordersync_upstream_errors_total",
                &[("pipeline", "ve"), ("code", code)],
            )
        };
        count("other").is_some() && count("HTTP 5xx").is_some()
    });
    for (name, labels, _) in parse_metrics(&body) {
        if name != "ordersync_upstream_errors_total" {
            continue;
        }
        let code = labels
            .iter()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        assert!(
            VEAPI_CODE_LABELS.contains(&code),
            "code label {code:?} is outside veapi's closed set"
        );
    }
    // The label is closed; the run's error still names what upstream said.
    let errors: Vec<String> = {
        let conn = h.db();
        let mut stmt = conn
            .prepare("SELECT error FROM runs WHERE pipeline = 've' AND outcome = 'failed'")
            .expect("prepare");
        stmt.query_map([], |r| r.get::<_, String>(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert!(
        errors.iter().any(|e| e.contains(ODD_CODE)),
        "the failed run does not name the upstream code: {errors:?}"
    );
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
}
