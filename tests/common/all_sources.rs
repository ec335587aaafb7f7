//! The five sources at once: the five simulators on one runtime, one `pipelines.toml` with a
//! pipeline each (secrets from the environment), the real binary, and what the database must hold.
//! The crash loop, the fault soak, the concurrency, secrets and spoiled-row tests build on it.
//!
//! What "equals ground truth" means per source (see [`AllSources::assert_equals_truth`]):
//! veapi and miaoyouquan field by field with one line each; unidesk every SKU line with its
//! `pay_fee` and status, each main order the sum of its lines and its most advanced status;
//! damaijia every order and every SKU line; sxt one row per ad order in its truth state, money in
//! exact fen. And no simulator saw a request that broke its API's rules.

use ordersync_sim::Simulator;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use chrono::{Duration, NaiveDateTime};
use ordersync_sim::damaijia::{DamaijiaSim, DamaijiaSimConfig};
use ordersync_sim::faults::FaultCounts;
use ordersync_sim::sxt::{SxtSim, SxtSimConfig};
use ordersync_sim::{
    beijing_now, Faults, MiaoyouquanSim, MiaoyouquanSimConfig, UnideskSim, UnideskSimConfig,
    VeapiSim, VeapiSimConfig,
};
use rusqlite::Connection;
use serde_json::Value;

use super::{
    assert_integrity, assert_no_duplicate_history, assert_ok, expected, expected_dmj,
    expected_dmj_lines, expected_myq, expected_sxt, parse_db_time, query_map, scalar, stored_dmj,
    stored_dmj_lines, stored_orders_of, stored_sxt, DmjStored, ExpectedOrder, SxtStored,
};

// ---- the five upstreams -------------------------------------------------------------------------

pub const VE: &str = "ve";
pub const MYQ: &str = "myq";
pub const UD: &str = "ud";
pub const DMJ: &str = "dmj";
pub const ADS: &str = "ads";
pub const PIPELINES: [&str; 5] = [VE, MYQ, UD, DMJ, ADS];
/// The pipelines whose source has history to backfill (sxt is a snapshot: refused by design).
pub const BACKFILLABLE: [&str; 4] = [VE, MYQ, UD, DMJ];

/// Every secret, with the environment variable the config reads it from. All start with
/// `SeCrEt`, so that prefix alone must never show up anywhere; some carry characters that URL
/// encoding changes, so their encoded forms are searched for too.
pub const SECRETS: [(&str, &str); 9] = [
    ("ALL_VEKEY", "SeCrEt-ve+key/1=&%a1a1"),
    ("ALL_APKEY", "SeCrEt-myq-apkey-2b2b"),
    ("ALL_DOU_KEY", "SeCrEt-myq-dou+key/3c=&3c3c"),
    ("ALL_APP_KEY", "SeCrEt-ud-appkey-4d4d"),
    ("ALL_APP_SECRET", "SeCrEt-ud-app%secret#5e5e"),
    ("ALL_SESSION", "SeCrEt-ud-session-6f6f"),
    ("ALL_DMJ_TOKEN", "SeCrEt-dmj-token-7a7a"),
    ("ALL_SXT_USER", "SeCrEt-sxt-user-8b8b"),
    ("ALL_SXT_DYUID", "SeCrEt-sxt-dyuid-9c9c"),
];
/// Not a secret: damaijia sends it back in every row, so it is stored as `orders.shop_id`.
pub const SHOP: &str = "20358278";

pub fn secret(env: &str) -> String {
    SECRETS
        .iter()
        .find(|(e, _)| *e == env)
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| panic!("no secret {env}"))
}

/// How many orders over how many days, per source.
#[derive(Debug, Clone, Copy)]
pub struct Worlds {
    pub ve: (usize, i64),
    pub myq: (usize, i64),
    pub ud: (usize, i64),
    pub dmj: (usize, i64),
    pub sxt: (usize, i64),
}

impl Worlds {
    /// `orders` veapi orders over 20 days, and a handful of each other source's: for the tests
    /// that watch one pipeline (`ve`) while the others run by.
    pub fn mostly_ve(orders: usize) -> Worlds {
        Worlds {
            ve: (orders, 20),
            myq: (10, 2),
            ud: (10, 2),
            dmj: (10, 2),
            sxt: (5, 2),
        }
    }
}

/// Every answer `ms` late (seeded `seed`): runs that last long enough to be watched.
pub fn slow(ms: u64, seed: u64) -> Faults {
    Faults {
        p_slow: 1.0,
        slow_ms: ms,
        seed,
        ..Faults::default()
    }
}

/// The five simulators on one runtime, a temp dir with `pipelines.toml` and the database.
pub struct AllSources {
    pub ve: VeapiSim,
    pub myq: MiaoyouquanSim,
    pub ud: UnideskSim,
    pub dmj: DamaijiaSim,
    pub sxt: SxtSim,
    pub worlds: Worlds,
    pub now: NaiveDateTime,
    pub dir: tempfile::TempDir,
    /// Serves the simulators; dropped last.
    _rt: tokio::runtime::Runtime,
}

/// `base` with its own fault stream for simulator number `k`.
pub fn faults_for(base: &Faults, k: u64) -> Faults {
    Faults {
        seed: base.seed ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        ..base.clone()
    }
}

impl AllSources {
    /// Starts the five simulators (worlds seeded from `seed`, each with `faults` on its own
    /// stream) and writes a config with default settings.
    pub fn start(seed: u64, worlds: Worlds, faults: &Faults) -> AllSources {
        assert!(
            worlds.myq.1 <= 85,
            "miaoyouquan keeps 90 days: a longer world could not be fetched whole"
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let now = beijing_now();
        let (ve, myq, ud, dmj, sxt) = rt.block_on(async {
            let ve = VeapiSim::start(VeapiSimConfig {
                seed: seed ^ 1,
                vekey: secret("ALL_VEKEY"),
                orders: worlds.ve.0,
                days: worlds.ve.1,
                now,
                faults: faults_for(faults, 1),
            })
            .await
            .expect("veapi simulator starts");
            let myq = MiaoyouquanSim::start(MiaoyouquanSimConfig {
                seed: seed ^ 2,
                apkey: secret("ALL_APKEY"),
                dou_key: secret("ALL_DOU_KEY"),
                orders: worlds.myq.0,
                days: worlds.myq.1,
                now,
                faults: faults_for(faults, 2),
            })
            .await
            .expect("miaoyouquan simulator starts");
            let ud = UnideskSim::start(UnideskSimConfig {
                seed: seed ^ 3,
                app_key: secret("ALL_APP_KEY"),
                app_secret: secret("ALL_APP_SECRET"),
                session: Some(secret("ALL_SESSION")),
                orders: worlds.ud.0,
                days: worlds.ud.1,
                now,
                faults: faults_for(faults, 3),
            })
            .await
            .expect("unidesk simulator starts");
            let dmj = DamaijiaSim::start(DamaijiaSimConfig {
                seed: seed ^ 4,
                access_token: secret("ALL_DMJ_TOKEN"),
                shop_id: SHOP.into(),
                orders: worlds.dmj.0,
                days: worlds.dmj.1,
                now,
                faults: faults_for(faults, 4),
            })
            .await
            .expect("damaijia simulator starts");
            let sxt = SxtSim::start(SxtSimConfig {
                seed: seed ^ 5,
                user_id: secret("ALL_SXT_USER"),
                dy_uid: secret("ALL_SXT_DYUID"),
                orders: worlds.sxt.0,
                days: worlds.sxt.1,
                now,
                faults: faults_for(faults, 5),
            })
            .await
            .expect("sxt simulator starts");
            (ve, myq, ud, dmj, sxt)
        });
        let a = AllSources {
            ve,
            myq,
            ud,
            dmj,
            sxt,
            worlds,
            now,
            dir: tempfile::tempdir().expect("temp dir"),
            _rt: rt,
        };
        a.write_config("2s", 8);
        a
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("pipelines.toml")
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("orders.db")
    }

    pub fn db(&self) -> Connection {
        Connection::open(self.db_path()).expect("open db")
    }

    pub fn days(&self, pipeline: &str) -> i64 {
        match pipeline {
            VE => self.worlds.ve.1,
            MYQ => self.worlds.myq.1,
            UD => self.worlds.ud.1,
            DMJ => self.worlds.dmj.1,
            _ => self.worlds.sxt.1,
        }
    }

    /// The pipeline's `start`, and the `--from` of its backfills: the day before its oldest order.
    pub fn start_day(&self, pipeline: &str) -> String {
        (self.now - Duration::days(self.days(pipeline) + 1))
            .format("%Y-%m-%d")
            .to_string()
    }

    /// One pipeline per source, secrets from the environment.
    pub fn write_config(&self, timeout: &str, max_retries: u32) {
        let auth = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, env)| format!("{k} = {{ env = \"{env}\" }}\n"))
                .collect::<String>()
        };
        let text = format!(
            r#"[database]
path = "{db}"

[defaults]
settle_lag = "1s"
lookback = "2h"
timeout = "{timeout}"
retry_initial = "5ms"
max_retries = {max_retries}

[[pipeline]]
name = "{VE}"
source = "veapi"
endpoint = "{ve}"
start = "{ve_start}"
page_size = 50
[pipeline.auth]
{ve_auth}
[[pipeline]]
name = "{MYQ}"
source = "miaoyouquan"
endpoint = "{myq}"
start = "{myq_start}"
page_size = 100
[pipeline.auth]
{myq_auth}
[[pipeline]]
name = "{UD}"
source = "unidesk"
endpoint = "{ud}"
start = "{ud_start}"
[pipeline.auth]
{ud_auth}
[[pipeline]]
name = "{DMJ}"
source = "damaijia"
endpoint = "{dmj}"
start = "{dmj_start}"
page_size = 50
[pipeline.auth]
{dmj_auth}shop_id = "{SHOP}"

[[pipeline]]
name = "{ADS}"
source = "sxt"
endpoint = "{sxt}"
start = "{sxt_start}"
[pipeline.auth]
{sxt_auth}"#,
            db = self.db_path().display(),
            ve = self.ve.endpoint(),
            ve_start = self.start_day(VE),
            ve_auth = auth(&[("vekey", "ALL_VEKEY")]),
            myq = self.myq.endpoint(),
            myq_start = self.start_day(MYQ),
            myq_auth = auth(&[("apkey", "ALL_APKEY"), ("dou_key", "ALL_DOU_KEY")]),
            ud = self.ud.endpoint(),
            ud_start = self.start_day(UD),
            ud_auth = auth(&[
                ("app_key", "ALL_APP_KEY"),
                ("app_secret", "ALL_APP_SECRET"),
                ("session", "ALL_SESSION"),
            ]),
            dmj = self.dmj.endpoint(),
            dmj_start = self.start_day(DMJ),
            dmj_auth = auth(&[("access_token", "ALL_DMJ_TOKEN")]),
            sxt = self.sxt.endpoint(),
            sxt_start = self.start_day(ADS),
            sxt_auth = auth(&[("user_id", "ALL_SXT_USER"), ("dy_uid", "ALL_SXT_DYUID")]),
        );
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// Adds `extra` (lines of `key = value`) to the config's `[defaults]`.
    pub fn add_defaults(&self, extra: &str) {
        let text = std::fs::read_to_string(self.config_path()).expect("read config");
        let text = text.replacen("[defaults]\n", &format!("[defaults]\n{extra}\n"), 1);
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// The real binary with this config and every secret in its environment (and no inherited
    /// `RUST_LOG`: a test that wants logs sets it).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ordersync"));
        cmd.arg("--config")
            .arg(self.config_path())
            .args(args)
            .env_remove("ORDERSYNC_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        for (env, value) in SECRETS {
            cmd.env(env, value);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("binary runs")
    }

    /// The binary on the PostgreSQL database at `url` (`--db`, the test cluster's password in
    /// `PGPASSWORD`) instead of the config's SQLite file.
    pub fn command_on(&self, url: &str, args: &[&str]) -> Command {
        let mut cmd = self.command(&[&["--db", url][..], args].concat());
        cmd.env("PGPASSWORD", super::PG_PASSWORD);
        cmd
    }

    pub fn status_json(&self) -> Value {
        let out = self.run(&["status", "--json"]);
        assert_ok(&out);
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    // -- the simulators together --

    /// The five simulators, by source name, each with its fault stream number.
    pub fn sims(&self) -> [(&'static str, &dyn Simulator, u64); 5] {
        [
            ("veapi", &self.ve, 1),
            ("miaoyouquan", &self.myq, 2),
            ("unidesk", &self.ud, 3),
            ("damaijia", &self.dmj, 4),
            ("sxt", &self.sxt, 5),
        ]
    }

    pub fn set_faults(&self, faults: &Faults) {
        for (_, sim, stream) in self.sims() {
            sim.set_faults(faults_for(faults, stream));
        }
    }

    /// The body-level "try again" answers of the sources that have one: miaoyouquan `-1`,
    /// unidesk `isp.remote-service-error`, damaijia `101`.
    pub fn set_body_transient(&self, p: f64) {
        self.myq.set_body_transient(p);
        self.ud.set_isp_error(p);
        self.dmj.set_body_transient(p);
    }

    pub fn fault_counts(&self) -> [(&'static str, FaultCounts); 5] {
        self.sims()
            .map(|(source, sim, _)| (source, sim.fault_counts()))
    }

    pub fn total_faults(&self) -> FaultCounts {
        let mut t = FaultCounts::default();
        for (_, c) in self.fault_counts() {
            t.server_error += c.server_error;
            t.too_many_requests += c.too_many_requests;
            t.body_rate_limit += c.body_rate_limit;
            t.body_transient += c.body_transient;
            t.truncated += c.truncated;
            t.malformed += c.malformed;
            t.slow += c.slow;
        }
        t
    }

    pub fn requests(&self) -> u64 {
        self.sims().iter().map(|(_, sim, _)| sim.requests()).sum()
    }

    pub fn violations(&self) -> Vec<String> {
        self.sims()
            .iter()
            .flat_map(|(source, sim, _)| {
                sim.violations()
                    .into_iter()
                    .map(move |l| format!("{source}: {l}"))
            })
            .collect()
    }

    /// Moves orders along in every upstream, at `at`. Returns how many changed, and adds the main
    /// orders unidesk marked received to `ud_received` (receipt keeps a line's modified time, so
    /// only a re-read of its window shows it).
    pub fn mutate(&self, n: usize, at: NaiveDateTime, ud_received: &mut HashSet<String>) -> usize {
        let ud = self.ud.mutate(n / 3 + 1, at);
        ud_received.extend(
            ud.iter()
                .filter(|m| m.to == "5")
                .map(|m| m.order_id.clone()),
        );
        self.ve.mutate(n, at).len()
            + self.myq.mutate(n, at).len()
            + ud.len()
            + self.dmj.mutate(n, at).len()
            + self.sxt.mutate(n / 2 + 1, at).len()
    }

    /// New orders in every upstream, with times up to `at` (a few seconds before it).
    pub fn add_orders(&self, n: usize, at: NaiveDateTime) -> usize {
        self.ve.add_orders(n, at).len()
            + self.myq.add_orders(n, at).len()
            + self.ud.add_orders(n, at).len()
            + self.dmj.add_orders(n, at).len()
            + self.sxt.add_orders(n, at).len()
    }

    // -- ground truth --

    /// Every source equals its simulator's truth, and no simulator saw a rule broken. Unidesk
    /// lines of the main orders in `ud_received` may still show paid (2) where upstream says
    /// received (5): nothing but a re-read of their (old) window can show that.
    pub fn assert_equals_truth(&self, ud_received: Option<&HashSet<String>>) {
        let conn = self.db();
        self.assert_veapi(&conn);
        self.assert_miaoyouquan(&conn);
        self.assert_unidesk(&conn, ud_received);
        self.assert_damaijia(&conn);
        self.assert_sxt(&conn);
        assert_eq!(
            self.violations(),
            Vec::<String>::new(),
            "simulators recorded rule violations"
        );
    }

    fn assert_veapi(&self, conn: &Connection) {
        let want: BTreeMap<String, ExpectedOrder> = self
            .ve
            .truth()
            .iter()
            .map(|o| (o.order_id.clone(), expected(o)))
            .collect();
        assert_same("veapi orders", &stored_by_id(conn, "veapi"), &want);
        assert_single_lines(conn, "veapi", &want);
    }

    fn assert_miaoyouquan(&self, conn: &Connection) {
        let want: BTreeMap<String, ExpectedOrder> = self
            .myq
            .truth()
            .iter()
            .map(|o| (o.order_id.clone(), expected_myq(o)))
            .collect();
        assert_same(
            "miaoyouquan orders",
            &stored_by_id(conn, "miaoyouquan"),
            &want,
        );
        assert_single_lines(conn, "miaoyouquan", &want);
    }

    fn assert_unidesk(&self, conn: &Connection, received: Option<&HashSet<String>>) {
        let stored = ud_stored_lines(conn);
        let mut want: BTreeMap<(String, String), (i64, String)> = BTreeMap::new();
        for l in self.ud.truth() {
            let key = (l.order_id.clone(), l.sub_order_id.clone());
            let mut status = l.order_status.to_string();
            let stale = received.is_some_and(|r| r.contains(&l.order_id))
                && status == "5"
                && stored.get(&key).is_some_and(|(_, s)| s == "2");
            if stale {
                status = "2".into();
            }
            want.insert(key, (l.pay_fee, status));
        }
        assert_same("unidesk SKU lines (pay_fee, status)", &stored, &want);
        // Each main order: the sum of its lines, how many, and its most advanced line's status.
        let mut orders: BTreeMap<String, (i64, i64, String)> = BTreeMap::new();
        for ((order, _), (fee, status)) in &want {
            let e = orders
                .entry(order.clone())
                .or_insert((0, 0, status.clone()));
            e.0 += fee;
            e.1 += 1;
            if ud_rank(status) > ud_rank(&e.2) {
                e.2 = status.clone();
            }
        }
        let stored_orders: BTreeMap<String, (i64, i64, String)> = query_map(
            conn,
            "SELECT o.order_id, o.pay_amount, (SELECT COUNT(*) FROM sub_orders s WHERE s.source = o.source \
             AND s.order_id = o.order_id), o.status_raw FROM orders o WHERE o.source = 'unidesk'",
            |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))),
        );
        assert_same(
            "unidesk main orders (sum of pay_fee, lines, status)",
            &stored_orders,
            &orders,
        );
    }

    fn assert_damaijia(&self, conn: &Connection) {
        let truth = self.dmj.truth();
        let want: BTreeMap<String, DmjStored> = truth
            .iter()
            .map(|o| (o.order_id.clone(), expected_dmj(o)))
            .collect();
        assert_same("damaijia orders", &stored_dmj(conn), &want);
        assert_same(
            "damaijia SKU lines",
            &stored_dmj_lines(conn),
            &expected_dmj_lines(&truth),
        );
    }

    fn assert_sxt(&self, conn: &Connection) {
        let want: BTreeMap<String, SxtStored> = self
            .sxt
            .truth()
            .iter()
            .map(|o| (o.order_id.clone(), expected_sxt(o)))
            .collect();
        assert_same("sxt ad orders", &stored_sxt(conn), &want);
    }

    // -- what holds at any instant a process can be killed at --

    pub fn check_invariants(&self) {
        let conn = self.db();
        assert_integrity(&conn);
        assert_no_duplicate_history(&conn);
        let orphans: i64 = scalar(
            &conn,
            "SELECT COUNT(*) FROM sub_orders s LEFT JOIN orders o USING (source, order_id) WHERE o.order_id IS NULL",
        );
        assert_eq!(orphans, 0, "sub_orders without their order");
        let bad_lines: i64 = scalar(
            &conn,
            "SELECT COUNT(*) FROM orders o WHERE o.source IN ('veapi', 'miaoyouquan') AND \
             (SELECT COUNT(*) FROM sub_orders s WHERE s.source = o.source AND s.order_id = o.order_id) <> 1",
        );
        assert_eq!(
            bad_lines, 0,
            "veapi or miaoyouquan orders without exactly one line"
        );
        self.assert_stored_rows_are_real_versions(&conn);
        self.assert_coverage_is_real(&conn);
    }

    /// Every stored veapi, miaoyouquan and damaijia order is a version upstream really had: never
    /// ahead of upstream's update time, and field for field upstream's when it has the same one.
    fn assert_stored_rows_are_real_versions(&self, conn: &Connection) {
        let ve: BTreeMap<String, ExpectedOrder> = self
            .ve
            .truth()
            .iter()
            .map(|o| (o.order_id.clone(), expected(o)))
            .collect();
        assert_real_versions("veapi", &stored_by_id(conn, "veapi"), &ve, |o| {
            o.updated_at.clone()
        });
        let myq: BTreeMap<String, ExpectedOrder> = self
            .myq
            .truth()
            .iter()
            .map(|o| (o.order_id.clone(), expected_myq(o)))
            .collect();
        assert_real_versions(
            "miaoyouquan",
            &stored_by_id(conn, "miaoyouquan"),
            &myq,
            |o| o.updated_at.clone(),
        );
        let dmj: BTreeMap<String, DmjStored> = self
            .dmj
            .truth()
            .iter()
            .map(|o| (o.order_id.clone(), expected_dmj(o)))
            .collect();
        assert_real_versions("damaijia", &stored_dmj(conn), &dmj, |o| o.6.clone());
    }

    /// Every range the `coverage` table calls finished really is in the database: each upstream
    /// order (unidesk: line) whose time lies in a finished range of its pipeline is stored — for
    /// a live range of a source with an update time, in exactly the version upstream has now.
    /// The time is the one the track queries by: live by update time (unidesk: the line's
    /// modified time; sxt: creation, as a snapshot has no time filter), backfill by payment time
    /// (damaijia: creation; unidesk: modified time again). Upstream times are whole seconds, so
    /// an order at second `t` is in `[a, b)` when `a <= t < b`.
    fn assert_coverage_is_real(&self, conn: &Connection) {
        // veapi and miaoyouquan: live by update time, backfill by payment time.
        for (pipeline, source, truth) in [
            (
                VE,
                "veapi",
                self.ve
                    .truth()
                    .into_iter()
                    .map(|o| Tracked {
                        id: o.order_id,
                        status_raw: o.flow_point,
                        live: o.update_time,
                        backfill: o.pay_success_time,
                    })
                    .collect::<Vec<_>>(),
            ),
            (
                MYQ,
                "miaoyouquan",
                self.myq
                    .truth()
                    .into_iter()
                    .map(|o| Tracked {
                        id: o.order_id,
                        status_raw: o.flow_point,
                        live: o.update_time,
                        backfill: o.pay_success_time,
                    })
                    .collect(),
            ),
            (
                DMJ,
                "damaijia",
                self.dmj
                    .truth()
                    .into_iter()
                    .map(|o| Tracked {
                        id: o.order_id,
                        status_raw: o.order_status.to_string(),
                        live: o.update_time,
                        backfill: o.create_time,
                    })
                    .collect(),
            ),
        ] {
            let backfill_column = if source == "damaijia" {
                "created_at"
            } else {
                "paid_at"
            };
            let stored: HashMap<String, (Option<String>, Option<String>, String)> = query_map(
                conn,
                &format!(
                    "SELECT order_id, {backfill_column}, updated_at, status_raw FROM orders WHERE source = '{source}'"
                ),
                |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))),
            );
            let ranges = coverage(conn, pipeline);
            for o in &truth {
                for (live, t) in [(true, o.live), (false, o.backfill)] {
                    let Some((scope, a, b)) = covering(&ranges, live, t) else {
                        continue;
                    };
                    let Some((back, updated, status)) = stored.get(&o.id) else {
                        panic!(
                            "`{pipeline}` {scope} says {a} .. {b} is finished, but {source} order {} ({t}) is not stored",
                            o.id
                        );
                    };
                    assert_eq!(
                        back.as_deref(),
                        Some(fmt_s(o.backfill).as_str()),
                        "{source} order {} {backfill_column}",
                        o.id
                    );
                    if live {
                        assert_eq!(
                            (updated.as_deref(), status.as_str()),
                            (Some(fmt_s(o.live).as_str()), o.status_raw.as_str()),
                            "`{pipeline}` {scope} {a} .. {b} is finished, but {source} order {} is stored in an older version",
                            o.id
                        );
                    }
                }
            }
        }
        // unidesk: lines, by modified time on both tracks. A received line keeps its modified
        // time, so a finished range may hold it as paid still; anything else is upstream's now.
        let lines = ud_stored_lines(conn);
        let ranges = coverage(conn, UD);
        for l in self.ud.truth() {
            let Some((scope, a, b)) = covering(&ranges, true, l.modified_time)
                .or_else(|| covering(&ranges, false, l.modified_time))
            else {
                continue;
            };
            let Some((fee, status)) = lines.get(&(l.order_id.clone(), l.sub_order_id.clone()))
            else {
                panic!(
                    "`{UD}` {scope} says {a} .. {b} is finished, but unidesk line {} / {} ({}) is not stored",
                    l.order_id, l.sub_order_id, l.modified_time
                );
            };
            let want = l.order_status.to_string();
            assert!(
                *fee == l.pay_fee && (*status == want || (want == "5" && status == "2")),
                "`{UD}` {scope} {a} .. {b} is finished, but unidesk line {} / {} is stored as \
                 ({fee}, {status}), upstream has ({}, {want})",
                l.order_id,
                l.sub_order_id,
                l.pay_fee
            );
        }
        // sxt: a snapshot holds every order there is; by creation time, never ahead of upstream.
        let ads: HashMap<String, String> = query_map(
            conn,
            "SELECT order_id, status_raw FROM orders WHERE source = 'sxt'",
            |r| Ok((r.get(0)?, r.get(1)?)),
        );
        let ranges = coverage(conn, ADS);
        for o in self.sxt.truth() {
            if let Some((scope, a, b)) = covering(&ranges, true, o.create_time) {
                let state = ads.get(&o.order_id).unwrap_or_else(|| {
                    panic!(
                        "`{ADS}` {scope} says {a} .. {b} is finished, but sxt order {} ({}) is not stored",
                        o.order_id, o.create_time
                    )
                });
                let state: i64 = state.parse().expect("sxt status_raw is a state code");
                assert!(
                    state <= o.state,
                    "sxt order {} stored in state {state}, ahead of upstream's {}",
                    o.order_id,
                    o.state
                );
            }
        }
    }
}

// ---- comparing --------------------------------------------------------------------------------

fn fmt_s(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `stored` and `want` hold the same keys with the same values; a failure lists what is missing,
/// extra and different (a few of each, and how many).
fn assert_same<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    what: &str,
    stored: &BTreeMap<K, V>,
    want: &BTreeMap<K, V>,
) {
    let missing: Vec<&K> = want.keys().filter(|k| !stored.contains_key(*k)).collect();
    let extra: Vec<&K> = stored.keys().filter(|k| !want.contains_key(*k)).collect();
    let differ: Vec<(&K, &V, &V)> = want
        .iter()
        .filter_map(|(k, w)| stored.get(k).filter(|s| *s != w).map(|s| (k, s, w)))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "{what}: {} upstream, {} stored; {} missing (e.g. {:?}), {} not upstream (e.g. {:?}), \
         {} different (stored, upstream) (e.g. {:?})",
        want.len(),
        stored.len(),
        missing.len(),
        &missing[..missing.len().min(5)],
        extra.len(),
        &extra[..extra.len().min(5)],
        differ.len(),
        &differ[..differ.len().min(3)],
    );
}

/// Every stored order is upstream's, never ahead of it by update time, and equal to it when at
/// the same update time.
fn assert_real_versions<V: PartialEq + std::fmt::Debug>(
    source: &str,
    stored: &BTreeMap<String, V>,
    truth: &BTreeMap<String, V>,
    updated_at: impl Fn(&V) -> Option<String>,
) {
    for (id, s) in stored {
        let t = truth
            .get(id)
            .unwrap_or_else(|| panic!("stored {source} order {id} is not upstream"));
        let (su, tu) = (updated_at(s), updated_at(t));
        assert!(su <= tu, "stored {source} order {id} is ahead of upstream");
        if su == tu {
            assert_eq!(s, t, "{source} order {id}: a torn row");
        }
    }
}

fn stored_by_id(conn: &Connection, source: &str) -> BTreeMap<String, ExpectedOrder> {
    stored_orders_of(conn, source)
        .into_iter()
        .map(|o| (o.order_id.clone(), o))
        .collect()
}

/// One product per order (veapi, miaoyouquan): one line each, `sub_order_id = order_id`, its
/// amount the order's.
fn assert_single_lines(conn: &Connection, source: &str, want: &BTreeMap<String, ExpectedOrder>) {
    let lines: BTreeMap<String, (i64, i64, Option<i64>)> = query_map(
        conn,
        &format!(
            "SELECT o.order_id, COUNT(s.sub_order_id), COALESCE(SUM(s.sub_order_id = o.order_id), 0), \
             SUM(s.pay_amount) FROM orders o LEFT JOIN sub_orders s USING (source, order_id) \
             WHERE o.source = '{source}' GROUP BY o.order_id"
        ),
        |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))),
    );
    let want: BTreeMap<String, (i64, i64, Option<i64>)> = want
        .iter()
        .map(|(id, o)| (id.clone(), (1, 1, Some(o.pay_amount))))
        .collect();
    assert_same(
        &format!("{source} lines (count, own id, amount)"),
        &lines,
        &want,
    );
}

/// `(order_id, sub_order_id)` → (pay_amount, status_raw) of every stored unidesk line.
fn ud_stored_lines(conn: &Connection) -> BTreeMap<(String, String), (i64, String)> {
    query_map(
        conn,
        "SELECT order_id, sub_order_id, pay_amount, status_raw FROM sub_orders WHERE source = 'unidesk'",
        |r| Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?))),
    )
}

/// How far along a unidesk line is, by the contract's statuses (1 pending, 2 paid, 3 refunded,
/// 4 presale, 5 received): an order is as far as its most advanced line, and refunded only when
/// every line is.
fn ud_rank(code: &str) -> u8 {
    match code {
        "1" => 1,
        "4" => 2,
        "2" => 3,
        "5" => 5,
        _ => 0,
    }
}

/// An upstream order as the coverage check sees it: the times its two tracks query by.
struct Tracked {
    id: String,
    status_raw: String,
    live: NaiveDateTime,
    backfill: NaiveDateTime,
}

/// The finished ranges of a pipeline: (scope, start, end).
fn coverage(conn: &Connection, pipeline: &str) -> Vec<(String, NaiveDateTime, NaiveDateTime)> {
    let mut stmt = conn
        .prepare("SELECT scope, range_start, range_end FROM coverage WHERE pipeline = ?1")
        .expect("prepare");
    stmt.query_map([pipeline], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })
    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
    .expect("coverage")
    .into_iter()
    .map(|(scope, a, b)| (scope, parse_db_time(&a), parse_db_time(&b)))
    .collect()
}

/// The first finished range of the live (or a backfill) track holding `t`.
fn covering(
    ranges: &[(String, NaiveDateTime, NaiveDateTime)],
    live: bool,
    t: NaiveDateTime,
) -> Option<(&str, NaiveDateTime, NaiveDateTime)> {
    ranges
        .iter()
        .find(|(scope, a, b)| (scope == "live") == live && *a <= t && t < *b)
        .map(|(scope, a, b)| (scope.as_str(), *a, *b))
}
