//! Part 1: a full sync of veapi and damaijia worlds (10k, 100k, 1M orders), then a resync with
//! nothing new upstream, into SQLite and into PostgreSQL on loopback: wall time, client CPU per
//! order, the PostgreSQL server's CPU per order, peak RSS, rows/s, requests, rows written.

use std::path::Path;
use std::time::Duration;

use chrono::{Duration as ChronoDuration, NaiveDateTime};
use ordersync::sources::SourceKind;
use ordersync::store::sql::{Db, FromValue};
use ordersync::store::{self, Location};
use ordersync_sim::damaijia::{DamaijiaSim, DamaijiaSimConfig};
use ordersync_sim::{beijing_now, Faults, Simulator, VeapiSim};

use crate::child::{measure, sync_command, Measured};
use crate::pg::{Cluster, PG_PASSWORD};
use crate::worlds;
use crate::{Engine, DAYS};

/// Prints part 1's table: each source (all, or `source` alone) at each size, into each engine
/// asked for; `pg` is the cluster, or why there is none.
pub fn run(
    rt: &tokio::runtime::Runtime,
    sizes: &[usize],
    source: Option<&str>,
    engines: &[Engine],
    pg: Result<&Cluster, &str>,
) {
    println!("## 1. full sync and no-op resync (real binary, loopback simulators, no faults)\n");
    println!(
        "| engine | source | orders | wall s | CPU µs/order | server CPU µs/order | peak RSS MB | rows/s | requests / minimal | resync: rows written | resync requests / minimal |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for kind in [SourceKind::Veapi, SourceKind::Damaijia] {
        if source.is_some_and(|s| s != kind.as_str()) {
            continue;
        }
        for &n in sizes {
            for &engine in engines {
                let into = match (engine, pg) {
                    (Engine::Sqlite, _) => Target::Sqlite,
                    (Engine::Postgres, Ok(cluster)) => Target::Postgres(cluster),
                    (Engine::Postgres, Err(why)) => {
                        println!("| {engine} | {kind} | {n} | skipped: {why} |");
                        continue;
                    }
                };
                let row = full_sync(rt, kind, n, into);
                let per_order = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
                println!(
                    "| {engine} | {kind} | {n} | {:.2} | {:.1} | {} | {:.1} | {:.0} | {} / {} | {} | {} / {} |",
                    row.first.wall.as_secs_f64(),
                    per_order(row.first.cpu),
                    row.server_cpu
                        .map_or_else(|| "—".to_string(), |c| format!("{:.1}", per_order(c))),
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
}

/// The database a row's syncs write into.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// A new file in the row's temp dir.
    Sqlite,
    /// A new database on the bench's cluster, dropped after the row.
    Postgres(&'a Cluster),
}

struct SyncRow {
    first: Measured,
    /// The PostgreSQL cluster's CPU over the first sync (none for SQLite, which runs in the client).
    server_cpu: Option<Duration>,
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

fn full_sync(rt: &tokio::runtime::Runtime, kind: SourceKind, n: usize, into: Target) -> SyncRow {
    let now = beijing_now();
    let dir = tempfile::tempdir().expect("temp dir");
    let pg_name = format!("bench_{kind}_{n}");
    let (database, location) = match into {
        Target::Sqlite => {
            let db = dir.path().join("bench.db");
            (format!("path = \"{}\"", db.display()), Location::File(db))
        }
        Target::Postgres(cluster) => {
            cluster.create_database(&pg_name);
            (
                format!("url = \"{}\"", cluster.url(&pg_name)),
                cluster.location(&pg_name),
            )
        }
    };
    let config = dir.path().join("pipelines.toml");
    let start = (now - ChronoDuration::days(DAYS + 1)).format("%Y-%m-%d");
    let (upstream, page) = match kind {
        SourceKind::Veapi => {
            let sim = worlds::veapi(rt, 1, n, DAYS, now, Faults::default());
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
            "[database]\n{database}\n[defaults]\nsettle_lag = \"1s\"\nlookback = \"2h\"\n\
             [[pipeline]]\nname = \"p\"\nstart = \"{start}\"\npage_size = {page}\n{pipeline}"
        ),
    )
    .expect("config");
    let (first, server_cpu) = sync(&config, into);
    let requests = upstream.requests();
    let stored: i64 = value(&location, "SELECT COUNT(*) FROM orders");
    assert_eq!(
        stored as usize,
        n,
        "{kind} into {}: the database disagrees with upstream",
        location.shown()
    );
    let watermark: String = value(
        &location,
        "SELECT watermark FROM checkpoints WHERE scope = 'live'",
    );
    let watermark =
        NaiveDateTime::parse_from_str(&watermark, "%Y-%m-%d %H:%M:%S%.3f").expect("watermark time");
    let in_lookback = upstream.updated_since(watermark - ChronoDuration::hours(2));
    let written_before = server_writes(into, &location);
    sync(&config, into);
    let resync_requests = upstream.requests() - requests;
    let resync_written: i64 = value(
        &location,
        "SELECT rows_changed FROM runs ORDER BY id DESC LIMIT 1",
    );
    assert_eq!(
        resync_written,
        0,
        "{kind} into {}: a resync with nothing new upstream wrote order rows",
        location.shown()
    );
    let by_server = server_writes(into, &location) - written_before;
    assert_eq!(
        by_server, 0,
        "{kind} into {}: PostgreSQL counts {by_server} rows of `orders` written by a resync with nothing new upstream",
        location.shown()
    );
    if let Target::Postgres(cluster) = into {
        cluster.drop_database(&pg_name);
    }
    SyncRow {
        first,
        server_cpu,
        requests,
        minimal: (n as u64).div_ceil(page),
        resync_written,
        resync_requests,
        resync_minimal: in_lookback.div_ceil(page).max(1),
    }
}

/// One measured `sync`, and for PostgreSQL the cluster's CPU over it: from before the child
/// starts to after the backends it connected to have ended (the cluster's background processes
/// included, autovacuum among them; the bench's own connections are closed by then).
fn sync(config: &Path, into: Target) -> (Measured, Option<Duration>) {
    match into {
        Target::Sqlite => (measure(sync_command(config)), None),
        Target::Postgres(cluster) => {
            cluster.settle();
            let before = cluster.cpu();
            let mut cmd = sync_command(config);
            cmd.env("PGPASSWORD", PG_PASSWORD);
            let measured = measure(cmd);
            cluster.settle();
            (measured, Some(cluster.cpu() - before))
        }
    }
}

/// Rows of `orders` inserted, updated or deleted so far as PostgreSQL's statistics count them
/// (flushed by each backend as it ends): a check of the resync's "0 rows written" that does not
/// rest on ordersync's own counters. Always 0 for SQLite, which keeps no such count.
fn server_writes(into: Target, location: &Location) -> i64 {
    let Target::Postgres(cluster) = into else {
        return 0;
    };
    let written = value(
        location,
        "SELECT n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE relname = 'orders'",
    );
    cluster.settle();
    written
}

/// The one value `sql` returns, read on a connection of its own, closed again at once: the
/// bench's connections are never open while a measured sync runs.
fn value<T: FromValue>(location: &Location, sql: &str) -> T {
    let mut db = store::open_db(location).expect("db");
    let db: &mut dyn Db = &mut *db;
    db.query_value(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}
