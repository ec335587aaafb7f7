//! The miaoyouquan simulator over real HTTP: a deterministic world, complete keyset paging that
//! survives mutations, the 90-day horizon and every other documented rule enforced and recorded,
//! status codes sent in the body or as the HTTP status, exact big shop ids, and faults answered as
//! documented.
//!
//! The horizon is measured from the real Beijing now, so these worlds are generated against it too.

use ordersync_sim::Simulator;
use std::collections::{HashMap, HashSet};
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, NaiveDateTime};
use ordersync_sim::faults::FaultCounts;
use ordersync_sim::miaoyouquan::{codes, PATH};
use ordersync_sim::{beijing_now, Faults, MiaoyouquanSim, MiaoyouquanSimConfig, MyqOrder};
use reqwest::Method;
use serde_json::Value;

use crate::common::{send, start_binary, Reply};

const APKEY: &str = "test-apkey-5c1e";
const DOU_KEY: &str = "Dtest-dou-key-77";

/// The fields of the document's sample row.
const SAMPLE_FIELDS: [&str; 31] = [
    "ads_activity_id",
    "ads_estimated_commission",
    "ads_estimated_tech_service_fee",
    "ads_fans_type",
    "ads_promotion_rate",
    "ads_real_commission",
    "author_account",
    "author_buyin_id",
    "author_short_id",
    "confirm_time",
    "distributor_right_type",
    "flow_point",
    "item_num",
    "material_id",
    "media_type",
    "order_id",
    "pay_goods_amount",
    "pay_success_time",
    "pid_info",
    "product_activity_id",
    "product_id",
    "product_img",
    "product_name",
    "product_tags",
    "refund_time",
    "settle_time",
    "settled_goods_amount",
    "shop_id",
    "shop_name",
    "total_pay_amount",
    "update_time",
];

fn config(orders: usize, days: i64, now: NaiveDateTime) -> MiaoyouquanSimConfig {
    MiaoyouquanSimConfig {
        seed: 7,
        apkey: APKEY.to_string(),
        dou_key: DOU_KEY.to_string(),
        orders,
        days,
        now,
        faults: Faults::default(),
    }
}

async fn start(orders: usize, days: i64) -> (MiaoyouquanSim, NaiveDateTime) {
    let now = beijing_now();
    let sim = MiaoyouquanSim::start(config(orders, days, now))
        .await
        .expect("start");
    (sim, now)
}

fn wall(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The body `code` (miaoyouquan sends its status there, or as the HTTP status).
trait Code {
    fn code(&self) -> i64;
}

impl Code for Reply {
    fn code(&self) -> i64 {
        self.int("code")
    }
}

async fn get(sim: &MiaoyouquanSim, params: &[(&str, String)]) -> Reply {
    send(&sim.endpoint(), Method::GET, params).await
}

/// A first page exactly as ordersync's client asks for it.
fn window(
    start: NaiveDateTime,
    end: NaiveDateTime,
    time_type: &str,
    size: usize,
) -> Vec<(&'static str, String)> {
    vec![
        ("apkey", APKEY.to_string()),
        ("dou_key", DOU_KEY.to_string()),
        ("size", size.to_string()),
        ("cursor", "0".to_string()),
        ("start_time", wall(start)),
        ("end_time", wall(end)),
        ("time_type", time_type.to_string()),
    ]
}

fn set(params: &mut Vec<(&'static str, String)>, name: &'static str, value: String) {
    match params.iter_mut().find(|p| p.0 == name) {
        Some(p) => p.1 = value,
        None => params.push((name, value)),
    }
}

fn without(params: &[(&'static str, String)], name: &str) -> Vec<(&'static str, String)> {
    params.iter().filter(|p| p.0 != name).cloned().collect()
}

fn rows(v: &Value) -> Vec<Value> {
    v["data"]["orders"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("data.orders is not a list: {v}"))
}

fn cursor(v: &Value) -> String {
    v["data"]["cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("data.cursor is not a string: {v}"))
        .to_string()
}

fn text(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string in {v}"))
        .to_string()
}

fn time_value(t: Option<NaiveDateTime>) -> Value {
    t.map_or(Value::Null, |t| Value::String(wall(t)))
}

fn assert_row_matches(row: &Value, o: &MyqOrder) {
    let obj = row.as_object().expect("row is an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, SAMPLE_FIELDS, "the document's fields");
    for (field, want) in [
        ("order_id", &o.order_id),
        ("product_id", &o.product_id),
        ("product_name", &o.product_name),
        ("shop_name", &o.shop_name),
        ("flow_point", &o.flow_point),
    ] {
        assert_eq!(&text(row, field), want, "{field} of {}", o.order_id);
    }
    for (field, want) in [
        ("item_num", o.item_num),
        ("total_pay_amount", o.total_pay_amount),
        ("pay_goods_amount", o.pay_goods_amount),
        ("ads_estimated_commission", o.ads_estimated_commission),
        ("ads_real_commission", o.ads_real_commission),
    ] {
        assert_eq!(row[field].as_i64(), Some(want), "{field} of {}", o.order_id);
    }
    assert!(row["shop_id"].is_u64(), "shop_id is a JSON integer: {row}");
    assert_eq!(row["shop_id"].to_string(), o.shop_id);
    for (field, want) in [
        ("pay_success_time", Some(o.pay_success_time)),
        ("update_time", Some(o.update_time)),
        ("refund_time", o.refund_time),
        ("settle_time", o.settle_time),
        ("confirm_time", o.confirm_time),
    ] {
        assert_eq!(row[field], time_value(want), "{field} of {}", o.order_id);
    }
    for field in [
        "ads_activity_id",
        "ads_promotion_rate",
        "ads_estimated_tech_service_fee",
        "settled_goods_amount",
    ] {
        assert!(row[field].is_i64(), "{field} is a number: {row}");
    }
    assert_eq!(row["pid_info"]["pid"], Value::String(o.pid.clone()));
    let media = row["pid_info"]["media_type_name"].as_str().unwrap_or("");
    let want = match o.distribution_type.as_str() {
        "Live" => "live",
        "ActivityMaterial" => "Activity",
        _ => "ProductDetail",
    };
    assert_eq!(media, want);
    assert!(row["pid_info"]["external_info"].is_string());
    assert!(row["product_tags"]["has_subsidy_tag"].is_boolean());
    assert!(row["product_tags"]["has_supermarket_tag"].is_boolean());
    let settled = if o.flow_point == "SETTLE" {
        o.pay_goods_amount
    } else {
        0
    };
    assert_eq!(row["settled_goods_amount"].as_i64(), Some(settled));
}

/// Pages through one query until `cursor` is empty; returns the ids in the order received and the
/// page count. Checks every page is a success.
async fn page_all(
    sim: &MiaoyouquanSim,
    mut params: Vec<(&'static str, String)>,
    mut between_pages: impl FnMut(usize),
) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let r = get(sim, &params).await;
        assert_eq!((r.status, r.code()), (200, codes::OK), "{}", r.msg());
        let v = r.json();
        pages += 1;
        ids.extend(rows(&v).iter().map(|r| text(r, "order_id")));
        let next = cursor(&v);
        if next.is_empty() {
            return (ids, pages);
        }
        assert_ne!(next, "0");
        assert!(pages < 10_000, "paging never ends");
        between_pages(pages);
        set(&mut params, "cursor", next);
    }
}

#[tokio::test]
async fn same_seed_and_now_give_the_same_world() {
    let now = beijing_now();
    let a = MiaoyouquanSim::start(config(1000, 80, now))
        .await
        .expect("start");
    let b = MiaoyouquanSim::start(config(1000, 80, now))
        .await
        .expect("start");
    let truth = a.truth();
    assert_eq!(truth, b.truth());
    let other = MiaoyouquanSim::start(MiaoyouquanSimConfig {
        seed: 8,
        ..config(1000, 80, now)
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
    let mut by_distribution: HashMap<&str, usize> = HashMap::new();
    let mut pids = HashSet::new();
    let mut big_shops = HashSet::new();
    for o in &truth {
        for id in [&o.order_id, &o.product_id] {
            assert_eq!(id.len(), 19, "{id}");
            assert!(id.parse::<u64>().expect("numeric id") > 9_007_199_254_740_993);
        }
        let shop: u64 = o.shop_id.parse().expect("numeric shop id");
        if shop > 1 << 53 {
            assert_ne!(shop as f64 as u64, shop, "a float would keep {shop}");
            big_shops.insert(shop);
        }
        assert!(o.pay_success_time >= now - Duration::days(80));
        assert!(o.pay_success_time <= now - Duration::hours(1));
        assert!(o.update_time <= now - Duration::minutes(5), "{o:?}");
        for t in [o.refund_time, o.confirm_time, o.settle_time]
            .into_iter()
            .flatten()
        {
            assert!(o.pay_success_time <= t && t <= o.update_time, "{o:?}");
        }
        assert!((100..=50_000).contains(&o.total_pay_amount));
        assert!(o.pay_goods_amount >= o.total_pay_amount);
        assert!(o.ads_estimated_commission >= 1);
        *by_state.entry(o.flow_point.as_str()).or_default() += 1;
        *by_distribution
            .entry(o.distribution_type.as_str())
            .or_default() += 1;
        pids.insert(o.pid.as_str());
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
        assert_eq!(o.ads_real_commission != 0, real, "{o:?}");
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
    assert_eq!(
        by_distribution.keys().copied().collect::<HashSet<_>>(),
        HashSet::from(["Live", "ProductDetail", "ActivityMaterial"])
    );
    assert!((2..=4).contains(&pids.len()), "{pids:?}");
    assert!(big_shops.len() >= 3, "{big_shops:?}");
    let names: String = truth
        .iter()
        .map(|o| format!("{}{}", o.product_name, o.shop_name))
        .collect();
    assert!(names.contains('"') && names.contains('🔥'));
}

#[tokio::test]
async fn paging_a_window_returns_each_order_once_in_order() {
    let (sim, now) = start(1000, 80).await;
    let start = now - Duration::days(89);
    let (ids, pages) = page_all(&sim, window(start, now, "pay", 50), |_| {}).await;

    let mut want: Vec<MyqOrder> = sim.truth();
    want.sort_by(|a, b| (a.pay_success_time, &a.order_id).cmp(&(b.pay_success_time, &b.order_id)));
    let want_ids: Vec<String> = want.iter().map(|o| o.order_id.clone()).collect();
    assert_eq!(ids, want_ids, "every order exactly once, by (pay time, id)");
    assert_eq!(
        pages,
        want_ids.len().div_ceil(50),
        "the last full page says it is the last"
    );
    assert_eq!(sim.requests(), pages as u64);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());

    // Rows carry the ground truth in the document's shape.
    let r = get(&sim, &window(start, now, "pay", 50)).await;
    assert_eq!(r.msg(), codes::OK_MSG);
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json; charset=utf-8")
    );
    let v = r.json();
    let keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 3, "code, msg, data: {keys:?}");
    for (row, o) in rows(&v).iter().zip(&want) {
        assert_row_matches(row, o);
    }

    // Paged as ordersync's client pages: one-day windows, size 200, a short page is the last.
    let mut seen = Vec::new();
    let mut day = start;
    while day < now {
        let end = (day + Duration::days(1)).min(now);
        let mut params = window(day, end - Duration::seconds(1), "pay", 200);
        loop {
            let v = get(&sim, &params).await.json();
            let got = rows(&v);
            seen.extend(got.iter().map(|r| text(r, "order_id")));
            let next = cursor(&v);
            if got.len() < 200 || next.is_empty() {
                break;
            }
            set(&mut params, "cursor", next);
        }
        day = end;
    }
    seen.sort();
    let mut all: Vec<String> = want_ids;
    all.sort();
    assert_eq!(seen, all);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn a_start_older_than_90_days_is_refused_and_recorded() {
    let (sim, _) = start(200, 80).await;
    let horizon = beijing_now() - Duration::days(90);
    let inside = horizon + Duration::seconds(60);
    let r = get(&sim, &window(inside, inside + Duration::days(1), "pay", 20)).await;
    assert_eq!(r.code(), codes::OK, "{}", r.msg());
    assert!(sim.violations().is_empty());

    let outside = horizon - Duration::seconds(60);
    for time_type in ["pay", "update"] {
        let r = get(
            &sim,
            &window(outside, outside + Duration::days(1), time_type, 20),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.code(), codes::MISSING_PARAMETER);
        assert!(
            r.msg().contains("start_time") && r.msg().contains("90"),
            "{}",
            r.msg()
        );
        assert_eq!(r.json().as_object().map(|o| o.len()), Some(2), "code, msg");
    }
    let violations = sim.violations();
    assert_eq!(violations.len(), 2, "{violations:?}");
    for line in &violations {
        assert!(line.starts_with("request "), "{line}");
        assert!(line.contains(": 403 "), "{line}");
        assert!(line.contains("90 days"), "{line}");
        assert!(line.contains("start_time="), "{line}");
        assert!(
            !line.contains(APKEY) && !line.contains(DOU_KEY) && !line.contains("apkey="),
            "a key leaked: {line}"
        );
    }
}

#[tokio::test]
async fn orders_older_than_the_horizon_are_in_the_truth_but_out_of_reach() {
    let (sim, now) = start(600, 120).await;
    let truth = sim.truth();
    assert_eq!(truth.len(), 600);
    let horizon = beijing_now() - Duration::days(90) + Duration::minutes(10);
    let reachable = sim.truth_since(horizon);
    assert!(
        reachable.len() < 520 && reachable.len() > 380,
        "{} of 600 inside 90 of 120 days",
        reachable.len()
    );
    assert!(reachable.iter().all(|o| o.pay_success_time >= horizon));
    assert!(reachable.windows(2).all(|w| w[0].order_id < w[1].order_id));

    let (ids, _) = page_all(&sim, window(horizon, now, "pay", 200), |_| {}).await;
    assert_eq!(
        ids.into_iter().collect::<HashSet<_>>(),
        reachable.into_iter().map(|o| o.order_id).collect()
    );
    // The older ones cannot be asked for.
    let r = get(
        &sim,
        &window(
            now - Duration::days(120),
            now - Duration::days(95),
            "pay",
            200,
        ),
    )
    .await;
    assert_eq!(r.code(), codes::MISSING_PARAMETER);
    assert_eq!(sim.violations().len(), 1);
}

#[tokio::test]
async fn missing_keys_and_times_are_403() {
    let (sim, now) = start(50, 10).await;
    let good = window(now - Duration::days(10), now, "pay", 20);
    let mut empty_dou_key = good.clone();
    set(&mut empty_dou_key, "dou_key", String::new());
    for (what, params) in [
        ("dou_key", without(&good, "dou_key")),
        ("dou_key", empty_dou_key),
        ("apkey", without(&good, "apkey")),
        ("start_time", without(&good, "start_time")),
        ("end_time", without(&good, "end_time")),
    ] {
        let r = get(&sim, &params).await;
        assert_eq!(r.status, 200, "{what}");
        assert_eq!(r.code(), codes::MISSING_PARAMETER, "{what}");
        assert_eq!(r.msg(), format!("{}:{what}", codes::MISSING_PARAMETER_MSG));
    }
    let violations = sim.violations();
    assert_eq!(violations.len(), 5, "{violations:?}");
    assert!(
        violations[0].contains("403 dou_key missing"),
        "{violations:?}"
    );
}

#[tokio::test]
async fn a_wrong_key_is_401_in_the_body_or_as_the_status() {
    let (sim, now) = start(50, 10).await;
    let mut params = window(now - Duration::days(10), now, "pay", 20);

    // An unknown apkey: refused as the HTTP status, with the same JSON body.
    set(&mut params, "apkey", "not-the-apkey".to_string());
    let r = get(&sim, &params).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), codes::NOT_WHITELISTED);
    assert_eq!(r.msg(), codes::NOT_WHITELISTED_MSG);

    // A dou_key not authorised on the account: HTTP 200, code 401 in the body.
    set(&mut params, "apkey", APKEY.to_string());
    set(&mut params, "dou_key", "Dnot-the-dou-key".to_string());
    let r = get(&sim, &params).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.code(), codes::NOT_WHITELISTED);

    sim.set_keys("rotated-apkey", "Drotated");
    set(&mut params, "dou_key", DOU_KEY.to_string());
    let r = get(&sim, &params).await;
    assert_eq!(
        (r.status, r.code()),
        (401, codes::NOT_WHITELISTED),
        "the old keys no longer work"
    );
    set(&mut params, "apkey", "rotated-apkey".to_string());
    set(&mut params, "dou_key", "Drotated".to_string());
    assert_eq!(get(&sim, &params).await.code(), codes::OK);

    let violations = sim.violations();
    assert_eq!(violations.len(), 3, "{violations:?}");
    for line in &violations {
        assert!(line.contains(": 401 "), "{line}");
        for secret in [
            "not-the-apkey",
            "Dnot-the-dou-key",
            APKEY,
            DOU_KEY,
            "rotated",
        ] {
            assert!(!line.contains(secret), "a key leaked: {line}");
        }
    }
}

#[tokio::test]
async fn only_get_is_allowed() {
    let (sim, now) = start(50, 10).await;
    let good = window(now - Duration::days(10), now, "pay", 20);
    // A POST reaches the application, which answers in the body.
    let r = send(&sim.endpoint(), Method::POST, &good).await;
    assert_eq!((r.status, r.code()), (200, codes::WRONG_METHOD));
    assert_eq!(r.msg(), codes::WRONG_METHOD_MSG);
    // Other methods are refused by the server: the status itself, same body.
    for method in [Method::PUT, Method::DELETE, Method::PATCH] {
        let r = send(&sim.endpoint(), method.clone(), &good).await;
        assert_eq!((r.status, r.code()), (405, codes::WRONG_METHOD), "{method}");
    }
    let violations = sim.violations();
    assert_eq!(violations.len(), 4, "{violations:?}");
    assert!(
        violations[0].contains(": 405 method POST"),
        "{violations:?}"
    );
    assert!(violations.iter().all(|l| !l.contains(APKEY)));
    assert_eq!(get(&sim, &good).await.code(), codes::OK);

    // An unknown path is a 404 and a violation too.
    let url = sim.endpoint().replace(PATH, "/orders");
    assert_eq!(send(&url, Method::GET, &good).await.status, 404);
    assert_eq!(sim.violations().len(), 5);
}

#[tokio::test]
async fn each_broken_rule_is_refused_and_recorded() {
    let (sim, now) = start(100, 30).await;
    let start = now - Duration::days(10);
    let good = window(start, now, "pay", 20);
    let cases: Vec<(&str, &'static str, String)> = vec![
        ("size 0", "size", "0".into()),
        ("size 201", "size", "201".into()),
        ("size text", "size", "twenty".into()),
        ("slashes", "start_time", "2025/05/01 00:00:00".into()),
        ("unix seconds", "start_time", "1748750400".into()),
        ("date only", "end_time", wall(now)[..10].to_string()),
        ("ISO", "end_time", wall(now).replace(' ', "T")),
        (
            "end before start",
            "end_time",
            wall(start - Duration::seconds(1)),
        ),
        (
            "91 days",
            "end_time",
            wall(now - Duration::days(89) + Duration::days(91)),
        ),
        ("time_type", "time_type", "create".into()),
        ("distribution_type", "distribution_type", "live".into()),
        ("query_order_type", "query_order_type", "2".into()),
        ("garbage cursor", "cursor", "abc".into()),
        (
            "forged cursor",
            "cursor",
            format!("1{:010}{}", 1_748_000_000, "5000000000000000000"),
        ),
    ];
    for (what, name, value) in &cases {
        let mut params = good.clone();
        if *what == "91 days" {
            set(&mut params, "start_time", wall(now - Duration::days(89)));
        }
        set(&mut params, name, value.clone());
        let r = get(&sim, &params).await;
        assert_eq!(
            (r.status, r.code()),
            (200, codes::MISSING_PARAMETER),
            "{what}"
        );
        let msg = r.msg();
        assert!(
            msg.starts_with(codes::BAD_PARAMETER_MSG_PREFIX) && msg.contains(name),
            "{what}: msg names {name}: {msg}"
        );
    }
    let eleven = (1..=11)
        .map(|i| format!("49{i:017}"))
        .collect::<Vec<_>>()
        .join(",");
    let r = get(
        &sim,
        &[
            ("apkey", APKEY.to_string()),
            ("dou_key", DOU_KEY.to_string()),
            ("order_ids", eleven),
        ],
    )
    .await;
    assert_eq!(r.code(), codes::MISSING_PARAMETER, "11 order ids");

    let violations = sim.violations();
    assert_eq!(violations.len(), cases.len() + 1, "{violations:#?}");
    // Unknown parameters are ignored; a good request is still fine.
    let mut params = good.clone();
    params.push(("sign", "whatever".to_string()));
    assert_eq!(get(&sim, &params).await.code(), codes::OK);
    assert_eq!(sim.violations().len(), cases.len() + 1);
}

#[tokio::test]
async fn filters_select_orders() {
    let (sim, now) = start(400, 60).await;
    let truth = sim.truth();
    let base = window(now - Duration::days(61), now, "pay", 50);
    for d in ["Live", "ProductDetail", "ActivityMaterial"] {
        let mut params = base.clone();
        set(&mut params, "distribution_type", d.to_string());
        let (ids, _) = page_all(&sim, params, |_| {}).await;
        let want = truth.iter().filter(|o| o.distribution_type == d).count();
        assert_eq!(ids.len(), want, "distribution_type {d}");
    }
    let pid = truth[0].pid.clone();
    let mut params = base.clone();
    set(&mut params, "pid", pid.clone());
    set(&mut params, "distribution_type", "Live".to_string());
    set(&mut params, "query_order_type", "0".to_string());
    let (ids, _) = page_all(&sim, params, |_| {}).await;
    let want: HashSet<String> = truth
        .iter()
        .filter(|o| o.pid == pid && o.distribution_type == "Live")
        .map(|o| o.order_id.clone())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), want);

    // Every simulated order is a distribution order: none is a price-comparison order.
    let mut params = base.clone();
    set(&mut params, "query_order_type", "1".to_string());
    let v = get(&sim, &params).await.json();
    assert!(rows(&v).is_empty());
    assert_eq!(cursor(&v), "");
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn shop_ids_above_2_53_survive_exactly_in_the_raw_body() {
    let (sim, _) = start(300, 30).await;
    let big: Vec<MyqOrder> = sim
        .truth()
        .into_iter()
        .filter(|o| o.shop_id.parse::<u64>().is_ok_and(|id| id > 1 << 53))
        .take(3)
        .collect();
    assert_eq!(big.len(), 3);
    let ids = big
        .iter()
        .map(|o| o.order_id.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let r = get(
        &sim,
        &[
            ("apkey", APKEY.to_string()),
            ("dou_key", DOU_KEY.to_string()),
            ("order_ids", ids),
        ],
    )
    .await;
    let raw = String::from_utf8(r.body.clone()).expect("UTF-8");
    for o in &big {
        assert!(
            raw.contains(&format!("\"shop_id\":{},", o.shop_id)),
            "{} not a bare exact number in {raw}",
            o.shop_id
        );
        assert!(raw.contains(&format!("\"order_id\":\"{}\"", o.order_id)));
        let id: u64 = o.shop_id.parse().expect("number");
        assert_ne!(
            (id as f64) as u64,
            id,
            "a float parser would lose {id}, so this checks something"
        );
    }
    let got = rows(&r.json());
    for (row, o) in got.iter().zip(&big) {
        assert_eq!(
            row["shop_id"].as_u64().map(|n| n.to_string()),
            Some(o.shop_id.clone())
        );
        assert_row_matches(row, o);
    }
}

#[tokio::test]
async fn a_cursor_only_continues_its_own_query() {
    let (sim, now) = start(300, 30).await;
    let params = window(now - Duration::days(30), now, "pay", 10);
    let v = get(&sim, &params).await.json();
    let next = cursor(&v);
    assert_eq!(next.len(), 30);
    assert!(next.bytes().all(|b| b.is_ascii_digit()));
    for (name, value) in [
        ("start_time", wall(now - Duration::days(29))),
        ("time_type", "update".to_string()),
        ("distribution_type", "Live".to_string()),
        ("pid", "dy_other".to_string()),
    ] {
        let mut moved = params.clone();
        set(&mut moved, "cursor", next.clone());
        set(&mut moved, name, value);
        let r = get(&sim, &moved).await;
        assert_eq!(r.code(), codes::MISSING_PARAMETER, "{name}");
        assert!(r.msg().contains("cursor"), "{}", r.msg());
    }
    let mut same = params.clone();
    set(&mut same, "cursor", next);
    set(&mut same, "size", "50".to_string());
    let r = get(&sim, &same).await;
    assert_eq!(r.code(), codes::OK, "size may change between pages");
    assert_eq!(sim.violations().len(), 4);
}

#[tokio::test]
async fn the_keyset_cursor_survives_mutations_between_pages() {
    let (sim, now) = start(1500, 80).await;
    let start = now - Duration::days(85);

    // By payment time: mutations never move an order, so each appears exactly once.
    let expected: HashSet<String> = sim.truth().into_iter().map(|o| o.order_id).collect();
    let mut mutated = Vec::new();
    let (ids, _) = page_all(&sim, window(start, now, "pay", 50), |page| {
        let at = now - Duration::seconds(120 - page as i64);
        mutated.extend(sim.mutate(20, at));
    })
    .await;
    assert!(mutated.len() > 100, "{} mutations", mutated.len());
    assert_eq!(ids.len(), expected.len(), "no order twice or missing");
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), expected);

    // By update time: a mutated order moves behind the cursor's end and shows up (again) later;
    // every other order exactly once, and nothing in the window is missed.
    let mut touched: HashSet<String> = HashSet::new();
    let (ids, _) = page_all(&sim, window(start, now, "update", 50), |page| {
        let at = now - Duration::seconds(60 - page as i64);
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
        .filter(|o| (start..=now).contains(&o.update_time))
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
    let now = beijing_now();
    let a = MiaoyouquanSim::start(config(500, 60, now))
        .await
        .expect("start");
    let b = MiaoyouquanSim::start(config(500, 60, now))
        .await
        .expect("start");
    let at = now + Duration::minutes(1);
    let before: HashMap<String, MyqOrder> = a
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
    let after: HashMap<String, MyqOrder> = a
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
            ("PAY_SUCC", "REFUND") => assert_eq!(new.refund_time, Some(at)),
            ("CONFIRM", "SETTLE") => {
                assert_eq!(new.settle_time, Some(at));
                assert!(new.ads_real_commission >= 1);
                assert!(new.ads_real_commission <= new.ads_estimated_commission);
            }
            (from, to) if from == to => {
                assert_ne!(old.ads_estimated_commission, new.ads_estimated_commission);
                assert!(new.ads_estimated_commission >= 1);
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
    let (sim, _) = start(50, 10).await;
    let truth = sim.truth();
    let ids = format!(
        "{},{},1234567890123456789,{}",
        truth[3].order_id, truth[9].order_id, truth[3].order_id
    );
    let params = [
        ("apkey", APKEY.to_string()),
        ("dou_key", DOU_KEY.to_string()),
        ("order_ids", ids),
        ("start_time", "nonsense".to_string()),
        ("size", "500".to_string()),
    ];
    let v = get(&sim, &params).await.json();
    assert_eq!(v["code"], codes::OK, "{v}");
    assert_eq!(cursor(&v), "");
    let got = rows(&v);
    assert_eq!(got.len(), 2);
    assert_row_matches(&got[0], &truth[3]);
    assert_row_matches(&got[1], &truth[9]);
    assert!(sim.violations().is_empty());
}

#[tokio::test]
async fn faults_answer_as_documented_and_are_not_violations() {
    let (sim, now) = start(200, 30).await;
    let good = window(now - Duration::days(30), now, "pay", 50);
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

    // HTTP 429 carries the same JSON as the body-level 429, and Retry-After.
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
    assert_eq!(r.code(), codes::RATE_LIMITED);
    assert_eq!(r.msg(), codes::RATE_LIMITED_MSG);

    sim.set_faults(only(Faults {
        p_body_rate_limit: 1.0,
        ..Faults::default()
    }));
    let r = get(&sim, &good).await;
    assert_eq!((r.status, r.code()), (200, codes::RATE_LIMITED));
    assert_eq!(r.msg(), codes::RATE_LIMITED_MSG);

    sim.set_faults(only(Faults::default()));
    sim.set_body_transient(1.0);
    let r = get(&sim, &good).await;
    assert_eq!((r.status, r.code()), (200, codes::FETCH_FAILED));
    assert_eq!(r.msg(), codes::FETCH_FAILED_MSG);
    sim.set_body_transient(0.0);

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
    assert_eq!(
        r.body[..],
        real.body[..r.body.len()],
        "a prefix of the real answer"
    );
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());

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
    let r = get(&sim, &good).await;
    assert!(started.elapsed() >= StdDuration::from_millis(300));
    assert_eq!(r.body, real.body);

    sim.set_faults(Faults::default());
    assert_eq!(get(&sim, &good).await.code(), codes::OK);

    assert_eq!(sim.requests(), 1 + 20 + 6 + 1);
    assert_eq!(sim.faults_injected(), 20 + 6);
    assert_eq!(
        sim.fault_counts(),
        FaultCounts {
            server_error: 20,
            too_many_requests: 1,
            body_rate_limit: 1,
            body_transient: 1,
            truncated: 1,
            malformed: 1,
            slow: 1,
        }
    );
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn body_transient_mixes_with_the_shared_faults() {
    let (sim, now) = start(100, 30).await;
    sim.set_faults(Faults {
        p_5xx: 0.2,
        p_body_rate_limit: 0.2,
        seed: 11,
        ..Faults::default()
    });
    sim.set_body_transient(0.3);
    let good = window(now - Duration::days(30), now, "pay", 50);
    let mut codes_seen: HashMap<i64, usize> = HashMap::new();
    for _ in 0..200 {
        let r = get(&sim, &good).await;
        if r.status == 200 {
            *codes_seen.entry(r.code()).or_default() += 1;
        }
    }
    let c = sim.fault_counts();
    assert_eq!(
        codes_seen.get(&codes::FETCH_FAILED).copied().unwrap_or(0) as u64,
        c.body_transient
    );
    assert_eq!(
        codes_seen.get(&codes::RATE_LIMITED).copied().unwrap_or(0) as u64,
        c.body_rate_limit
    );
    assert!(
        c.body_transient > 30 && c.server_error > 15 && c.body_rate_limit > 15,
        "{c:?}"
    );
    assert!(
        codes_seen.get(&codes::OK).copied().unwrap_or(0) > 30,
        "{codes_seen:?}"
    );
}

#[test]
fn the_binary_prints_its_endpoint_and_serves() {
    let (mut child, endpoint) = start_binary(&[
        "miaoyouquan",
        "--orders",
        "20",
        "--days",
        "5",
        "--apkey",
        "cli-apkey",
        "--dou-key",
        "cli-dou",
        "--p-5xx",
        "0",
        "--p-transient",
        "0",
    ]);
    assert!(endpoint.starts_with("http://127.0.0.1:") && endpoint.ends_with(PATH));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let body = rt.block_on(async {
        let end = beijing_now();
        let mut params = window(end - Duration::days(6), end, "pay", 50);
        set(&mut params, "apkey", "cli-apkey".to_string());
        set(&mut params, "dou_key", "cli-dou".to_string());
        send(&endpoint, Method::GET, &params).await.body
    });
    let _ = child.kill();
    let _ = child.wait();
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["code"], 200, "{v}");
    assert_eq!(rows(&v).len(), 20);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ordersync-sim"))
        .args(["miaoyouquan", "--vekey", "x"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "--vekey is veapi's");
}
