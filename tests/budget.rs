//! The request budget end to end: with `max_rps` the simulator never sees more requests in any
//! one second, a storm of HTTP 429s slows a run instead of failing it and holds every request back
//! for its `Retry-After`, and the daemon's `/metrics` shows the budget's in-flight requests and waits.

use std::time::{Duration, Instant};

use ordersync_sim::{Faults, Simulator};

use crate::common::*;

/// A first sync of a 3000-order veapi world in pages of 50: some sixty requests.
fn sixty_requests() -> Harness {
    Harness::veapi(3000, 60, Faults::default())
}

#[test]
fn max_rps_20_keeps_every_one_second_span_to_20_requests() {
    // Unlimited, the same sync sends more than 20 in some second: the limit has work to do.
    let free = sixty_requests();
    assert_ok(&free.run(&["sync"]));
    let unlimited = free.sim.max_requests_in_any_second();
    assert!(
        unlimited > 20,
        "an unlimited sync sent only {unlimited} requests in its busiest second"
    );

    let h = sixty_requests();
    h.write_config("max_rps = 20");
    let started = Instant::now();
    assert_ok(&h.run(&["sync"]));
    let wall = started.elapsed();
    assert_equals_truth(&h);
    let requests = h.sim.requests();
    let busiest = h.sim.max_requests_in_any_second();
    assert!(
        busiest <= 20,
        "{busiest} requests in one second under max_rps = 20"
    );
    let counted: i64 = scalar(&h.db(), "SELECT requests FROM runs");
    assert_eq!(counted as u64, requests);
    // Measured, not asserted (no wall-clock assertions): the bench's `--only budget` is the figure.
    eprintln!(
        "max_rps = 20: {requests} requests, at most {busiest} in one second (unlimited: {unlimited}), \
         wall {:.2} s, requests / 20 = {:.2} s",
        wall.as_secs_f64(),
        requests as f64 / 20.0
    );
}

#[test]
fn a_429_storm_slows_a_run_instead_of_failing_it_and_every_request_waits_out_retry_after() {
    let storm = Faults {
        p_429: 0.5,
        retry_after_secs: 1,
        seed: 16,
        ..Faults::default()
    };
    let h = Harness::veapi(150, 10, storm);
    let out = h.run(&["sync"]);
    assert_ok(&out);
    assert_equals_truth(&h);
    let limited = h.sim.too_many_requests_at();
    assert!(
        limited.len() >= 3,
        "only {} answers were 429: no storm",
        limited.len()
    );
    let conn = h.db();
    let outcome: String = scalar(&conn, "SELECT outcome FROM runs");
    assert_eq!(outcome, "ok");
    let counted: i64 = scalar(&conn, "SELECT requests FROM runs");
    assert_eq!(counted as u64, h.sim.requests(), "every 429 is counted");
    // Backing off together: no request at all arrived while a Retry-After was running.
    let arrivals = h.sim.arrivals();
    for (at, retry_after) in &limited {
        let early: Vec<Duration> = arrivals
            .iter()
            .filter(|a| *a > at && **a < *at + *retry_after)
            .map(|a| *a - *at)
            .collect();
        assert!(
            early.is_empty(),
            "requests {early:?} after a 429 asking for {retry_after:?}"
        );
    }
}

#[test]
fn a_429_storm_under_eight_windows_at_once_slows_the_run_and_holds_back_new_requests() {
    let storm = Faults {
        p_429: 0.4,
        retry_after_secs: 1,
        seed: 21,
        ..Faults::default()
    };
    let h = Harness::veapi(800, 60, storm);
    h.write_config("concurrency = 8");
    let out = h.run(&["sync"]);
    assert_ok(&out);
    assert_equals_truth(&h);
    let conn = h.db();
    assert!(
        scalar::<i64>(&conn, "SELECT windows_done FROM runs") >= 8,
        "the run read several windows"
    );
    let limited = h.sim.too_many_requests_at();
    assert!(
        limited.len() >= 3,
        "only {} answers were 429",
        limited.len()
    );
    // Backing off together: within a Retry-After, only requests already on their way when the
    // 429 came (at most one per other window) arrive; none is sent anew.
    let arrivals = h.sim.arrivals();
    for (at, retry_after) in &limited {
        let early = arrivals
            .iter()
            .filter(|a| *a > at && **a < *at + *retry_after)
            .count();
        assert!(
            early <= 7,
            "{early} requests inside a Retry-After of {retry_after:?}"
        );
    }
}

#[test]
fn metrics_show_requests_in_flight_and_the_budget_waits_of_each_pipeline() {
    let h = Harness::veapi(600, 20, Faults::default());
    let port = free_port();
    let start = (h.now - chrono::Duration::days(h.days + 1)).format("%Y-%m-%d");
    let pipeline = |name: &str, extra: &str| {
        format!(
            "[[pipeline]]\nname = \"{name}\"\nsource = \"veapi\"\nendpoint = \"{}\"\n{extra}\n\
             [pipeline.auth]\nvekey = {{ env = \"TEST_VEKEY\" }}\n",
            h.sim.endpoint()
        )
    };
    let text = format!(
        "[database]\npath = \"{db}\"\n[daemon]\nlisten = \"127.0.0.1:{port}\"\n[defaults]\n\
         settle_lag = \"1s\"\nretry_initial = \"5ms\"\ntimeout = \"2s\"\nschedule = \"* * * * * *\"\n\
         start = \"{start}\"\npage_size = 50\n{limited}{free}",
        db = h.db_path().display(),
        limited = pipeline("slow", "max_rps = 10"),
        free = pipeline("free", ""),
    );
    std::fs::write(h.config_path(), text).expect("write config");
    let mut d = Daemon::start(&h, port, None);
    let body = d.metrics_when(|body| {
        let all = parse_metrics(body);
        metric(
            &all,
            "ordersync_runs_total",
            &[("pipeline", "slow"), ("outcome", "ok")],
        )
        .is_some_and(|n| n >= 1.0)
    });
    let all = parse_metrics(&body);
    let value = |name: &str, pipeline: &str| {
        metric(&all, name, &[("pipeline", pipeline)])
            .unwrap_or_else(|| panic!("no {name} for {pipeline}:\n{body}"))
    };
    // Some thirteen requests at 10 a second: most of them waited, for about a second in all.
    assert!(
        value("ordersync_budget_waits_total", "slow") >= 5.0,
        "{body}"
    );
    assert!(
        value("ordersync_budget_wait_seconds_total", "slow") >= 0.5,
        "{body}"
    );
    // No max_rps, one request at a time per pipeline: nothing waits.
    assert_eq!(value("ordersync_budget_waits_total", "free"), 0.0, "{body}");
    assert_eq!(
        value("ordersync_budget_wait_seconds_total", "free"),
        0.0,
        "{body}"
    );
    for p in ["slow", "free"] {
        let in_flight = value("ordersync_requests_in_flight", p);
        assert!(in_flight == 0.0 || in_flight == 1.0, "{p}: {in_flight}");
    }
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
}
