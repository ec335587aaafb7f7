//! Shared test harness: a simulator on its own runtime, a temp dir with config and database, the
//! real binary, and an independent reading of the simulator's ground truth.

#![allow(dead_code)]

use ordersync_sim::Simulator;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{Duration, NaiveDateTime};
use ordersync_sim::{beijing_now, Faults, VeOrder, VeapiSim, VeapiSimConfig};
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
    /// A veapi world of `orders` orders over `days` days, and a config whose `start` is before all of them.
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

    pub fn db(&self) -> Connection {
        Connection::open(self.db_path()).expect("open db")
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn assert_ok(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
}

/// Round-half-up of a decimal fen string, written independently of `ordersync::money`.
pub fn expected_fen(s: &str) -> i64 {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let base: i64 = int.parse().expect("integer part");
    let up = frac.chars().next().is_some_and(|c| c >= '5');
    base + i64::from(up)
}

/// The contract's mapping of the Douyin affiliate `flow_point`, written out independently.
pub fn flow_point_status(flow_point: &str) -> String {
    match flow_point {
        "PAY_SUCC" => "paid",
        "REFUND" => "refunded",
        "SETTLE" => "settled",
        "CONFIRM" => "completed",
        _ => "unknown",
    }
    .to_string()
}

pub fn fmt(t: Option<NaiveDateTime>) -> Option<String> {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// The `orders` columns we expect for one simulator order.
#[derive(Debug, PartialEq)]
pub struct ExpectedOrder {
    pub order_id: String,
    pub status: String,
    pub status_raw: String,
    pub pay_amount: i64,
    pub commission: i64,
    pub paid_at: Option<String>,
    pub updated_at: Option<String>,
    pub refunded_at: Option<String>,
    pub settled_at: Option<String>,
    pub confirmed_at: Option<String>,
    pub shop_id: String,
    pub shop_name: String,
    pub product_id: String,
    pub product_name: String,
    pub item_num: i64,
}

pub fn expected(o: &VeOrder) -> ExpectedOrder {
    let real = expected_fen(&o.ads_real_commission);
    ExpectedOrder {
        order_id: o.order_id.clone(),
        status: flow_point_status(&o.flow_point),
        status_raw: o.flow_point.clone(),
        pay_amount: o.total_pay_amount,
        commission: if real != 0 {
            real
        } else {
            expected_fen(&o.estimated_commission)
        },
        paid_at: fmt(Some(o.pay_success_time)),
        updated_at: fmt(Some(o.update_time)),
        refunded_at: fmt(o.refund_time),
        settled_at: fmt(o.settle_time),
        confirmed_at: fmt(o.confirm_time),
        shop_id: o.shop_id.clone(),
        shop_name: o.shop_name.clone(),
        product_id: o.product_id.clone(),
        product_name: o.product_name.clone(),
        item_num: o.item_num,
    }
}

pub fn stored_orders(conn: &Connection) -> Vec<ExpectedOrder> {
    stored_orders_of(conn, "veapi")
}

pub fn stored_orders_of(conn: &Connection, source: &str) -> Vec<ExpectedOrder> {
    let mut stmt = conn
        .prepare(
            "SELECT order_id, status, status_raw, pay_amount, commission, paid_at, updated_at, refunded_at, \
             settled_at, confirmed_at, shop_id, shop_name, product_id, product_name, item_num \
             FROM orders WHERE source = ?1 ORDER BY order_id",
        )
        .expect("prepare");
    stmt.query_map([source], |r| {
        Ok(ExpectedOrder {
            order_id: r.get(0)?,
            status: r.get(1)?,
            status_raw: r.get(2)?,
            pay_amount: r.get(3)?,
            commission: r.get(4)?,
            paid_at: r.get(5)?,
            updated_at: r.get(6)?,
            refunded_at: r.get(7)?,
            settled_at: r.get(8)?,
            confirmed_at: r.get(9)?,
            shop_id: r.get(10)?,
            shop_name: r.get(11)?,
            product_id: r.get(12)?,
            product_name: r.get(13)?,
            item_num: r.get(14)?,
        })
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

/// The database holds exactly the simulator's orders, field by field, each with its one line, and
/// the simulator saw no request that broke a rule.
pub fn assert_equals_truth(h: &Harness) {
    assert_orders_equal_truth(h);
    assert_eq!(
        h.sim.violations(),
        Vec::<String>::new(),
        "simulator recorded rule violations"
    );
}

pub fn assert_orders_equal_truth(h: &Harness) {
    let conn = h.db();
    let mut truth: Vec<ExpectedOrder> = h.sim.truth().iter().map(expected).collect();
    truth.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    let stored = stored_orders(&conn);
    assert_eq!(
        stored.len(),
        truth.len(),
        "order count differs from ground truth"
    );
    for (s, t) in stored.iter().zip(&truth) {
        assert_eq!(s, t);
    }
    let lines: i64 = scalar(
        &conn,
        "SELECT COUNT(*) FROM sub_orders WHERE source = 'veapi' AND sub_order_id = order_id",
    );
    assert_eq!(
        lines,
        truth.len() as i64,
        "each veapi order has exactly one line"
    );
    let orphans: i64 = scalar(&conn, "SELECT COUNT(*) FROM sub_orders s LEFT JOIN orders o USING (source, order_id) WHERE o.order_id IS NULL");
    assert_eq!(orphans, 0);
}

pub fn scalar<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> T {
    conn.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `orders` without `synced_at`, as text, for "nothing changed" comparisons.
pub fn orders_snapshot(conn: &Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare(
            "SELECT source, order_id, pipeline, kind, status, status_raw, pay_amount, refund_amount, commission, \
             created_at, paid_at, updated_at, refunded_at, settled_at, confirmed_at, shop_id, shop_name, product_id, \
             product_name, item_num, raw, first_seen_at FROM orders ORDER BY source, order_id",
        )
        .expect("prepare");
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        let mut parts = Vec::with_capacity(n);
        for i in 0..n {
            let v: rusqlite::types::Value = r.get(i)?;
            parts.push(format!("{v:?}"));
        }
        Ok(parts.join("|"))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

pub fn file_contains(path: &Path, needle: &str) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
        Err(_) => false,
    }
}

// ---- added for tests/reliability.rs -------------------------------------------------------------

impl Harness {
    /// As [`Harness::veapi`], with the world's seed and the key the simulator accepts chosen by the
    /// caller (the binary still gets `TEST_VEKEY = VEKEY` from [`Harness::command`]; override it on
    /// the returned `Command` when `vekey` differs).
    pub fn veapi_with(seed: u64, vekey: &str, orders: usize, days: i64, faults: Faults) -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let now = beijing_now();
        let cfg = VeapiSimConfig {
            seed,
            vekey: vekey.to_string(),
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
}

/// Lines of a failed command's stderr that are its error sentences (`ordersync: …`), as opposed to
/// log lines.
pub fn error_sentences(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.starts_with("ordersync: "))
        .map(str::to_string)
        .collect()
}

/// No panic message, backtrace or Rust debug dump reached the user.
pub fn assert_no_panic(o: &Output) {
    let all = text(o);
    for bad in [
        "panicked",
        "stack backtrace",
        "RUST_BACKTRACE",
        "SqliteFailure",
    ] {
        assert!(!all.contains(bad), "`{bad}` in the output:\n{all}");
    }
}

// ---- the daemon as a child: its port, its HTTP endpoints, its exposition, its signals -------------

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// One `GET` over a fresh connection: status and body, or `None` when nothing answers within 5 s.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// One sample: metric name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// Parses Prometheus text exposition (format 0.0.4) by the format's rules; panics on a line or an
/// order that breaks them. Beyond each line's syntax: every family's lines form one group, its
/// `# TYPE` comes before its first sample, and a sample belongs to the family of the `# HELP`/
/// `# TYPE` lines just above it — so a sample can never be read as part of another family (or as
/// untyped, as a client parser reads a sample that follows another family's `# TYPE`).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    struct Family {
        name: String,
        has_help: bool,
        has_type: bool,
        samples: usize,
    }
    let mut out = Vec::new();
    let mut current: Option<Family> = None;
    let mut finished: Vec<String> = Vec::new();
    let valid_name = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let (kind, name) = match words.as_slice() {
                [kind @ ("HELP" | "TYPE"), name, ..] => (*kind, *name),
                _ => panic!("bad comment line {line:?}"),
            };
            assert!(valid_name(name), "bad metric name in {line:?}");
            if current.as_ref().is_none_or(|f| f.name != name) {
                if let Some(done) = current.take() {
                    finished.push(done.name);
                }
                assert!(
                    !finished.iter().any(|f| f == name),
                    "family {name} appears in two groups: {line:?}"
                );
                current = Some(Family {
                    name: name.to_string(),
                    has_help: false,
                    has_type: false,
                    samples: 0,
                });
            }
            let family = current.as_mut().expect("set above");
            if kind == "HELP" {
                assert!(!family.has_help, "second HELP line for {name}");
                family.has_help = true;
            } else {
                assert!(
                    words.len() == 3
                        && ["counter", "gauge", "histogram", "summary", "untyped"]
                            .contains(&words[2]),
                    "bad TYPE line {line:?}"
                );
                assert!(!family.has_type, "second TYPE line for {name}");
                assert_eq!(family.samples, 0, "TYPE of {name} after its samples");
                family.has_type = true;
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                let labels = inner
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p
                            .split_once("=\"")
                            .unwrap_or_else(|| panic!("bad label: {line:?}"));
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (n.to_string(), labels)
            }
            None => (series.to_string(), Vec::new()),
        };
        assert!(valid_name(&name), "bad metric name {name:?}");
        match current.as_mut() {
            Some(f) if f.name == name => {
                assert!(f.has_type, "sample of {name} before its TYPE line");
                f.samples += 1;
            }
            Some(f) => panic!(
                "sample {line:?} follows the HELP/TYPE of {}: a parser reads it as untyped",
                f.name
            ),
            None => panic!("sample {line:?} before any TYPE line"),
        }
        out.push((name, labels, value));
    }
    out
}

/// The value of the first sample of `name` carrying all of `labels`.
pub fn metric(all: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    all.iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| *v)
}

pub fn runs_with(h: &Harness, pipeline: &str, outcome: &str) -> i64 {
    h.db()
        .query_row(
            "SELECT COUNT(*) FROM runs WHERE pipeline = ?1 AND outcome = ?2",
            [pipeline, outcome],
            |r| r.get(0),
        )
        .unwrap_or(0)
}

/// Kills the daemon if the test ends early (a failed assertion must not leave it running).
pub struct Reaper(pub std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn sigterm(child: &std::process::Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(ok.success());
}

/// The daemon's exit code; kills it and panics if it has not exited `within`.
pub fn wait_exit(child: &mut std::process::Child, within: std::time::Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("daemon did not exit within {within:?} of SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
