//! The README's demo: the veapi simulator on loopback, a sync of 200 days of orders into
//! `demo/ordersync.db`, upstream changes, a second sync, `ordersync status`, a SQL summary, and a
//! comparison of the database with the simulator's ground truth. No credentials, no network.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use ordersync_sim::{beijing_now, Faults, VeapiSim, VeapiSimConfig};

const ORDERS: usize = 5000;
const DAYS: i64 = 200;

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

fn demo() -> anyhow::Result<ExitCode> {
    ordersync::cli::init_logging(ordersync::cli::LogFormat::Text);
    let dir = Path::new("demo");
    std::fs::create_dir_all(dir)?;
    let db = dir.join("ordersync.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }

    // The simulator lives on its own runtime; ordersync builds its own, as the binary does.
    let rt = tokio::runtime::Runtime::new()?;
    let now = beijing_now();
    let sim = rt.block_on(VeapiSim::start(VeapiSimConfig {
        seed: 7,
        vekey: "demo-vekey".into(),
        orders: ORDERS,
        days: DAYS,
        now,
        faults: Faults {
            p_5xx: 0.03,
            p_429: 0.02,
            retry_after_secs: 0,
            seed: 7,
            ..Faults::default()
        },
    }))?;
    println!(
        "veapi simulator on {} with {ORDERS} orders over {DAYS} days (3% 5xx, 2% 429 injected)",
        sim.endpoint()
    );

    let config = dir.join("pipelines.toml");
    let start = (now - chrono::Duration::days(DAYS + 1)).format("%Y-%m-%d");
    std::fs::write(
        &config,
        format!(
            r#"# Written by the demo: one veapi pipeline against the local simulator.
[database]
path = "{db}"

[defaults]
settle_lag = "1s"
retry_initial = "20ms"

[[pipeline]]
name = "veapi-demo"
source = "veapi"
endpoint = "{endpoint}"
start = "{start}"
[pipeline.auth]
vekey = "demo-vekey"   # a literal, for the demo only: use {{ env = "VEAPI_KEY" }} in production
"#,
            db = db.display(),
            endpoint = sim.endpoint()
        ),
    )?;
    let cfg = config.to_string_lossy().to_string();

    ordersync(&["--config", &cfg, "check"])?;
    if ordersync(&["--config", &cfg, "sync"])? != ExitCode::SUCCESS {
        anyhow::bail!("the first sync failed");
    }
    let changes = sim.mutate(100, beijing_now() - chrono::Duration::seconds(2));
    let added = sim.add_orders(20, beijing_now() - chrono::Duration::seconds(2));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    println!(
        "\nupstream: {} orders changed status, {} new orders",
        changes.len(),
        added.len()
    );
    if ordersync(&["--config", &cfg, "sync"])? != ExitCode::SUCCESS {
        anyhow::bail!("the second sync failed");
    }
    ordersync(&["--config", &cfg, "status"])?;

    let conn = rusqlite::Connection::open(&db)?;
    println!("\n$ sqlite3 {} 'SELECT substr(day,1,7) AS month, SUM(orders), SUM(gmv), SUM(refunds), SUM(commission) FROM daily_summary GROUP BY month'", db.display());
    println!(
        "{:<8} {:>7} {:>14} {:>12} {:>14}",
        "month", "orders", "gmv (yuan)", "refunds", "commission"
    );
    let mut stmt = conn.prepare(
        "SELECT substr(day, 1, 7) AS month, SUM(orders), SUM(gmv), SUM(refunds), SUM(commission) \
         FROM daily_summary GROUP BY month ORDER BY month",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    let yuan = |fen: i64| format!("{}.{:02}", fen / 100, fen % 100);
    for row in rows {
        let (month, orders, gmv, refunds, commission) = row?;
        println!(
            "{month:<8} {orders:>7} {:>14} {:>12} {:>14}",
            yuan(gmv),
            yuan(refunds),
            yuan(commission)
        );
    }

    // Ground truth: every simulator order is in the database with its current status and amount.
    let truth = sim.truth();
    let mut mismatches = 0;
    for o in &truth {
        let got: Option<(String, i64)> = conn
            .query_row(
                "SELECT status_raw, pay_amount FROM orders WHERE source = 'veapi' AND order_id = ?1",
                [&o.order_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        if got != Some((o.flow_point.clone(), o.total_pay_amount)) {
            mismatches += 1;
        }
    }
    let stored: i64 = conn.query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0))?;
    println!(
        "\nground truth: {} upstream orders, {stored} in the database, {mismatches} mismatches, {} rule violations, {} requests ({} faults injected and retried)",
        truth.len(),
        sim.violations().len(),
        sim.requests(),
        sim.faults_injected()
    );
    Ok(if mismatches == 0 && stored as usize == truth.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
