//! `ordersync-sim`: runs one upstream simulator on loopback for the demo and the benchmark.
//!
//! It prints exactly one line, `<source> <endpoint URL>`, to stdout once the server is listening,
//! then serves until killed. Usage errors go to stderr with exit code 2.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use ordersync_sim::damaijia::{DamaijiaSim, DamaijiaSimConfig};
use ordersync_sim::sxt::{SxtSim, SxtSimConfig};
use ordersync_sim::{
    Faults, MiaoyouquanSim, MiaoyouquanSimConfig, UnideskSim, UnideskSimConfig, VeapiSim,
    VeapiSimConfig,
};

const USAGE: &str =
    "usage: ordersync-sim veapi [--orders N] [--days D] [--seed S] [--vekey K] [--port P] [FAULTS]
       ordersync-sim miaoyouquan [--orders N] [--days D] [--seed S] [--apkey K] [--dou-key K]
                                 [--port P] [FAULTS] [--p-transient F]
       ordersync-sim unidesk [--orders N] [--days D] [--seed S] [--app-key K] [--app-secret S]
                             [--session S] [--port P] [FAULTS] [--p-isp F]
       ordersync-sim damaijia [--orders N] [--days D] [--seed S] [--access-token T] [--shop-id ID]
                              [--port P] [FAULTS] [--p-transient F]
       ordersync-sim sxt [--orders N] [--days D] [--seed S] [--user-id U] [--dy-uid D] [--port P] [FAULTS]
FAULTS: [--p-5xx F] [--p-429 F] [--retry-after SECS] [--p-rate-limit F] [--p-truncated F]
        [--p-malformed F] [--p-slow F] [--slow-ms MS] [--fault-seed S]
--p-transient (miaoyouquan, damaijia): how often to answer the body code -1 数据获取失败 / status 101
--p-isp (unidesk only): how often to answer TOP code 15 isp.remote-service-error
--session \"\" (unidesk): accept requests without a session";

/// Which simulator to run, configured.
enum Sim {
    Veapi(VeapiSimConfig),
    /// The config and the body-transient probability.
    Miaoyouquan(MiaoyouquanSimConfig, f64),
    /// The config and the `isp` error probability.
    Unidesk(UnideskSimConfig, f64),
    /// The config and the status-101 probability.
    Damaijia(DamaijiaSimConfig, f64),
    Sxt(SxtSimConfig),
}

/// A simulator that is listening.
enum Running {
    Veapi(VeapiSim),
    Miaoyouquan(MiaoyouquanSim),
    Unidesk(UnideskSim),
    Damaijia(DamaijiaSim),
    Sxt(SxtSim),
}

impl Running {
    /// `<source> <endpoint URL>`.
    fn banner(&self) -> String {
        match self {
            Running::Veapi(sim) => format!("veapi {}", sim.endpoint()),
            Running::Miaoyouquan(sim) => format!("miaoyouquan {}", sim.endpoint()),
            Running::Unidesk(sim) => format!("unidesk {}", sim.endpoint()),
            Running::Damaijia(sim) => format!("damaijia {}", sim.endpoint()),
            Running::Sxt(sim) => format!("sxt {}", sim.endpoint()),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let (sim, port) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(msg) => {
            eprintln!("ordersync-sim: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ordersync-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = match sim {
            Sim::Veapi(cfg) => VeapiSim::start_at(cfg, addr).await.map(Running::Veapi),
            Sim::Miaoyouquan(cfg, p_transient) => {
                MiaoyouquanSim::start_at(cfg, addr).await.map(|sim| {
                    sim.set_body_transient(p_transient);
                    Running::Miaoyouquan(sim)
                })
            }
            Sim::Unidesk(cfg, p_isp) => UnideskSim::start_at(cfg, addr).await.map(|sim| {
                sim.set_isp_error(p_isp);
                Running::Unidesk(sim)
            }),
            Sim::Damaijia(cfg, p_transient) => DamaijiaSim::start_at(cfg, addr).await.map(|sim| {
                sim.set_body_transient(p_transient);
                Running::Damaijia(sim)
            }),
            Sim::Sxt(cfg) => SxtSim::start_at(cfg, addr).await.map(Running::Sxt),
        };
        let running = match started {
            Ok(running) => running,
            Err(e) => {
                eprintln!("ordersync-sim: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{}", running.banner())
            .and_then(|()| out.flush())
            .is_err()
        {
            return ExitCode::FAILURE;
        }
        drop(out);
        std::future::pending::<ExitCode>().await
    })
}

/// The simulator, its config and the port from the command line.
fn parse(args: &[String]) -> Result<(Sim, u16), String> {
    const KNOWN: &str = "known: veapi, miaoyouquan, unidesk, damaijia, sxt";
    let mut it = args.iter();
    let mut sim = match it.next().map(String::as_str) {
        Some("veapi") => Sim::Veapi(VeapiSimConfig::default()),
        Some("miaoyouquan") => Sim::Miaoyouquan(MiaoyouquanSimConfig::default(), 0.0),
        Some("unidesk") => Sim::Unidesk(UnideskSimConfig::default(), 0.0),
        Some("damaijia") => Sim::Damaijia(DamaijiaSimConfig::default(), 0.0),
        Some("sxt") => Sim::Sxt(SxtSimConfig::default()),
        Some(other) => return Err(format!("unknown simulator `{other}` ({KNOWN})")),
        None => return Err(format!("which simulator? ({KNOWN})")),
    };
    let mut faults = Faults::default();
    let mut port = 0u16;
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("`{flag}` needs a value"))?
            .as_str();
        match (flag.as_str(), &mut sim) {
            ("--orders", Sim::Veapi(cfg)) => cfg.orders = number(flag, value)?,
            ("--orders", Sim::Miaoyouquan(cfg, _)) => cfg.orders = number(flag, value)?,
            ("--orders", Sim::Unidesk(cfg, _)) => cfg.orders = number(flag, value)?,
            ("--orders", Sim::Damaijia(cfg, _)) => cfg.orders = number(flag, value)?,
            ("--orders", Sim::Sxt(cfg)) => cfg.orders = number(flag, value)?,
            ("--days", Sim::Veapi(cfg)) => cfg.days = number(flag, value)?,
            ("--days", Sim::Miaoyouquan(cfg, _)) => cfg.days = number(flag, value)?,
            ("--days", Sim::Unidesk(cfg, _)) => cfg.days = number(flag, value)?,
            ("--days", Sim::Damaijia(cfg, _)) => cfg.days = number(flag, value)?,
            ("--days", Sim::Sxt(cfg)) => cfg.days = number(flag, value)?,
            ("--seed", Sim::Veapi(cfg)) => cfg.seed = number(flag, value)?,
            ("--seed", Sim::Miaoyouquan(cfg, _)) => cfg.seed = number(flag, value)?,
            ("--seed", Sim::Unidesk(cfg, _)) => cfg.seed = number(flag, value)?,
            ("--seed", Sim::Damaijia(cfg, _)) => cfg.seed = number(flag, value)?,
            ("--seed", Sim::Sxt(cfg)) => cfg.seed = number(flag, value)?,
            ("--access-token", Sim::Damaijia(cfg, _)) => cfg.access_token = value.to_string(),
            ("--shop-id", Sim::Damaijia(cfg, _)) => cfg.shop_id = value.to_string(),
            ("--p-transient", Sim::Damaijia(_, p)) => *p = probability(flag, value)?,
            ("--user-id", Sim::Sxt(cfg)) => cfg.user_id = value.to_string(),
            ("--dy-uid", Sim::Sxt(cfg)) => cfg.dy_uid = value.to_string(),
            ("--vekey", Sim::Veapi(cfg)) => cfg.vekey = value.to_string(),
            ("--apkey", Sim::Miaoyouquan(cfg, _)) => cfg.apkey = value.to_string(),
            ("--dou-key", Sim::Miaoyouquan(cfg, _)) => cfg.dou_key = value.to_string(),
            ("--p-transient", Sim::Miaoyouquan(_, p)) => *p = probability(flag, value)?,
            ("--app-key", Sim::Unidesk(cfg, _)) => cfg.app_key = value.to_string(),
            ("--app-secret", Sim::Unidesk(cfg, _)) => cfg.app_secret = value.to_string(),
            ("--session", Sim::Unidesk(cfg, _)) => {
                cfg.session = (!value.is_empty()).then(|| value.to_string())
            }
            ("--p-isp", Sim::Unidesk(_, p)) => *p = probability(flag, value)?,
            (flag, _) => common_flag(flag, value, &mut faults, &mut port)?,
        }
    }
    match &mut sim {
        Sim::Veapi(cfg) => cfg.faults = faults,
        Sim::Miaoyouquan(cfg, _) => cfg.faults = faults,
        Sim::Unidesk(cfg, _) => cfg.faults = faults,
        Sim::Damaijia(cfg, _) => cfg.faults = faults,
        Sim::Sxt(cfg) => cfg.faults = faults,
    }
    Ok((sim, port))
}

/// A flag every simulator takes: the port and the shared fault probabilities.
fn common_flag(flag: &str, value: &str, faults: &mut Faults, port: &mut u16) -> Result<(), String> {
    match flag {
        "--port" => *port = number(flag, value)?,
        "--p-5xx" => faults.p_5xx = probability(flag, value)?,
        "--p-429" => faults.p_429 = probability(flag, value)?,
        "--retry-after" => faults.retry_after_secs = number(flag, value)?,
        "--p-rate-limit" => faults.p_body_rate_limit = probability(flag, value)?,
        "--p-truncated" => faults.p_truncated = probability(flag, value)?,
        "--p-malformed" => faults.p_malformed = probability(flag, value)?,
        "--p-slow" => faults.p_slow = probability(flag, value)?,
        "--slow-ms" => faults.slow_ms = number(flag, value)?,
        "--fault-seed" => faults.seed = number(flag, value)?,
        other => return Err(format!("unknown option `{other}` for this simulator")),
    }
    Ok(())
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("`{flag}` wants a whole number, got `{value}`"))
}

fn probability(flag: &str, value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "`{flag}` wants a probability between 0 and 1, got `{value}`"
        )),
    }
}
