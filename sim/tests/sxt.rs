//! The 随心推 simulator over real HTTP: full snapshots in the document's shape whose duplicate rows
//! collapse (highest state wins) to exactly the ground truth, `select_status` filters, yuan strings
//! that are exact decimals of the fen truth, credentials and parameters refused and recorded
//! without echoing the account, forced codes, faults, and orders that move, appear, vanish or get
//! forced stale copies — all deterministic.
//!
//! Money is read here with this file's own decimal parser, not the simulator's renderer, so the
//! round trip checks something.

use ordersync_sim::Simulator;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, NaiveDateTime};
use ordersync_sim::faults::FaultCounts;
use ordersync_sim::sxt::{
    codes, selected_states, state_desc, SxtOrder, SxtSim, SxtSimConfig, PATH, STATES,
};
use ordersync_sim::Faults;
use reqwest::Method;
use serde_json::Value;

use crate::common::{send, Reply};

const USER_ID: &str = "test-user-2209417";
const DY_UID: &str = "test-dy-uid-342654142657207";

/// The lifecycle steps `mutate` may take (`from == to` is a delivering order spending more).
const STEPS: [(i64, i64); 9] = [
    (1, 3),
    (3, 5),
    (5, 7),
    (5, 6),
    (7, 8),
    (7, 9),
    (8, 10),
    (9, 10),
    (7, 7),
];

fn now() -> NaiveDateTime {
    NaiveDateTime::parse_from_str("2025-06-01 12:00:00", "%Y-%m-%d %H:%M:%S").expect("time")
}

fn config(orders: usize, seed: u64) -> SxtSimConfig {
    SxtSimConfig {
        seed,
        user_id: USER_ID.to_string(),
        dy_uid: DY_UID.to_string(),
        orders,
        days: 60,
        now: now(),
        faults: Faults::default(),
    }
}

async fn start(orders: usize) -> SxtSim {
    SxtSim::start(config(orders, 7)).await.expect("start")
}

/// A request exactly as the document shows it.
/// The body `code`.
trait Code {
    fn code(&self) -> i64;
}

impl Code for Reply {
    fn code(&self) -> i64 {
        self.int("code")
    }
}

fn query(select_status: i64) -> Vec<(&'static str, String)> {
    vec![
        ("user_id", USER_ID.to_string()),
        ("dy_uid", DY_UID.to_string()),
        ("select_status", select_status.to_string()),
    ]
}

async fn get(sim: &SxtSim, params: &[(&str, String)]) -> Reply {
    send(&sim.endpoint(), Method::GET, params).await
}

/// The rows of a successful snapshot (checked to be one).
async fn snapshot(sim: &SxtSim, select_status: i64) -> Vec<Value> {
    let r = get(sim, &query(select_status)).await;
    assert_eq!((r.status, r.code()), (200, codes::OK), "{}", r.msg());
    let v = r.json();
    v["data"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("data is not a list: {v}"))
}

fn order_id(row: &Value) -> String {
    row["ad_info"]["order_id"]
        .as_str()
        .unwrap_or_else(|| panic!("order_id is not a string: {row}"))
        .to_string()
}

fn state(row: &Value) -> i64 {
    row["ad_info"]["state"]
        .as_i64()
        .unwrap_or_else(|| panic!("state is not an integer: {row}"))
}

/// The `count` string of the indicator called `name`.
fn count(row: &Value, name: &str) -> String {
    let all = row["ad_indicators"].as_array().expect("ad_indicators");
    let hit = all
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {row}"));
    hit["count"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} count is not a string: {row}"))
        .to_string()
}

/// Exact yuan text → fen: digits, optionally a point and one or two digits.
fn fen(text: &str) -> i64 {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    assert!(
        !whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit()),
        "{text:?}"
    );
    assert!(
        frac.len() <= 2 && frac.bytes().all(|b| b.is_ascii_digit()),
        "{text:?}"
    );
    assert!(
        !text.contains('.') || (!frac.is_empty() && !frac.ends_with('0')),
        "trailing zero or bare point in {text:?}"
    );
    let cents: i64 = format!("{frac:0<2}").parse().expect("digits");
    whole.parse::<i64>().expect("digits") * 100 + cents
}

/// Row figures in fen: (cost, plays, gmv).
fn figures(row: &Value) -> (i64, i64, i64) {
    let plays: i64 = count(row, "播放次数").parse().expect("plays is an integer");
    (
        fen(&count(row, "消耗(元)")),
        plays,
        fen(&count(row, "成交订单金额(元)")),
    )
}

/// Collapses a snapshot as rule 6 says: per order id, the row with the highest state. Rows of the
/// same order in the same state must be identical (so there is nothing to break a tie on).
fn collapse(rows: &[Value]) -> BTreeMap<String, Value> {
    let mut best: BTreeMap<String, Value> = BTreeMap::new();
    for row in rows {
        let id = order_id(row);
        match best.get(&id) {
            Some(kept) if state(kept) > state(row) => {}
            Some(kept) if state(kept) == state(row) => assert_eq!(kept, row, "two rows of {id}"),
            _ => {
                best.insert(id, row.clone());
            }
        }
    }
    best
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    k.sort();
    k
}

fn assert_row_matches(row: &Value, o: &SxtOrder) {
    assert_eq!(
        keys(row),
        ["ad_indicators", "ad_info", "without_req_stat_data"]
    );
    let names: Vec<&str> = row["ad_indicators"]
        .as_array()
        .expect("list")
        .iter()
        .map(|i| i["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["消耗(元)", "播放次数", "支付ROI", "成交订单金额(元)"]
    );
    let info = &row["ad_info"];
    let mut want_keys = vec![
        "aim",
        "bid_control",
        "create_time",
        "create_time_int",
        "item_cover",
        "object_id",
        "object_type",
        "order_id",
        "state",
        "state_desc",
    ];
    if o.state >= 6 {
        want_keys.extend(["buttons", "continue_delivery_url"]);
        assert_eq!(info["buttons"], serde_json::json!([3]));
    }
    want_keys.sort_unstable();
    assert_eq!(keys(info), want_keys, "{row}");
    assert_eq!(info["order_id"], o.order_id.as_str());
    assert_eq!(info["object_id"], o.object_id.as_str());
    assert_eq!(info["state"], o.state);
    assert_eq!(info["state_desc"], o.state_desc.as_str());
    assert_eq!(
        info["create_time"],
        o.create_time.format("%Y-%m-%d %H:%M:%S").to_string()
    );
    assert_eq!(
        info["create_time_int"].as_i64(),
        Some(o.create_time.and_utc().timestamp() - 8 * 3600),
        "unix seconds of Beijing wall clock"
    );
    assert_eq!(info["object_type"], 0);
    assert_eq!(info["aim"]["id"], 96);
    assert_eq!(info["aim"]["name"], "商品购买");
    assert_eq!(info["bid_control"]["pricing_target"], 3);
    assert_eq!(row["without_req_stat_data"], false);
    assert_eq!(count(row, "消耗(元)"), o.cost_text);
    assert_eq!(count(row, "成交订单金额(元)"), o.gmv_text);
    assert_eq!(count(row, "支付ROI"), o.roi);
    assert_eq!(figures(row), (o.cost_fen, o.plays, o.gmv_fen));
}

/// Every row of every order in the collapse matches the truth, and the collapse holds exactly the
/// truth's orders in `states`.
fn assert_collapses_to(rows: &[Value], truth: &[SxtOrder], states: &[i64]) {
    let best = collapse(rows);
    let want: Vec<&SxtOrder> = truth.iter().filter(|o| states.contains(&o.state)).collect();
    assert_eq!(
        best.keys().collect::<Vec<_>>(),
        want.iter().map(|o| &o.order_id).collect::<Vec<_>>()
    );
    for o in want {
        assert_row_matches(&best[&o.order_id], o);
    }
}

#[tokio::test]
async fn same_seed_and_now_give_the_same_world() {
    let a = SxtSim::start(config(300, 7)).await.expect("start");
    let b = SxtSim::start(config(300, 7)).await.expect("start");
    let other = SxtSim::start(config(300, 8)).await.expect("start");
    let truth = a.truth();
    assert_eq!(truth, b.truth());
    assert_ne!(truth, other.truth());
    assert_eq!(
        get(&a, &query(1)).await.body,
        get(&b, &query(1)).await.body,
        "byte for byte"
    );

    assert_eq!(truth.len(), 300);
    let ids: HashSet<&str> = truth.iter().map(|o| o.order_id.as_str()).collect();
    assert_eq!(ids.len(), 300, "ids are unique");
    assert!(truth.windows(2).all(|w| w[0].order_id < w[1].order_id));
    let mut by_state: HashMap<i64, usize> = HashMap::new();
    let mut objects = HashSet::new();
    for o in &truth {
        for id in [&o.order_id, &o.object_id] {
            assert_eq!(id.len(), 19, "{id}");
            let n: u64 = id.parse().expect("numeric id");
            assert!(n > 1 << 53 && n <= i64::MAX as u64, "{id}");
        }
        objects.insert(o.object_id.as_str());
        assert!(o.create_time >= now() - Duration::days(60));
        assert!(o.create_time <= now() - Duration::minutes(10));
        assert_eq!(Some(o.state_desc.as_str()), state_desc(o.state));
        assert_eq!(fen(&o.cost_text), o.cost_fen);
        assert_eq!(fen(&o.gmv_text), o.gmv_fen);
        if o.state < 7 {
            assert_eq!((o.cost_fen, o.plays, o.gmv_fen), (0, 0, 0), "{o:?}");
            assert_eq!(o.roi, "0");
        }
        assert_eq!(o.cost_fen > 0, o.plays > 0, "{o:?}");
        *by_state.entry(o.state).or_default() += 1;
    }
    for (s, _) in STATES {
        assert!(by_state.get(&s).copied().unwrap_or(0) >= 3, "{by_state:?}");
    }
    assert!((2..=6).contains(&objects.len()), "{objects:?}");
    for anchor in ["38.9", "0.29"] {
        assert!(
            truth.iter().any(|o| o.cost_text == anchor),
            "no order costs {anchor}"
        );
    }
    let costs: HashSet<usize> = truth
        .iter()
        .filter_map(|o| o.cost_text.split_once('.').map(|(_, f)| f.len()))
        .collect();
    assert_eq!(costs, HashSet::from([1, 2]), "one and two decimals");
    assert!(truth
        .iter()
        .any(|o| o.cost_fen > 0 && o.cost_fen % 100 == 0));
    assert!(format!("{:?}", config(1, 1)).contains("***"));
    assert!(!format!("{:?}", config(1, 1)).contains(USER_ID));
}

#[tokio::test]
async fn a_snapshot_with_duplicates_collapses_to_the_truth() {
    let sim = start(1000).await;
    let r = get(&sim, &query(1)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json; charset=utf-8")
    );
    let v = r.json();
    assert_eq!(keys(&v), ["code", "data", "msg"]);
    assert_eq!((v["code"].as_i64(), r.msg()), (Some(0), "ok".to_string()));
    let rows = v["data"].as_array().cloned().expect("rows");
    let truth = sim.truth();
    assert_collapses_to(&rows, &truth, &[1, 3, 5, 6, 7, 8, 9, 10]);

    // Newest first; an order's rows are adjacent.
    let times: Vec<i64> = rows
        .iter()
        .map(|r| r["ad_info"]["create_time_int"].as_i64().expect("int"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]));
    let mut runs: Vec<(String, Vec<i64>)> = Vec::new();
    for row in &rows {
        match runs.last_mut() {
            Some((id, states)) if *id == order_id(row) => states.push(state(row)),
            _ => runs.push((order_id(row), vec![state(row)])),
        }
    }
    assert_eq!(runs.len(), 1000, "each order's rows form one run");

    // Duplicates really occur, about 15% of orders, with earlier states on both sides.
    let truth_by_id: HashMap<&str, &SxtOrder> =
        truth.iter().map(|o| (o.order_id.as_str(), o)).collect();
    let (mut dup, mut before, mut after, mut same) = (0, 0, 0, 0);
    let by_id: HashMap<String, Vec<&Value>> = rows.iter().fold(HashMap::new(), |mut m, r| {
        m.entry(order_id(r)).or_default().push(r);
        m
    });
    for (id, states) in &runs {
        if states.len() == 1 {
            continue;
        }
        dup += 1;
        assert!((2..=3).contains(&states.len()), "{id}: {states:?}");
        let o = truth_by_id[id.as_str()];
        let real = states.iter().position(|s| *s == o.state).expect("real row");
        before += states[..real].iter().filter(|s| **s < o.state).count();
        after += states[real + 1..].iter().filter(|s| **s < o.state).count();
        same += states.iter().filter(|s| **s == o.state).count() - 1;
        assert!(states.iter().all(|s| *s <= o.state), "{id}: {states:?}");
        for row in &by_id[id] {
            let (c, p, g) = figures(row);
            assert!(c <= o.cost_fen && p <= o.plays && g <= o.gmv_fen, "{row}");
            if state(row) < 7 {
                assert_eq!((c, p, g), (0, 0, 0));
            }
            assert_eq!(row["ad_info"]["object_id"], o.object_id.as_str());
            assert_eq!(
                row["ad_info"]["state_desc"],
                state_desc(state(row)).expect("state")
            );
        }
    }
    assert!((110..=190).contains(&dup), "{dup} of 1000 orders repeated");
    assert!(
        before > 20 && after > 20 && same > 3,
        "{before} {after} {same}"
    );
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());

    // An unchanged world answers byte-identically.
    assert_eq!(get(&sim, &query(1)).await.body, r.body);
    assert_eq!(sim.requests(), 2);
}

#[tokio::test]
async fn select_status_filters_orders_by_their_current_state() {
    let sim = start(600).await;
    let truth = sim.truth();
    let all = snapshot(&sim, 1).await;
    let mut rows_of: HashMap<String, usize> = HashMap::new();
    for row in &all {
        *rows_of.entry(order_id(row)).or_default() += 1;
    }
    let mut seen = 0;
    for (select, states) in [
        (2, &[1][..]),
        (3, &[7][..]),
        (4, &[8, 9, 10][..]),
        (5, &[6][..]),
        (6, &[5][..]),
    ] {
        assert_eq!(selected_states(select), Some(states));
        let rows = snapshot(&sim, select).await;
        assert_collapses_to(&rows, &truth, states);
        // A picked order brings every row it has in the full list (its stale ones too).
        let mut got: HashMap<String, usize> = HashMap::new();
        for row in &rows {
            *got.entry(order_id(row)).or_default() += 1;
        }
        for (id, n) in &got {
            assert_eq!(rows_of[id], *n, "{id}");
        }
        seen += got.len();
    }
    let creating = truth.iter().filter(|o| o.state == 3).count();
    assert!(creating > 0);
    assert_eq!(
        seen + creating,
        600,
        "the filters 2..=6 partition the orders not being created"
    );
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn credentials_are_checked_and_never_echoed() {
    let sim = start(50).await;
    let without = |name: &str| -> Vec<(&'static str, String)> {
        query(1).into_iter().filter(|p| p.0 != name).collect()
    };
    let mut wrong_user = query(1);
    wrong_user[0].1 = format!("{USER_ID}0");
    let mut wrong_uid = query(1);
    wrong_uid[1].1 = "342654142657208".to_string();
    let mut empty_user = query(1);
    empty_user[0].1 = String::new();
    for params in [
        without("user_id"),
        without("dy_uid"),
        wrong_user,
        wrong_uid,
        empty_user,
    ] {
        let r = get(&sim, &params).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.code(), codes::UNAUTHORIZED);
        assert_eq!(r.msg(), codes::UNAUTHORIZED_MSG);
        assert_eq!(r.json()["data"], Value::Null);
        assert_eq!(keys(&r.json()), ["code", "data", "msg"]);
    }
    let violations = sim.violations();
    assert_eq!(violations.len(), 5, "{violations:?}");
    for line in &violations {
        assert!(line.starts_with("request "), "{line}");
        assert!(line.contains(": 401 "), "{line}");
        assert!(line.contains("select_status=1"), "{line}");
        assert!(
            !line.contains(USER_ID) && !line.contains(DY_UID) && !line.contains("34265414265720"),
            "the account leaked: {line}"
        );
    }

    // Moved credentials: the old ones are refused, the new ones work.
    sim.set_credentials("new-user", "new-uid");
    assert_eq!(get(&sim, &query(1)).await.code(), codes::UNAUTHORIZED);
    let moved = [
        ("user_id", "new-user".to_string()),
        ("dy_uid", "new-uid".to_string()),
        ("select_status", "1".to_string()),
    ];
    let r = get(&sim, &moved).await;
    assert_eq!(r.code(), codes::OK);
    assert_eq!(sim.violations().len(), 6);
}

#[tokio::test]
async fn select_status_missing_or_unknown_is_400() {
    let sim = start(50).await;
    let base: Vec<(&'static str, String)> = query(1)[..2].to_vec();
    let with = |value: &str| {
        let mut p = base.clone();
        p.push(("select_status", value.to_string()));
        p
    };
    for params in [
        base.clone(),
        with(""),
        with("0"),
        with("7"),
        with("all"),
        with("1.0"),
    ] {
        let r = get(&sim, &params).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.code(), codes::BAD_PARAMETER);
        assert_eq!(r.msg(), "参数错误:select_status");
    }
    let violations = sim.violations();
    assert_eq!(violations.len(), 6, "{violations:?}");
    assert!(
        violations[0].contains("400 select_status missing"),
        "{violations:?}"
    );
    assert!(violations[3].contains("\"7\""), "{violations:?}");
    // Unknown parameters are ignored.
    let mut extra = query(4);
    extra.push(("page", "2".to_string()));
    assert_eq!(get(&sim, &extra).await.code(), codes::OK);
    assert_eq!(sim.violations().len(), 6);
}

#[tokio::test]
async fn other_methods_and_paths_are_refused_and_recorded() {
    let sim = start(20).await;
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let r = send(&sim.endpoint(), method, &query(1)).await;
        assert_eq!(r.status, 405);
        assert_eq!(r.code(), codes::WRONG_METHOD);
    }
    let elsewhere = format!("http://{}/get_sxt_order_lists", sim.addr());
    let r = send(&elsewhere, Method::GET, &query(1)).await;
    assert_eq!(r.status, 404);
    let violations = sim.violations();
    assert_eq!(violations.len(), 4, "{violations:?}");
    assert!(violations[0].contains("405 method POST"), "{violations:?}");
    assert!(violations[3].contains(": 404 "), "{violations:?}");
    assert!(violations.iter().all(|l| !l.contains(USER_ID)));
    assert!(sim.endpoint().ends_with(PATH));
    assert_eq!(sim.requests(), 4);
}

#[tokio::test]
async fn a_forced_code_answers_until_cleared() {
    let sim = start(20).await;
    sim.set_faults(Faults {
        p_5xx: 1.0,
        ..Faults::default()
    });
    sim.set_forced_code(Some((10_002, "账号已解绑".to_string())));
    for params in [query(1), vec![("select_status", "9".to_string())]] {
        let r = get(&sim, &params).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.utf8(), r#"{"code":10002,"data":null,"msg":"账号已解绑"}"#);
    }
    assert_eq!(
        send(&sim.endpoint(), Method::POST, &query(1)).await.status,
        405
    );
    assert_eq!(
        sim.faults_injected(),
        0,
        "no fault drawn for a forced answer"
    );
    assert_eq!(sim.violations().len(), 1, "only the POST");
    sim.set_forced_code(None);
    sim.set_faults(Faults::default());
    assert!(snapshot(&sim, 1).await.len() >= 20);
    assert_eq!(sim.requests(), 4);
}

#[tokio::test]
async fn faults_answer_as_documented_and_are_not_violations() {
    let sim = start(200).await;
    let real = get(&sim, &query(1)).await;
    let only = |f: Faults| Faults { seed: 4, ..f };

    sim.set_faults(only(Faults {
        p_5xx: 1.0,
        ..Faults::default()
    }));
    let mut statuses = HashSet::new();
    for _ in 0..20 {
        // Even a request that breaks the rules gets the fault, not a refusal.
        let r = get(&sim, &[("select_status", "0".to_string())]).await;
        assert!(r.utf8().contains("<html>"));
        statuses.insert(r.status);
    }
    assert_eq!(statuses, HashSet::from([502, 503]));

    sim.set_faults(only(Faults {
        p_429: 1.0,
        retry_after_secs: 3,
        ..Faults::default()
    }));
    let r = get(&sim, &query(1)).await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("3")
    );
    assert_eq!((r.code(), r.msg()), (429, "请求过于频繁".to_string()));

    sim.set_faults(only(Faults {
        p_body_rate_limit: 1.0,
        ..Faults::default()
    }));
    let r = get(&sim, &query(1)).await;
    assert_eq!((r.status, r.code()), (200, codes::RATE_LIMITED));
    assert_eq!(r.msg(), codes::RATE_LIMITED_MSG);
    assert_eq!(r.json()["data"], Value::Null);

    sim.set_faults(only(Faults {
        p_truncated: 1.0,
        ..Faults::default()
    }));
    let r = get(&sim, &query(1)).await;
    assert_eq!(r.status, 200);
    let length: usize = r.headers["content-length"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    assert_eq!(length, r.body.len());
    assert_eq!(r.body.len(), real.body.len() / 2);
    assert_eq!(r.body[..], real.body[..r.body.len()], "a prefix");
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());

    sim.set_faults(only(Faults {
        p_malformed: 1.0,
        ..Faults::default()
    }));
    let r = get(&sim, &query(1)).await;
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());

    sim.set_faults(only(Faults {
        p_slow: 1.0,
        slow_ms: 300,
        ..Faults::default()
    }));
    let started = Instant::now();
    let r = get(&sim, &query(1)).await;
    assert!(started.elapsed() >= StdDuration::from_millis(300));
    assert_eq!(r.body, real.body);

    sim.set_faults(Faults::default());
    assert_eq!(get(&sim, &query(1)).await.body, real.body);
    assert_eq!(sim.requests(), 1 + 20 + 5 + 1);
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
    assert_eq!(sim.faults_injected(), 25);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn yuan_strings_are_exact_decimals_of_the_fen_truth() {
    let sim = start(400).await;
    for round in 0..4 {
        let r = get(&sim, &query(1)).await;
        let raw = r.utf8();
        // The document's amounts, byte for byte.
        assert!(raw.contains(r#"{"count":"38.9","name":"消耗(元)"}"#));
        assert!(raw.contains(r#"{"count":"0.29","name":"消耗(元)"}"#));
        let rows = r.json()["data"].as_array().cloned().expect("rows");
        let mut decimals = HashSet::new();
        for row in &rows {
            for name in ["消耗(元)", "成交订单金额(元)", "支付ROI"] {
                let text = count(row, name);
                fen(&text); // checks the shape
                decimals.insert(text.split_once('.').map_or(0, |(_, f)| f.len()));
            }
        }
        assert_eq!(decimals, HashSet::from([0, 1, 2]), "round {round}");
        let truth = sim.truth();
        assert_collapses_to(&rows, &truth, &[1, 3, 5, 6, 7, 8, 9, 10]);
        for o in &truth {
            // ROI is GMV ÷ cost, two decimals, half up.
            let want = if o.cost_fen == 0 || o.gmv_fen == 0 {
                0
            } else {
                (o.gmv_fen * 200 + o.cost_fen) / (2 * o.cost_fen)
            };
            assert_eq!(fen(&o.roi), want, "{o:?}");
        }
        sim.mutate(40, now() + Duration::minutes(round + 1));
    }
}

#[tokio::test]
async fn mutations_move_one_step_and_show_in_the_next_snapshot() {
    let a = SxtSim::start(config(500, 3)).await.expect("start");
    let b = SxtSim::start(config(500, 3)).await.expect("start");
    let before: HashMap<String, SxtOrder> = a
        .truth()
        .into_iter()
        .map(|o| (o.order_id.clone(), o))
        .collect();
    let at = now() + Duration::minutes(1);
    let changes = a.mutate(60, at);
    assert_eq!(changes, b.mutate(60, at));
    assert_eq!(a.truth(), b.truth());
    assert!(a.mutate(0, at).is_empty());

    let moved = changes.iter().filter(|m| m.from != m.to).count();
    assert_eq!(moved, 60);
    assert!(changes.len() > 60, "delivering orders also spend");
    let after: HashMap<String, SxtOrder> = a
        .truth()
        .into_iter()
        .map(|o| (o.order_id.clone(), o))
        .collect();
    let mut seen = HashSet::new();
    let mut steps = HashSet::new();
    for m in &changes {
        assert!(seen.insert(&m.order_id), "{} twice", m.order_id);
        let (old, new) = (&before[&m.order_id], &after[&m.order_id]);
        assert_eq!(old.state.to_string(), m.from);
        assert_eq!(new.state.to_string(), m.to);
        let step = (old.state, new.state);
        assert!(STEPS.contains(&step), "{step:?}");
        steps.insert(step);
        assert!(
            new.cost_fen >= old.cost_fen && new.plays >= old.plays && new.gmv_fen >= old.gmv_fen
        );
        match step {
            (7, 7) => assert!(new.cost_fen > old.cost_fen, "spends"),
            (7, 8) | (8, 10) | (9, 10) => {
                assert_eq!((new.cost_fen, new.gmv_fen), (old.cost_fen, old.gmv_fen))
            }
            (from, _) if from < 7 => assert_eq!(new.cost_fen, 0),
            _ => {}
        }
    }
    assert!(steps.len() >= 6, "{steps:?}");
    let untouched = before
        .keys()
        .filter(|id| !seen.contains(id))
        .all(|id| before[id] == after[id]);
    assert!(untouched);
    assert_collapses_to(
        &snapshot(&a, 1).await,
        &a.truth(),
        &[1, 3, 5, 6, 7, 8, 9, 10],
    );

    // Orders changed at `at` cannot change again at `at`.
    let again = a.mutate(1000, at);
    assert!(again.iter().all(|m| !seen.contains(&m.order_id)));
}

#[tokio::test]
async fn added_orders_appear_and_vanished_ones_leave_snapshot_and_truth() {
    let sim = start(300).await;
    let at = now() + Duration::minutes(3);
    let added = sim.add_orders(7, at);
    assert_eq!(added.len(), 7);
    let truth = sim.truth();
    assert_eq!(truth.len(), 307);
    for id in &added {
        let o = truth.iter().find(|o| &o.order_id == id).expect("in truth");
        assert!([1, 3, 5].contains(&o.state), "{o:?}");
        assert_eq!((o.cost_fen, o.plays, o.gmv_fen), (0, 0, 0));
        assert!(o.create_time <= at && o.create_time >= at - Duration::seconds(5));
        assert_eq!(id.len(), 19);
    }
    let rows = snapshot(&sim, 1).await;
    let mut newest: Vec<String> = rows.iter().map(order_id).collect();
    newest.dedup();
    newest.truncate(7);
    assert!(added.iter().all(|id| newest.contains(id)), "newest first");
    assert_collapses_to(&rows, &truth, &[1, 3, 5, 6, 7, 8, 9, 10]);

    let gone = sim.vanish(30);
    assert_eq!(gone.len(), 30);
    let truth = sim.truth();
    assert_eq!(truth.len(), 277);
    let rows = snapshot(&sim, 1).await;
    let listed: HashSet<String> = rows.iter().map(order_id).collect();
    for id in &gone {
        assert!(!listed.contains(id) && truth.iter().all(|o| &o.order_id != id));
        assert!(
            !sim.add_stale_copy(id, 1, true),
            "a vanished order takes no copies"
        );
    }
    assert_collapses_to(&rows, &truth, &[1, 3, 5, 6, 7, 8, 9, 10]);
    for anchor in ["38.9", "0.29"] {
        assert!(truth.iter().any(|o| o.cost_text == anchor));
    }
    let rest = sim.vanish(10_000);
    assert_eq!(rest.len(), 275, "all but the two documented amounts");
    let truth = sim.truth();
    assert_eq!(truth.len(), 2);
    assert_collapses_to(&snapshot(&sim, 1).await, &truth, &[1, 3, 5, 6, 7, 8, 9, 10]);
}

#[tokio::test]
async fn stale_copies_sit_exactly_where_asked() {
    let sim = start(300).await;
    let truth = sim.truth();
    let o = truth
        .iter()
        .find(|o| o.state == 9 && o.cost_fen > 0)
        .expect("a completed order");
    let id = o.order_id.clone();
    let rows_of = |rows: &[Value]| -> Vec<Value> {
        rows.iter().filter(|r| order_id(r) == id).cloned().collect()
    };
    let states_of = |rows: &[Value]| -> Vec<i64> { rows.iter().map(state).collect() };
    let untouched = snapshot(&sim, 1).await;

    assert!(sim.add_stale_copy(&id, 7, true));
    let rows = snapshot(&sim, 1).await;
    let mine = rows_of(&rows);
    assert_eq!(states_of(&mine), [7, 9], "the same order twice, in 7 and 9");
    let (c, p, g) = figures(&mine[0]);
    assert!(c <= o.cost_fen && p <= o.plays && g <= o.gmv_fen);
    assert_row_matches(&mine[1], o);
    assert_collapses_to(&rows, &truth, &[1, 3, 5, 6, 7, 8, 9, 10]);
    let others = |rows: &[Value]| -> Vec<Value> {
        rows.iter().filter(|r| order_id(r) != id).cloned().collect()
    };
    assert_eq!(others(&rows), others(&untouched), "nobody else's rows move");

    assert!(sim.add_stale_copy(&id, 5, false));
    assert!(
        !sim.add_stale_copy(&id, 10, true),
        "above the truth: refused"
    );
    assert!(!sim.add_stale_copy(&id, 2, true), "not a state");
    assert!(!sim.add_stale_copy("7000000000000000000", 1, true));
    let rows = snapshot(&sim, 1).await;
    let mine = rows_of(&rows);
    assert_eq!(states_of(&mine), [7, 9, 5]);
    assert_eq!(figures(&mine[2]), (0, 0, 0));
    assert!(
        mine[2]["ad_info"].get("buttons").is_none(),
        "审核中 rows have no buttons"
    );
    assert_eq!(sim.truth(), truth, "stale rows never change the truth");

    // The filter follows the order's real state: its stale 7 is not "delivering".
    assert!(rows_of(&snapshot(&sim, 3).await).is_empty());
    assert_eq!(states_of(&rows_of(&snapshot(&sim, 4).await)), [7, 9, 5]);

    // The copies stay while the order ends.
    let mut at = now();
    while sim.truth().iter().any(|t| t.order_id == id && t.state == 9) {
        at += Duration::minutes(1);
        sim.mutate(300, at);
    }
    let rows = snapshot(&sim, 1).await;
    assert_eq!(states_of(&rows_of(&rows)), [7, 10, 5]);
    assert_collapses_to(&rows, &sim.truth(), &[1, 3, 5, 6, 7, 8, 9, 10]);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}
