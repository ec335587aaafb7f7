//! Part 4, hostile answers (`sim::hostile`) with the default `max_body`: peak RSS of a `sync` that
//! meets a gzip bomb or a 300 MiB body, against one that meets none.

use chrono::Duration as ChronoDuration;
use ordersync_sim::{beijing_now, Faults, Hostile, Simulator};

use crate::child::{measure, run_measured, sync_command};
use crate::worlds;

/// Peak RSS of a `sync` meeting each hostile answer with the default `max_body`, and of one that
/// meets none. Fails if a hostile answer does not fail the run as `body_too_large` or takes the
/// client to 100 MB.
pub fn hostile(rt: &tokio::runtime::Runtime) {
    let now = beijing_now();
    let sim = worlds::veapi(rt, 4, 200, 10, now, Faults::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("pipelines.toml");
    // No max_body: the default is what is measured. One retry: a second attempt must not add up.
    std::fs::write(
        &config,
        format!(
            "[database]\npath = \"{}\"\n[defaults]\nsettle_lag = \"1s\"\nmax_retries = 1\nretry_initial = \"10ms\"\n\
             [[pipeline]]\nname = \"p\"\nsource = \"veapi\"\nendpoint = \"{}\"\nstart = \"{}\"\n\
             [pipeline.auth]\nvekey = \"bench\"\n",
            dir.path().join("bench.db").display(),
            sim.endpoint(),
            (now - ChronoDuration::days(11)).format("%Y-%m-%d"),
        ),
    )
    .expect("config");
    println!("| upstream answers | peak RSS MB | outcome |");
    println!("|---|---:|---|");
    const BOUND_KB: i64 = 100 * 1024;
    for (label, mode) in [
        ("gzip bomb: ~1 MB inflating to 1 GiB", Hostile::GzipBomb),
        ("300 MiB, chunked", Hostile::HugeBody),
        ("300 MiB with Content-Length", Hostile::HugeBodyWithLength),
    ] {
        sim.set_hostile(Some(mode));
        let ran = run_measured(sync_command(&config));
        let rss = ran.measured.max_rss_kb;
        println!(
            "| {label} | {:.1} | failed: body_too_large |",
            rss as f64 / 1024.0
        );
        assert!(
            !ran.ok && ran.stderr.contains("body_too_large"),
            "{label}: expected a body_too_large failure:\n{}",
            ran.stderr
        );
        assert!(rss < BOUND_KB, "{label}: peak RSS {rss} kB");
    }
    sim.set_hostile(None);
    let calm = measure(sync_command(&config));
    println!(
        "| 200 orders, nothing hostile | {:.1} | ok |",
        calm.max_rss_kb as f64 / 1024.0
    );
}
