//! damaijia end to end: shop orders and every SKU line equal the ground truth, orders inserted or
//! moved upstream in the middle of a page/size scan are still all there, customer PII never reaches
//! the database file (masked by default, kept or dropped on request), and a fatal body code stops
//! only its own pipeline with the checkpoint unmoved.

use ordersync_sim::{Poison, Simulator};
use std::collections::BTreeMap;

use chrono::Duration;
use ordersync_sim::damaijia::{DamaijiaSim, DamaijiaSimConfig, DmjOrder, Drift};
use ordersync_sim::Faults;

use crate::common::*;

const TOKEN: &str = "SeCrEt-dmj-token-4e4e";
const SHOP: &str = "20358278";

struct Dmj {
    h: Harness,
    dmj: DamaijiaSim,
}

/// A damaijia world beside a small veapi one, and a config with both pipelines.
fn damaijia(orders: usize, days: i64, faults: Faults, extra: &str) -> Dmj {
    let h = Harness::veapi(150, 10, Faults::default());
    let dmj =
        h.rt.block_on(DamaijiaSim::start(DamaijiaSimConfig {
            seed: 9,
            access_token: TOKEN.into(),
            shop_id: SHOP.into(),
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
name = "dmj"
source = "damaijia"
endpoint = "{dmj_url}"
start = "{dmj_start}"
page_size = 100
{extra}
[pipeline.auth]
access_token = {{ env = "TEST_DMJ_TOKEN" }}
shop_id = "{SHOP}"
"#,
        db = h.db_path().display(),
        ve = h.sim.endpoint(),
        ve_start = (h.now - Duration::days(11)).format("%Y-%m-%d"),
        dmj_url = dmj.endpoint(),
        dmj_start = (h.now - Duration::days(days + 1)).format("%Y-%m-%d"),
    );
    std::fs::write(h.config_path(), text).unwrap();
    Dmj { h, dmj }
}

impl Dmj {
    fn run(&self, args: &[&str]) -> std::process::Output {
        self.h
            .command(args)
            .env("TEST_DMJ_TOKEN", TOKEN)
            .output()
            .unwrap()
    }
}

fn assert_equals_dmj_truth(d: &Dmj, truth: &[DmjOrder]) {
    let conn = d.h.db();
    let stored = stored_dmj(&conn);
    let want: BTreeMap<String, DmjStored> = truth
        .iter()
        .map(|o| (o.order_id.clone(), expected_dmj(o)))
        .collect();
    let missing: Vec<&String> = want.keys().filter(|k| !stored.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} orders missing: {missing:?}",
        missing.len()
    );
    assert_eq!(stored.len(), want.len(), "no order beyond the truth");
    for (id, w) in &want {
        assert_eq!(&stored[id], w, "order {id}");
    }
    let lines = stored_dmj_lines(&conn);
    let want_lines = expected_dmj_lines(truth);
    assert_eq!(lines.len(), want_lines.len(), "every SKU line once");
    assert_eq!(lines, want_lines);
    assert_eq!(d.dmj.violations(), Vec::<String>::new());
}

#[test]
fn full_sync_equals_ground_truth_with_every_sku_line() {
    let faults = Faults {
        p_5xx: 0.04,
        p_429: 0.03,
        p_body_rate_limit: 0.02,
        p_truncated: 0.02,
        p_malformed: 0.02,
        seed: 8,
        ..Faults::default()
    };
    let d = damaijia(1500, 60, faults, "");
    d.dmj.set_body_transient(0.03);
    let out = d.run(&["sync"]);
    assert_ok(&out);
    assert_equals_dmj_truth(&d, &d.dmj.truth());
    assert_equals_truth(&d.h); // the veapi pipeline of the same run
    let truth = d.dmj.truth();
    assert!(
        truth.iter().any(|o| o.lines.len() > 1),
        "the world should have orders of several lines"
    );
    // 19-digit product ids (sent as rounded JSON numbers beside the exact string) are exact.
    let exact: i64 = scalar(
        &d.h.db(),
        "SELECT COUNT(*) FROM sub_orders WHERE source = 'damaijia' AND length(product_id) = 19",
    );
    assert_eq!(
        exact as usize,
        truth.iter().map(|o| o.lines.len()).sum::<usize>()
    );
    // Mutations upstream, then a resync: every change arrives, nothing else moves.
    let before = orders_snapshot(&d.h.db());
    assert_ok(&d.run(&["sync", "dmj"]));
    assert_eq!(
        orders_snapshot(&d.h.db()),
        before,
        "a resync changes nothing"
    );
    let at = ordersync_sim::beijing_now() - Duration::seconds(5);
    let changed = d.dmj.mutate(80, at);
    let added = d.dmj.add_orders(10, at);
    assert!(!changed.is_empty() && added.len() == 10);
    assert_ok(&d.run(&["sync", "dmj"]));
    assert_equals_dmj_truth(&d, &d.dmj.truth());
    let history: i64 = scalar(
        &d.h.db(),
        "SELECT COUNT(*) FROM order_status_history WHERE source = 'damaijia'",
    );
    let status_changes = changed.iter().filter(|m| m.from != m.to).count();
    assert_eq!(history as usize, truth.len() + 10 + status_changes);
}

#[test]
fn orders_inserted_or_moved_in_the_middle_of_a_scan_are_not_skipped() {
    for drift in [Drift::Insert(3), Drift::Touch(4)] {
        let d = damaijia(900, 30, Faults::default(), "");
        let label = format!("{drift:?}");
        // After two pages of the nine, upstream changes under the scan.
        d.dmj.schedule_drift(2, drift);
        assert_ok(&d.run(&["sync", "dmj"]));
        let moved = d.dmj.drift_log();
        assert!(!moved.is_empty(), "{label}: the drift happened");
        // Touched orders left the window being read (their update time is now); the next live
        // sync, once that second has settled, picks them up. Orders skipped by the drift would be
        // missing for good: their update times are far behind the watermark.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert_ok(&d.run(&["sync", "dmj"]));
        assert_equals_dmj_truth(&d, &d.dmj.truth());
    }
}

#[test]
fn a_backfill_reads_its_window_again_when_orders_join_it_during_the_scan() {
    let d = damaijia(900, 30, Faults::default(), "");
    let from = d.h.now - Duration::days(31);
    // After two pages, new orders appear that sort before every row already read.
    d.dmj.schedule_drift(2, Drift::Insert(3));
    let from = from.format("%Y-%m-%d %H:%M:%S").to_string();
    assert_ok(&d.run(&["backfill", "dmj", "--from", &from]));
    assert_eq!(d.dmj.drift_log().len(), 3, "the drift happened");
    assert_equals_dmj_truth(&d, &d.dmj.truth());
    let requests: i64 = scalar(
        &d.h.db(),
        "SELECT requests FROM runs WHERE pipeline = 'dmj' ORDER BY id LIMIT 1",
    );
    assert!(
        requests > 10,
        "the window was read again from its first page ({requests} requests for 903 orders)"
    );
}

#[test]
fn orders_updated_inside_the_window_during_a_scan_cost_no_other_order() {
    // An ERP that stamps updates late: orders already read move to the end of the window being
    // read (their new update time is still inside it), `total` stays the same, and every row
    // after their old places shifts back — an offset reader loses the row at each page boundary.
    let d = damaijia(900, 30, Faults::default(), "");
    d.dmj.schedule_drift(1, Drift::Lag(1));
    d.dmj.schedule_drift(3, Drift::Lag(2));
    d.dmj.schedule_drift(6, Drift::Lag(1));
    assert_ok(&d.run(&["sync", "dmj"]));
    assert_eq!(d.dmj.drift_log().len(), 4, "the drift happened");
    // One run, nothing re-read by a later one: every order is there in its latest state.
    assert_equals_dmj_truth(&d, &d.dmj.truth());
}

#[test]
fn pii_is_masked_by_default_kept_or_dropped_on_request_and_never_logged() {
    for (mode, extra) in [
        ("mask", ""),
        ("keep", "pii = \"keep\""),
        ("drop", "pii = \"drop\""),
    ] {
        let d = damaijia(200, 20, Faults::default(), extra);
        // Two rows upstream spoils are rejected: their text is kept, personal fields hidden too.
        let truth = d.dmj.truth();
        d.dmj.poison(&truth[3].order_id, Some(Poison::BadAmount));
        d.dmj.poison(&truth[9].order_id, Some(Poison::ObjectId));
        d.dmj.poison(&truth[15].order_id, Some(Poison::NotAnObject));
        let out =
            d.h.command(&["sync", "dmj"])
                .env("TEST_DMJ_TOKEN", TOKEN)
                .env("RUST_LOG", "trace")
                .output()
                .unwrap();
        assert_ok(&out);
        let pii = d.dmj.pii_values();
        assert!(pii.len() >= 200 * 5, "{mode}: the world has PII");
        // The database file and its WAL (if any is left), every byte, read once: SQLite stores text
        // as UTF-8, so a plain value in any page shows up as its bytes.
        let db = d.h.db_path();
        let mut bytes = std::fs::read(&db).unwrap();
        bytes.extend(std::fs::read(db.with_extension("db-wal")).unwrap_or_default());
        let file = String::from_utf8_lossy(&bytes);
        // Every value stands alone between JSON quotes, so it is a whole alphanumeric run of the
        // file; a set of runs checks a thousand values at once. A slow substring search of every
        // 20th value also catches one left inside a longer run.
        let runs: std::collections::HashSet<&str> = file
            .split(|c: char| !c.is_alphanumeric())
            .filter(|r| !r.is_empty())
            .collect();
        let stored = |v: &String| runs.contains(v.as_str());
        let sampled_leak = pii.iter().step_by(20).any(|v| file.contains(v.as_str()));
        assert_eq!(sampled_leak, mode == "keep", "{mode}: substring search");
        let logs = text(&out);
        assert!(
            pii.iter().all(|v| !logs.contains(v.as_str())),
            "{mode}: PII in the logs"
        );
        match mode {
            "keep" => {
                let kept = pii.iter().filter(|v| stored(v)).count();
                // All but the five of the order upstream sent as a number instead of a row.
                assert_eq!(
                    kept,
                    pii.len() - 5,
                    "keep: every plain value sent is stored"
                );
            }
            _ => {
                let leaked: Vec<&String> = pii.iter().filter(|v| stored(v)).collect();
                assert!(leaked.is_empty(), "{mode}: plain PII stored: {leaked:?}");
            }
        }
        let rejected: i64 = scalar(&d.h.db(), "SELECT COUNT(*) FROM rejected_rows");
        assert_eq!(rejected, 3, "{mode}");
        let with_tel: i64 = scalar(
            &d.h.db(),
            "SELECT COUNT(*) FROM orders WHERE source = 'damaijia' AND json_extract(raw, '$.post_tel') IS NOT NULL",
        );
        let masked: i64 = scalar(
            &d.h.db(),
            "SELECT COUNT(*) FROM orders WHERE source = 'damaijia' AND json_extract(raw, '$.post_tel') LIKE '1__****____'",
        );
        let rejected_masked: i64 = scalar(
            &d.h.db(),
            "SELECT COUNT(*) FROM rejected_rows WHERE json_valid(raw) AND json_extract(raw, '$.post_tel') LIKE '1__****____'",
        );
        match mode {
            "mask" => {
                assert_eq!((with_tel, masked), (197, 197), "138****1234 style");
                assert_eq!(rejected_masked, 2, "rejected rows are masked too");
            }
            "keep" => assert_eq!((with_tel, masked), (197, 0)),
            _ => assert_eq!(with_tel, 0, "drop removes the field"),
        }
    }
}

#[test]
fn shop_not_authorised_fails_with_302_while_the_other_pipeline_finishes() {
    let d = damaijia(300, 20, Faults::default(), "");
    d.dmj.set_forced_status(Some(302));
    let out = d.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`dmj`") && stderr.contains("302"),
        "{stderr}"
    );
    assert_equals_truth(&d.h);
    let requests: i64 = scalar(
        &d.h.db(),
        "SELECT requests FROM runs WHERE pipeline = 'dmj'",
    );
    assert_eq!(requests, 1, "a fatal code is not retried");
    let moved: i64 = scalar(
        &d.h.db(),
        "SELECT COUNT(*) FROM checkpoints WHERE pipeline = 'dmj' AND watermark IS NOT NULL \
         OR EXISTS (SELECT 1 FROM track_windows WHERE pipeline = 'dmj' AND cursor != '')",
    );
    assert_eq!(moved, 0, "the checkpoint did not move");
    assert!(!text(&out).contains(TOKEN));
    // Quota exhausted (204) is fatal too; 101 is retried until the budget runs out.
    d.dmj.set_forced_status(Some(204));
    let out = d.run(&["sync", "dmj"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("204"));
    d.dmj.set_forced_status(Some(101));
    let out = d.run(&["sync", "dmj"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("101") && stderr.contains("gave up after 9 attempts"),
        "{stderr}"
    );
    d.dmj.set_forced_status(None);
    assert_ok(&d.run(&["sync", "dmj"]));
    assert_equals_dmj_truth(&d, &d.dmj.truth());
}

#[test]
fn backfill_by_creation_time_fetches_exactly_that_range() {
    let d = damaijia(600, 40, Faults::default(), "");
    let from = d.h.now - Duration::days(20);
    let to = d.h.now - Duration::days(10);
    let fmt_arg = |t: chrono::NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
    let out = d.run(&[
        "backfill",
        "dmj",
        "--from",
        &fmt_arg(from),
        "--to",
        &fmt_arg(to),
    ]);
    assert_ok(&out);
    let want: Vec<DmjOrder> = d
        .dmj
        .truth()
        .into_iter()
        .filter(|o| o.create_time >= from && o.create_time < to)
        .collect();
    assert!(want.len() > 50, "the range holds orders");
    assert_equals_dmj_truth(&d, &want);
    let live: i64 = scalar(
        &d.h.db(),
        "SELECT COUNT(*) FROM checkpoints WHERE pipeline = 'dmj' AND scope = 'live'",
    );
    assert_eq!(live, 0, "a backfill leaves the live track alone");
}
