//! `cargo bench --bench ordersync [-- --1m] [--only sync|store|concurrency|parallel|hostile|budget] [--source veapi|damaijia]`:
//! what ordersync costs, measured, as one table.
//!
//! Simulators run in this process; the real release `ordersync` binary runs as a child, so its CPU
//! time (user + sys from `wait4`'s rusage) and peak RSS are the client's alone, never the
//! simulators'. Peak RSS is the child's own `VmHWM`, polled from `/proc` while it runs:
//! `ru_maxrss` would count this process's pages (the simulated worlds), which the child shares
//! between fork and exec. Five parts:
//! 1. full sync of worlds of 10k and 100k orders (1M with `--1m`) for veapi (one order per row)
//!    and damaijia (orders with SKU lines): wall time, CPU per order, peak RSS, rows per second,
//!    requests made against the fewest pages that world can be read in; then a resync with
//!    nothing new upstream: order rows written and requests;
//! 2. the store without HTTP: the same veapi pages, already fetched, parsed and committed page by
//!    page through `commit_page` (history, checkpoint and run counters included), against a bare
//!    rusqlite loop inserting the same normalised rows with one prepared statement, batched in
//!    transactions of a page, into the same schema;
//! 3. all five sources in one `sync`, every simulated answer 50 ms late, against each pipeline
//!    alone: the wall-time ratio says whether pipelines overlap;
//! 5. (`--only parallel`) a backfill of 100k veapi orders over 360 days, every answer 100 ms late,
//!    with `concurrency = 1` and `8`: wall time, requests, and the ratio;
//! 4. hostile answers (`sim::hostile`) with the default `max_body`: a gzip bomb inflating to 1 GiB,
//!    300 MiB chunked, 300 MiB announced by `Content-Length` — peak RSS of a `sync` that meets one
//!    (an attempt and a retry), against a `sync` of the same small world that meets none;
//! 5. the request budget: a veapi sync under `max_rps = 20` (answers at once, and every one 30 ms
//!    late): requests, the most the simulator saw in any one second, wall time against requests ÷ 20.
//!
//! Nothing here asserts a time; it prints figures (and fails only if a sync fails or the database
//! disagrees with the simulator's order count, since a fast wrong answer is no figure at all — or
//! if a hostile answer does not fail the run as `body_too_large`, or takes its peak RSS to 100 MB,
//! the bound ordersync promises).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, NaiveDateTime};
use ordersync::config::Auth;
use ordersync::planner::Window;
use ordersync::sources::{self, Axis, PageQuery, SourceKind, SourceOptions};
use ordersync::store::{self, PageCommit, Progress};
use ordersync_sim::damaijia::{DamaijiaSim, DamaijiaSimConfig};
use ordersync_sim::sxt::{SxtSim, SxtSimConfig};
use ordersync_sim::{
    beijing_now, Faults, Hostile, MiaoyouquanSim, MiaoyouquanSimConfig, Simulator, UnideskSim,
    UnideskSimConfig, VeapiSim, VeapiSimConfig,
};

const BUILT: &str = env!("CARGO_BIN_EXE_ordersync");

/// The binary measured: the one cargo built, or `ORDERSYNC_BENCH_BIN` — another build of it, so
/// that two versions can be measured turn about in one sitting (this machine's figures drift by a
/// quarter between sittings, more than most single changes are worth).
fn bin() -> String {
    std::env::var("ORDERSYNC_BENCH_BIN").unwrap_or_else(|_| BUILT.to_string())
}
/// Days of the veapi and damaijia worlds: under veapi's 90-day window, so one window each.
const DAYS: i64 = 80;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let million = args.iter().any(|a| a == "--1m");
    // `--only sync|store|concurrency|hostile|budget` runs one part (while working on it); default all.
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
    println!("ordersync binary: {}\n", bin());

    if part("sync") {
        println!(
            "## 1. full sync and no-op resync (real binary, loopback simulators, no faults)\n"
        );
        println!(
            "| source | orders | wall s | CPU µs/order | peak RSS MB | rows/s | requests / minimal | resync: rows written | resync requests / minimal |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for kind in [SourceKind::Veapi, SourceKind::Damaijia] {
            if source.is_some_and(|s| s != kind.as_str()) {
                continue;
            }
            for &n in &sizes {
                let row = full_sync(&rt, kind, n);
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

    if part("store") {
        println!("\n## 2. normalise + upsert without HTTP vs bare rusqlite inserts (veapi rows)\n");
        let n = 100_000;
        let rates = store_rates(&rt, n);
        println!("| path ({n} orders, a transaction per 50) | rows/s | CPU µs/order |");
        println!("|---|---:|---:|");
        for (path, r) in [
            (
                "ordersync: parse + normalise + commit_page (lines, history, checkpoint, run)",
                rates.ours,
            ),
            ("bare: one prepared INSERT into orders", rates.bare),
            (
                "bare, every table: INSERTs into orders, sub_orders and history",
                rates.bare_all,
            ),
        ] {
            println!("| {path} | {:.0} | {:.1} |", r.rows_per_s, r.cpu_us_per_row);
        }
        println!(
            "\nratio ordersync / bare = {:.2}; ordersync / bare, every table = {:.2}",
            rates.ours.rows_per_s / rates.bare.rows_per_s,
            rates.ours.rows_per_s / rates.bare_all.rows_per_s
        );
    }

    if part("concurrency") {
        println!("\n## 3. five sources in one sync, every answer 50 ms late\n");
        concurrency(&rt);
    }

    if part("parallel") {
        println!(
            "\n## 5. backfill wall time with windows read at once, every answer 100 ms late\n"
        );
        parallel(&rt);
    }

    if part("hostile") {
        println!("\n## 4. hostile answers, default max_body: peak RSS of the client\n");
        hostile(&rt);
    }

    if part("budget") {
        println!("\n## 5. request budget: a veapi sync under max_rps = 20\n");
        budget(&rt);
    }
}

/// Figures of one child process.
#[derive(Debug, Clone, Copy)]
struct Measured {
    wall: Duration,
    cpu: Duration,
    max_rss_kb: i64,
}

/// Runs `cmd` to the end, reaping it with `wait4` to read its own rusage; it must succeed.
fn measure(cmd: Command) -> Measured {
    let ran = run_measured(cmd);
    assert!(ran.ok, "ordersync failed:\n{}", ran.stderr);
    ran.measured
}

/// Figures of one child process, whether it succeeded, and what it said on stderr.
struct Ran {
    measured: Measured,
    ok: bool,
    stderr: String,
}

/// Runs `cmd` to the end, reaping it with `wait4` to read its own rusage.
#[allow(clippy::zombie_processes)] // reaped by wait4, which `Child::wait` cannot replace here
fn run_measured(mut cmd: Command) -> Ran {
    let started = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ordersync starts");
    let pid = child.id() as libc::pid_t;
    // Drain stderr on a thread so a chatty child never blocks on a full pipe.
    let hwm = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let poller = {
        let hwm = hwm.clone();
        std::thread::spawn(move || {
            // VmHWM only grows: the last reading before the process ends is its peak (to 5 ms).
            while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                let kb = status
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok());
                match kb {
                    Some(kb) => hwm.fetch_max(kb, std::sync::atomic::Ordering::Relaxed),
                    None => break, // a zombie has no memory left to read
                };
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut stderr = child.stderr.expect("piped stderr");
    let drain = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain data that wait4 fills; `pid` is our own unreaped child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    let stderr = drain.join().unwrap_or_default();
    let _ = poller.join();
    assert_eq!(reaped, pid, "wait4 failed");
    let exited_ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ran {
        measured: Measured {
            wall,
            cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
            max_rss_kb: hwm.load(std::sync::atomic::Ordering::Relaxed) as i64,
        },
        ok: exited_ok,
        stderr: format!("(status {status})\n{stderr}"),
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

fn sync_command(config: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--config").arg(config).arg("sync");
    cmd.env("RUST_LOG", "warn").env_remove("ORDERSYNC_CONFIG");
    cmd
}

/// Rate and CPU cost of one way of storing rows.
#[derive(Debug, Clone, Copy)]
struct Rate {
    rows_per_s: f64,
    cpu_us_per_row: f64,
}

struct StoreRates {
    ours: Rate,
    bare: Rate,
    bare_all: Rate,
}

/// CPU time (user + sys) this thread has used: the store paths below run on it alone.
fn thread_cpu() -> Duration {
    // SAFETY: `rusage` is plain data that getrusage fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Times `work`, which stores `n` rows, by the wall clock and this thread's CPU.
fn rate(n: usize, work: impl FnOnce()) -> Rate {
    let (started, cpu) = (Instant::now(), thread_cpu());
    work();
    Rate {
        rows_per_s: n as f64 / started.elapsed().as_secs_f64(),
        cpu_us_per_row: (thread_cpu() - cpu).as_secs_f64() * 1e6 / n as f64,
    }
}

/// ordersync's store path against bare inserts of the same `n` veapi orders.
fn store_rates(rt: &tokio::runtime::Runtime, n: usize) -> StoreRates {
    let now = beijing_now();
    let sim = rt
        .block_on(VeapiSim::start(VeapiSimConfig {
            seed: 2,
            vekey: "bench".into(),
            orders: n,
            days: DAYS,
            now,
            faults: Faults::default(),
        }))
        .expect("simulator");
    let auth: Auth = [("vekey", "bench")].into_iter().collect();
    let options = SourceOptions::parse(SourceKind::Veapi, &toml::Table::new()).expect("options");
    let window = Window {
        start: now - ChronoDuration::days(DAYS + 1),
        end: now,
    };
    let endpoint = sim.endpoint();
    // Fetch every page once, untimed.
    let client = reqwest::Client::new();
    let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
    let mut cursor = sources::first_cursor(SourceKind::Veapi).to_string();
    loop {
        let q = veapi_query(&endpoint, &auth, &options, window, &cursor);
        let req = sources::build_request(&q).expect("request");
        let body = rt
            .block_on(async { client.get(req.url).send().await?.bytes().await })
            .expect("page")
            .to_vec();
        let page = sources::parse_page(&q, 200, &body).expect("parses");
        bodies.push((cursor.clone(), body));
        match page.next_cursor {
            Some(next) => cursor = next,
            None => break,
        }
    }

    // ordersync: parse + normalise + commit_page, page by page, as a run does.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = store::open_connection(&dir.path().join("ours.db")).expect("db");
    store::ensure_track(&mut conn, "p", "live", None).expect("track");
    let run_id = store::begin_run(&mut conn, "p", "sync", "live").expect("run");
    let mut rows = 0usize;
    let ours = rate(n, || {
        for (i, (cursor, body)) in bodies.iter().enumerate() {
            let page = sources::parse_page(
                &veapi_query(&endpoint, &auth, &options, window, cursor),
                200,
                body,
            )
            .expect("parses");
            let progress = match bodies.get(i + 1) {
                Some((next, _)) => Progress::Next {
                    window,
                    cursor: next.clone(),
                },
                None => Progress::WindowDone { window },
            };
            rows += page.orders.len();
            store::commit_page(
                &mut conn,
                &PageCommit {
                    run_id,
                    pipeline: "p".into(),
                    scope: "live".into(),
                    source: SourceKind::Veapi,
                    orders: page.orders,
                    rejected: page.rejected,
                    asked: (window, cursor.clone()),
                    requests: 1,
                    seen_floor: String::new(),
                    progress,
                },
            )
            .expect("commit");
        }
    });
    assert_eq!(rows, n);

    // Bare: the same normalised rows, one prepared statement, a transaction per page.
    let pages: Vec<Vec<ordersync::model::OrderRow>> = bodies
        .iter()
        .map(|(cursor, body)| {
            sources::parse_page(
                &veapi_query(&endpoint, &auth, &options, window, cursor),
                200,
                body,
            )
            .expect("parses")
            .orders
        })
        .collect();
    let bare = bare_insert(&dir.path().join("bare.db"), &pages, false);
    let bare_all = bare_insert(&dir.path().join("bare_all.db"), &pages, true);
    assert!(pages.iter().map(Vec::len).sum::<usize>() == n);
    StoreRates {
        ours,
        bare,
        bare_all,
    }
}

/// The same normalised rows, prepared statements, a transaction per page: into `orders` only, or
/// (`every_table`) with each order's lines and one history row too, as ordersync stores them.
fn bare_insert(path: &Path, pages: &[Vec<ordersync::model::OrderRow>], every_table: bool) -> Rate {
    let n = pages.iter().map(Vec::len).sum();
    let mut conn = store::open_connection(path).expect("db");
    let fmt = |t: Option<NaiveDateTime>| t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string());
    rate(n, || {
        for page in pages {
            let tx = conn.transaction().expect("tx");
            {
                let mut order_stmt = tx
                    .prepare_cached(
                        "INSERT INTO orders (source, order_id, pipeline, kind, status, status_raw, pay_amount, \
                         commission, paid_at, updated_at, shop_id, shop_name, product_id, product_name, item_num, raw, \
                         first_seen_at, synced_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?17)",
                    )
                    .expect("prepare");
                let mut line_stmt = tx
                    .prepare_cached(
                        "INSERT INTO sub_orders (source, order_id, sub_order_id, sku_id, product_id, product_name, \
                         item_num, pay_amount, status, status_raw, raw) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    )
                    .expect("prepare");
                let mut history_stmt = tx
                    .prepare_cached(
                        "INSERT INTO order_status_history (source, order_id, status, status_raw, observed_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .expect("prepare");
                for o in page {
                    order_stmt
                        .execute(rusqlite::params![
                            o.source.as_str(),
                            o.order_id,
                            "p",
                            o.kind.as_str(),
                            o.status.as_str(),
                            o.status_raw,
                            o.pay_amount,
                            o.commission,
                            fmt(o.paid_at),
                            fmt(o.updated_at),
                            o.shop_id,
                            o.shop_name,
                            o.product_id,
                            o.product_name,
                            o.item_num,
                            o.raw,
                            "2024-01-01 00:00:00",
                        ])
                        .expect("insert");
                    if !every_table {
                        continue;
                    }
                    for s in &o.sub_orders {
                        line_stmt
                            .execute(rusqlite::params![
                                o.source.as_str(),
                                o.order_id,
                                s.sub_order_id,
                                s.sku_id,
                                s.product_id,
                                s.product_name,
                                s.item_num,
                                s.pay_amount,
                                s.status.as_str(),
                                s.status_raw,
                                (!s.raw.is_empty()).then_some(s.raw.as_str()),
                            ])
                            .expect("insert line");
                    }
                    history_stmt
                        .execute(rusqlite::params![
                            o.source.as_str(),
                            o.order_id,
                            o.status.as_str(),
                            o.status_raw,
                            "2024-01-01 00:00:00",
                        ])
                        .expect("insert history");
                }
            }
            tx.commit().expect("commit");
        }
    })
}

fn veapi_query<'a>(
    endpoint: &'a str,
    auth: &'a Auth,
    options: &'a SourceOptions,
    window: Window,
    cursor: &'a str,
) -> PageQuery<'a> {
    PageQuery {
        endpoint,
        auth,
        options,
        window,
        cursor,
        page_size: 50,
        axis: Axis::Live,
        start: window.start,
    }
}

fn concurrency(rt: &tokio::runtime::Runtime) {
    let slow = Faults {
        p_slow: 1.0,
        slow_ms: 50,
        seed: 3,
        ..Faults::default()
    };
    let now = beijing_now();
    let ve = rt
        .block_on(VeapiSim::start(VeapiSimConfig {
            seed: 3,
            vekey: "bench".into(),
            orders: 1000,
            days: 30,
            now,
            faults: slow.clone(),
        }))
        .expect("veapi");
    let myq = rt
        .block_on(MiaoyouquanSim::start(MiaoyouquanSimConfig {
            seed: 3,
            apkey: "bench".into(),
            dou_key: "bench".into(),
            orders: 3000,
            days: 30,
            now,
            faults: slow.clone(),
        }))
        .expect("miaoyouquan");
    let ud = rt
        .block_on(UnideskSim::start(UnideskSimConfig {
            seed: 3,
            app_key: "bench".into(),
            app_secret: "bench-secret".into(),
            session: None,
            orders: 600,
            days: 12,
            now,
            faults: slow.clone(),
        }))
        .expect("unidesk");
    let dmj = rt
        .block_on(DamaijiaSim::start(DamaijiaSimConfig {
            seed: 3,
            access_token: "bench".into(),
            shop_id: "20358278".into(),
            orders: 1500,
            days: 30,
            now,
            faults: slow.clone(),
        }))
        .expect("damaijia");
    let sxt = rt
        .block_on(SxtSim::start(SxtSimConfig {
            seed: 3,
            user_id: "bench".into(),
            dy_uid: "bench".into(),
            orders: 500,
            days: 30,
            now,
            faults: slow,
        }))
        .expect("sxt");
    let day = |d: i64| {
        (now - ChronoDuration::days(d))
            .format("%Y-%m-%d")
            .to_string()
    };
    let pipelines = [
        ("veapi", format!("name = \"veapi\"\nsource = \"veapi\"\nendpoint = \"{}\"\nstart = \"{}\"\npage_size = 50\n[pipeline.auth]\nvekey = \"bench\"\n", ve.endpoint(), day(31))),
        ("miaoyouquan", format!("name = \"miaoyouquan\"\nsource = \"miaoyouquan\"\nendpoint = \"{}\"\nstart = \"{}\"\npage_size = 200\n[pipeline.auth]\napkey = \"bench\"\ndou_key = \"bench\"\n", myq.endpoint(), day(31))),
        ("unidesk", format!("name = \"unidesk\"\nsource = \"unidesk\"\nendpoint = \"{}\"\nstart = \"{}\"\n[pipeline.auth]\napp_key = \"bench\"\napp_secret = \"bench-secret\"\n", ud.endpoint(), day(13))),
        ("damaijia", format!("name = \"damaijia\"\nsource = \"damaijia\"\nendpoint = \"{}\"\nstart = \"{}\"\npage_size = 100\n[pipeline.auth]\naccess_token = \"bench\"\nshop_id = \"20358278\"\n", dmj.endpoint(), day(31))),
        ("sxt", format!("name = \"sxt\"\nsource = \"sxt\"\nendpoint = \"{}\"\nstart = \"{}\"\n[pipeline.auth]\nuser_id = \"bench\"\ndy_uid = \"bench\"\n", sxt.endpoint(), day(31))),
    ];
    let run = |chosen: &[&(&str, String)]| {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("pipelines.toml");
        let mut text = format!(
            "[database]\npath = \"{}\"\n[defaults]\nsettle_lag = \"1s\"\n",
            dir.path().join("bench.db").display()
        );
        for (_, p) in chosen {
            text.push_str("[[pipeline]]\n");
            text.push_str(p);
        }
        std::fs::write(&config, text).expect("config");
        measure(sync_command(&config))
    };
    println!("| run | wall s |");
    println!("|---|---:|");
    let mut slowest = Duration::ZERO;
    for p in &pipelines {
        let m = run(&[p]);
        println!("| {} alone | {:.2} |", p.0, m.wall.as_secs_f64());
        slowest = slowest.max(m.wall);
    }
    let all: Vec<&(&str, String)> = pipelines.iter().collect();
    let m = run(&all);
    println!("| all five in one sync | {:.2} |", m.wall.as_secs_f64());
    println!(
        "\nall five / slowest single = {:.2}",
        m.wall.as_secs_f64() / slowest.as_secs_f64()
    );
}

/// A first sync of a 30,000-order veapi world (some 600 requests) under `max_rps = 20`, with answers
/// at once and with every answer 30 ms late (under the 52.5 ms spacing, so one request at a time
/// still keeps up): the busiest second the simulator saw, and wall time against requests ÷ 20.
/// Fails only if a second held more than 20 requests or the database disagrees with upstream.
fn budget(rt: &tokio::runtime::Runtime) {
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
        let sim = rt
            .block_on(VeapiSim::start(VeapiSimConfig {
                seed: 5,
                vekey: "bench".into(),
                orders,
                days: DAYS,
                now,
                faults,
            }))
            .expect("simulator");
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

/// Peak RSS of a `sync` meeting each hostile answer with the default `max_body`, and of one that
/// meets none. Fails if a hostile answer does not fail the run as `body_too_large` or takes the
/// client to 100 MB.
fn hostile(rt: &tokio::runtime::Runtime) {
    let now = beijing_now();
    let sim = rt
        .block_on(VeapiSim::start(VeapiSimConfig {
            seed: 4,
            vekey: "bench".into(),
            orders: 200,
            days: 10,
            now,
            faults: Faults::default(),
        }))
        .expect("simulator");
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

/// A backfill of 100k veapi orders over 360 days against answers 100 ms late, one window at a
/// time and eight at once (`concurrency`): what reading windows at once buys when upstream latency,
/// not the client, is the limit.
fn parallel(rt: &tokio::runtime::Runtime) {
    let (n, days) = (100_000usize, 360i64);
    println!("| concurrency | wall s | requests | pages minimal | requests/s | CPU µs/order | peak RSS MB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut walls = Vec::new();
    for workers in [1u32, 8] {
        let now = beijing_now();
        let sim = rt
            .block_on(VeapiSim::start(VeapiSimConfig {
                seed: 5,
                vekey: "bench".into(),
                orders: n,
                days,
                now,
                faults: Faults {
                    p_slow: 1.0,
                    slow_ms: 100,
                    seed: 5,
                    ..Faults::default()
                },
            }))
            .expect("simulator");
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
