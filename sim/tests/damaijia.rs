//! The damaijia simulator over real HTTP: a deterministic world, page/size paging that returns
//! every order once while nothing changes, every documented rule enforced and recorded, the token
//! and shop checks, forced statuses, status-101 faults, the lossy numeric `product_id`, amounts and
//! times as numbers or strings, page drift that a scan without a rescan really suffers, changes
//! found by update time, and plain PII in the served bytes.

use ordersync_sim::Simulator;
use std::collections::{HashMap, HashSet};

use chrono::{Duration, NaiveDateTime};
use ordersync_sim::damaijia::{
    codes, DamaijiaSim, DamaijiaSimConfig, DmjLine, DmjOrder, Drift, PATH,
};
use ordersync_sim::faults::FaultCounts;
use ordersync_sim::{beijing_now, Faults};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{client, Reply};

const TOKEN: &str = "test-dmj-token-4be1";
const SHOP: &str = "20358278";

fn config(orders: usize, days: i64, now: NaiveDateTime) -> DamaijiaSimConfig {
    DamaijiaSimConfig {
        seed: 11,
        access_token: TOKEN.to_string(),
        shop_id: SHOP.to_string(),
        orders,
        days,
        now,
        faults: Faults::default(),
    }
}

async fn start(orders: usize, days: i64) -> (DamaijiaSim, NaiveDateTime) {
    let now = beijing_now();
    let sim = DamaijiaSim::start(config(orders, days, now))
        .await
        .expect("start");
    (sim, now)
}

/// Unix seconds of a Beijing wall-clock time, as the API speaks it.
fn unix(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp() - 8 * 3600
}

/// The body `status`: damaijia's code.
trait Code {
    fn code(&self) -> i64;
}

impl Code for Reply {
    fn code(&self) -> i64 {
        self.int("status")
    }
}

/// One request with a JSON `body` and, when given, the `authorization` header.
async fn send(url: &str, method: Method, auth: Option<&str>, body: &[u8]) -> Reply {
    let mut req = client()
        .request(method, url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    Reply::read(req.send().await.expect("request")).await
}

/// A POST with the right token.
async fn post(sim: &DamaijiaSim, body: &Value) -> Reply {
    send(
        &sim.endpoint(),
        Method::POST,
        Some(TOKEN),
        body.to_string().as_bytes(),
    )
    .await
}

/// The body for these params of the configured shop.
fn search(params: Value) -> Value {
    json!({"shop_id": SHOP, "params": params})
}

/// First-page params over every order created since `since`, sorted by `order_by`.
fn everything(since: NaiveDateTime, size: usize) -> Value {
    json!({"create_time_start": unix(since), "page": 0, "size": size})
}

fn set(params: &mut Value, name: &str, value: Value) {
    params[name] = value;
}

/// An integer the API sent as a JSON number or as decimal text.
fn int(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or_else(|| panic!("not an integer: {v}")),
        Value::String(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("not decimal text: {v}")),
        other => panic!("neither number nor string: {other}"),
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn rows(v: &Value) -> Vec<Value> {
    v["data"]["shop_order_list"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("data.shop_order_list is not a list: {v}"))
}

fn total(v: &Value) -> usize {
    v["data"]["total"]
        .as_u64()
        .unwrap_or_else(|| panic!("data.total is not a number: {v}")) as usize
}

fn time_or_zero(t: Option<NaiveDateTime>) -> i64 {
    t.map_or(0, unix)
}

/// Everything one scan read, page by page, without ever rescanning.
struct Scan {
    ids: Vec<String>,
    totals: Vec<usize>,
    rows: Vec<Value>,
    bytes: Vec<u8>,
}

/// Reads `params` from page 0 until a short page, checking each answer is a success. `between`
/// runs before each page after the first, with the number of pages read.
async fn scan(sim: &DamaijiaSim, mut params: Value, mut between: impl FnMut(u64)) -> Scan {
    let size = int(&params["size"]) as usize;
    let mut out = Scan {
        ids: Vec::new(),
        totals: Vec::new(),
        rows: Vec::new(),
        bytes: Vec::new(),
    };
    for page in 0u64.. {
        if page > 0 {
            between(page);
        }
        set(&mut params, "page", json!(page));
        let r = post(sim, &search(params.clone())).await;
        assert_eq!((r.status, r.code()), (200, codes::OK), "{}", r.msg());
        let v = r.json();
        assert_eq!(v["data"]["page"], json!(page));
        assert_eq!(v["data"]["size"], json!(size));
        out.totals.push(total(&v));
        let got = rows(&v);
        out.ids
            .extend(got.iter().map(|row| text(&row["order_id"]).to_string()));
        let short = got.len() < size;
        out.rows.extend(got);
        out.bytes.extend_from_slice(&r.body);
        assert!(page < 10_000, "paging never ends");
        if short {
            break;
        }
    }
    out
}

fn assert_line_matches(row: &Value, l: &DmjLine, o: &DmjOrder) {
    assert_eq!(text(&row["order_id"]), l.sku_order_id);
    assert_eq!(text(&row["parent_order_id"]), o.order_id);
    assert_eq!(text(&row["product_id_str"]), l.product_id);
    assert_eq!(text(&row["product_name"]), l.product_name);
    let exact: u64 = l.product_id.parse().expect("numeric product id");
    let lossy = row["product_id"]
        .as_u64()
        .expect("product_id is a JSON integer");
    assert_ne!(lossy, exact, "product_id {exact} arrived exact");
    assert_eq!(lossy as f64, exact as f64, "but it is the same float");
    assert_eq!(
        row["sku_id"].as_u64().map(|n| n.to_string()),
        Some(l.sku_id.clone())
    );
    assert_eq!(row["item_num"].as_i64(), Some(l.item_num));
    assert_eq!(int(&row["pay_amount"]), l.pay_amount);
    assert!(int(&row["order_amount"]) >= l.pay_amount);
    assert_eq!(row["order_status"].as_i64(), Some(l.order_status));
    assert_eq!(
        row["after_sale_info"]["refund_status"].as_i64(),
        Some(l.refund_status)
    );
    assert_eq!(int(&row["create_time"]), unix(o.create_time));
    assert_eq!(int(&row["update_time"]), unix(o.update_time));
    assert_eq!(text(&row["post_tel"]), o.post_tel);
    assert_eq!(text(&row["post_receiver"]), o.post_receiver);
    assert_eq!(text(&row["post_addr"]["detail"]), o.address_detail);
}

fn assert_row_matches(row: &Value, o: &DmjOrder) {
    assert_eq!(text(&row["order_id"]), o.order_id);
    assert!(row["shop_id"].is_u64(), "shop_id is a JSON number: {row}");
    assert_eq!(row["shop_id"].to_string(), o.shop_id);
    assert_eq!(text(&row["shop_name"]), o.shop_name);
    assert_eq!(row["order_status"].as_i64(), Some(o.order_status));
    assert!(!text(&row["order_status_desc"]).is_empty());
    assert!(row["main_status"].is_i64());
    for (field, want) in [
        ("create_time", unix(o.create_time)),
        ("pay_time", time_or_zero(o.pay_time)),
        ("update_time", unix(o.update_time)),
        ("finish_time", time_or_zero(o.finish_time)),
        ("order_amount", o.order_amount),
        ("pay_amount", o.pay_amount),
        ("post_amount", 0),
    ] {
        assert_eq!(int(&row[field]), want, "{field} of {}", o.order_id);
    }
    assert!(int(&row["ship_time"]) >= 0);
    assert_eq!(text(&row["post_tel"]), o.post_tel);
    assert_eq!(text(&row["post_receiver"]), o.post_receiver);
    let addr = &row["post_addr"];
    assert_eq!(text(&addr["detail"]), o.address_detail);
    for part in ["province", "city", "town", "street"] {
        assert!(!text(&addr[part]["id"]).is_empty() && !text(&addr[part]["name"]).is_empty());
    }
    assert_eq!(text(&row["user_id_info"]["id_card_no"]), o.id_card_no);
    assert_eq!(text(&row["user_id_info"]["id_card_name"]), o.id_card_name);
    for field in ["encrypt_post_tel", "encrypt_post_receiver"] {
        let cipher = text(&row[field]);
        assert!(cipher.len() > 40 && !cipher.contains(&o.post_tel));
    }
    assert!(text(&addr["encrypt_detail"]).len() > 40);
    assert!(text(&row["doudian_open_id"]).starts_with("1@#"));
    assert!(row["buyer_words"].is_string());
    let lines = row["sku_order_list"].as_array().expect("sku_order_list");
    assert_eq!(lines.len(), o.lines.len(), "lines of {}", o.order_id);
    for (line, l) in lines.iter().zip(&o.lines) {
        assert_line_matches(line, l, o);
    }
}

#[tokio::test]
async fn same_seed_and_now_give_the_same_world() {
    let now = beijing_now();
    let a = DamaijiaSim::start(config(600, 60, now))
        .await
        .expect("start");
    let b = DamaijiaSim::start(config(600, 60, now))
        .await
        .expect("start");
    let truth = a.truth();
    assert_eq!(truth, b.truth());
    assert_eq!(a.pii_values(), b.pii_values());
    let other = DamaijiaSim::start(DamaijiaSimConfig {
        seed: 12,
        ..config(600, 60, now)
    })
    .await
    .expect("start");
    assert_ne!(truth, other.truth());

    assert_eq!(truth.len(), 600);
    assert!(truth.windows(2).all(|w| w[0].order_id < w[1].order_id));
    let mut statuses: HashMap<i64, usize> = HashMap::new();
    let mut line_counts: HashMap<usize, usize> = HashMap::new();
    let mut line_ids = HashSet::new();
    let mut mixed = 0;
    for o in &truth {
        assert_eq!(o.order_id.len(), 19);
        assert_eq!(o.shop_id, SHOP);
        assert!(o.create_time >= now - Duration::days(60));
        assert!(o.create_time <= now - Duration::hours(1));
        assert!(o.update_time <= now - Duration::minutes(5));
        assert_eq!(
            o.pay_amount,
            o.lines.iter().map(|l| l.pay_amount).sum::<i64>()
        );
        *statuses.entry(o.order_status).or_default() += 1;
        *line_counts.entry(o.lines.len()).or_default() += 1;
        for l in &o.lines {
            assert_eq!(l.sku_order_id.len(), 19);
            assert!(
                line_ids.insert(l.sku_order_id.clone()),
                "line ids are unique"
            );
            let product: u64 = l.product_id.parse().expect("numeric");
            assert!(l.product_id.len() == 19 && product > 1 << 53);
            assert!(l.sku_id.parse::<u64>().expect("numeric") < 1 << 53);
        }
        if o.lines.iter().any(|l| l.order_status != o.order_status) {
            mixed += 1;
        }
        if o.order_status == 4 && o.pay_time.is_some() {
            assert!(o.lines.iter().all(|l| l.refund_status == 3), "{o:?}");
        }
        assert_eq!(
            o.pay_time.is_none(),
            matches!(o.order_status, 1 | 4) && o.lines.iter().all(|l| l.refund_status == 0)
        );
    }
    assert_eq!(
        statuses.keys().copied().collect::<HashSet<_>>(),
        HashSet::from([1, 105, 2, 101, 3, 4, 5]),
        "{statuses:?}"
    );
    assert!(line_counts[&1] > 390, "mostly one line: {line_counts:?}");
    assert!(
        (1..=4).all(|n| line_counts.contains_key(&n)),
        "{line_counts:?}"
    );
    assert!(
        mixed > 10 && mixed < 150,
        "lines mostly share the status: {mixed}"
    );
    let pii = a.pii_values();
    assert_eq!(pii.len(), 3000, "five unique values per order");
}

#[tokio::test]
async fn paging_returns_each_order_once_in_the_asked_order() {
    let (sim, now) = start(400, 60).await;
    let since = now - Duration::days(61);
    let truth = sim.truth();
    let by_id: HashMap<&str, &DmjOrder> = truth.iter().map(|o| (o.order_id.as_str(), o)).collect();

    // The document's defaults: by create time, newest first.
    let got = scan(&sim, everything(since, 100), |_| {}).await;
    let mut want: Vec<&DmjOrder> = truth.iter().collect();
    want.sort_by(|a, b| (b.create_time, &b.order_id).cmp(&(a.create_time, &a.order_id)));
    let want_ids: Vec<&str> = want.iter().map(|o| o.order_id.as_str()).collect();
    assert_eq!(
        got.ids, want_ids,
        "every order once, by (create time, id) descending"
    );
    assert!(got.totals.iter().all(|t| *t == 400));
    assert_eq!(got.totals.len(), 5, "four full pages and an empty one");
    for row in &got.rows {
        assert_row_matches(row, by_id[text(&row["order_id"])]);
    }

    // Oldest update first, an odd page size, the numbers sent as strings.
    let params = json!({
        "create_time_start": unix(since).to_string(), "page": "0", "size": "37",
        "order_by": "update_time", "order_asc": true
    });
    let got = scan(&sim, params, |_| {}).await;
    want.sort_by(|a, b| (a.update_time, &a.order_id).cmp(&(b.update_time, &b.order_id)));
    let want_ids: Vec<&str> = want.iter().map(|o| o.order_id.as_str()).collect();
    assert_eq!(got.ids, want_ids, "by (update time, id) ascending");

    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    assert_eq!(sim.requests(), 5 + 11);

    // The answer's shape.
    let r = post(&sim, &search(everything(since, 2))).await;
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json; charset=utf-8")
    );
    let v = r.json();
    assert_eq!(v["msg"], json!(codes::OK_MSG));
    assert_eq!(v["data"]["deduct_money"], json!(0));
    assert_eq!(rows(&v).len(), 2);
    // A page past the end is empty, with the total.
    let mut params = everything(since, 100);
    set(&mut params, "page", json!(4));
    let v = post(&sim, &search(params)).await.json();
    assert_eq!((rows(&v).len(), total(&v)), (0, 400));
}

#[tokio::test]
async fn bounds_select_by_create_and_update_time_inclusively() {
    let (sim, now) = start(600, 30).await;
    let truth = sim.truth();
    let pick = &truth[17];
    let (c, u) = (unix(pick.create_time), unix(pick.update_time));
    let cases = [
        json!({"create_time_start": c, "create_time_end": c, "page": 0, "size": 100}),
        json!({"create_time_start": 0, "update_time_start": u, "update_time_end": u,
            "page": 0, "size": 100}),
        json!({"create_time_start": c - 86_400, "create_time_end": c + 86_400,
            "update_time_start": u - 3 * 86_400, "page": 0, "size": 100}),
        json!({"create_time_start": unix(now - Duration::days(10)),
            "update_time_end": unix(now - Duration::days(5)), "page": 0, "size": 100,
            "order_by": "update_time"}),
    ];
    for params in cases {
        let inside = |o: &DmjOrder| {
            let (c, u) = (unix(o.create_time), unix(o.update_time));
            let p = |name: &str| params[name].as_i64();
            c >= p("create_time_start").unwrap_or(i64::MIN)
                && c <= p("create_time_end").unwrap_or(i64::MAX)
                && u >= p("update_time_start").unwrap_or(i64::MIN)
                && u <= p("update_time_end").unwrap_or(i64::MAX)
        };
        let want: HashSet<&str> = truth
            .iter()
            .filter(|o| inside(o))
            .map(|o| o.order_id.as_str())
            .collect();
        let got = scan(&sim, params.clone(), |_| {}).await;
        assert_eq!(
            got.ids.iter().map(String::as_str).collect::<HashSet<_>>(),
            want,
            "{params}"
        );
        assert_eq!(got.ids.len(), want.len());
        assert!(want.contains(pick.order_id.as_str()) || params["update_time_end"].is_i64());
    }
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn each_broken_rule_is_refused_with_100_and_recorded() {
    let (sim, now) = start(50, 10).await;
    let since = unix(now - Duration::days(10));
    let good = || json!({"create_time_start": since, "page": 0, "size": 20});
    let with = |name: &str, value: Value| {
        let mut p = good();
        set(&mut p, name, value);
        search(p)
    };
    let without = |name: &str| {
        let mut p = good();
        p.as_object_mut().map(|o| o.remove(name));
        search(p)
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"shop_id=20358278".to_vec()),
        ("an array", b"[]".to_vec()),
        (
            "no shop_id",
            json!({"params": good()}).to_string().into_bytes(),
        ),
        (
            "no params",
            json!({"shop_id": SHOP}).to_string().into_bytes(),
        ),
        (
            "params a string",
            json!({"shop_id": SHOP, "params": "x"})
                .to_string()
                .into_bytes(),
        ),
        (
            "no create_time_start",
            without("create_time_start").to_string().into_bytes(),
        ),
        ("no page", without("page").to_string().into_bytes()),
        ("no size", without("size").to_string().into_bytes()),
        ("page -1", with("page", json!(-1)).to_string().into_bytes()),
        ("size 0", with("size", json!(0)).to_string().into_bytes()),
        (
            "size 101",
            with("size", json!("101")).to_string().into_bytes(),
        ),
        (
            "size text",
            with("size", json!("twenty")).to_string().into_bytes(),
        ),
        (
            "milliseconds",
            with("create_time_start", json!(since * 1000))
                .to_string()
                .into_bytes(),
        ),
        (
            "wall clock",
            with("create_time_start", json!("2025-05-01 00:00:00"))
                .to_string()
                .into_bytes(),
        ),
        (
            "a fraction",
            with("create_time_start", json!(1.5))
                .to_string()
                .into_bytes(),
        ),
        (
            "end before start",
            with("create_time_end", json!(since - 1))
                .to_string()
                .into_bytes(),
        ),
        (
            "order_by",
            with("order_by", json!("pay_time")).to_string().into_bytes(),
        ),
        (
            "order_asc",
            with("order_asc", json!("asc")).to_string().into_bytes(),
        ),
    ];
    for (what, body) in &cases {
        let r = send(&sim.endpoint(), Method::POST, Some(TOKEN), body).await;
        assert_eq!((r.status, r.code()), (200, codes::BAD_PARAMS), "{what}");
        assert_eq!(r.msg(), codes::BAD_PARAMS_MSG, "{what}");
        assert_eq!(r.json()["data"], Value::Null, "{what}");
    }
    let violations = sim.violations();
    assert_eq!(violations.len(), cases.len(), "{violations:#?}");
    for line in &violations {
        assert!(
            line.starts_with("request ") && line.contains(": 100 "),
            "{line}"
        );
        assert!(!line.contains(TOKEN), "the token leaked: {line}");
    }
    assert!(violations[6].contains("page"), "{}", violations[6]);
    assert!(
        violations[12].contains("milliseconds"),
        "{}",
        violations[12]
    );

    // Unknown parameters are ignored; numbers may be strings.
    let mut params = good();
    for (k, v) in [
        ("b_type", json!(2)),
        ("product", json!("衣服")),
        ("edition", json!("1")),
    ] {
        set(&mut params, k, v);
    }
    set(&mut params, "size", json!("20"));
    assert_eq!(post(&sim, &search(params)).await.code(), codes::OK);

    // Only POST: anything else is refused as HTTP 405.
    let r = send(&sim.endpoint(), Method::GET, Some(TOKEN), b"").await;
    assert_eq!((r.status, r.code()), (405, codes::BAD_PARAMS));
    // An unknown path is a 404.
    let url = sim
        .endpoint()
        .replace(PATH, "/vv/external/requestDyErp/order-detail");
    let r = send(
        &url,
        Method::POST,
        Some(TOKEN),
        search(good()).to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 404);
    let violations = sim.violations();
    assert_eq!(violations.len(), cases.len() + 2);
    assert!(violations[cases.len()].contains("method GET"));
    assert!(violations[cases.len() + 1].contains(": 404 "));
    assert_eq!(sim.requests(), cases.len() as u64 + 3);
}

#[tokio::test]
async fn a_wrong_token_is_204_and_a_foreign_shop_is_302() {
    let (sim, now) = start(50, 10).await;
    let body = search(everything(now - Duration::days(10), 20)).to_string();
    let bearer = format!("Bearer {TOKEN}");
    for auth in [None, Some(""), Some("not-the-token"), Some(bearer.as_str())] {
        let r = send(&sim.endpoint(), Method::POST, auth, body.as_bytes()).await;
        assert_eq!(
            (r.status, r.code()),
            (200, codes::NO_PERMISSION),
            "{auth:?}"
        );
        assert_eq!(r.msg(), codes::NO_PERMISSION_MSG);
        assert_eq!(r.json()["data"], Value::Null);
    }
    let foreign = json!({"shop_id": "1212212121", "params": everything(now, 20)});
    let r = post(&sim, &foreign).await;
    assert_eq!((r.status, r.code()), (200, codes::SHOP_NOT_AUTHORISED));
    assert_eq!(r.msg(), codes::SHOP_NOT_AUTHORISED_MSG);
    // The shop as a JSON number is the same shop.
    let numeric = json!({"shop_id": 20358278, "params": everything(now, 20)});
    assert_eq!(post(&sim, &numeric).await.code(), codes::OK);

    // A revoked token, then a shop that withdrew its authorisation.
    sim.set_credentials("rotated-token", SHOP);
    assert_eq!(
        post(&sim, &search(everything(now, 20))).await.code(),
        codes::NO_PERMISSION
    );
    let r = send(
        &sim.endpoint(),
        Method::POST,
        Some("rotated-token"),
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.code(), codes::OK);
    sim.set_credentials("rotated-token", "99999999");
    let r = send(
        &sim.endpoint(),
        Method::POST,
        Some("rotated-token"),
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.code(), codes::SHOP_NOT_AUTHORISED);

    let violations = sim.violations();
    assert_eq!(violations.len(), 7, "{violations:#?}");
    assert!(
        violations[3].contains("Bearer"),
        "a hint: {}",
        violations[3]
    );
    for line in &violations {
        for secret in [TOKEN, "not-the-token", "rotated-token"] {
            assert!(!line.contains(secret), "a token leaked: {line}");
        }
    }
}

#[tokio::test]
async fn a_forced_status_answers_every_request_until_lifted() {
    let (sim, now) = start(50, 10).await;
    let good = search(everything(now - Duration::days(10), 20));
    for status in [
        codes::NO_PERMISSION,
        codes::SHOP_NOT_AUTHORISED,
        codes::SYSTEM_ERROR,
        codes::NO_ACCOUNT,
        codes::UNSUPPORTED,
        codes::TIMEOUT_RETRY,
    ] {
        sim.set_forced_status(Some(status));
        for body in [&good, &json!({"nonsense": true})] {
            let r = post(&sim, body).await;
            assert_eq!((r.status, r.code()), (200, status));
            assert_eq!(r.msg(), codes::message(status));
            assert_eq!(r.json()["data"], Value::Null);
        }
    }
    assert_eq!(
        codes::message(codes::NO_PERMISSION),
        codes::NO_PERMISSION_MSG
    );
    sim.set_forced_status(None);
    assert_eq!(post(&sim, &good).await.code(), codes::OK);
    assert!(
        sim.violations().is_empty(),
        "forced answers are not violations"
    );
    assert_eq!(sim.requests(), 13);
}

#[tokio::test]
async fn retry_faults_answer_status_101_and_are_not_violations() {
    let (sim, now) = start(100, 10).await;
    let good = search(everything(now - Duration::days(10), 20));
    sim.set_body_transient(1.0);
    for _ in 0..5 {
        let r = post(&sim, &good).await;
        assert_eq!((r.status, r.code()), (200, codes::TIMEOUT_RETRY));
        assert_eq!(r.msg(), codes::TIMEOUT_RETRY_MSG);
        assert_eq!(r.json()["data"], Value::Null);
    }
    sim.set_body_transient(0.0);
    let only = |f: Faults| Faults { seed: 5, ..f };
    sim.set_faults(only(Faults {
        p_body_rate_limit: 1.0,
        ..Faults::default()
    }));
    // Even a request that breaks the rules gets the fault, not a refusal.
    let r = post(&sim, &json!({"shop_id": SHOP})).await;
    assert_eq!(r.code(), codes::TIMEOUT_RETRY);
    sim.set_faults(only(Faults {
        p_429: 1.0,
        retry_after_secs: 2,
        ..Faults::default()
    }));
    let r = post(&sim, &good).await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("2")
    );
    sim.set_faults(only(Faults {
        p_5xx: 1.0,
        ..Faults::default()
    }));
    assert!([502, 503].contains(&post(&sim, &good).await.status));
    sim.set_faults(only(Faults {
        p_truncated: 1.0,
        ..Faults::default()
    }));
    let r = post(&sim, &good).await;
    assert_eq!(r.status, 200);
    assert!(
        serde_json::from_slice::<Value>(&r.body).is_err(),
        "cut in half"
    );
    sim.set_faults(only(Faults {
        p_malformed: 1.0,
        ..Faults::default()
    }));
    assert!(post(&sim, &good).await.text().starts_with("<html>"));
    sim.set_faults(Faults::default());
    assert_eq!(post(&sim, &good).await.code(), codes::OK);

    assert_eq!(
        sim.fault_counts(),
        FaultCounts {
            body_transient: 5,
            body_rate_limit: 1,
            too_many_requests: 1,
            server_error: 1,
            truncated: 1,
            malformed: 1,
            ..FaultCounts::default()
        }
    );
    assert_eq!(sim.faults_injected(), 10);
    assert_eq!(sim.requests(), 11);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn product_id_is_a_lossy_number_beside_the_exact_string() {
    let (sim, now) = start(120, 10).await;
    let got = scan(&sim, everything(now - Duration::days(11), 100), |_| {}).await;
    let truth = sim.truth();
    let by_line: HashMap<&str, &DmjLine> = truth
        .iter()
        .flat_map(|o| &o.lines)
        .map(|l| (l.sku_order_id.as_str(), l))
        .collect();
    let mut lines = 0;
    for row in &got.rows {
        for line in row["sku_order_list"].as_array().expect("lines") {
            let l = by_line[text(&line["order_id"])];
            let exact: u64 = l.product_id.parse().expect("numeric");
            // What a float-minded upstream prints: the float's shortest digits, zero-padded.
            let sent: u64 = format!("{}", exact as f64).parse().expect("integer");
            assert_ne!(sent, exact);
            assert_eq!(sent % 100, 0, "{sent}");
            assert_eq!(line["product_id"].as_u64(), Some(sent));
            assert_eq!(text(&line["product_id_str"]), l.product_id);
            lines += 1;
        }
    }
    assert!(lines > 120);
    // On the wire: the document's shape exactly, an integer literal beside the exact string.
    let raw = String::from_utf8(got.bytes).expect("UTF-8");
    let l = &truth[0].lines[0];
    let exact: u64 = l.product_id.parse().expect("numeric");
    let sent = format!("{}", exact as f64);
    assert!(raw.contains(&format!(
        "\"product_id\":{sent},\"product_id_str\":\"{exact}\""
    )));
    assert!(!raw.contains(&format!("\"product_id\":{exact}")));
}

#[tokio::test]
async fn amounts_and_times_come_as_numbers_or_strings() {
    let (sim, now) = start(300, 30).await;
    let got = scan(&sim, everything(now - Duration::days(31), 100), |_| {}).await;
    let fields = [
        "create_time",
        "pay_time",
        "update_time",
        "finish_time",
        "ship_time",
        "order_amount",
        "pay_amount",
        "post_amount",
        "promotion_amount",
    ];
    let line_fields = [
        "create_time",
        "update_time",
        "pay_time",
        "pay_amount",
        "order_amount",
        "sum_amount",
    ];
    let mut stringly = 0;
    for row in &got.rows {
        // Every amount and time of one order has the same form.
        let as_text = row["create_time"].is_string();
        stringly += usize::from(as_text);
        for f in fields {
            assert_eq!(row[f].is_string(), as_text, "{f}: {row}");
            assert!(row[f].is_string() || row[f].is_i64());
        }
        for line in row["sku_order_list"].as_array().expect("lines") {
            for f in line_fields {
                assert_eq!(line[f].is_string(), as_text, "line {f}");
            }
        }
        // Ids and statuses are never strings-for-numbers.
        assert!(row["order_status"].is_i64() && row["shop_id"].is_u64());
    }
    assert!(
        (40..=110).contains(&stringly),
        "about a quarter: {stringly} of 300"
    );
    // And both forms carry the truth (checked field by field).
    let truth = sim.truth();
    let by_id: HashMap<&str, &DmjOrder> = truth.iter().map(|o| (o.order_id.as_str(), o)).collect();
    for row in &got.rows {
        assert_row_matches(row, by_id[text(&row["order_id"])]);
    }
}

#[tokio::test]
async fn an_insert_drift_hides_new_orders_from_a_scan_that_does_not_rescan() {
    let (sim, now) = start(200, 20).await;
    let since = now - Duration::days(21);
    let before: HashSet<String> = sim.truth().into_iter().map(|o| o.order_id).collect();

    // A page that is cut in half is not a page served: the drift waits for a whole one.
    sim.schedule_drift(2, Drift::Insert(3));
    sim.set_faults(Faults {
        p_truncated: 1.0,
        ..Faults::default()
    });
    post(&sim, &search(everything(since, 50))).await;
    sim.set_faults(Faults::default());

    let got = scan(&sim, everything(since, 50), |_| {}).await;
    let inserted = sim.drift_log();
    assert_eq!(inserted.len(), 3);
    assert_eq!(got.totals[..2], [200, 200]);
    assert!(
        got.totals[2..].iter().all(|t| *t == 203),
        "{:?}",
        got.totals
    );
    let seen: HashSet<String> = got.ids.iter().cloned().collect();
    assert_eq!(
        seen, before,
        "the old orders, some twice, and none of the new"
    );
    assert_eq!(got.ids.len(), 203);
    for id in &inserted {
        assert!(!before.contains(id));
        let o = sim
            .truth()
            .into_iter()
            .find(|o| &o.order_id == id)
            .expect("in the truth");
        assert_eq!(o.order_status, 105);
        assert!(o.create_time >= since);
    }
    // A rescan finds them.
    let again = scan(&sim, everything(since, 50), |_| {}).await;
    let all: HashSet<String> = again.ids.into_iter().collect();
    assert!(inserted.iter().all(|id| all.contains(id)));
    assert_eq!(all.len(), 203);
    assert!(sim.violations().is_empty());
}

#[tokio::test]
async fn a_touch_drift_shrinks_a_past_update_window_under_the_reader() {
    let (sim, now) = start(200, 20).await;
    let params = json!({
        "create_time_start": unix(now - Duration::days(21)),
        "update_time_start": unix(now - Duration::days(21)),
        "update_time_end": unix(now - Duration::minutes(1)),
        "page": 0, "size": 40, "order_by": "update_time", "order_asc": true
    });
    sim.schedule_drift(3, Drift::Touch(5));
    let got = scan(&sim, params.clone(), |_| {}).await;
    let touched = sim.drift_log();
    assert_eq!(touched.len(), 5);
    assert_eq!(got.totals[..3], [200, 200, 200]);
    assert!(
        got.totals[3..].iter().all(|t| *t == 195),
        "{:?}",
        got.totals
    );
    let seen: HashSet<&String> = got.ids.iter().collect();
    assert!(
        touched.iter().all(|id| seen.contains(id)),
        "read before they moved"
    );
    let truth = sim.truth();
    let still: Vec<&DmjOrder> = truth
        .iter()
        .filter(|o| unix(o.update_time) <= params["update_time_end"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(still.len(), 195);
    let missed: Vec<&&DmjOrder> = still
        .iter()
        .filter(|o| !seen.contains(&o.order_id))
        .collect();
    assert_eq!(
        missed.len(),
        5,
        "the rows that shifted back onto pages already read"
    );
    for id in &touched {
        let o = truth
            .iter()
            .find(|o| &o.order_id == id)
            .expect("in the truth");
        assert!(o.update_time >= now, "touched at the real now: {o:?}");
    }
}

#[tokio::test]
async fn mutations_and_new_orders_are_found_by_update_time() {
    let (sim, now) = start(400, 20).await;
    let at = now + Duration::minutes(1);
    let changes = sim.mutate(30, at);
    assert_eq!(changes.len(), 30);
    let later = at + Duration::seconds(30);
    let added = sim.add_orders(4, later);
    assert_eq!(added.len(), 4);

    let by_update = |from: NaiveDateTime, to: NaiveDateTime| {
        json!({"create_time_start": unix(now - Duration::days(21)),
            "update_time_start": unix(from), "update_time_end": unix(to),
            "page": 0, "size": 100, "order_by": "update_time"})
    };
    let got = scan(&sim, by_update(at, at), |_| {}).await;
    let mut want: Vec<&str> = changes.iter().map(|c| c.order_id.as_str()).collect();
    want.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(got.ids, want, "the mutated orders, ties by id descending");
    for row in &got.rows {
        let id = text(&row["order_id"]);
        let c = changes
            .iter()
            .find(|c| c.order_id == id)
            .expect("a mutated order");
        assert_eq!(row["order_status"].to_string(), c.to);
        assert_ne!(c.from, c.to);
        assert_eq!(int(&row["update_time"]), unix(at));
    }
    let got = scan(&sim, by_update(at + Duration::seconds(1), later), |_| {}).await;
    let mut ids = got.ids.clone();
    ids.sort();
    let mut want = added.clone();
    want.sort();
    assert_eq!(ids, want);
    for row in &got.rows {
        assert_eq!(row["order_status"], json!(105));
        assert!(int(&row["create_time"]) >= unix(later) - 5);
        assert!(int(&row["pay_time"]) > 0);
    }
    assert_eq!(sim.truth().len(), 404);
}

#[tokio::test]
async fn every_pii_value_is_served_in_plain_text() {
    let (sim, now) = start(300, 10).await;
    sim.add_orders(2, now);
    let got = scan(&sim, everything(now - Duration::days(11), 100), |_| {}).await;
    let values = sim.pii_values();
    assert_eq!(values.len(), 5 * 302);
    // Every string the answers carried, as sent (JSON text, unescaped: no `\\u` escapes).
    let raw = String::from_utf8(got.bytes).expect("UTF-8");
    let served: HashSet<&str> = raw.split('"').collect();
    for v in &values {
        assert!(served.contains(v.as_str()), "{v} was not served");
    }
    let o = &sim.truth()[0];
    assert!(o.post_tel.starts_with("139") && o.post_tel.len() == 11);
    assert!(o.post_receiver.starts_with("收件人") && o.post_receiver.ends_with('号'));
    assert!(o.address_detail.ends_with('室'));
    assert_eq!(o.id_card_no.len(), 18);
    assert!(o.id_card_name.contains("实名"));
    for v in [
        &o.post_tel,
        &o.post_receiver,
        &o.address_detail,
        &o.id_card_no,
        &o.id_card_name,
    ] {
        assert!(values.contains(v));
    }
}

#[tokio::test]
async fn the_config_hides_the_token_and_refuses_a_non_numeric_shop() {
    let cfg = config(10, 5, beijing_now());
    assert!(!format!("{cfg:?}").contains(TOKEN));
    let bad = DamaijiaSimConfig {
        shop_id: "shop-1".to_string(),
        ..cfg
    };
    assert!(DamaijiaSim::start(bad).await.is_err());
    let d = DamaijiaSimConfig::default();
    assert_eq!(
        (
            d.access_token.as_str(),
            d.shop_id.as_str(),
            d.orders,
            d.days
        ),
        ("sim-damaijia-token", "20358278", 1000, 60)
    );
}
