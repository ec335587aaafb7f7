//! The veapi simulator over real HTTP: a deterministic world, complete keyset paging that survives
//! mutations, every documented rule enforced and recorded, and faults answered as documented.

use ordersync_sim::Simulator;
use std::collections::{HashMap, HashSet};
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, NaiveDate, NaiveDateTime};
use ordersync_sim::faults::FaultCounts;
use ordersync_sim::veapi::codes;
use ordersync_sim::{Faults, VeOrder, VeapiSim, VeapiSimConfig};
use reqwest::Method;
use serde_json::Value;

use crate::common::{client, send, start_binary, Reply};

const KEY: &str = "test-vekey";

fn now() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2025, 6, 1)
        .and_then(|d| d.and_hms_opt(12, 0, 0))
        .expect("valid date")
}

fn config(orders: usize, days: i64) -> VeapiSimConfig {
    VeapiSimConfig {
        seed: 7,
        vekey: KEY.to_string(),
        orders,
        days,
        now: now(),
        faults: Faults::default(),
    }
}

fn unix(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp() - 8 * 3600
}

fn wall(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

async fn get(sim: &VeapiSim, params: &[(&str, String)]) -> Reply {
    send(&sim.endpoint(), Method::GET, params).await
}

fn window(start: String, end: String, time_type: &str, size: usize) -> Vec<(&'static str, String)> {
    vec![
        ("vekey", KEY.to_string()),
        ("size", size.to_string()),
        ("cursor", "0".to_string()),
        ("start_time", start),
        ("end_time", end),
        ("order_type", "0".to_string()),
        ("time_type", time_type.to_string()),
    ]
}

fn set(params: &mut [(&'static str, String)], name: &str, value: String) {
    for p in params.iter_mut() {
        if p.0 == name {
            p.1 = value.clone();
        }
    }
}

fn rows(v: &Value) -> Vec<Value> {
    v["data"].as_array().cloned().expect("data is a list")
}

fn text(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string in {v}"))
        .to_string()
}

fn time_text(t: Option<NaiveDateTime>) -> String {
    t.map_or_else(|| "0".to_string(), |t| unix(t).to_string())
}

fn assert_row_matches(row: &Value, o: &VeOrder) {
    let obj = row.as_object().expect("row is an object");
    assert_eq!(obj.len(), 27, "{row}");
    assert!(
        obj.values().all(Value::is_string),
        "every value is a string: {row}"
    );
    for (field, want) in [
        ("order_id", o.order_id.clone()),
        ("product_id", o.product_id.clone()),
        ("product_name", o.product_name.clone()),
        ("shop_id", o.shop_id.clone()),
        ("shop_name", o.shop_name.clone()),
        ("total_pay_amount", o.total_pay_amount.to_string()),
        ("pay_goods_amount", o.pay_goods_amount.to_string()),
        ("estimated_commission", o.estimated_commission.clone()),
        ("ads_real_commission", o.ads_real_commission.clone()),
        ("flow_point", o.flow_point.clone()),
        ("after_sales_status", o.after_sales_status.to_string()),
        ("item_num", o.item_num.to_string()),
        ("pay_success_time", time_text(Some(o.pay_success_time))),
        ("update_time", time_text(Some(o.update_time))),
        ("refund_time", time_text(o.refund_time)),
        ("settle_time", time_text(o.settle_time)),
        ("confirm_time", time_text(o.confirm_time)),
    ] {
        assert_eq!(text(row, field), want, "{field} of {}", o.order_id);
    }
}

/// Pages through one query to the end; returns the ids in the order received and the request count.
async fn page_all(
    sim: &VeapiSim,
    mut params: Vec<(&'static str, String)>,
    mut between_pages: impl FnMut(usize),
) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let v = get(sim, &params).await.json();
        assert_eq!(text(&v, "error"), codes::OK, "{v}");
        pages += 1;
        ids.extend(rows(&v).iter().map(|r| text(r, "order_id")));
        let cursor = text(&v, "cursor");
        if cursor.is_empty() {
            return (ids, pages);
        }
        assert!(pages < 10_000, "paging never ends");
        between_pages(pages);
        set(&mut params, "cursor", cursor);
    }
}

#[tokio::test]
async fn same_seed_and_now_give_the_same_world() {
    let a = VeapiSim::start(config(1000, 200)).await.expect("start");
    let b = VeapiSim::start(config(1000, 200)).await.expect("start");
    let truth = a.truth();
    assert_eq!(truth, b.truth());
    let other = VeapiSim::start(VeapiSimConfig {
        seed: 8,
        ..config(1000, 200)
    })
    .await
    .expect("start");
    assert_ne!(truth, other.truth());

    assert_eq!(truth.len(), 1000);
    let ids: HashSet<&str> = truth.iter().map(|o| o.order_id.as_str()).collect();
    assert_eq!(ids.len(), 1000, "ids are unique");
    assert!(
        truth.windows(2).all(|w| w[0].order_id < w[1].order_id),
        "sorted by id"
    );
    let mut by_state: HashMap<&str, usize> = HashMap::new();
    for o in &truth {
        for id in [&o.order_id, &o.product_id] {
            assert_eq!(id.len(), 19, "{id}");
            assert!(id.parse::<u64>().expect("numeric id") > 9_007_199_254_740_993);
        }
        assert!(o.pay_success_time >= now() - Duration::days(200));
        assert!(o.pay_success_time <= now() - Duration::hours(1));
        assert!(o.update_time <= now() - Duration::minutes(5), "{o:?}");
        for t in [o.refund_time, o.confirm_time, o.settle_time]
            .into_iter()
            .flatten()
        {
            assert!(o.pay_success_time <= t && t <= o.update_time, "{o:?}");
        }
        assert!((100..=50_000).contains(&o.total_pay_amount));
        assert!(o.pay_goods_amount >= o.total_pay_amount);
        *by_state.entry(o.flow_point.as_str()).or_default() += 1;
        let (fields, real) = match o.flow_point.as_str() {
            "PAY_SUCC" => ((false, false, false), false),
            "CONFIRM" => ((false, true, false), false),
            "SETTLE" => ((false, true, true), true),
            "REFUND" => ((true, false, false), false),
            other => panic!("unexpected flow_point {other}"),
        };
        assert_eq!(
            (
                o.refund_time.is_some(),
                o.confirm_time.is_some(),
                o.settle_time.is_some()
            ),
            fields,
            "{o:?}"
        );
        assert_eq!(o.ads_real_commission != "0", real, "{o:?}");
        assert_eq!(
            o.after_sales_status,
            if o.refund_time.is_some() { 2 } else { 1 }
        );
        assert!(o.confirm_time <= o.settle_time || o.settle_time.is_none());
    }
    for (state, share) in [
        ("PAY_SUCC", 50),
        ("CONFIRM", 20),
        ("SETTLE", 15),
        ("REFUND", 15),
    ] {
        let n = by_state.get(state).copied().unwrap_or(0);
        assert!(n.abs_diff(share * 10) < 60, "{state}: {n} of 1000");
    }
    let commissions: Vec<&str> = truth
        .iter()
        .map(|o| o.estimated_commission.as_str())
        .collect();
    assert!(commissions.contains(&"0.5"));
    assert!(commissions.iter().any(|c| c.ends_with(".5") && *c != "0.5"));
    assert!(commissions.iter().any(|c| !c.contains('.')));
    assert!(commissions
        .iter()
        .any(|c| c.split_once('.').is_some_and(|(_, f)| f.len() == 2)));
    let names: String = truth
        .iter()
        .map(|o| format!("{}{}", o.product_name, o.shop_name))
        .collect();
    assert!(names.contains('"') && names.contains('🔥'));
}

#[tokio::test]
async fn paging_a_90_day_window_returns_each_order_once_in_order() {
    let sim = VeapiSim::start(config(1000, 200)).await.expect("start");
    let start = now() - Duration::days(90);
    let end = now();
    // The start as Beijing wall clock, the end as unix seconds: both formats name instants.
    let params = window(wall(start), unix(end).to_string(), "pay", 50);
    let (ids, pages) = page_all(&sim, params, |_| {}).await;

    let mut want: Vec<VeOrder> = sim
        .truth()
        .into_iter()
        .filter(|o| (start..=end).contains(&o.pay_success_time))
        .collect();
    want.sort_by(|a, b| (a.pay_success_time, &a.order_id).cmp(&(b.pay_success_time, &b.order_id)));
    let want_ids: Vec<String> = want.iter().map(|o| o.order_id.clone()).collect();
    assert!(
        want_ids.len() > 300,
        "{} orders in 90 of 200 days",
        want_ids.len()
    );
    assert_eq!(ids, want_ids, "every order exactly once, by (pay time, id)");
    assert_eq!(
        pages,
        want_ids.len().div_ceil(50),
        "the last full page says it is the last"
    );
    assert_eq!(sim.requests(), pages as u64);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());

    // Rows carry the ground truth, every value a string.
    let v = get(&sim, &window(wall(start), wall(end), "pay", 50))
        .await
        .json();
    assert_eq!(text(&v, "msg"), codes::OK_MSG);
    assert_eq!(text(&v, "request_id").len(), 7);
    for (row, o) in rows(&v).iter().zip(&want) {
        assert_row_matches(row, o);
    }
}

#[tokio::test]
async fn order_type_selects_by_media_type() {
    let sim = VeapiSim::start(config(400, 60)).await.expect("start");
    let truth = sim.truth();
    for (order_type, media) in [
        ("1", "ProductDetail"),
        ("2", "Live"),
        ("3", "ActivityMaterial"),
    ] {
        let mut params = window(wall(now() - Duration::days(61)), wall(now()), "pay", 50);
        set(&mut params, "order_type", order_type.to_string());
        let (ids, _) = page_all(&sim, params, |_| {}).await;
        let want = truth.iter().filter(|o| o.media_type_name == media).count();
        assert_eq!(ids.len(), want, "order_type {order_type}");
    }
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn a_91_day_window_is_refused_and_recorded() {
    let sim = VeapiSim::start(config(100, 200)).await.expect("start");
    let start = now() - Duration::days(150);
    let exactly_90 = start + Duration::days(90);
    let v = get(&sim, &window(wall(start), wall(exactly_90), "pay", 50))
        .await
        .json();
    assert_eq!(
        text(&v, "error"),
        codes::OK,
        "90 days exactly is allowed: {v}"
    );
    assert!(sim.violations().is_empty());

    let one_second_more = exactly_90 + Duration::seconds(1);
    let r = get(&sim, &window(wall(start), wall(one_second_more), "pay", 50)).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(text(&v, "error"), codes::BAD_PARAMETER, "{v}");
    assert!(text(&v, "msg").contains("90"), "{v}");
    assert_eq!(v["data"], Value::Array(vec![]));
    assert_eq!(text(&v, "cursor"), "");
    let violations = sim.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains("90 days"), "{violations:?}");

    let v = get(
        &sim,
        &window(wall(start), wall(start + Duration::days(91)), "pay", 50),
    )
    .await
    .json();
    assert_eq!(text(&v, "error"), codes::BAD_PARAMETER);
    assert_eq!(sim.violations().len(), 2);
}

#[tokio::test]
async fn a_wrong_or_missing_vekey_gets_10001() {
    let sim = VeapiSim::start(config(100, 30)).await.expect("start");
    let mut params = window(wall(now() - Duration::days(30)), wall(now()), "pay", 50);
    set(&mut params, "vekey", "not-the-key".to_string());
    let v = get(&sim, &params).await.json();
    assert_eq!(text(&v, "error"), codes::BAD_KEY);
    assert_eq!(text(&v, "msg"), codes::BAD_KEY_MSG);
    assert_eq!(v["data"], Value::Array(vec![]));
    let without: Vec<_> = params.iter().filter(|p| p.0 != "vekey").cloned().collect();
    let v = get(&sim, &without).await.json();
    assert_eq!(text(&v, "error"), codes::BAD_KEY);

    sim.set_vekey("rotated");
    set(&mut params, "vekey", KEY.to_string());
    let v = get(&sim, &params).await.json();
    assert_eq!(
        text(&v, "error"),
        codes::BAD_KEY,
        "the old key no longer works"
    );
    set(&mut params, "vekey", "rotated".to_string());
    let v = get(&sim, &params).await.json();
    assert_eq!(text(&v, "error"), codes::OK);

    let violations = sim.violations();
    assert_eq!(violations.len(), 3, "{violations:?}");
    for line in &violations {
        assert!(line.contains("vekey"), "{line}");
        assert!(
            !line.contains("not-the-key") && !line.contains(KEY),
            "a key leaked: {line}"
        );
    }
}

#[tokio::test]
async fn each_broken_rule_is_refused_and_recorded() {
    let sim = VeapiSim::start(config(100, 30)).await.expect("start");
    let start = now() - Duration::days(10);
    let good = window(wall(start), wall(now()), "pay", 20);
    let cases: Vec<(&str, &str, String)> = vec![
        ("size 0", "size", "0".into()),
        ("size 51", "size", "51".into()),
        ("size text", "size", "twenty".into()),
        ("bad start", "start_time", "2025/05/01 00:00:00".into()),
        ("13-digit end", "end_time", "1748750400000".into()),
        (
            "end before start",
            "end_time",
            wall(start - Duration::seconds(1)),
        ),
        ("time_type", "time_type", "create".into()),
        ("order_type", "order_type", "4".into()),
        ("garbage cursor", "cursor", "abc".into()),
        (
            "forged cursor",
            "cursor",
            format!("1{:010}{}", unix(start) + 1, "5000000000000000000"),
        ),
    ];
    for (what, name, value) in &cases {
        let mut params = good.clone();
        set(&mut params, name, value.clone());
        let v = get(&sim, &params).await.json();
        assert_eq!(text(&v, "error"), codes::BAD_PARAMETER, "{what}: {v}");
        assert!(
            text(&v, "msg").contains(name),
            "{what}: msg names {name}: {v}"
        );
    }
    let missing: Vec<_> = good.iter().filter(|p| p.0 != "end_time").cloned().collect();
    let v = get(&sim, &missing).await.json();
    assert_eq!(
        text(&v, "error"),
        codes::BAD_PARAMETER,
        "missing end_time: {v}"
    );
    let eleven = (1..=11)
        .map(|i| format!("49{i:017}"))
        .collect::<Vec<_>>()
        .join(",");
    let v = get(&sim, &[("vekey", KEY.to_string()), ("order_ids", eleven)])
        .await
        .json();
    assert_eq!(text(&v, "error"), codes::BAD_PARAMETER, "11 order ids: {v}");

    let violations = sim.violations();
    assert_eq!(violations.len(), cases.len() + 2, "{violations:#?}");
    // Unknown parameters are ignored; a good request is still fine.
    let mut params = good.clone();
    params.push(("sign", "whatever".to_string()));
    let v = get(&sim, &params).await.json();
    assert_eq!(text(&v, "error"), codes::OK);
    assert_eq!(sim.violations().len(), cases.len() + 2);
}

#[tokio::test]
async fn a_cursor_only_continues_its_own_query() {
    let sim = VeapiSim::start(config(300, 30)).await.expect("start");
    let params = window(wall(now() - Duration::days(30)), wall(now()), "pay", 10);
    let v = get(&sim, &params).await.json();
    let cursor = text(&v, "cursor");
    assert_eq!(cursor.len(), 30);
    assert!(cursor.bytes().all(|b| b.is_ascii_digit()));
    let mut moved = params.clone();
    set(&mut moved, "cursor", cursor.clone());
    set(&mut moved, "start_time", wall(now() - Duration::days(29)));
    let v = get(&sim, &moved).await.json();
    assert_eq!(text(&v, "error"), codes::BAD_PARAMETER, "{v}");
    let mut same = params.clone();
    set(&mut same, "cursor", cursor);
    set(&mut same, "size", "50".to_string());
    let v = get(&sim, &same).await.json();
    assert_eq!(
        text(&v, "error"),
        codes::OK,
        "size may change between pages: {v}"
    );
    assert_eq!(sim.violations().len(), 1);
}

#[tokio::test]
async fn the_keyset_cursor_survives_mutations_between_pages() {
    let sim = VeapiSim::start(config(1500, 80)).await.expect("start");
    let start = now() - Duration::days(85);
    let end = now();

    // By payment time: mutations never move an order, so each appears exactly once.
    let expected: HashSet<String> = sim.truth().into_iter().map(|o| o.order_id).collect();
    let mut mutated = Vec::new();
    let (ids, _) = page_all(&sim, window(wall(start), wall(end), "pay", 50), |page| {
        let at = now() - Duration::seconds(120 - page as i64);
        mutated.extend(sim.mutate(20, at));
    })
    .await;
    assert!(mutated.len() > 100, "{} mutations", mutated.len());
    assert_eq!(ids.len(), expected.len(), "no order twice or missing");
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), expected);

    // By update time: a mutated order moves behind the cursor's end and shows up (again) later;
    // every other order exactly once, and nothing in the window is missed.
    let mut touched: HashSet<String> = HashSet::new();
    let (ids, _) = page_all(&sim, window(wall(start), wall(end), "update", 50), |page| {
        let at = now() - Duration::seconds(60 - page as i64);
        touched.extend(sim.mutate(20, at).into_iter().map(|m| m.order_id));
    })
    .await;
    assert!(!touched.is_empty());
    let mut count: HashMap<&str, usize> = HashMap::new();
    for id in &ids {
        *count.entry(id.as_str()).or_default() += 1;
    }
    let now_in_window: HashSet<String> = sim
        .truth()
        .into_iter()
        .filter(|o| (start..=end).contains(&o.update_time))
        .map(|o| o.order_id)
        .collect();
    assert_eq!(
        count.keys().map(|k| k.to_string()).collect::<HashSet<_>>(),
        now_in_window
    );
    for (id, n) in count {
        if !touched.contains(id) {
            assert_eq!(n, 1, "{id} seen {n} times");
        }
    }
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn mutations_and_additions_are_deterministic_and_consistent() {
    let a = VeapiSim::start(config(500, 60)).await.expect("start");
    let b = VeapiSim::start(config(500, 60)).await.expect("start");
    let at = now() + Duration::minutes(1);
    let before: HashMap<String, VeOrder> = a
        .truth()
        .into_iter()
        .map(|o| (o.order_id.clone(), o))
        .collect();
    let changes = a.mutate(40, at);
    assert_eq!(changes, b.mutate(40, at));
    let added = a.add_orders(5, at);
    assert_eq!(added, b.add_orders(5, at));
    assert_eq!(a.truth(), b.truth());

    let status: Vec<_> = changes.iter().filter(|m| m.from != m.to).collect();
    assert_eq!(status.len(), 40);
    assert!(changes.len() > 40, "a few commission revisions too");
    let after: HashMap<String, VeOrder> = a
        .truth()
        .into_iter()
        .map(|o| (o.order_id.clone(), o))
        .collect();
    let mut seen = HashSet::new();
    for m in &changes {
        assert!(
            seen.insert(&m.order_id),
            "{} changed twice in one call",
            m.order_id
        );
        let (old, new) = (&before[&m.order_id], &after[&m.order_id]);
        assert_eq!(old.flow_point, m.from);
        assert_eq!(new.flow_point, m.to);
        assert_eq!(new.update_time, at);
        match (m.from.as_str(), m.to.as_str()) {
            ("PAY_SUCC", "CONFIRM") => assert_eq!(new.confirm_time, Some(at)),
            ("PAY_SUCC", "REFUND") => {
                assert_eq!(new.refund_time, Some(at));
                assert_eq!(new.after_sales_status, 2);
            }
            ("CONFIRM", "SETTLE") => {
                assert_eq!(new.settle_time, Some(at));
                assert_ne!(new.ads_real_commission, "0");
            }
            (from, to) if from == to => {
                assert_ne!(old.estimated_commission, new.estimated_commission)
            }
            other => panic!("unexpected transition {other:?}"),
        }
    }
    for id in &added {
        let o = &after[id];
        assert_eq!(o.flow_point, "PAY_SUCC");
        assert!(o.pay_success_time >= at - Duration::seconds(5) && o.update_time <= at);
    }
    assert_eq!(after.len(), 505);

    // Orders updated at or after `at` cannot move again at the same instant.
    let again = a.mutate(1000, at);
    assert!(again.iter().all(|m| !seen.contains(&m.order_id)));
}

#[tokio::test]
async fn order_ids_look_up_orders_and_ignore_the_window() {
    let sim = VeapiSim::start(config(50, 10)).await.expect("start");
    let truth = sim.truth();
    let ids = format!(
        "{},{},1234567890123456789",
        truth[3].order_id, truth[9].order_id
    );
    let params = [
        ("vekey", KEY.to_string()),
        ("order_ids", ids),
        ("start_time", "nonsense".to_string()),
        ("size", "500".to_string()),
    ];
    let v = get(&sim, &params).await.json();
    assert_eq!(text(&v, "error"), codes::OK, "{v}");
    assert_eq!(text(&v, "cursor"), "");
    let got = rows(&v);
    assert_eq!(got.len(), 2);
    assert_row_matches(&got[0], &truth[3]);
    assert_row_matches(&got[1], &truth[9]);
    assert!(sim.violations().is_empty());
}

#[tokio::test]
async fn a_form_post_works_like_a_get() {
    let sim = VeapiSim::start(config(200, 30)).await.expect("start");
    let params = window(wall(now() - Duration::days(30)), wall(now()), "update", 50);
    let resp = client()
        .post(sim.endpoint())
        .form(&params)
        .send()
        .await
        .expect("post");
    let posted: Value = serde_json::from_slice(&resp.bytes().await.expect("body")).expect("json");
    let got = get(&sim, &params).await.json();
    assert_eq!(text(&posted, "error"), codes::OK, "{posted}");
    assert_eq!(posted["data"], got["data"]);
    assert_eq!(posted["cursor"], got["cursor"]);
    assert_eq!(rows(&posted).len(), 50);
}

#[tokio::test]
async fn faults_answer_as_documented_and_are_not_violations() {
    let sim = VeapiSim::start(config(200, 30)).await.expect("start");
    let good = window(wall(now() - Duration::days(30)), wall(now()), "pay", 50);
    let real = get(&sim, &good).await;
    let only = |f: Faults| Faults { seed: 4, ..f };

    sim.set_faults(only(Faults {
        p_5xx: 1.0,
        ..Faults::default()
    }));
    let mut statuses = HashSet::new();
    for _ in 0..20 {
        // Even a request that breaks the rules gets the fault, not a refusal.
        let r = get(&sim, &[("size", "999".to_string())]).await;
        assert!(String::from_utf8_lossy(&r.body).contains("<html>"));
        statuses.insert(r.status);
    }
    assert_eq!(statuses, HashSet::from([502, 503]));

    sim.set_faults(only(Faults {
        p_429: 1.0,
        retry_after_secs: 3,
        ..Faults::default()
    }));
    let r = get(&sim, &good).await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("3")
    );

    sim.set_faults(only(Faults {
        p_body_rate_limit: 1.0,
        ..Faults::default()
    }));
    let v = get(&sim, &good).await.json();
    assert_eq!(text(&v, "error"), codes::RATE_LIMITED);
    assert_eq!(text(&v, "msg"), codes::RATE_LIMITED_MSG);
    assert_eq!(text(&v, "cursor"), "");

    sim.set_faults(only(Faults {
        p_truncated: 1.0,
        ..Faults::default()
    }));
    let r = get(&sim, &good).await;
    assert_eq!(r.status, 200);
    let length: usize = r.headers["content-length"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    assert_eq!(length, r.body.len());
    assert_eq!(r.body.len(), real.body.len() / 2);
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());
    // The cut answer is a prefix of the real one (only the request id differs).
    let cut = String::from_utf8_lossy(&r.body);
    assert!(cut.starts_with("{\"error\":\"0\""), "{cut}");

    sim.set_faults(only(Faults {
        p_malformed: 1.0,
        ..Faults::default()
    }));
    let r = get(&sim, &good).await;
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());

    sim.set_faults(only(Faults {
        p_slow: 1.0,
        slow_ms: 300,
        ..Faults::default()
    }));
    let started = Instant::now();
    let v = get(&sim, &good).await.json();
    assert!(started.elapsed() >= StdDuration::from_millis(300));
    assert_eq!(text(&v, "error"), codes::OK);

    sim.set_faults(Faults::default());
    assert_eq!(text(&get(&sim, &good).await.json(), "error"), codes::OK);

    assert_eq!(sim.requests(), 1 + 20 + 5 + 1);
    assert_eq!(sim.faults_injected(), 20 + 5);
    assert_eq!(
        sim.fault_counts(),
        FaultCounts {
            server_error: 20,
            too_many_requests: 1,
            body_rate_limit: 1,
            body_transient: 0,
            truncated: 1,
            malformed: 1,
            slow: 1,
        }
    );
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[test]
fn the_binary_prints_its_endpoint_and_serves() {
    let (mut child, endpoint) = start_binary(&[
        "veapi", "--orders", "20", "--days", "5", "--vekey", "cli-key", "--p-5xx", "0",
    ]);
    assert!(
        endpoint.starts_with("http://127.0.0.1:") && endpoint.ends_with("/douke/csj_ordersearch")
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let body = rt.block_on(async {
        let end = ordersync_sim::beijing_now();
        let mut params = window(wall(end - Duration::days(6)), wall(end), "pay", 50);
        set(&mut params, "vekey", "cli-key".to_string());
        client()
            .get(&endpoint)
            .query(&params)
            .send()
            .await
            .expect("request")
            .bytes()
            .await
            .expect("body")
    });
    let _ = child.kill();
    let _ = child.wait();
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["error"], "0", "{v}");
    assert_eq!(rows(&v).len(), 20);
}

#[tokio::test]
async fn hostile_answers_replace_every_answer_until_cleared_and_are_not_violations() {
    use ordersync_sim::hostile::{Hostile, HUGE_BODY_BYTES};
    let sim = VeapiSim::start(config(30, 10)).await.expect("start");
    let params = window(wall(now() - Duration::days(11)), wall(now()), "pay", 50);
    // Our own client, following no redirect and inflating nothing (reqwest may have its gzip
    // feature in a workspace build): what the simulator sends is what we read.
    let raw = reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let send = || raw.get(sim.endpoint()).query(&params).send();

    sim.set_hostile(Some(Hostile::GzipBomb));
    let resp = send().await.expect("request");
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let wire = resp.bytes().await.expect("body");
    assert!(
        wire.len() < 2_000_000 && wire.starts_with(&[0x1f, 0x8b]),
        "{}",
        wire.len()
    );

    sim.set_hostile(Some(Hostile::HugeBodyWithLength));
    let resp = send().await.expect("request");
    assert_eq!(resp.content_length(), Some(HUGE_BODY_BYTES));
    drop(resp);

    sim.set_hostile(Some(Hostile::HugeBody));
    let resp = send().await.expect("request");
    assert_eq!(
        resp.content_length(),
        None,
        "chunked: the size is learnt by reading"
    );
    drop(resp);

    let elsewhere = "http://127.0.0.1:9/douke/csj_ordersearch".to_string();
    sim.set_hostile(Some(Hostile::Redirect {
        to: elsewhere.clone(),
    }));
    let resp = send().await.expect("request");
    assert_eq!(resp.status().as_u16(), 302);
    let location = resp.headers()["location"]
        .to_str()
        .expect("text")
        .to_string();
    assert!(
        location.starts_with(&format!("{elsewhere}?"))
            && location.contains(&format!("vekey={KEY}")),
        "{location}"
    );

    sim.set_hostile(Some(Hostile::Html401));
    let resp = send().await.expect("request");
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.text().await.expect("body").starts_with("<html>"));

    sim.set_hostile(None);
    let r = get(&sim, &params).await;
    assert_eq!(r.json()["error"], "0");
    assert_eq!(rows(&r.json()).len(), 30);
    assert_eq!(sim.requests(), 6);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    assert_eq!(sim.faults_injected(), 0);
}

#[tokio::test]
async fn a_forced_code_answers_every_request_with_it() {
    let sim = VeapiSim::start(config(5, 10)).await.expect("start");
    let params = window(wall(now() - Duration::days(11)), wall(now()), "pay", 50);
    sim.set_forced_code(Some((KEY.to_string(), "echoed".to_string())));
    let v = get(&sim, &params).await.json();
    assert_eq!(
        (v["error"].as_str(), v["msg"].as_str()),
        (Some(KEY), Some("echoed"))
    );
    assert_eq!(rows(&v).len(), 0);
    sim.set_forced_code(None);
    assert_eq!(rows(&get(&sim, &params).await.json()).len(), 5);
    assert!(sim.violations().is_empty());
}
