//! Part 2, the store without HTTP: the same veapi pages, already fetched, parsed and committed page
//! by page through `commit_page`, against bare rusqlite inserts of the same rows into the same
//! schema; and the same `commit_page` into PostgreSQL on loopback.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, NaiveDateTime};
use ordersync::config::Auth;
use ordersync::planner::Window;
use ordersync::sources::{self, Axis, PageQuery, SourceKind, SourceOptions};
use ordersync::store::sql::Db;
use ordersync::store::{self, PageCommit, Progress};
use ordersync_sim::{beijing_now, Faults};

use crate::pg::Cluster;
use crate::worlds;
use crate::{Engine, DAYS};

/// Prints part 2's table; its PostgreSQL row when `engines` has it (`pg`: the cluster, or why
/// there is none).
pub fn run(rt: &tokio::runtime::Runtime, engines: &[Engine], pg: Result<&Cluster, &str>) {
    println!("\n## 2. normalise + upsert without HTTP vs bare rusqlite inserts (veapi rows)\n");
    let n = 100_000;
    let pg = engines.contains(&Engine::Postgres).then_some(pg);
    let rates = store_rates(rt, n, pg);
    println!(
        "| path ({n} orders, a transaction per 50) | rows/s | CPU µs/order | server CPU µs/order |"
    );
    println!("|---|---:|---:|---:|");
    let sqlite = |path: &str, r: Rate| {
        println!(
            "| {path} | {:.0} | {:.1} | — |",
            r.rows_per_s, r.cpu_us_per_row
        );
    };
    sqlite(
        "ordersync: parse + normalise + commit_page (lines, history, checkpoint, run)",
        rates.ours,
    );
    match rates.ours_pg {
        None => {}
        Some(Err(why)) => println!("| ordersync: commit_page into PostgreSQL | skipped: {why} |"),
        Some(Ok((r, server))) => println!(
            "| ordersync: parse + normalise + commit_page, into PostgreSQL on loopback | {:.0} | {:.1} | {:.1} |",
            r.rows_per_s,
            r.cpu_us_per_row,
            server.as_secs_f64() * 1e6 / n as f64
        ),
    }
    for (path, r) in [
        ("bare: one prepared INSERT into orders", rates.bare),
        (
            "bare, every table: INSERTs into orders, sub_orders and history",
            rates.bare_all,
        ),
    ] {
        sqlite(path, r);
    }
    println!(
        "\nratio ordersync / bare = {:.2}; ordersync / bare, every table = {:.2}",
        rates.ours.rows_per_s / rates.bare.rows_per_s,
        rates.ours.rows_per_s / rates.bare_all.rows_per_s
    );
}

/// Rate and CPU cost of one way of storing rows.
#[derive(Debug, Clone, Copy)]
struct Rate {
    rows_per_s: f64,
    cpu_us_per_row: f64,
}

struct StoreRates {
    ours: Rate,
    /// Into PostgreSQL: the client thread's rate and CPU, and the cluster's CPU; or why not.
    ours_pg: Option<Result<(Rate, Duration), String>>,
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

/// ordersync's store path against bare inserts of the same `n` veapi orders, and into PostgreSQL
/// when `pg` is given.
fn store_rates(
    rt: &tokio::runtime::Runtime,
    n: usize,
    pg: Option<Result<&Cluster, &str>>,
) -> StoreRates {
    let now = beijing_now();
    let sim = worlds::veapi(rt, 2, n, DAYS, now, Faults::default());
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

    let fetched = Fetched {
        endpoint: &endpoint,
        auth: &auth,
        options: &options,
        window,
        bodies: &bodies,
    };
    // ordersync: parse + normalise + commit_page, page by page, as a run does.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = store::open_connection(&dir.path().join("ours.db")).expect("db");
    let ours = commit_all(&mut conn, &fetched, n);
    // The same into PostgreSQL. The client runs on this thread (the synchronous client drives its
    // connection in the caller's thread), so its CPU is this thread's; the server's is the
    // cluster's over the same span, this connection's backend being alive in it.
    let ours_pg = pg.map(|pg| {
        pg.map(|cluster| {
            cluster.create_database("bench_store");
            let mut db = store::open_db(&cluster.location("bench_store")).expect("db");
            let before = cluster.cpu();
            let rate = commit_all(db.as_mut(), &fetched, n);
            let server = cluster.cpu() - before;
            drop(db);
            cluster.drop_database("bench_store");
            (rate, server)
        })
        .map_err(str::to_string)
    });

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
        ours_pg,
        bare,
        bare_all,
    }
}

/// Veapi pages fetched once, untimed, with what parsing them again needs.
struct Fetched<'a> {
    endpoint: &'a str,
    auth: &'a Auth,
    options: &'a SourceOptions,
    window: Window,
    /// Each page's cursor and body, in order.
    bodies: &'a [(String, Vec<u8>)],
}

/// Parses, normalises and commits every fetched page through `commit_page` into `db` (a run of
/// its own begun first, untimed), as a run does: the rate of `n` rows.
fn commit_all(db: &mut dyn Db, fetched: &Fetched, n: usize) -> Rate {
    let Fetched {
        endpoint,
        auth,
        options,
        window,
        bodies,
    } = *fetched;
    store::ensure_track(db, "p", "live", None).expect("track");
    let run_id = store::begin_run(db, "p", "sync", "live").expect("run");
    let mut rows = 0usize;
    let rate = rate(n, || {
        for (i, (cursor, body)) in bodies.iter().enumerate() {
            let page = sources::parse_page(
                &veapi_query(endpoint, auth, options, window, cursor),
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
                db,
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
    rate
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
