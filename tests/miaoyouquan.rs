//! miaoyouquan end to end: full sync equals ground truth, a backfill older than the 90-day horizon
//! clamps and says so, the documented codes fail or retry as they should, and a failing pipeline
//! never stops the others in the same `sync`.

use chrono::{Duration, NaiveDateTime};
use ordersync_sim::Simulator;
use ordersync_sim::{Faults, MiaoyouquanSim, MiaoyouquanSimConfig, MyqOrder};

use crate::common::*;

const APKEY: &str = "SeCrEt-apkey-55aa";
const DOU_KEY: &str = "SeCrEt-doukey-91bc";

struct Both {
    h: Harness,
    myq: MiaoyouquanSim,
}

/// A miaoyouquan world beside a small veapi one, and a config with both pipelines.
fn both(orders: usize, days: i64, faults: Faults, myq_start: NaiveDateTime) -> Both {
    let h = Harness::veapi(200, 20, Faults::default());
    let myq =
        h.rt.block_on(MiaoyouquanSim::start(MiaoyouquanSimConfig {
            seed: 11,
            apkey: APKEY.into(),
            dou_key: DOU_KEY.into(),
            orders,
            days,
            now: h.now,
            faults,
        }))
        .expect("simulator starts");
    let text = format!(
        r#"[database]
path = "{db}"
[defaults]
settle_lag = "1s"
timeout = "2s"
retry_initial = "5ms"
# One window at a time: these tests count requests and pages exactly.
concurrency = 1
[[pipeline]]
name = "ve"
source = "veapi"
endpoint = "{ve}"
start = "{ve_start}"
[pipeline.auth]
vekey = {{ env = "TEST_VEKEY" }}
[[pipeline]]
name = "myq"
source = "miaoyouquan"
endpoint = "{myq_url}"
start = "{myq_start}"
page_size = 200
[pipeline.auth]
apkey = {{ env = "TEST_APKEY" }}
dou_key = {{ env = "TEST_DOU_KEY" }}
"#,
        db = h.db_path().display(),
        ve = h.sim.endpoint(),
        ve_start = (h.now - Duration::days(21)).format("%Y-%m-%d"),
        myq_url = myq.endpoint(),
        myq_start = myq_start.format("%Y-%m-%d %H:%M:%S"),
    );
    std::fs::write(h.config_path(), text).unwrap();
    Both { h, myq }
}

impl Both {
    fn run(&self, args: &[&str]) -> std::process::Output {
        self.h
            .command(args)
            .env("TEST_APKEY", APKEY)
            .env("TEST_DOU_KEY", DOU_KEY)
            .output()
            .unwrap()
    }
}

fn assert_myq_equals(b: &Both, truth: &[MyqOrder]) {
    let mut want: Vec<ExpectedOrder> = truth.iter().map(expected_myq).collect();
    want.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    let got = stored_orders_of(&b.h.db(), "miaoyouquan");
    assert_eq!(
        got.len(),
        want.len(),
        "order count differs from ground truth"
    );
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    assert_eq!(b.myq.violations(), Vec::<String>::new());
}

#[test]
fn full_sync_of_both_sources_equals_ground_truth() {
    let faults = Faults {
        p_5xx: 0.04,
        p_429: 0.03,
        p_body_rate_limit: 0.02,
        p_truncated: 0.02,
        seed: 4,
        ..Faults::default()
    };
    let b = both(2000, 80, faults, beijing(-85));
    b.myq.set_body_transient(0.03);
    let out = b.run(&["sync"]);
    assert_ok(&out);
    assert_myq_equals(&b, &b.myq.truth());
    assert_equals_truth(&b.h); // the veapi pipeline of the same run
                               // Ids above 2^53 arrived as JSON numbers and are stored exactly.
    let big: i64 = scalar(&b.h.db(), "SELECT COUNT(*) FROM orders WHERE source = 'miaoyouquan' AND CAST(shop_id AS INTEGER) > 9007199254740993");
    assert!(big > 0, "the world should have shop ids above 2^53");
    // A resync changes nothing.
    let before = orders_snapshot(&b.h.db());
    assert_ok(&b.run(&["sync", "myq"]));
    assert_eq!(orders_snapshot(&b.h.db()), before);
}

fn beijing(days: i64) -> NaiveDateTime {
    ordersync_sim::beijing_now() + Duration::days(days)
}

#[test]
fn backfill_from_120_days_ago_clamps_to_the_horizon_and_says_so() {
    let b = both(1500, 120, Faults::default(), beijing(-30));
    let from = (b.h.now - Duration::days(120))
        .format("%Y-%m-%d")
        .to_string();
    let out = b.run(&["backfill", "myq", "--from", &from]);
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| {
            l.starts_with("ordersync: pipeline `myq`") && l.contains("older than upstream keeps")
        })
        .unwrap_or_else(|| panic!("the clamp is not reported: {stderr}"));
    // "… fetched from YYYY-MM-DD HH:MM:SS instead"
    let effective = line
        .split("fetched from ")
        .nth(1)
        .and_then(|r| r.get(..19))
        .unwrap();
    let effective = NaiveDateTime::parse_from_str(effective, "%Y-%m-%d %H:%M:%S").unwrap();
    let horizon = ordersync_sim::beijing_now() - Duration::days(90);
    assert!(
        effective > horizon && effective < horizon + Duration::minutes(11),
        "{effective} vs {horizon}"
    );
    assert_myq_equals(&b, &b.myq.truth_since(effective));
    let covered_from: String = scalar(
        &b.h.db(),
        "SELECT range_start FROM coverage WHERE pipeline = 'myq'",
    );
    assert!(
        covered_from.starts_with(&effective.format("%Y-%m-%d %H:%M:%S").to_string()),
        "{covered_from}"
    );
}

#[test]
fn wrong_key_fails_with_401_while_the_other_pipeline_finishes() {
    let b = both(300, 30, Faults::default(), beijing(-31));
    b.myq.set_keys(APKEY, "a-wrong-dou-key");
    let out = b.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`myq`") && stderr.contains("401"),
        "{stderr}"
    );
    assert_equals_truth(&b.h); // veapi in the same run finished
    let requests: i64 = scalar(
        &b.h.db(),
        "SELECT requests FROM runs WHERE pipeline = 'myq'",
    );
    assert_eq!(requests, 1, "a fatal code is not retried");
    let live: i64 = scalar(
        &b.h.db(),
        "SELECT COUNT(*) FROM checkpoints WHERE pipeline = 'myq' AND watermark IS NOT NULL",
    );
    assert_eq!(live, 0, "the checkpoint did not move");
    assert!(!text(&out).contains(APKEY) && !text(&out).contains(DOU_KEY));
}

#[test]
fn data_fetch_failed_is_retried_then_reported_with_its_code() {
    let b = both(300, 30, Faults::default(), beijing(-31));
    b.myq.set_body_transient(1.0);
    let out = b.run(&["sync", "myq"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("code -1") && stderr.contains("gave up after 9 attempts"),
        "{stderr}"
    );
    assert_eq!(
        b.myq.requests(),
        9,
        "max_retries = 8: one try and eight retries"
    );
}
