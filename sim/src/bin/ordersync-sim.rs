//! `ordersync-sim`: runs one upstream simulator on loopback for the demo and the benchmark.
//!
//! It prints exactly one line, `<source> <endpoint URL>`, to stdout once the server is listening,
//! then serves until killed. Usage errors go to stderr with exit code 2.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use ordersync_sim::{Faults, VeapiSim, VeapiSimConfig};

const USAGE: &str =
    "usage: ordersync-sim veapi [--orders N] [--days D] [--seed S] [--vekey K] [--port P]
       [--p-5xx F] [--p-429 F] [--retry-after SECS] [--p-rate-limit F] [--p-truncated F]
       [--p-malformed F] [--p-slow F] [--slow-ms MS] [--fault-seed S]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let (cfg, port) = match parse(&args) {
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
        let sim = match VeapiSim::start_at(cfg, addr).await {
            Ok(sim) => sim,
            Err(e) => {
                eprintln!("ordersync-sim: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut out = std::io::stdout().lock();
        if writeln!(out, "veapi {}", sim.endpoint())
            .and_then(|()| out.flush())
            .is_err()
        {
            return ExitCode::FAILURE;
        }
        drop(out);
        std::future::pending::<ExitCode>().await
    })
}

/// The veapi config and port from the command line.
fn parse(args: &[String]) -> Result<(VeapiSimConfig, u16), String> {
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("veapi") => {}
        Some(other) => return Err(format!("unknown simulator `{other}` (known: veapi)")),
        None => return Err("which simulator? (known: veapi)".to_string()),
    }
    let mut cfg = VeapiSimConfig::default();
    let mut faults = Faults::default();
    let mut port = 0u16;
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("`{flag}` needs a value"))?
            .as_str();
        match flag.as_str() {
            "--orders" => cfg.orders = number(flag, value)?,
            "--days" => cfg.days = number(flag, value)?,
            "--seed" => cfg.seed = number(flag, value)?,
            "--vekey" => cfg.vekey = value.to_string(),
            "--port" => port = number(flag, value)?,
            "--p-5xx" => faults.p_5xx = probability(flag, value)?,
            "--p-429" => faults.p_429 = probability(flag, value)?,
            "--retry-after" => faults.retry_after_secs = number(flag, value)?,
            "--p-rate-limit" => faults.p_body_rate_limit = probability(flag, value)?,
            "--p-truncated" => faults.p_truncated = probability(flag, value)?,
            "--p-malformed" => faults.p_malformed = probability(flag, value)?,
            "--p-slow" => faults.p_slow = probability(flag, value)?,
            "--slow-ms" => faults.slow_ms = number(flag, value)?,
            "--fault-seed" => faults.seed = number(flag, value)?,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    cfg.faults = faults;
    Ok((cfg, port))
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
