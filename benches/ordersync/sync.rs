//! Part 1: a full sync of veapi and damaijia worlds (10k, 100k, 1M orders), then a resync with
//! nothing new upstream: wall time, client CPU per order, peak RSS, rows/s, requests, rows written.

use chrono::{Duration as ChronoDuration, NaiveDateTime};
use ordersync::sources::SourceKind;
use ordersync_sim::damaijia::{DamaijiaSim, DamaijiaSimConfig};
use ordersync_sim::{beijing_now, Faults, Simulator, VeapiSim, VeapiSimConfig};

use crate::child::{measure, sync_command, Measured};
use crate::DAYS;

/// Prints part 1's table: each source (all, or `source` alone) at each size.
pub fn run(rt: &tokio::runtime::Runtime, sizes: &[usize], source: Option<&str>) {
    println!("## 1. full sync and no-op resync (real binary, loopback simulators, no faults)\n");
    println!(
            "| source | orders | wall s | CPU µs/order | peak RSS MB | rows/s | requests / minimal | resync: rows written | resync requests / minimal |"
        );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for kind in [SourceKind::Veapi, SourceKind::Damaijia] {
        if source.is_some_and(|s| s != kind.as_str()) {
            continue;
        }
        for &n in sizes {
            let row = full_sync(rt, kind, n);
            println!(
                "| {kind} | {n} | {:.2} | {:.1} | {:.1} | {:.0} | {} / {} | {} | {} / {} |",
                row.first.wall.as_secs_f64(),
                row.first.cpu.as_secs_f64() * 1e6 / n as f64,
                row.first.max_rss_kb as f64 / 1024.0,
                n as f64 / row.first.wall.as_secs_f64(),
                row.requests,
                row.minimal,
                row.resync_written,
                row.resync_requests,
                row.resync_minimal,
            );
        }
    }
}

struct SyncRow {
    first: Measured,
    requests: u64,
    minimal: u64,
    resync_written: i64,
    resync_requests: u64,
    /// Pages of the orders updated inside the resync's lookback (it re-reads those on purpose).
    resync_minimal: u64,
}

/// The simulator a full-sync world runs on.
enum Upstream {
    Veapi(VeapiSim),
    Damaijia(DamaijiaSim),
}

impl Upstream {
    fn requests(&self) -> u64 {
        match self {
            Upstream::Veapi(s) => s.requests(),
            Upstream::Damaijia(s) => s.requests(),
        }
    }

    /// Orders whose update time is at or after `t`.
    fn updated_since(&self, t: NaiveDateTime) -> u64 {
        match self {
            Upstream::Veapi(s) => s.truth().iter().filter(|o| o.update_time >= t).count() as u64,
            Upstream::Damaijia(s) => s.truth().iter().filter(|o| o.update_time >= t).count() as u64,
        }
    }
}

fn full_sync(rt: &tokio::runtime::Runtime, kind: SourceKind, n: usize) -> SyncRow {
    let now = beijing_now();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("bench.db");
    let config = dir.path().join("pipelines.toml");
    let start = (now - ChronoDuration::days(DAYS + 1)).format("%Y-%m-%d");
    let (upstream, page) = match kind {
        SourceKind::Veapi => {
            let sim = rt
                .block_on(VeapiSim::start(VeapiSimConfig {
                    seed: 1,
                    vekey: "bench".into(),
                    orders: n,
                    days: DAYS,
                    now,
                    faults: Faults::default(),
                }))
                .expect("simulator");
            (Upstream::Veapi(sim), 50)
        }
        SourceKind::Damaijia => {
            let sim = rt
                .block_on(DamaijiaSim::start(DamaijiaSimConfig {
                    seed: 1,
                    access_token: "bench".into(),
                    shop_id: "20358278".into(),
                    orders: n,
                    days: DAYS,
                    now,
                    faults: Faults::default(),
                }))
                .expect("simulator");
            (Upstream::Damaijia(sim), 100)
        }
        other => panic!("no full-sync bench for {other}"),
    };
    let pipeline = match &upstream {
        Upstream::Veapi(sim) => format!(
            "source = \"veapi\"\nendpoint = \"{}\"\n[pipeline.auth]\nvekey = \"bench\"\n",
            sim.endpoint()
        ),
        Upstream::Damaijia(sim) => format!(
            "source = \"damaijia\"\nendpoint = \"{}\"\n[pipeline.auth]\naccess_token = \"bench\"\nshop_id = \"20358278\"\n",
            sim.endpoint()
        ),
    };
    std::fs::write(
        &config,
        format!(
            "[database]\npath = \"{}\"\n[defaults]\nsettle_lag = \"1s\"\nlookback = \"2h\"\n\
             [[pipeline]]\nname = \"p\"\nstart = \"{start}\"\npage_size = {page}\n{pipeline}",
            db.display()
        ),
    )
    .expect("config");
    let first = measure(sync_command(&config));
    let requests = upstream.requests();
    let conn = rusqlite::Connection::open(&db).expect("db");
    let stored: i64 = conn
        .query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0))
        .expect("count");
    assert_eq!(
        stored as usize, n,
        "{kind}: the database disagrees with upstream"
    );
    let watermark: String = conn
        .query_row(
            "SELECT watermark FROM checkpoints WHERE scope = 'live'",
            [],
            |r| r.get(0),
        )
        .expect("watermark");
    let watermark =
        NaiveDateTime::parse_from_str(&watermark, "%Y-%m-%d %H:%M:%S%.3f").expect("watermark time");
    let in_lookback = upstream.updated_since(watermark - ChronoDuration::hours(2));
    measure(sync_command(&config));
    let resync_requests = upstream.requests() - requests;
    let resync_written: i64 = conn
        .query_row(
            "SELECT rows_changed FROM runs ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("runs");
    SyncRow {
        first,
        requests,
        minimal: (n as u64).div_ceil(page),
        resync_written,
        resync_requests,
        resync_minimal: in_lookback.div_ceil(page).max(1),
    }
}
