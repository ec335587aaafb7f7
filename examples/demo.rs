//! The README's demo: all five upstream simulators on loopback, one `sync` of every pipeline into
//! `demo/ordersync.db`, upstream changes, a second sync, late changes that only a `rescan` finds,
//! `ordersync status`, a SQL summary per source,
//! and a comparison of the database with each simulator's ground truth. No credentials, no network.

use ordersync_sim::Simulator;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use chrono::Duration;
use clap::Parser;
use ordersync_sim::damaijia::{DamaijiaSim, DamaijiaSimConfig};
use ordersync_sim::sxt::{SxtSim, SxtSimConfig};
use ordersync_sim::{
    beijing_now, Faults, MiaoyouquanSim, MiaoyouquanSimConfig, UnideskSim, UnideskSimConfig,
    VeapiSim, VeapiSimConfig,
};
use rusqlite::Connection;

fn main() -> ExitCode {
    match demo() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("demo: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs one `ordersync` command in-process, exactly as the binary would.
fn ordersync(args: &[&str]) -> anyhow::Result<ExitCode> {
    let cli = ordersync::cli::Cli::try_parse_from(
        std::iter::once("ordersync").chain(args.iter().copied()),
    )?;
    println!("\n$ ordersync {}", args.join(" "));
    ordersync::cli::run(cli).map_err(|f| f.error)
}

/// A little of everything that goes wrong upstream: 3% 5xx, 2% 429.
fn flaky(seed: u64) -> Faults {
    Faults {
        p_5xx: 0.03,
        p_429: 0.02,
        retry_after_secs: 0,
        seed,
        ..Faults::default()
    }
}

struct Upstreams {
    veapi: VeapiSim,
    myq: MiaoyouquanSim,
    unidesk: UnideskSim,
    damaijia: DamaijiaSim,
    sxt: SxtSim,
}

fn demo() -> anyhow::Result<ExitCode> {
    ordersync::cli::init_logging(ordersync::cli::LogFormat::Text);
    let dir = Path::new("demo");
    std::fs::create_dir_all(dir)?;
    let db = dir.join("ordersync.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }

    // The simulators live on their own runtime; ordersync builds its own, as the binary does.
    let rt = tokio::runtime::Runtime::new()?;
    let now = beijing_now();
    let up = rt.block_on(async {
        anyhow::Ok(Upstreams {
            veapi: VeapiSim::start(VeapiSimConfig {
                seed: 7,
                vekey: "demo-vekey".into(),
                orders: 5000,
                days: 200,
                now,
                faults: flaky(7),
            })
            .await?,
            myq: MiaoyouquanSim::start(MiaoyouquanSimConfig {
                seed: 7,
                apkey: "demo-apkey".into(),
                dou_key: "demo-dou-key".into(),
                orders: 3000,
                days: 80,
                now,
                faults: flaky(8),
            })
            .await?,
            unidesk: UnideskSim::start(UnideskSimConfig {
                seed: 7,
                app_key: "demo-app-key".into(),
                app_secret: "demo-app-secret".into(),
                session: None,
                orders: 800,
                days: 14,
                now,
                faults: flaky(9),
            })
            .await?,
            damaijia: DamaijiaSim::start(DamaijiaSimConfig {
                seed: 7,
                access_token: "demo-token".into(),
                shop_id: "20358278".into(),
                orders: 3000,
                days: 60,
                now,
                faults: flaky(10),
            })
            .await?,
            sxt: SxtSim::start(SxtSimConfig {
                seed: 7,
                user_id: "demo-user".into(),
                dy_uid: "demo-dy-uid".into(),
                orders: 300,
                days: 60,
                now,
                faults: flaky(11),
            })
            .await?,
        })
    })?;
    println!("five simulators on 127.0.0.1 (3% 5xx and 2% 429 injected into each):");
    println!(
        "  veapi       {}  5000 orders over 200 days",
        up.veapi.endpoint()
    );
    println!(
        "  miaoyouquan {}  3000 orders over 80 days",
        up.myq.endpoint()
    );
    println!(
        "  unidesk     {}  800 orders over 14 days",
        up.unidesk.endpoint()
    );
    println!(
        "  damaijia    {}  3000 shop orders over 60 days",
        up.damaijia.endpoint()
    );
    println!("  sxt         {}  300 ad orders", up.sxt.endpoint());

    let config = dir.join("pipelines.toml");
    let day = |d: i64| (now - Duration::days(d)).format("%Y-%m-%d").to_string();
    std::fs::write(
        &config,
        format!(
            r#"# Written by the demo: one pipeline per source against the local simulators.
# Secrets are literals here, for the demo only: use {{ env = "NAME" }} or {{ file = "PATH" }} in production.
[database]
path = "{db}"

[defaults]
settle_lag = "1s"
retry_initial = "20ms"
rescan = "15d"               # `ordersync run` would re-read 15 days every night at 04:30

[[pipeline]]
name = "veapi-demo"
source = "veapi"
endpoint = "{ve}"
start = "{ve_start}"
[pipeline.auth]
vekey = "demo-vekey"

[[pipeline]]
name = "miaoyouquan-demo"
source = "miaoyouquan"
endpoint = "{myq}"
start = "{myq_start}"
[pipeline.auth]
apkey = "demo-apkey"
dou_key = "demo-dou-key"

[[pipeline]]
name = "unidesk-demo"
source = "unidesk"
endpoint = "{ud}"
start = "{ud_start}"
[pipeline.auth]
app_key = "demo-app-key"
app_secret = "demo-app-secret"

[[pipeline]]
name = "damaijia-demo"
source = "damaijia"
endpoint = "{dmj}"
start = "{dmj_start}"
[pipeline.auth]
access_token = "demo-token"
shop_id = "20358278"

[[pipeline]]
name = "sxt-demo"
source = "sxt"
endpoint = "{sxt}"
start = "{dmj_start}"
[pipeline.auth]
user_id = "demo-user"
dy_uid = "demo-dy-uid"
"#,
            db = db.display(),
            ve = up.veapi.endpoint(),
            ve_start = day(201),
            myq = up.myq.endpoint(),
            myq_start = day(81),
            ud = up.unidesk.endpoint(),
            ud_start = day(15),
            dmj = up.damaijia.endpoint(),
            dmj_start = day(61),
            sxt = up.sxt.endpoint(),
        ),
    )?;
    let cfg = config.to_string_lossy().to_string();

    ordersync(&["--config", &cfg, "check"])?;
    if ordersync(&["--config", &cfg, "sync"])? != ExitCode::SUCCESS {
        anyhow::bail!("the first sync failed");
    }
    let at = beijing_now() - Duration::seconds(2);
    let changed = up.veapi.mutate(100, at).len()
        + up.myq.mutate(60, at).len()
        + up.damaijia.mutate(60, at).len()
        + up.sxt.mutate(30, at).len();
    let added = up.veapi.add_orders(20, at).len() + up.damaijia.add_orders(10, at).len();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    println!("\nupstream: {changed} orders changed, {added} new orders");
    if ordersync(&["--config", &cfg, "sync"])? != ExitCode::SUCCESS {
        anyhow::bail!("the second sync failed");
    }
    // Late changes: settlements, refunds and receipts dated three days back, as affiliate
    // platforms and ERPs report them. A live sync re-reads two hours; only a rescan finds them.
    let late = beijing_now() - Duration::days(3);
    let late_changed = up.veapi.mutate(50, late).len()
        + up.myq.mutate(30, late).len()
        + up.unidesk.mutate(20, late).len()
        + up.damaijia.mutate(30, late).len();
    println!("\nupstream: {late_changed} orders changed with a time three days back");
    if ordersync(&["--config", &cfg, "sync"])? != ExitCode::SUCCESS {
        anyhow::bail!("the third sync failed");
    }
    if ordersync(&["--config", &cfg, "rescan"])? != ExitCode::SUCCESS {
        anyhow::bail!("the rescan failed");
    }
    ordersync(&["--config", &cfg, "status"])?;

    let conn = Connection::open(&db)?;
    summary(&conn, &db)?;
    Ok(if compare(&conn, &up)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn summary(conn: &Connection, db: &Path) -> anyhow::Result<()> {
    let sql = "SELECT source, SUM(orders), SUM(gmv), SUM(refunds), SUM(commission), SUM(ad_cost), SUM(ad_gmv) \
               FROM daily_summary GROUP BY source ORDER BY source";
    println!("\n$ sqlite3 {} '{sql}'", db.display());
    println!(
        "{:<12} {:>7} {:>14} {:>12} {:>12} {:>10} {:>10}",
        "source", "orders", "gmv (yuan)", "refunds", "commission", "ad cost", "ad gmv"
    );
    let yuan = |fen: i64| format!("{}.{:02}", fen / 100, fen % 100);
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            [
                r.get::<_, i64>(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ],
        ))
    })?;
    for row in rows {
        let (source, orders, money) = row?;
        println!(
            "{source:<12} {orders:>7} {:>14} {:>12} {:>12} {:>10} {:>10}",
            yuan(money[0]),
            yuan(money[1]),
            yuan(money[2]),
            yuan(money[3]),
            yuan(money[4])
        );
    }
    Ok(())
}

/// Every upstream order is in the database with its current status and amount, and nothing else.
fn compare(conn: &Connection, up: &Upstreams) -> anyhow::Result<bool> {
    // source → (order_id → (status_raw, amount in fen))
    let mut want: BTreeMap<&str, BTreeMap<String, (String, i64)>> = BTreeMap::new();
    want.insert(
        "veapi",
        up.veapi
            .truth()
            .into_iter()
            .map(|o| (o.order_id, (o.flow_point, o.total_pay_amount)))
            .collect(),
    );
    want.insert(
        "miaoyouquan",
        up.myq
            .truth()
            .into_iter()
            .map(|o| (o.order_id, (o.flow_point, o.total_pay_amount)))
            .collect(),
    );
    let mut ud: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for line in up.unidesk.truth() {
        ud.entry(line.order_id).or_insert((String::new(), 0)).1 += line.pay_fee;
    }
    want.insert("unidesk", ud);
    want.insert(
        "damaijia",
        up.damaijia
            .truth()
            .into_iter()
            .map(|o| (o.order_id, (o.order_status.to_string(), o.pay_amount)))
            .collect(),
    );
    want.insert(
        "sxt",
        up.sxt
            .truth()
            .into_iter()
            .map(|o| (o.order_id, (o.state.to_string(), o.cost_fen)))
            .collect(),
    );
    println!("\nground truth, per source:");
    let mut all_equal = true;
    for (source, orders) in &want {
        let amount = if *source == "sxt" {
            "ad_cost"
        } else {
            "pay_amount"
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT order_id, status_raw, {amount} FROM orders WHERE source = ?1"
        ))?;
        let stored: BTreeMap<String, (String, i64)> = stmt
            .query_map([source], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
            .collect::<Result<_, _>>()?;
        let mismatches = orders
            .iter()
            .filter(|(id, (status, fen))| match stored.get(*id) {
                // unidesk's status is per line; its order total is what is compared.
                Some((s, f)) => f != fen || (*source != "unidesk" && s != status),
                None => true,
            })
            .count();
        println!(
            "  {source:<12} {:>5} upstream, {:>5} stored, {mismatches} mismatches",
            orders.len(),
            stored.len()
        );
        all_equal &= mismatches == 0 && stored.len() == orders.len();
    }
    let violations = up.veapi.violations().len()
        + up.myq.violations().len()
        + up.unidesk.violations().len()
        + up.damaijia.violations().len()
        + up.sxt.violations().len();
    let requests = up.veapi.requests()
        + up.myq.requests()
        + up.unidesk.requests()
        + up.damaijia.requests()
        + up.sxt.requests();
    let faults = up.veapi.faults_injected()
        + up.myq.faults_injected()
        + up.unidesk.faults_injected()
        + up.damaijia.faults_injected()
        + up.sxt.faults_injected();
    println!(
        "  {violations} rule violations, {requests} requests ({faults} faults injected and retried)"
    );
    Ok(all_equal && violations == 0)
}
