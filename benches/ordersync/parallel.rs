//! The parallel part: a backfill of 100k veapi orders over 360 days, every answer 100 ms late, one
//! window at a time and eight at once.

use std::process::Command;

use chrono::Duration as ChronoDuration;
use ordersync_sim::{beijing_now, Faults, Simulator};

use crate::child::{bin, measure};
use crate::worlds;

/// A backfill of 100k veapi orders over 360 days against answers 100 ms late, one window at a
/// time and eight at once (`concurrency`): what reading windows at once buys when upstream latency,
/// not the client, is the limit.
pub fn parallel(rt: &tokio::runtime::Runtime) {
    let (n, days) = (100_000usize, 360i64);
    println!("| concurrency | wall s | requests | pages minimal | requests/s | CPU µs/order | peak RSS MB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut walls = Vec::new();
    for workers in [1u32, 8] {
        let now = beijing_now();
        let sim = worlds::veapi(
            rt,
            5,
            n,
            days,
            now,
            Faults {
                p_slow: 1.0,
                slow_ms: 100,
                seed: 5,
                ..Faults::default()
            },
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("bench.db");
        let config = dir.path().join("pipelines.toml");
        let from = (now - ChronoDuration::days(days + 1))
            .format("%Y-%m-%d")
            .to_string();
        std::fs::write(
            &config,
            format!(
                "[database]\npath = \"{}\"\n[defaults]\nsettle_lag = \"1s\"\n\
                 [[pipeline]]\nname = \"p\"\nstart = \"{from}\"\nconcurrency = {workers}\n\
                 source = \"veapi\"\nendpoint = \"{}\"\n[pipeline.auth]\nvekey = \"bench\"\n",
                db.display(),
                sim.endpoint()
            ),
        )
        .expect("config");
        let mut cmd = Command::new(bin());
        cmd.arg("--config")
            .arg(&config)
            .args(["backfill", "p", "--from", &from])
            .env("RUST_LOG", "warn");
        let m = measure(cmd);
        let stored: i64 = rusqlite::Connection::open(&db)
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0)))
            .expect("count");
        assert_eq!(stored as usize, n, "the database disagrees with upstream");
        let requests = sim.requests();
        println!(
            "| {workers} | {:.1} | {requests} | {} | {:.1} | {:.1} | {:.1} |",
            m.wall.as_secs_f64(),
            n / 50,
            requests as f64 / m.wall.as_secs_f64(),
            m.cpu.as_secs_f64() * 1e6 / n as f64,
            m.max_rss_kb as f64 / 1024.0
        );
        walls.push(m.wall.as_secs_f64());
    }
    println!(
        "\nconcurrency 8 is {:.1}× faster than 1",
        walls[0] / walls[1]
    );
}
