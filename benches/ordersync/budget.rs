//! The request budget part: a veapi sync under `max_rps = 20`, the busiest second the simulator
//! saw and wall time against requests ÷ 20.

use chrono::Duration as ChronoDuration;
use ordersync_sim::{beijing_now, Faults, Simulator};

use crate::child::{measure, sync_command};
use crate::worlds;
use crate::DAYS;

/// A first sync of a 30,000-order veapi world (some 600 requests) under `max_rps = 20`, with answers
/// at once and with every answer 30 ms late (under the 52.5 ms spacing, so one request at a time
/// still keeps up): the busiest second the simulator saw, and wall time against requests ÷ 20.
/// Fails only if a second held more than 20 requests or the database disagrees with upstream.
pub fn budget(rt: &tokio::runtime::Runtime) {
    const MAX_RPS: f64 = 20.0;
    println!("| answers | requests | most in one second | wall s | requests / 20, s | wall / (requests / 20) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (what, late_ms) in [("at once", 0), ("30 ms late", 30)] {
        let faults = Faults {
            p_slow: if late_ms > 0 { 1.0 } else { 0.0 },
            slow_ms: late_ms,
            seed: 5,
            ..Faults::default()
        };
        let now = beijing_now();
        let orders = 30_000;
        let sim = worlds::veapi(rt, 5, orders, DAYS, now, faults);
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("bench.db");
        let config = dir.path().join("pipelines.toml");
        let start = (now - ChronoDuration::days(DAYS + 1)).format("%Y-%m-%d");
        std::fs::write(
            &config,
            format!(
                "[database]\npath = \"{}\"\n[defaults]\nsettle_lag = \"1s\"\n\
                 [[pipeline]]\nname = \"p\"\nsource = \"veapi\"\nendpoint = \"{}\"\n\
                 start = \"{start}\"\npage_size = 50\nmax_rps = {MAX_RPS}\n\
                 [pipeline.auth]\nvekey = \"bench\"\n",
                db.display(),
                sim.endpoint()
            ),
        )
        .expect("config");
        let m = measure(sync_command(&config));
        let stored: i64 = rusqlite::Connection::open(&db)
            .expect("db")
            .query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0))
            .expect("count");
        assert_eq!(
            stored as usize, orders,
            "the database disagrees with upstream"
        );
        let requests = sim.requests();
        let busiest = sim.max_requests_in_any_second();
        assert!(
            busiest as f64 <= MAX_RPS,
            "{busiest} requests in one second"
        );
        let ideal = requests as f64 / MAX_RPS;
        println!(
            "| {what} | {requests} | {busiest} | {:.2} | {ideal:.2} | {:.3} |",
            m.wall.as_secs_f64(),
            m.wall.as_secs_f64() / ideal
        );
    }
}
