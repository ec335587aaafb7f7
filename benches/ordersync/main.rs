//! `cargo bench --bench ordersync [-- --1m] [--only sync|store|concurrency|parallel|hostile|budget] [--source veapi|damaijia]
//! [--engine sqlite|postgres|both] [--pg-synchronous-commit]`: what ordersync costs, measured, as one table.
//!
//! Simulators run in this process; the real release `ordersync` binary runs as a child, so its CPU
//! time (user + sys from `wait4`'s rusage) and peak RSS are the client's alone, never the
//! simulators'. Peak RSS is the child's own `VmHWM`, polled from `/proc` while it runs:
//! `ru_maxrss` would count this process's pages (the simulated worlds), which the child shares
//! between fork and exec. Six parts:
//! 1. full sync of worlds of 10k and 100k orders (1M with `--1m`) for veapi (one order per row)
//!    and damaijia (orders with SKU lines): wall time, CPU per order, peak RSS, rows per second,
//!    requests made against the fewest pages that world can be read in; then a resync with
//!    nothing new upstream: order rows written (which must be 0) and requests. Each world is
//!    synced into SQLite and into PostgreSQL on loopback (`--engine`; a throwaway cluster the
//!    bench starts, `pg`), whose rows add the server's CPU per order;
//! 2. the store without HTTP: the same veapi pages, already fetched, parsed and committed page by
//!    page through `commit_page` (history, checkpoint and run counters included), against a bare
//!    rusqlite loop inserting the same normalised rows with one prepared statement, batched in
//!    transactions of a page, into the same schema; and the same `commit_page` into PostgreSQL;
//! 3. all five sources in one `sync`, every simulated answer 50 ms late, against each pipeline
//!    alone: the wall-time ratio says whether pipelines overlap;
//! 4. (`--only parallel`) a backfill of 100k veapi orders over 360 days, every answer 100 ms late,
//!    with `concurrency = 1` and `8`: wall time, requests, and the ratio;
//! 5. hostile answers (`sim::hostile`) with the default `max_body`: a gzip bomb inflating to 1 GiB,
//!    300 MiB chunked, 300 MiB announced by `Content-Length` — peak RSS of a `sync` that meets one
//!    (an attempt and a retry), against a `sync` of the same small world that meets none;
//! 6. the request budget: a veapi sync under `max_rps = 20` (answers at once, and every one 30 ms
//!    late): requests, the most the simulator saw in any one second, wall time against requests ÷ 20.
//!
//! Nothing here asserts a time; it prints figures (and fails only if a sync fails or the database
//! disagrees with the simulator's order count, since a fast wrong answer is no figure at all — or
//! if a hostile answer does not fail the run as `body_too_large`, or takes its peak RSS to 100 MB,
//! the bound ordersync promises).

mod budget;
mod child;
mod concurrency;
mod hostile;
mod parallel;
mod pg;
mod store;
mod sync;
mod worlds;

/// Days of the veapi and damaijia worlds: under veapi's 90-day window, so one window each.
pub const DAYS: i64 = 80;

/// The database a `sync` or `store` row writes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        })
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let million = args.iter().any(|a| a == "--1m");
    // `--only sync|store|concurrency|parallel|hostile|budget` runs one part (while working on it); default all.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    let part = |name: &str| only.is_none_or(|o| o == name);
    // `--source veapi|damaijia` limits part 1 to one source (a million damaijia orders take long).
    let source = args
        .iter()
        .position(|a| a == "--source")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    // `--engine sqlite|postgres|both` (default both): the databases parts 1 and 2 write into.
    let engines = match args
        .iter()
        .position(|a| a == "--engine")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
    {
        None | Some("both") => vec![Engine::Sqlite, Engine::Postgres],
        Some("sqlite") => vec![Engine::Sqlite],
        Some("postgres") => vec![Engine::Postgres],
        Some(other) => panic!("--engine {other}: expected sqlite, postgres or both"),
    };
    let mut sizes = vec![10_000usize, 100_000];
    if million {
        sizes.push(1_000_000);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("machine: {}", machine());
    println!("ordersync binary: {}\n", child::bin());
    // One cluster for every PostgreSQL row, stopped when it drops at the end; or why there is none.
    let pg = if engines.contains(&Engine::Postgres) && (part("sync") || part("store")) {
        pg::Cluster::start(args.iter().any(|a| a == "--pg-synchronous-commit"))
    } else {
        Err("not asked for".to_string())
    };
    let pg = pg.as_ref().map_err(String::as_str);

    if part("sync") {
        sync::run(&rt, &sizes, source, &engines, pg);
    }

    if part("store") {
        store::run(&rt, &engines, pg);
    }

    if part("concurrency") {
        println!("\n## 3. five sources in one sync, every answer 50 ms late\n");
        concurrency::concurrency(&rt);
    }

    if part("parallel") {
        println!(
            "\n## 4. backfill wall time with windows read at once, every answer 100 ms late\n"
        );
        parallel::parallel(&rt);
    }

    if part("hostile") {
        println!("\n## 5. hostile answers, default max_body: peak RSS of the client\n");
        hostile::hostile(&rt);
    }

    if part("budget") {
        println!("\n## 6. request budget: a veapi sync under max_rps = 20\n");
        budget::budget(&rt);
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or_else(
            || "?".into(),
            |kb| format!("{:.0} GiB", kb as f64 / 1048576.0),
        );
    format!("{cpu}, {cores} cores, {mem} RAM")
}
