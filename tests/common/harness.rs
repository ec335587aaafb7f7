//! The veapi harness most tests start from: a veapi simulator on its own runtime, a temp dir with
//! `pipelines.toml` and the database, and the real binary run against them.

use std::path::PathBuf;
use std::process::{Command, Output};

use chrono::{Duration, NaiveDateTime};
use ordersync_sim::{beijing_now, Faults, VeapiSim, VeapiSimConfig};
use rusqlite::Connection;

pub const VEKEY: &str = "SeCrEt-vekey-8d3f21";

pub struct Harness {
    pub rt: tokio::runtime::Runtime,
    pub sim: VeapiSim,
    pub dir: tempfile::TempDir,
    pub now: NaiveDateTime,
    pub days: i64,
}

impl Harness {
    /// A veapi world of `orders` orders over `days` days (seed 42, key [`VEKEY`]), and a config
    /// whose `start` is before all of them. A test that needs another key sets it with
    /// `h.sim.set_vekey` and gives the binary the same one in `TEST_VEKEY`.
    pub fn veapi(orders: usize, days: i64, faults: Faults) -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let now = beijing_now();
        let cfg = VeapiSimConfig {
            seed: 42,
            vekey: VEKEY.to_string(),
            orders,
            days,
            now,
            faults,
        };
        let sim = rt.block_on(VeapiSim::start(cfg)).expect("simulator starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let h = Harness {
            rt,
            sim,
            dir,
            now,
            days,
        };
        h.write_config("");
        h
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("pipelines.toml")
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("orders.db")
    }

    /// `start` one day before the oldest order; fast retries; `extra` is appended to the pipeline.
    pub fn write_config(&self, extra: &str) {
        let start = self.now - Duration::days(self.days + 1);
        let text = format!(
            r#"[database]
path = "{db}"

[defaults]
settle_lag = "1s"
lookback = "2h"
timeout = "2s"
retry_initial = "5ms"
max_retries = 8
# One window at a time: these tests count requests and pages exactly.
concurrency = 1

[[pipeline]]
name = "ve"
source = "veapi"
endpoint = "{endpoint}"
start = "{start}"
page_size = 50
{extra}
[pipeline.auth]
vekey = {{ env = "TEST_VEKEY" }}
"#,
            db = self.db_path().display(),
            endpoint = self.sim.endpoint(),
            start = start.format("%Y-%m-%d %H:%M:%S"),
        );
        std::fs::write(self.config_path(), text).expect("write config");
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ordersync"));
        cmd.arg("--config").arg(self.config_path()).args(args);
        cmd.env("TEST_VEKEY", VEKEY).env_remove("ORDERSYNC_CONFIG");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("binary runs")
    }

    /// The binary on the PostgreSQL database at `url` (`--db`; one of `ordersync_testpg`'s, whose
    /// password goes in `PGPASSWORD`) instead of the config's SQLite file.
    pub fn run_on(&self, url: &str, args: &[&str]) -> Output {
        self.command_on(url, args).output().expect("binary runs")
    }

    /// The command `run_on` runs.
    pub fn command_on(&self, url: &str, args: &[&str]) -> Command {
        let mut cmd = self.command(&[&["--db", url][..], args].concat());
        cmd.env("PGPASSWORD", super::PG_PASSWORD);
        cmd
    }

    pub fn db(&self) -> Connection {
        Connection::open(self.db_path()).expect("open db")
    }
}
