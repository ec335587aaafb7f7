//! The unidesk simulator over real HTTP: a deterministic world of SKU lines, TOP md5 signatures
//! checked (with a signer written here, independently of the simulator's), every other system
//! parameter and window rule enforced and recorded — a window may not cross a Beijing midnight —
//! fixed pages of 100 with a keyset `cursor_id` that survives mutations, main orders cut by page
//! boundaries, exact 19-digit ids, and faults answered as TOP would.
//!
//! The timestamp tolerance is measured from the real Beijing now, so these worlds are generated
//! against it too.

use ordersync_sim::Simulator;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, NaiveDate, NaiveDateTime};
use md5::{Digest, Md5};
use ordersync_sim::faults::FaultCounts;
use ordersync_sim::unidesk::{codes, METHOD, PAGE_SIZE, PATH, RESPONSE_KEY};
use ordersync_sim::{beijing_now, Faults, UdSubOrder, UnideskSim, UnideskSimConfig};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{client, send, start_binary, Reply};

const APP_KEY: &str = "test-app-key-4417";
const APP_SECRET: &str = "test-app-secret-9b9b";
const SESSION: &str = "test-session-61d0";
const DTO: &str = "order_top_cursor_query_dto";

/// The fields every row carries, all documented ones.
const ROW_FIELDS: [&str; 31] = [
    "actual_pay_fee",
    "adgroup_id",
    "advertiser_id",
    "brand_id",
    "buy_amount",
    "campaign_id",
    "channel_id",
    "click_time",
    "commission_fee",
    "commission_rate",
    "creative_id",
    "due_pay_fee",
    "is_ad_order",
    "item_id",
    "item_name",
    "item_pic_url",
    "order_create_time",
    "order_id",
    "order_pay_time",
    "order_refund_fee",
    "order_refund_time",
    "order_status",
    "pay_fee",
    "pay_item_id",
    "pay_item_name",
    "presale_deposit_fee",
    "remaining_payment_fee",
    "seller_id",
    "seller_nick",
    "shop_name",
    "sub_order_id",
];

fn config(orders: usize, days: i64, now: NaiveDateTime) -> UnideskSimConfig {
    UnideskSimConfig {
        seed: 7,
        app_key: APP_KEY.to_string(),
        app_secret: APP_SECRET.to_string(),
        session: Some(SESSION.to_string()),
        orders,
        days,
        now,
        faults: Faults::default(),
    }
}

async fn start(orders: usize, days: i64) -> (UnideskSim, NaiveDateTime) {
    let now = beijing_now();
    let sim = UnideskSim::start(config(orders, days, now))
        .await
        .expect("start");
    (sim, now)
}

fn wall(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn millis(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

fn midnight(day: NaiveDate) -> NaiveDateTime {
    day.and_hms_opt(0, 0, 0).expect("midnight")
}

/// A whole Beijing day as the client asks for it: `00:00:00.000 ..= 23:59:59.999`.
fn day_window(day: NaiveDate) -> (NaiveDateTime, NaiveDateTime) {
    let start = midnight(day);
    (start, start + Duration::days(1) - Duration::milliseconds(1))
}

/// TOP's md5 signature, written here from the documented recipe: every parameter but `sign`,
/// sorted by name, as name+value, between two copies of the secret; uppercase hex.
fn top_sign(params: &[(String, String)], secret: &str) -> String {
    let mut sorted: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in params {
        if k != "sign" {
            sorted.insert(k, v);
        }
    }
    let mut text = String::from(secret);
    for (k, v) in sorted {
        text.push_str(k);
        text.push_str(v);
    }
    text.push_str(secret);
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

fn dto(start: NaiveDateTime, end: NaiveDateTime, cursor: &str) -> String {
    let mut v = json!({"start_time": millis(start), "end_time": millis(end), "prod_type": 1});
    if !cursor.is_empty() {
        v["cursor_id"] = json!(cursor);
    }
    v.to_string()
}

/// The unsigned parameters of a request for `dto`, as ordersync's client sends them.
fn unsigned(dto: String) -> Vec<(String, String)> {
    [
        ("method", METHOD.to_string()),
        ("app_key", APP_KEY.to_string()),
        ("session", SESSION.to_string()),
        ("timestamp", wall(beijing_now())),
        ("format", "json".to_string()),
        ("v", "2.0".to_string()),
        ("sign_method", "md5".to_string()),
        (DTO, dto),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn set(params: &mut Vec<(String, String)>, name: &str, value: &str) {
    match params.iter_mut().find(|p| p.0 == name) {
        Some(p) => p.1 = value.to_string(),
        None => params.push((name.to_string(), value.to_string())),
    }
}

fn without(mut params: Vec<(String, String)>, name: &str) -> Vec<(String, String)> {
    params.retain(|p| p.0 != name);
    params
}

/// `params` plus their signature with `secret`.
fn signed_with(mut params: Vec<(String, String)>, secret: &str) -> Vec<(String, String)> {
    let sign = top_sign(&params, secret);
    set(&mut params, "sign", &sign);
    params
}

fn signed(params: Vec<(String, String)>) -> Vec<(String, String)> {
    signed_with(params, APP_SECRET)
}

/// A TOP answer: the error's (code, sub_code), or (0, "") for a success; the error object.
trait Top {
    fn code(&self) -> (i64, String);
    fn error(&self) -> Value;
}

impl Top for Reply {
    fn code(&self) -> (i64, String) {
        let v = self.json();
        match v.get("error_response") {
            Some(e) => (
                e["code"].as_i64().unwrap_or_else(|| panic!("code: {v}")),
                e["sub_code"].as_str().unwrap_or_default().to_string(),
            ),
            None => {
                assert_eq!(v[RESPONSE_KEY]["success"], json!(true), "{v}");
                (0, String::new())
            }
        }
    }

    fn error(&self) -> Value {
        self.json()["error_response"].clone()
    }
}

async fn get(sim: &UnideskSim, params: &[(String, String)]) -> Reply {
    send(&sim.endpoint(), Method::GET, params).await
}

/// A POST with every parameter in a form body.
async fn post_form(sim: &UnideskSim, params: &[(String, String)]) -> Reply {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let resp = client()
        .post(sim.endpoint())
        .header(
            "content-type",
            "application/x-www-form-urlencoded;charset=utf-8",
        )
        .body(body)
        .send()
        .await
        .expect("request");
    Reply::read(resp).await
}

fn rows(v: &Value) -> Vec<Value> {
    v[RESPONSE_KEY]["result"]["order_detail_cursor_top_d_t_o"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no row list: {v}"))
}

fn cursor(v: &Value) -> String {
    v[RESPONSE_KEY]["cursor_id"]
        .as_str()
        .unwrap_or_else(|| panic!("cursor_id is not a string: {v}"))
        .to_string()
}

/// A row's (order id, sub-order id), read as exact integers.
fn ids(row: &Value) -> (String, String) {
    let id = |f: &str| {
        row[f]
            .as_u64()
            .unwrap_or_else(|| panic!("{f} is not an integer: {row}"))
            .to_string()
    };
    (id("order_id"), id("sub_order_id"))
}

fn time_text(t: Option<NaiveDateTime>) -> Value {
    Value::String(t.map(wall).unwrap_or_default())
}

fn assert_row_matches(row: &Value, l: &UdSubOrder) {
    let obj = row.as_object().expect("row is an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ROW_FIELDS, "the document's fields");
    assert_eq!(ids(row), (l.order_id.clone(), l.sub_order_id.clone()));
    for (field, want) in [
        ("item_id", &l.item_id),
        ("pay_item_id", &l.pay_item_id),
        ("seller_id", &l.seller_id),
    ] {
        assert_eq!(
            row[field].as_u64().map(|n| n.to_string()).as_ref(),
            Some(want),
            "{field}"
        );
    }
    for (field, want) in [
        ("item_name", &l.item_name),
        ("pay_item_name", &l.pay_item_name),
        ("shop_name", &l.shop_name),
    ] {
        assert_eq!(row[field].as_str(), Some(want.as_str()), "{field}");
    }
    for (field, want) in [
        ("order_status", l.order_status),
        ("pay_fee", l.pay_fee),
        ("actual_pay_fee", l.actual_pay_fee),
        ("order_refund_fee", l.order_refund_fee),
        ("buy_amount", l.buy_amount),
        ("commission_fee", l.commission_fee),
    ] {
        assert_eq!(
            row[field].as_i64(),
            Some(want),
            "{field} of {}",
            l.sub_order_id
        );
    }
    assert_eq!(
        row["order_create_time"],
        time_text(Some(l.order_create_time))
    );
    assert_eq!(row["order_pay_time"], time_text(l.order_pay_time));
    assert_eq!(row["order_refund_time"], time_text(l.order_refund_time));
    let rate: f64 = row["commission_rate"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("commission_rate is a decimal string: {row}"));
    assert!((0.5..=8.0).contains(&rate), "{rate}");
    let due = match l.order_status {
        1 => l.pay_fee,
        4 => l.pay_fee - l.actual_pay_fee,
        _ => 0,
    };
    assert_eq!(row["due_pay_fee"].as_i64(), Some(due));
    for field in [
        "brand_id",
        "is_ad_order",
        "channel_id",
        "advertiser_id",
        "campaign_id",
        "adgroup_id",
        "creative_id",
        "presale_deposit_fee",
        "remaining_payment_fee",
    ] {
        assert!(row[field].is_i64(), "{field} is a number: {row}");
    }
}

/// The truth's lines whose modified time lies in `[start, end]`, in the API's order.
fn expected(sim: &UnideskSim, start: NaiveDateTime, end: NaiveDateTime) -> Vec<UdSubOrder> {
    let mut want: Vec<UdSubOrder> = sim
        .truth()
        .into_iter()
        .filter(|l| (start..=end).contains(&l.modified_time))
        .collect();
    want.sort_by(|a, b| {
        (a.modified_time, &a.order_id, &a.sub_order_id).cmp(&(
            b.modified_time,
            &b.order_id,
            &b.sub_order_id,
        ))
    });
    want
}

/// The Beijing day before `today` with the most lines (today's lines are still being added to).
fn busiest_day(sim: &UnideskSim, today: NaiveDate) -> NaiveDate {
    let mut per_day: BTreeMap<NaiveDate, usize> = BTreeMap::new();
    for l in sim.truth() {
        if l.modified_time.date() < today {
            *per_day.entry(l.modified_time.date()).or_default() += 1;
        }
    }
    per_day
        .into_iter()
        .max_by_key(|(day, n)| (*n, *day))
        .map(|(day, _)| day)
        .expect("a line")
}

/// Pages through one window until `cursor_id` is empty; returns the pages' rows. Checks every
/// page is a success.
async fn page_all(
    sim: &UnideskSim,
    start: NaiveDateTime,
    end: NaiveDateTime,
    mut between_pages: impl FnMut(usize),
) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut next = String::new();
    loop {
        let r = get(sim, &signed(unsigned(dto(start, end, &next)))).await;
        assert_eq!(
            (r.status, r.code()),
            (200, (0, String::new())),
            "{:?}",
            r.error()
        );
        let v = r.json();
        pages.push(rows(&v));
        next = cursor(&v);
        if next.is_empty() {
            return pages;
        }
        assert!(pages.len() < 10_000, "paging never ends");
        between_pages(pages.len());
    }
}

#[tokio::test]
async fn same_seed_and_now_give_the_same_world() {
    let now = beijing_now();
    let a = UnideskSim::start(config(2000, 30, now))
        .await
        .expect("start");
    let b = UnideskSim::start(config(2000, 30, now))
        .await
        .expect("start");
    let truth = a.truth();
    assert_eq!(truth, b.truth());
    let other = UnideskSim::start(UnideskSimConfig {
        seed: 8,
        ..config(2000, 30, now)
    })
    .await
    .expect("start");
    assert_ne!(truth, other.truth());

    let mut by_order: BTreeMap<&str, Vec<&UdSubOrder>> = BTreeMap::new();
    for l in &truth {
        by_order.entry(l.order_id.as_str()).or_default().push(l);
    }
    assert_eq!(by_order.len(), 2000, "main orders");
    assert!(
        truth
            .windows(2)
            .all(|w| (&w[0].order_id, &w[0].sub_order_id) < (&w[1].order_id, &w[1].sub_order_id)),
        "sorted by (order id, sub-order id)"
    );
    let subs: HashSet<&str> = truth.iter().map(|l| l.sub_order_id.as_str()).collect();
    assert_eq!(subs.len(), truth.len(), "sub-order ids are unique");
    let mut by_status: HashMap<i64, usize> = HashMap::new();
    for l in &truth {
        for id in [&l.order_id, &l.sub_order_id] {
            assert_eq!(id.len(), 19, "{id}");
            let n: u64 = id.parse().expect("numeric id");
            assert!(n > 1 << 53 && n % 2 == 1, "{id}");
            assert_ne!(n as f64 as u64, n, "a float would keep {id}");
        }
        assert!(!by_order.contains_key(l.sub_order_id.as_str()));
        let created = l.order_create_time;
        assert!(created >= now - Duration::days(30) && created <= now - Duration::hours(1));
        assert!(l.modified_time <= now - Duration::minutes(6), "{l:?}");
        assert_eq!(l.order_pay_time.is_none(), l.order_status == 1, "{l:?}");
        assert_eq!(l.order_refund_time.is_some(), l.order_status == 3, "{l:?}");
        assert_eq!(l.order_refund_fee > 0, l.order_status == 3, "{l:?}");
        assert_eq!(l.commission_fee == 0, l.order_status == 3, "{l:?}");
        let latest = [l.order_pay_time, l.order_refund_time]
            .into_iter()
            .flatten()
            .fold(created, NaiveDateTime::max);
        assert_eq!(l.modified_time, latest, "{l:?}");
        assert!(l.order_pay_time.is_none_or(|p| p >= created));
        assert!(l.order_refund_time.is_none() || l.order_refund_time >= l.order_pay_time);
        assert!((1..=5).contains(&l.buy_amount));
        assert!(l.pay_fee >= 100 * l.buy_amount);
        assert!(l.actual_pay_fee <= l.pay_fee && l.order_refund_fee <= l.actual_pay_fee);
        *by_status.entry(l.order_status).or_default() += 1;
    }
    let lines = truth.len();
    assert!(
        (3_800..=4_900).contains(&lines),
        "{lines} lines in 2000 orders"
    );
    for (status, share) in [(1, 10), (2, 49), (3, 11), (4, 10), (5, 20)] {
        let n = by_status.get(&status).copied().unwrap_or(0);
        let pct = n * 100 / lines;
        assert!(
            pct.abs_diff(share) <= 4,
            "status {status}: {pct}% of {lines}"
        );
    }
    // 1–4 lines each, mostly sharing a status; some with one line refunded later, some of those
    // on another day.
    let mut mixed = 0;
    let mut mixed_days = 0;
    let mut sizes = [0usize; 5];
    for lines in by_order.values() {
        sizes[lines.len()] += 1;
        let statuses: HashSet<i64> = lines.iter().map(|l| l.order_status).collect();
        let times: HashSet<NaiveDateTime> = lines.iter().map(|l| l.modified_time).collect();
        let days: HashSet<NaiveDate> = times.iter().map(|t| t.date()).collect();
        assert!(lines.iter().all(|l| l.seller_id == lines[0].seller_id
            && l.order_create_time == lines[0].order_create_time));
        if statuses.len() > 1 {
            mixed += 1;
            assert!(statuses.contains(&3), "{lines:?}");
            assert_eq!(times.len(), 2, "the refunded line has its own time");
            mixed_days += usize::from(days.len() > 1);
        } else {
            assert_eq!(
                times.len(),
                1,
                "lines of one status share their time: {lines:?}"
            );
        }
    }
    assert_eq!(sizes[0], 0);
    assert!(sizes[1..].iter().all(|n| *n > 150), "{sizes:?}");
    assert!(
        (100..=300).contains(&mixed),
        "{mixed} orders with a line refunded later"
    );
    assert!(mixed_days > 30, "{mixed_days} of them on another day");
    let names: String = truth
        .iter()
        .map(|l| format!("{}{}", l.item_name, l.shop_name))
        .collect();
    assert!(names.contains('"') && names.contains('🔥'));
}

#[tokio::test]
async fn a_signed_request_pages_a_day_and_returns_each_line_once() {
    let (sim, now) = start(1500, 6).await;
    let day = busiest_day(&sim, now.date());
    let (start, end) = day_window(day);
    let pages = page_all(&sim, start, end, |_| {}).await;
    let want = expected(&sim, start, end);
    assert!(want.len() > 2 * PAGE_SIZE, "{} lines", want.len());
    let got: Vec<(String, String)> = pages.iter().flatten().map(ids).collect();
    let want_ids: Vec<(String, String)> = want
        .iter()
        .map(|l| (l.order_id.clone(), l.sub_order_id.clone()))
        .collect();
    assert_eq!(
        got, want_ids,
        "every line once, by (modified, order, sub-order)"
    );
    assert_eq!(pages.len(), want.len().div_ceil(PAGE_SIZE));
    let (last, full) = pages.split_last().expect("a page");
    assert!(
        full.iter().all(|p| p.len() == PAGE_SIZE),
        "fixed pages of 100"
    );
    assert!(!last.is_empty() && last.len() <= PAGE_SIZE);
    for (row, l) in pages.iter().flatten().zip(&want) {
        assert_row_matches(row, l);
    }
    assert_eq!(sim.requests(), pages.len() as u64);
    assert_eq!(sim.requests_log(), vec![(start, end); pages.len()]);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());

    // The answer's shape and headers.
    let r = get(&sim, &signed(unsigned(dto(start, end, "")))).await;
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json; charset=utf-8")
    );
    let v = r.json();
    let top: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(top, [RESPONSE_KEY]);
    let mut keys: Vec<&str> = v[RESPONSE_KEY]
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["cursor_id", "request_id", "result", "success"]);
    assert!(v[RESPONSE_KEY]["request_id"]
        .as_str()
        .is_some_and(|id| id.len() == 13));

    // Paged as ordersync's client pages: every Beijing day of the range, then nothing twice.
    let mut seen = Vec::new();
    let mut d = (now - Duration::days(7)).date();
    while d <= now.date() {
        let (start, end) = day_window(d);
        seen.extend(
            page_all(&sim, start, end, |_| {})
                .await
                .iter()
                .flatten()
                .map(ids),
        );
        d = d.succ_opt().expect("a next day");
    }
    let all: Vec<(String, String)> = sim
        .truth()
        .into_iter()
        .map(|l| (l.order_id, l.sub_order_id))
        .collect();
    seen.sort();
    assert_eq!(seen, all);
    assert!(sim.requests_log().iter().all(|(s, e)| s.date() == e.date()));

    // Millisecond-exact edges: a window of one instant holds exactly the lines modified then.
    let l = want
        .iter()
        .find(|l| l.modified_time > midnight(day))
        .expect("a line after midnight");
    let pages = page_all(&sim, l.modified_time, l.modified_time, |_| {}).await;
    let got: HashSet<(String, String)> = pages.iter().flatten().map(ids).collect();
    assert!(got.contains(&(l.order_id.clone(), l.sub_order_id.clone())));
    let before = page_all(
        &sim,
        (l.modified_time - Duration::milliseconds(999)).max(midnight(day)),
        l.modified_time - Duration::milliseconds(1),
        |_| {},
    )
    .await;
    assert!(before.iter().flatten().all(|r| !got.contains(&ids(r))));
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn a_busy_day_splits_main_orders_across_pages() {
    let (sim, now) = start(3000, 3).await;
    let day = busiest_day(&sim, now.date());
    let (start, end) = day_window(day);
    assert!(sim.split_orders().is_empty(), "nothing served yet");
    let pages = page_all(&sim, start, end, |_| {}).await;
    assert!(pages.len() >= 10, "{} pages", pages.len());
    let split = sim.split_orders();
    assert!(split.len() >= 3, "{split:?}");
    // Exactly the orders whose lines end one page and begin the next.
    let mut across = Vec::new();
    for pair in pages.windows(2) {
        let (a, b) = (
            ids(pair[0].last().expect("a row")),
            ids(pair[1].first().expect("a row")),
        );
        if a.0 == b.0 {
            across.push(a.0);
        }
    }
    across.sort();
    assert_eq!(split, across);
    // And the main orders still come out whole: all of a split order's lines of that window.
    let truth = sim.truth();
    for order in &split {
        let want: HashSet<String> = truth
            .iter()
            .filter(|l| &l.order_id == order && (start..=end).contains(&l.modified_time))
            .map(|l| l.sub_order_id.clone())
            .collect();
        let got: HashSet<String> = pages
            .iter()
            .flatten()
            .map(ids)
            .filter(|(o, _)| o == order)
            .map(|(_, s)| s)
            .collect();
        assert!(want.len() >= 2);
        assert_eq!(got, want, "order {order}");
    }
}

#[tokio::test]
async fn a_wrong_signature_is_25_and_recorded() {
    let (sim, now) = start(100, 5).await;
    let (start, end) = day_window(now.date());
    let good = unsigned(dto(start, end, ""));

    let r = get(&sim, &signed_with(good.clone(), "not-the-secret")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.code(), (25, "isv.invalid-signature".to_string()));
    let e = r.error();
    assert_eq!(e["msg"], "Invalid signature");
    assert!(
        e["sub_msg"].is_string() && e["request_id"].is_string(),
        "{e}"
    );

    // A parameter changed after signing.
    let mut tampered = signed(good.clone());
    set(
        &mut tampered,
        DTO,
        &dto(start, end - Duration::seconds(1), ""),
    );
    assert_eq!(get(&sim, &tampered).await.code().0, 25);
    // A lowercase signature is not TOP's.
    let mut lower = signed(good.clone());
    let sign = top_sign(&good, APP_SECRET).to_lowercase();
    set(&mut lower, "sign", &sign);
    assert_eq!(get(&sim, &lower).await.code().0, 25);
    // No signature at all.
    assert_eq!(
        get(&sim, &good).await.code(),
        (24, "isv.missing-signature".to_string())
    );

    // A rotated secret: the old one fails, the new one works.
    sim.set_secret("rotated-secret");
    assert_eq!(get(&sim, &signed(good.clone())).await.code().0, 25);
    assert_eq!(
        get(&sim, &signed_with(good.clone(), "rotated-secret"))
            .await
            .code()
            .0,
        0
    );

    let violations = sim.violations();
    assert_eq!(violations.len(), 5, "{violations:#?}");
    assert!(
        violations[0].starts_with("request 1: 25/isv.invalid-signature "),
        "{}",
        violations[0]
    );
    assert!(
        violations[3].starts_with("request 4: 24/isv.missing-signature "),
        "{}",
        violations[3]
    );
    for line in &violations {
        assert!(
            line.contains("method=alibaba.taobao.ud.smart.order.detail.pull"),
            "{line}"
        );
        assert!(line.contains(DTO), "{line}");
        for secret in [
            APP_KEY,
            APP_SECRET,
            SESSION,
            "rotated-secret",
            "app_key=",
            "sign=",
        ] {
            assert!(!line.contains(secret), "{secret} leaked: {line}");
        }
    }
    assert!(
        sim.requests_log().len() == 1,
        "only the accepted request is logged"
    );
}

#[tokio::test]
async fn a_window_crossing_midnight_is_41_and_recorded() {
    let (sim, now) = start(300, 5).await;
    let day = (now - Duration::days(2)).date();
    let (start, end) = day_window(day);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a millisecond past midnight",
            dto(start, end + Duration::milliseconds(1), ""),
            "end_time",
        ),
        (
            "two days",
            dto(start, end + Duration::days(1), ""),
            "end_time",
        ),
        (
            "the last millisecond to the next midnight",
            dto(end, end + Duration::milliseconds(1), ""),
            "end_time",
        ),
        ("end before start", dto(end, start, ""), "end_time"),
        (
            "no milliseconds",
            json!({"start_time": wall(start), "end_time": millis(end)}).to_string(),
            "start_time",
        ),
        (
            "two millisecond digits",
            json!({"start_time": millis(start), "end_time": "2024-09-01 23:59:59.99"}).to_string(),
            "end_time",
        ),
        (
            "no end",
            json!({"start_time": millis(start)}).to_string(),
            "end_time",
        ),
        ("not JSON", "start_time=today".to_string(), DTO),
        (
            "prod_type 3",
            json!({"start_time": millis(start), "end_time": millis(end), "prod_type": 3})
                .to_string(),
            "prod_type",
        ),
        (
            "a made-up cursor",
            dto(start, end, "einsqpfgsgx"),
            "cursor_id",
        ),
    ];
    for (what, dto, field) in &cases {
        let r = get(&sim, &signed(unsigned(dto.clone()))).await;
        assert_eq!(r.status, 200, "{what}");
        assert_eq!(
            r.code(),
            (41, "isv.invalid-parameter".to_string()),
            "{what}"
        );
        let e = r.error();
        assert_eq!(e["msg"], codes::INVALID_ARGUMENTS.msg);
        let sub_msg = e["sub_msg"].as_str().unwrap_or_default();
        assert!(
            sub_msg.starts_with(codes::INVALID_PARAMETER_SUB_MSG_PREFIX) && sub_msg.contains(field),
            "{what}: {sub_msg}"
        );
    }
    let r = get(&sim, &signed(without(unsigned(String::new()), DTO))).await;
    assert_eq!(r.code().0, 41, "no dto");

    let violations = sim.violations();
    assert_eq!(violations.len(), cases.len() + 1, "{violations:#?}");
    assert!(
        violations[0].starts_with("request 1: 41/isv.invalid-parameter "),
        "{}",
        violations[0]
    );
    assert!(
        violations[0].contains("different Beijing days"),
        "{}",
        violations[0]
    );
    assert!(
        violations[0].contains(&millis(end + Duration::milliseconds(1))),
        "{}",
        violations[0]
    );
    assert!(sim.requests_log().is_empty(), "no refused window is logged");

    // The same day to the last millisecond is fine, as is a window inside the day.
    assert_eq!(
        get(&sim, &signed(unsigned(dto(start, end, ""))))
            .await
            .code()
            .0,
        0
    );
    let noon = start + Duration::hours(12);
    assert_eq!(
        get(
            &sim,
            &signed(unsigned(dto(noon, noon + Duration::milliseconds(1), "")))
        )
        .await
        .code()
        .0,
        0
    );
    assert_eq!(sim.violations().len(), cases.len() + 1);
    assert_eq!(sim.requests_log().len(), 2);
}

#[tokio::test]
async fn a_timestamp_eleven_minutes_off_is_43() {
    let (sim, now) = start(50, 3).await;
    let (start, end) = day_window(now.date());
    let at = |offset: Duration| {
        let mut p = unsigned(dto(start, end, ""));
        set(&mut p, "timestamp", &wall(beijing_now() + offset));
        signed(p)
    };
    for offset in [
        Duration::minutes(11),
        Duration::minutes(-11),
        Duration::days(1),
    ] {
        let r = get(&sim, &at(offset)).await;
        assert_eq!(
            r.code(),
            (43, "isv.invalid-timestamp".to_string()),
            "{offset}"
        );
        assert_eq!(r.error()["msg"], "Invalid timestamp");
    }
    for offset in [
        Duration::minutes(9),
        Duration::minutes(-9),
        Duration::zero(),
    ] {
        assert_eq!(get(&sim, &at(offset)).await.code().0, 0, "{offset}");
    }
    let mut p = unsigned(dto(start, end, ""));
    set(
        &mut p,
        "timestamp",
        &beijing_now().and_utc().timestamp_millis().to_string(),
    );
    assert_eq!(
        get(&sim, &signed(p)).await.code().0,
        43,
        "epoch millis are not the format"
    );
    let r = get(
        &sim,
        &signed(without(unsigned(dto(start, end, "")), "timestamp")),
    )
    .await;
    assert_eq!(r.code(), (30, "isv.missing-timestamp".to_string()));
    let violations = sim.violations();
    assert_eq!(violations.len(), 5, "{violations:#?}");
    assert!(
        violations[0].contains(": 43/isv.invalid-timestamp "),
        "{}",
        violations[0]
    );
}

#[tokio::test]
async fn the_other_system_parameters_are_checked_with_their_codes() {
    let (sim, now) = start(50, 3).await;
    let (start, end) = day_window(now.date());
    let good = unsigned(dto(start, end, ""));
    let with = |name: &str, value: &str| {
        let mut p = good.clone();
        set(&mut p, name, value);
        signed(p)
    };
    let cases: Vec<(Vec<(String, String)>, codes::TopError)> = vec![
        (with("app_key", "someone-else"), codes::INVALID_APP_KEY),
        (
            signed(without(good.clone(), "app_key")),
            codes::MISSING_APP_KEY,
        ),
        (with("session", "stolen-session"), codes::INVALID_SESSION),
        (
            signed(without(good.clone(), "session")),
            codes::MISSING_SESSION,
        ),
        (
            with("method", "taobao.trades.sold.get"),
            codes::INVALID_METHOD,
        ),
        (
            signed(without(good.clone(), "method")),
            codes::MISSING_METHOD,
        ),
        (with("format", "xml"), codes::INVALID_FORMAT),
        (
            signed(without(good.clone(), "format")),
            codes::INVALID_FORMAT,
        ),
        (with("v", "1.0"), codes::UNSUPPORTED_VERSION),
        (signed(without(good.clone(), "v")), codes::MISSING_VERSION),
        (with("sign_method", "hmac"), codes::INVALID_ARGUMENTS),
    ];
    for (params, want) in &cases {
        let r = get(&sim, params).await;
        let e = r.error();
        assert_eq!(
            (
                e["code"].as_i64(),
                e["msg"].as_str(),
                e["sub_code"].as_str()
            ),
            (Some(want.code), Some(want.msg), Some(want.sub_code)),
            "{want:?}"
        );
    }
    let violations = sim.violations();
    assert_eq!(violations.len(), cases.len(), "{violations:#?}");
    for (line, (_, want)) in violations.iter().zip(&cases) {
        assert!(
            line.contains(&format!(": {}/{} ", want.code, want.sub_code)),
            "{line}"
        );
        for secret in [APP_KEY, SESSION, "someone-else", "stolen-session"] {
            assert!(!line.contains(secret), "{secret} leaked: {line}");
        }
    }
    // Unknown parameters are signed like any other and otherwise ignored.
    let mut extra = good.clone();
    set(&mut extra, "partner_id", "top-sdk-java-20240901");
    assert_eq!(get(&sim, &signed(extra)).await.code().0, 0);

    // Without a configured session, none is needed.
    let open = UnideskSim::start(UnideskSimConfig {
        session: None,
        ..config(50, 3, now)
    })
    .await
    .expect("start");
    let r = get(&open, &signed(without(good.clone(), "session"))).await;
    assert_eq!(r.code().0, 0);
    assert!(open.violations().is_empty());
}

#[tokio::test]
async fn post_with_a_form_body_works_and_other_methods_do_not() {
    let (sim, now) = start(200, 3).await;
    let (start, end) = day_window((now - Duration::days(1)).date());
    let params = signed(unsigned(dto(start, end, "")));
    let by_get = get(&sim, &params).await;
    let by_post = post_form(&sim, &params).await;
    assert_eq!(by_post.code().0, 0);
    assert_eq!(rows(&by_post.json()), rows(&by_get.json()));
    // System parameters in the query, the business parameter in the body, as TOP SDKs send them.
    let (query, body): (Vec<_>, Vec<_>) = params.iter().cloned().partition(|p| p.0 != DTO);
    let url = format!(
        "{}?{}",
        sim.endpoint(),
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&query)
            .finish()
    );
    let resp = client()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&body)
                .finish(),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(Reply::read(resp).await.code().0, 0);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());

    for method in [Method::PUT, Method::DELETE] {
        let r = send(&sim.endpoint(), method.clone(), &params).await;
        assert_eq!(r.status, 405, "{method}");
    }
    let url = sim.endpoint().replace(PATH, "/router/json");
    assert_eq!(send(&url, Method::GET, &params).await.status, 404);
    let violations = sim.violations();
    assert_eq!(violations.len(), 3, "{violations:#?}");
    assert!(
        violations[0].contains(": 405 method PUT"),
        "{}",
        violations[0]
    );
    assert!(
        violations[2].contains(": 404 GET /router/json"),
        "{}",
        violations[2]
    );
    assert!(violations
        .iter()
        .all(|l| !l.contains(APP_KEY) && !l.contains(SESSION)));
}

#[tokio::test]
async fn ids_above_2_53_are_exact_in_the_raw_body() {
    let (sim, now) = start(400, 4).await;
    let day = busiest_day(&sim, now.date());
    let (start, end) = day_window(day);
    let r = get(&sim, &signed(unsigned(dto(start, end, "")))).await;
    let raw = String::from_utf8(r.body.clone()).expect("UTF-8");
    let want = expected(&sim, start, end);
    let got = rows(&r.json());
    assert!(!got.is_empty());
    for (row, l) in got.iter().zip(&want) {
        for id in [&l.order_id, &l.sub_order_id] {
            let n: u64 = id.parse().expect("number");
            assert_ne!((n as f64) as u64, n, "a float parser would lose {id}");
        }
        assert!(
            raw.contains(&format!(
                "\"order_id\":{},\"sub_order_id\":{},",
                l.order_id, l.sub_order_id
            )),
            "{} / {} not bare exact numbers",
            l.order_id,
            l.sub_order_id
        );
        assert_eq!(ids(row), (l.order_id.clone(), l.sub_order_id.clone()));
    }
}

#[tokio::test]
async fn a_cursor_only_continues_its_own_window() {
    let (sim, now) = start(2000, 3).await;
    let (start, end) = day_window(busiest_day(&sim, now.date()));
    let v = get(&sim, &signed(unsigned(dto(start, end, ""))))
        .await
        .json();
    let next = cursor(&v);
    assert!(!next.is_empty());
    let moved = [
        dto(start + Duration::milliseconds(1), end, &next),
        dto(start, end - Duration::milliseconds(1), &next),
        json!({"start_time": millis(start), "end_time": millis(end), "cursor_id": next, "prod_type": 2}).to_string(),
    ];
    for dto in &moved {
        let r = get(&sim, &signed(unsigned(dto.clone()))).await;
        assert_eq!(r.code().0, 41, "{dto}");
        assert!(r.error()["sub_msg"]
            .as_str()
            .unwrap_or_default()
            .contains("cursor_id"));
    }
    // Without prod_type it is 1, the same scope as the cursor's.
    let same = json!({"start_time": millis(start), "end_time": millis(end), "cursor_id": next})
        .to_string();
    assert_eq!(get(&sim, &signed(unsigned(same))).await.code().0, 0);
    assert_eq!(sim.violations().len(), moved.len());
    // 流量通Pro has no simulated orders.
    let pro =
        json!({"start_time": millis(start), "end_time": millis(end), "prod_type": 2}).to_string();
    let v = get(&sim, &signed(unsigned(pro))).await.json();
    assert!(rows(&v).is_empty());
    assert_eq!(cursor(&v), "");
}

#[tokio::test]
async fn the_keyset_cursor_survives_mutations_between_pages() {
    let (sim, now) = start(3000, 4).await;
    let (start, end) = day_window(busiest_day(&sim, now.date()));
    let before: HashSet<(String, String)> = expected(&sim, start, end)
        .into_iter()
        .map(|l| (l.order_id, l.sub_order_id))
        .collect();
    let mut mutated = Vec::new();
    let pages = page_all(&sim, start, end, |page| {
        let at = now + Duration::seconds(page as i64);
        mutated.extend(sim.mutate(40, at));
    })
    .await;
    assert!(mutated.iter().any(|m| m.to == "3") && mutated.iter().any(|m| m.to == "5"));
    let got: Vec<(String, String)> = pages.iter().flatten().map(ids).collect();
    let unique: HashSet<(String, String)> = got.iter().cloned().collect();
    assert_eq!(unique.len(), got.len(), "no line twice");
    // Every line still in the window was seen; a line refunded meanwhile (its modified time moved
    // to now) may or may not have been, and nothing outside the window was.
    let after: HashSet<(String, String)> = expected(&sim, start, end)
        .into_iter()
        .map(|l| (l.order_id, l.sub_order_id))
        .collect();
    assert!(
        after.is_subset(&unique),
        "{} missed",
        after.difference(&unique).count()
    );
    assert!(unique.is_subset(&before));
    assert!(after.len() < before.len(), "some lines left the window");
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn mutations_and_additions_are_deterministic_and_consistent() {
    let now = beijing_now();
    let a = UnideskSim::start(config(600, 10, now))
        .await
        .expect("start");
    let b = UnideskSim::start(config(600, 10, now))
        .await
        .expect("start");
    let at = now + Duration::minutes(1);
    let before: HashMap<(String, String), UdSubOrder> = a
        .truth()
        .into_iter()
        .map(|l| ((l.order_id.clone(), l.sub_order_id.clone()), l))
        .collect();
    let changes = a.mutate(80, at);
    assert_eq!(changes, b.mutate(80, at));
    let added = a.add_orders(7, at);
    assert_eq!(added, b.add_orders(7, at));
    assert_eq!(a.truth(), b.truth());
    assert_eq!(changes.len(), 80);
    let refunds = changes.iter().filter(|m| m.to == "3").count();
    assert!((8..=35).contains(&refunds), "{refunds} of 80 refunded");

    let after: HashMap<(String, String), UdSubOrder> = a
        .truth()
        .into_iter()
        .map(|l| ((l.order_id.clone(), l.sub_order_id.clone()), l))
        .collect();
    let mut seen = HashSet::new();
    for m in &changes {
        assert!(
            seen.insert(m.order_id.clone()),
            "{} changed twice",
            m.order_id
        );
        assert_eq!(m.from, "2");
        let changed: Vec<(&UdSubOrder, &UdSubOrder)> = before
            .iter()
            .filter(|(k, _)| k.0 == m.order_id)
            .map(|(k, old)| (old, &after[k]))
            .filter(|(old, new)| old != new)
            .collect();
        assert!(changed.iter().all(|(old, _)| old.order_status == 2));
        match m.to.as_str() {
            "3" => {
                assert_eq!(changed.len(), 1, "one line refunded");
                let new = changed[0].1;
                assert_eq!(new.order_status, 3);
                assert_eq!(new.order_refund_time, Some(at));
                assert_eq!(new.modified_time, at);
                assert!(new.order_refund_fee >= 1 && new.order_refund_fee <= new.actual_pay_fee);
                assert_eq!(new.commission_fee, 0);
            }
            "5" => {
                assert!(!changed.is_empty());
                for (old, new) in changed {
                    assert_eq!(new.order_status, 5);
                    assert_eq!(new.modified_time, old.modified_time, "receipt has no time");
                }
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let new_lines: Vec<&UdSubOrder> = after
        .values()
        .filter(|l| added.contains(&l.order_id))
        .collect();
    assert!(new_lines.len() >= 7);
    for l in new_lines {
        assert_eq!(l.order_status, 2);
        assert!(l.order_create_time >= at - Duration::seconds(5) && l.modified_time <= at);
    }
    // Asked for enough, every eligible order moves (once): what is left paid before `at` belongs to
    // orders that had just one line refunded.
    let again = a.mutate(100_000, at);
    let refunded: HashSet<&str> = again
        .iter()
        .filter(|m| m.to == "3")
        .map(|m| m.order_id.as_str())
        .collect();
    assert!(again.len() > 150, "{} moved", again.len());
    for l in a.truth() {
        if l.order_status == 2 && l.modified_time < at {
            assert!(refunded.contains(l.order_id.as_str()), "{l:?}");
        }
    }
}

#[tokio::test]
async fn faults_answer_as_documented_and_are_not_violations() {
    let (sim, now) = start(300, 3).await;
    let (start, end) = day_window(now.date() - Duration::days(1));
    let good = || signed(unsigned(dto(start, end, "")));
    let real = get(&sim, &good()).await;
    assert_eq!(real.code().0, 0);
    let only = |f: Faults| Faults { seed: 4, ..f };

    sim.set_faults(only(Faults {
        p_5xx: 1.0,
        ..Faults::default()
    }));
    let mut statuses = HashSet::new();
    for _ in 0..20 {
        // Even a request that breaks the rules gets the fault, not a refusal.
        let r = get(&sim, &[("method".to_string(), "x".to_string())]).await;
        assert!(String::from_utf8_lossy(&r.body).contains("<html>"));
        statuses.insert(r.status);
    }
    assert_eq!(statuses, HashSet::from([502, 503]));

    sim.set_faults(only(Faults {
        p_429: 1.0,
        retry_after_secs: 3,
        ..Faults::default()
    }));
    let r = get(&sim, &good()).await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("3")
    );
    assert_eq!(r.code(), (7, codes::APP_CALL_LIMITED.sub_code.to_string()));

    sim.set_faults(only(Faults {
        p_body_rate_limit: 1.0,
        ..Faults::default()
    }));
    let r = get(&sim, &good()).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.code(),
        (7, "accesscontrol.limited-by-app-access-count".to_string())
    );
    assert_eq!(r.error()["msg"], "App Call Limited");

    sim.set_faults(only(Faults::default()));
    sim.set_isp_error(1.0);
    let r = get(&sim, &good()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.code(), (15, "isp.remote-service-error".to_string()));
    assert_eq!(r.error()["msg"], "Remote service error");
    sim.set_isp_error(0.0);

    sim.set_faults(only(Faults {
        p_truncated: 1.0,
        ..Faults::default()
    }));
    let r = get(&sim, &good()).await;
    assert_eq!(r.status, 200);
    let length: usize = r.headers["content-length"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    assert_eq!(length, r.body.len());
    assert!(r.body.len() >= real.body.len() / 2 - 40 && r.body.len() <= real.body.len() / 2 + 40);
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());

    sim.set_faults(only(Faults {
        p_malformed: 1.0,
        ..Faults::default()
    }));
    let r = get(&sim, &good()).await;
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());

    sim.set_faults(only(Faults {
        p_slow: 1.0,
        slow_ms: 300,
        ..Faults::default()
    }));
    let started = Instant::now();
    let r = get(&sim, &good()).await;
    assert!(started.elapsed() >= StdDuration::from_millis(300));
    assert_eq!(rows(&r.json()), rows(&real.json()));

    sim.set_faults(Faults::default());
    assert_eq!(get(&sim, &good()).await.code().0, 0);

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
async fn isp_errors_mix_with_the_shared_faults() {
    let (sim, now) = start(100, 3).await;
    sim.set_faults(Faults {
        p_5xx: 0.2,
        p_body_rate_limit: 0.2,
        seed: 11,
        ..Faults::default()
    });
    sim.set_isp_error(0.3);
    let (start, end) = day_window(now.date() - Duration::days(1));
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for _ in 0..200 {
        let r = get(&sim, &signed(unsigned(dto(start, end, "")))).await;
        if r.status == 200 {
            *seen.entry(r.code().0).or_default() += 1;
        }
    }
    let c = sim.fault_counts();
    assert_eq!(seen.get(&15).copied().unwrap_or(0) as u64, c.body_transient);
    assert_eq!(seen.get(&7).copied().unwrap_or(0) as u64, c.body_rate_limit);
    assert!(
        c.body_transient > 30 && c.server_error > 15 && c.body_rate_limit > 15,
        "{c:?}"
    );
    assert!(seen.get(&0).copied().unwrap_or(0) > 30, "{seen:?}");
    assert!(sim.violations().is_empty());
}

#[test]
fn the_binary_prints_its_endpoint_and_serves() {
    let (mut child, endpoint) = start_binary(&[
        "unidesk",
        "--orders",
        "30",
        "--days",
        "1",
        "--app-key",
        APP_KEY,
        "--app-secret",
        APP_SECRET,
        "--session",
        SESSION,
        "--p-5xx",
        "0",
        "--p-isp",
        "0",
    ]);
    assert!(endpoint.starts_with("http://127.0.0.1:") && endpoint.ends_with(PATH));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let lines = rt.block_on(async {
        let now = beijing_now();
        let mut total = 0;
        for day in [now.date() - Duration::days(1), now.date()] {
            let (start, end) = day_window(day);
            let r = send(
                &endpoint,
                Method::GET,
                &signed(unsigned(dto(start, end, ""))),
            )
            .await;
            assert_eq!(r.code().0, 0, "{:?}", r.error());
            total += rows(&r.json()).len();
        }
        total
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines >= 30, "{lines} lines of 30 orders");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ordersync-sim"))
        .args(["unidesk", "--vekey", "x"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "--vekey is veapi's");
}
