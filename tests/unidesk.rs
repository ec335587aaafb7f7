//! unidesk end to end: TOP-signed requests, windows that never cross a Beijing midnight, SKU lines of
//! one main order split across pages summed into one order — also when the process is killed between
//! those pages — and a wrong app secret failing with its TOP code while the other pipelines finish.

use ordersync_sim::Simulator;
use std::collections::BTreeMap;
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, NaiveDateTime};
use ordersync_sim::{Faults, UdSubOrder, UnideskSim, UnideskSimConfig};

use crate::common::*;

const APP_KEY: &str = "SeCrEt-appkey-1234";
const APP_SECRET: &str = "SeCrEt-appsecret-77ee";
const SESSION: &str = "SeCrEt-session-3c3c";

struct Ud {
    h: Harness,
    ud: UnideskSim,
}

fn unidesk(orders: usize, days: i64, faults: Faults) -> Ud {
    let h = Harness::veapi(150, 10, Faults::default());
    let ud =
        h.rt.block_on(UnideskSim::start(UnideskSimConfig {
            seed: 5,
            app_key: APP_KEY.into(),
            app_secret: APP_SECRET.into(),
            session: Some(SESSION.into()),
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
[[pipeline]]
name = "ve"
source = "veapi"
endpoint = "{ve}"
start = "{ve_start}"
[pipeline.auth]
vekey = {{ env = "TEST_VEKEY" }}
[[pipeline]]
name = "ud"
source = "unidesk"
endpoint = "{ud_url}"
start = "{ud_start}"
prod_type = 1
[pipeline.auth]
app_key = {{ env = "TEST_APP_KEY" }}
app_secret = {{ env = "TEST_APP_SECRET" }}
session = {{ env = "TEST_SESSION" }}
"#,
        db = h.db_path().display(),
        ve = h.sim.endpoint(),
        ve_start = (h.now - Duration::days(11)).format("%Y-%m-%d"),
        ud_url = ud.endpoint(),
        ud_start = (h.now - Duration::days(days + 1)).format("%Y-%m-%d"),
    );
    std::fs::write(h.config_path(), text).unwrap();
    Ud { h, ud }
}

impl Ud {
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = self.h.command(args);
        cmd.env("TEST_APP_KEY", APP_KEY)
            .env("TEST_APP_SECRET", APP_SECRET)
            .env("TEST_SESSION", SESSION);
        cmd
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().unwrap()
    }
}

/// Per main order, from the simulator's lines: (sum of pay_fee, number of lines).
fn truth_by_order(lines: &[UdSubOrder]) -> BTreeMap<String, (i64, i64)> {
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for l in lines {
        let e = out.entry(l.order_id.clone()).or_default();
        e.0 += l.pay_fee;
        e.1 += 1;
    }
    out
}

fn stored_by_order(h: &Harness) -> BTreeMap<String, (i64, i64)> {
    h.db()
        .prepare(
            "SELECT o.order_id, o.pay_amount, (SELECT COUNT(*) FROM sub_orders s WHERE s.source = o.source AND s.order_id = o.order_id) \
             FROM orders o WHERE o.source = 'unidesk'",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn assert_lines_equal_truth(u: &Ud) {
    let truth = u.ud.truth();
    let conn = u.h.db();
    let mut stored: BTreeMap<(String, String), (i64, String)> = conn
        .prepare("SELECT order_id, sub_order_id, pay_amount, status_raw FROM sub_orders WHERE source = 'unidesk'")
        .unwrap()
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(stored.len(), truth.len(), "every SKU line is stored once");
    for l in &truth {
        let got = stored.remove(&(l.order_id.clone(), l.sub_order_id.clone()));
        assert_eq!(
            got,
            Some((l.pay_fee, l.order_status.to_string())),
            "line {} / {}",
            l.order_id,
            l.sub_order_id
        );
    }
    assert_eq!(
        stored_by_order(&u.h),
        truth_by_order(&truth),
        "main orders sum their lines"
    );
    assert_eq!(u.ud.violations(), Vec::<String>::new());
}

fn no_window_crosses_midnight(u: &Ud) {
    for (start, end) in u.ud.requests_log() {
        assert_eq!(
            start.date(),
            end.date(),
            "window {start} .. {end} crosses midnight"
        );
    }
}

#[test]
fn full_sync_with_veapi_equals_ground_truth_and_split_orders_add_up() {
    let faults = Faults {
        p_5xx: 0.04,
        p_429: 0.03,
        p_body_rate_limit: 0.02,
        p_truncated: 0.02,
        seed: 8,
        ..Faults::default()
    };
    let u = unidesk(800, 12, faults);
    u.ud.set_isp_error(0.03);
    let out = u.run(&["sync"]);
    assert_ok(&out);
    assert_lines_equal_truth(&u);
    assert_equals_truth(&u.h);
    no_window_crosses_midnight(&u);
    assert!(
        !u.ud.split_orders().is_empty(),
        "the world should split some main orders across pages"
    );
    // Ids above 2^53, sent as JSON numbers, stored exactly.
    let exact: i64 = scalar(
        &u.h.db(),
        "SELECT COUNT(*) FROM orders WHERE source = 'unidesk' AND length(order_id) = 19",
    );
    assert_eq!(exact as usize, truth_by_order(&u.ud.truth()).len());
    let before = orders_snapshot(&u.h.db());
    assert_ok(&u.run(&["sync", "ud"]));
    assert_eq!(
        orders_snapshot(&u.h.db()),
        before,
        "a resync changes nothing"
    );
}

#[test]
fn thirteen_day_backfill_asks_per_beijing_day_and_survives_sigkill_between_pages() {
    let u = unidesk(
        1500,
        13,
        Faults {
            p_slow: 1.0,
            slow_ms: 30,
            seed: 2,
            ..Faults::default()
        },
    );
    let from = (u.h.now - Duration::days(13))
        .format("%Y-%m-%d")
        .to_string();
    let args = ["backfill", "ud", "--from", from.as_str()];
    let mut child = u
        .command(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + StdDuration::from_secs(60);
    loop {
        std::thread::sleep(StdDuration::from_millis(20));
        let seen: i64 =
            u.h.db()
                .query_row(
                    "SELECT COALESCE(SUM(rows_seen), 0) FROM runs WHERE pipeline = 'ud'",
                    [],
                    |r| r.get(0),
                )
                .unwrap_or(0);
        if seen >= 400 {
            child.kill().unwrap();
            break;
        }
        assert!(Instant::now() < deadline, "backfill never got going");
        assert!(
            child.try_wait().unwrap().is_none(),
            "backfill ended before the kill"
        );
    }
    let _ = child.wait();
    u.ud.set_faults(Faults::default());
    let out = u.run(&args);
    assert_ok(&out);
    assert_lines_equal_truth(&u);
    no_window_crosses_midnight(&u);
    // One or more requests for each Beijing day of the range.
    let mut days: Vec<NaiveDateTime> =
        u.ud.requests_log()
            .iter()
            .map(|(s, _)| s.date().and_hms_opt(0, 0, 0).unwrap())
            .collect();
    days.dedup();
    assert!(days.len() >= 13, "{} days asked", days.len());
    assert_eq!(scalar::<String>(&u.h.db(), "PRAGMA integrity_check"), "ok");
}

#[test]
fn wrong_app_secret_fails_naming_the_top_code_while_veapi_finishes() {
    let u = unidesk(100, 3, Faults::default());
    u.ud.set_secret("a-different-secret");
    let out = u.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`ud`") && stderr.contains("TOP 25"),
        "{stderr}"
    );
    assert_equals_truth(&u.h);
    let all = text(&out);
    for secret in [APP_KEY, APP_SECRET, SESSION] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }
}
