//! sxt end to end: one snapshot request per sync, duplicates collapsed to the most advanced state
//! whatever their order, yuan decimal strings to exact fen, orders that vanish upstream kept, and
//! no backfill of a source that has no history.

use ordersync_sim::Simulator;
use std::collections::BTreeMap;

use chrono::Duration;
use ordersync_sim::sxt::{SxtOrder, SxtSim, SxtSimConfig};
use ordersync_sim::Faults;

use crate::common::*;

const USER_ID: &str = "SeCrEt-sxt-user-1212";
const DY_UID: &str = "SeCrEt-sxt-dyuid-3434";

struct Sxt {
    h: Harness,
    sxt: SxtSim,
}

fn sxt(orders: usize, faults: Faults) -> Sxt {
    let h = Harness::veapi(150, 10, Faults::default());
    let sxt =
        h.rt.block_on(SxtSim::start(SxtSimConfig {
            seed: 3,
            user_id: USER_ID.into(),
            dy_uid: DY_UID.into(),
            orders,
            days: 60,
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
name = "ads"
source = "sxt"
endpoint = "{url}"
start = "{start}"
[pipeline.auth]
user_id = {{ env = "TEST_SXT_USER" }}
dy_uid = {{ env = "TEST_SXT_DYUID" }}
"#,
        db = h.db_path().display(),
        ve = h.sim.endpoint(),
        ve_start = (h.now - Duration::days(11)).format("%Y-%m-%d"),
        url = sxt.endpoint(),
        start = (h.now - Duration::days(61)).format("%Y-%m-%d"),
    );
    std::fs::write(h.config_path(), text).unwrap();
    Sxt { h, sxt }
}

impl Sxt {
    fn run(&self, args: &[&str]) -> std::process::Output {
        self.h
            .command(args)
            .env("TEST_SXT_USER", USER_ID)
            .env("TEST_SXT_DYUID", DY_UID)
            .output()
            .unwrap()
    }

    fn stored(&self) -> BTreeMap<String, SxtStored> {
        stored_sxt(&self.h.db())
    }
}

fn assert_contains_truth(s: &Sxt, truth: &[SxtOrder]) {
    let stored = s.stored();
    for o in truth {
        let got = stored
            .get(&o.order_id)
            .unwrap_or_else(|| panic!("order {} missing", o.order_id));
        assert_eq!(got, &expected_sxt(o), "order {}", o.order_id);
    }
    assert_eq!(s.sxt.violations(), Vec::<String>::new());
}

#[test]
fn a_snapshot_sync_equals_the_truth_in_one_request_per_run() {
    let s = sxt(400, Faults::default());
    let out = s.run(&["sync"]);
    assert_ok(&out);
    let truth = s.sxt.truth();
    assert_contains_truth(&s, &truth);
    assert_eq!(
        s.stored().len(),
        truth.len(),
        "duplicates collapsed to one row each"
    );
    assert_equals_truth(&s.h); // veapi in the same run
    assert_eq!(s.sxt.requests(), 1);
    // Yuan decimal strings are exact fen.
    for (text, fen) in [("0.29", 29), ("38.9", 3890)] {
        let o = truth
            .iter()
            .find(|o| o.cost_text == text)
            .unwrap_or_else(|| panic!("the world should have a cost of {text} yuan"));
        let stored: i64 = scalar(
            &s.h.db(),
            &format!(
                "SELECT ad_cost FROM orders WHERE source = 'sxt' AND order_id = '{}'",
                o.order_id
            ),
        );
        assert_eq!(stored, fen, "{text} yuan");
    }
    let watermark: String = scalar(
        &s.h.db(),
        "SELECT watermark FROM checkpoints WHERE pipeline = 'ads' AND scope = 'live'",
    );
    let age = ordersync_sim::beijing_now()
        - chrono::NaiveDateTime::parse_from_str(&watermark, "%Y-%m-%d %H:%M:%S%.3f").unwrap();
    assert!(
        age < Duration::seconds(30),
        "the watermark is the snapshot's time: {watermark}"
    );
    // A resync changes nothing; mutations arrive with one history row per state change.
    let before = orders_snapshot(&s.h.db());
    assert_ok(&s.run(&["sync", "ads"]));
    assert_eq!(orders_snapshot(&s.h.db()), before);
    let changes = s.sxt.mutate(60, ordersync_sim::beijing_now());
    assert_ok(&s.run(&["sync", "ads"]));
    assert_contains_truth(&s, &s.sxt.truth());
    let history: i64 = scalar(
        &s.h.db(),
        "SELECT COUNT(*) FROM order_status_history WHERE source = 'sxt'",
    );
    let state_changes = changes.iter().filter(|m| m.from != m.to).count();
    assert_eq!(history as usize, truth.len() + state_changes);
}

#[test]
fn the_same_order_in_states_7_and_9_is_stored_as_9_in_either_order() {
    let s = sxt(200, Faults::default());
    let completed: Vec<SxtOrder> = s
        .sxt
        .truth()
        .into_iter()
        .filter(|o| o.state == 9)
        .take(2)
        .collect();
    assert_eq!(completed.len(), 2, "the world should have completed ads");
    s.sxt.add_stale_copy(&completed[0].order_id, 7, true);
    s.sxt.add_stale_copy(&completed[1].order_id, 7, false);
    assert_ok(&s.run(&["sync", "ads"]));
    let stored = s.stored();
    for o in &completed {
        assert_eq!(stored[&o.order_id].1, "ad_completed", "{}", o.order_id);
        assert_eq!(stored[&o.order_id], expected_sxt(o));
    }
}

#[test]
fn orders_that_vanish_upstream_are_kept_and_faults_are_retried() {
    let faults = Faults {
        p_5xx: 0.3,
        p_429: 0.2,
        p_truncated: 0.2,
        retry_after_secs: 0,
        seed: 21,
        ..Faults::default()
    };
    let s = sxt(150, faults);
    assert_ok(&s.run(&["sync", "ads"]));
    let before = s.sxt.truth();
    let gone = s.sxt.vanish(10);
    assert_eq!(gone.len(), 10);
    assert_ok(&s.run(&["sync", "ads"]));
    assert_contains_truth(&s, &before);
    assert_eq!(
        s.stored().len(),
        before.len(),
        "vanished orders are not deleted"
    );
}

#[test]
fn a_fatal_code_stops_only_sxt_and_backfill_is_refused() {
    let s = sxt(100, Faults::default());
    s.sxt.set_credentials("someone-else", DY_UID);
    let out = s.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`ads`") && stderr.contains("401"),
        "{stderr}"
    );
    assert_equals_truth(&s.h);
    assert!(!text(&out).contains(USER_ID) && !text(&out).contains(DY_UID));
    let watermarks: i64 = scalar(
        &s.h.db(),
        "SELECT COUNT(*) FROM checkpoints WHERE pipeline = 'ads' AND watermark IS NOT NULL",
    );
    assert_eq!(watermarks, 0);
    let out = s.run(&["backfill", "ads", "--from", "2024-01-01"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let errors = error_sentences(&out);
    assert!(
        errors.len() == 1 && errors[0].contains("`ads`") && errors[0].contains("snapshot"),
        "{errors:?}"
    );
}
