//! Simulator of veapi 抖客 `GET|POST /douke/csj_ordersearch` (document: `shared/seeds/003_*.txt`).
//!
//! It answers from a deterministic [`World`](world::World) of affiliate orders, exactly as the
//! document shows: HTTP 200, `{"error":"0","msg":…,"cursor":…,"data":[rows],"request_id":…}`,
//! every row value a JSON string, times as 10-digit unix seconds (`"0"` for none). It enforces the
//! documented rules and refuses a request that breaks one with one of [`codes`] (HTTP 200), recording
//! one line in [`VeapiSim::violations`]; fault-injected answers ([`crate::Faults`]) are not
//! violations. Paging is keyset-based (see `query`), so a cursor stays valid and loses nothing
//! while orders change between pages. Every request that reaches the server is counted.

mod query;
mod world;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use chrono::NaiveDateTime;
use serde::Serialize;

use crate::faults::{self, Fault, Faults, SourceBodies};
use crate::http::{self, Params, Server};
use crate::ledger::{lock, Ledger, Simulator};
use crate::poison::RowsAt;
use query::{Refusal, Request, Scope};
use world::{Row, World};

pub use crate::Mutation;

/// The path the API serves.
pub const PATH: &str = "/douke/csj_ordersearch";

/// Body-level `error` codes. The document lists none; these are the simulator's documented choice,
/// and ordersync's veapi source classifies answers by them. Every answer is HTTP 200; an error body
/// is `{"error":"<code>","msg":"…","data":[],"cursor":""}`. [`VeapiSim::set_forced_code`] answers
/// any other code the test chooses, the same way.
pub mod codes {
    /// Success.
    pub const OK: &str = "0";
    pub const OK_MSG: &str = "抖客订单查询成功!(订单数据每10秒更新一次)";
    /// `vekey` missing, wrong or expired: fatal, retrying will not help.
    pub const BAD_KEY: &str = "10001";
    pub const BAD_KEY_MSG: &str = "vekey错误或已过期";
    /// A parameter breaks a rule (size, time format, end before start, window over 90 days, cursor,
    /// time_type, order_type, order_ids); `msg` names the parameter. Fatal for that request.
    pub const BAD_PARAMETER: &str = "10002";
    /// Rate limited at the body level: back off and retry.
    pub const RATE_LIMITED: &str = "10009";
    pub const RATE_LIMITED_MSG: &str = "请求过于频繁,请稍后再试";
}

/// How to build a simulated veapi. Its `Debug` hides the key.
#[derive(Clone)]
pub struct VeapiSimConfig {
    pub seed: u64,
    pub vekey: String,
    /// How many orders the world starts with.
    pub orders: usize,
    /// Payment times spread over `[now − days, now − 1 h]`.
    pub days: i64,
    /// The Beijing "now" the world is generated against (truncated to whole seconds).
    pub now: NaiveDateTime,
    pub faults: Faults,
}

impl std::fmt::Debug for VeapiSimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VeapiSimConfig")
            .field("seed", &self.seed)
            .field("vekey", &"***")
            .field("orders", &self.orders)
            .field("days", &self.days)
            .field("now", &self.now)
            .field("faults", &self.faults)
            .finish()
    }
}

impl Default for VeapiSimConfig {
    fn default() -> Self {
        VeapiSimConfig {
            seed: 1,
            vekey: "sim-vekey".to_string(),
            orders: 1000,
            days: 200,
            now: crate::beijing_now(),
            faults: Faults::default(),
        }
    }
}

/// One order of the ground truth, typed; the JSON rows are rendered from it. Times are Beijing.
#[derive(Clone, Debug, PartialEq)]
pub struct VeOrder {
    /// 19 digits, above 2^53 (a float would lose it); unique.
    pub order_id: String,
    /// 19 digits.
    pub product_id: String,
    pub product_name: String,
    pub shop_id: String,
    pub shop_name: String,
    /// Streamer nickname, for `Live` orders only (else empty).
    pub author_account: String,
    /// `Live`, `ProductDetail` or `ActivityMaterial` (order_type 2, 1, 3).
    pub media_type_name: String,
    pub pid: String,
    pub external_info: String,
    pub item_num: i64,
    /// Fen.
    pub total_pay_amount: i64,
    /// Fen; equal to or slightly above `total_pay_amount`.
    pub pay_goods_amount: i64,
    /// Exact decimal fen as sent, e.g. `"12.5"`, `"7"`, `"3.25"`, `"0.5"`.
    pub estimated_commission: String,
    /// `"0"` until SETTLE, then a decimal like `estimated_commission`.
    pub ads_real_commission: String,
    /// Ten-thousandths.
    pub split_rate: i64,
    /// `PAY_SUCC`, `REFUND`, `SETTLE` or `CONFIRM`.
    pub flow_point: String,
    /// 1, or 2 when refunded.
    pub after_sales_status: i64,
    pub pay_success_time: NaiveDateTime,
    pub refund_time: Option<NaiveDateTime>,
    pub settle_time: Option<NaiveDateTime>,
    pub confirm_time: Option<NaiveDateTime>,
    pub update_time: NaiveDateTime,
}

/// A running veapi simulator; stops when dropped.
pub struct VeapiSim {
    shared: Arc<Shared>,
    server: Server,
}

struct Shared {
    seed: u64,
    world: Mutex<World>,
    vekey: Mutex<String>,
    /// Every cursor handed out, with the query it continues.
    cursors: Mutex<HashMap<String, Scope>>,
    /// Cursors handed out carry the key (an upstream echoing what it was sent).
    key_in_cursor: std::sync::atomic::AtomicBool,
    ledger: Ledger,
    /// The `(error, msg)` every request is answered with, while set.
    forced: Mutex<Option<(String, String)>>,
}

impl Simulator for VeapiSim {
    fn ledger(&self) -> &Ledger {
        &self.shared.ledger
    }
}

impl VeapiSim {
    /// Generates the world, binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start(cfg: VeapiSimConfig) -> std::io::Result<VeapiSim> {
        VeapiSim::start_at(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// As [`VeapiSim::start`], on the given address (for the command-line simulator).
    pub async fn start_at(cfg: VeapiSimConfig, addr: SocketAddr) -> std::io::Result<VeapiSim> {
        let shared = Arc::new(Shared {
            seed: cfg.seed,
            world: Mutex::new(World::generate(&cfg)),
            vekey: Mutex::new(cfg.vekey.clone()),
            cursors: Mutex::new(HashMap::new()),
            key_in_cursor: std::sync::atomic::AtomicBool::new(false),
            ledger: Ledger::new(cfg.faults.clone()),
            forced: Mutex::new(None),
        });
        let router = Router::new()
            .route(PATH, any(handle))
            .fallback(unknown_path)
            .with_state(shared.clone());
        let server = http::serve(router, addr).await?;
        Ok(VeapiSim { shared, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// `http://127.0.0.1:PORT/douke/csj_ordersearch`.
    pub fn endpoint(&self) -> String {
        format!("http://{}{PATH}", self.server.addr)
    }

    /// Every order as it is now, sorted by `order_id`.
    pub fn truth(&self) -> Vec<VeOrder> {
        lock(&self.shared.world).truth()
    }

    /// Changes the key the simulator accepts (to simulate a revoked or rotated key).
    pub fn set_vekey(&self, vekey: &str) {
        *lock(&self.shared.vekey) = vekey.to_string();
    }

    /// Until called with `None`, answers every GET or POST to [`PATH`] with HTTP 200
    /// `{"error":code,"msg":msg,"data":[],"cursor":""}` in place of the real answer, before the key
    /// and parameters are looked at (not a violation). Any text goes — a code ordersync does not
    /// know, or the key, as an upstream that echoes what it was sent might. Injected faults still
    /// come first: they stand for the network and the gateway in front of the API.
    pub fn set_forced_code(&self, code: Option<(String, String)>) {
        *lock(&self.shared.forced) = code;
    }

    /// Moves up to `n` orders one step along PAY_SUCC→CONFIRM→SETTLE (or PAY_SUCC→REFUND, one in
    /// five), setting the matching `*_time` and `update_time` to `at` (truncated to whole seconds).
    /// Only orders whose `update_time` is before `at` are eligible; no order moves twice in one call.
    /// SETTLE gives `ads_real_commission` a value. Also revises `estimated_commission` of
    /// ⌈n/8⌉ other eligible orders without a status change (bumping `update_time` too); those are
    /// reported with `from == to`. Deterministic given the seed and the sequence of calls.
    pub fn mutate(&self, n: usize, at: NaiveDateTime) -> Vec<Mutation> {
        lock(&self.shared.world).mutate(n, at)
    }

    /// Removes up to `n` orders whose `update_time` lies in `[from, to)` from everything the API
    /// answers, as an order upstream deletes (a risk-control withdrawal, an order the platform
    /// voids) without a last update saying so. Returns their ids; deterministic like [`Self::mutate`].
    pub fn withdraw(&self, n: usize, from: NaiveDateTime, to: NaiveDateTime) -> Vec<String> {
        lock(&self.shared.world).withdraw(n, (from, to))
    }

    /// `true`: every cursor handed out from now on ends with the key, as an upstream that echoes
    /// what it was sent might do; such a cursor is accepted back like any other.
    pub fn set_key_in_cursor(&self, on: bool) {
        self.shared
            .key_in_cursor
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Adds `n` new PAY_SUCC orders paid 0–5 s before `at` and updated at most at `at`. Returns their ids.
    pub fn add_orders(&self, n: usize, at: NaiveDateTime) -> Vec<String> {
        lock(&self.shared.world).add_orders(n, at)
    }
}

#[derive(Serialize)]
struct Answer<'a> {
    error: &'a str,
    msg: &'a str,
    cursor: &'a str,
    data: Vec<Row>,
    request_id: String,
}

#[derive(Serialize)]
struct ErrorAnswer<'a> {
    error: &'a str,
    msg: &'a str,
    data: [(); 0],
    cursor: &'a str,
}

fn error_body(code: &str, msg: &str) -> Vec<u8> {
    serde_json::to_vec(&ErrorAnswer {
        error: code,
        msg,
        data: [],
        cursor: "",
    })
    .unwrap_or_default()
}

/// Where an answer keeps its rows, for poisoned rows ([`crate::poison`]).
const ROWS_AT: RowsAt = RowsAt {
    rows: "/data",
    id: "/order_id",
    amount: "/total_pay_amount",
};

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = shared.ledger.next_request();
    if let Some(resp) = shared.ledger.hostile_answer(uri.query()) {
        return resp;
    }
    let params = Params::new(uri.query(), &headers, &body);
    if method != Method::GET && method != Method::POST {
        shared.violation(n, &format!("method {method} not allowed"), &params);
        return http::with_type(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/html",
            b"<html>405 Not Allowed</html>".to_vec(),
        );
    }
    let fault = shared.ledger.injector.decide();
    if let Some(fault) = fault {
        let limited = error_body(codes::RATE_LIMITED, codes::RATE_LIMITED_MSG);
        if let Some(resp) = faults::canned(fault, &SourceBodies::rate_limit_only(&limited)) {
            return resp;
        }
    }
    if let Some(Fault::Slow { ms }) = fault {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let answer = shared
        .ledger
        .poison
        .apply(shared.answer(n, &params), ROWS_AT);
    if fault == Some(Fault::Truncated) {
        faults::truncated(answer)
    } else {
        http::json(answer)
    }
}

async fn unknown_path(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = shared.ledger.next_request();
    let params = Params::new(uri.query(), &headers, &body);
    shared.violation(
        n,
        &format!("{method} {} is not {PATH}", uri.path()),
        &params,
    );
    http::with_type(
        StatusCode::NOT_FOUND,
        "text/html",
        b"<html>404 Not Found</html>".to_vec(),
    )
}

impl Shared {
    /// The real answer to request number `n`.
    fn answer(&self, n: u64, params: &Params) -> Vec<u8> {
        if let Some((code, msg)) = lock(&self.forced).as_ref() {
            return error_body(code, msg);
        }
        let vekey = lock(&self.vekey).clone();
        let world = lock(&self.world);
        let mut cursors = lock(&self.cursors);
        let request = match query::parse(params, &vekey, &cursors) {
            Ok(request) => request,
            Err(Refusal { code, msg, reason }) => {
                self.violation(n, &format!("{code} {reason}"), params);
                return error_body(code, &msg);
            }
        };
        let (orders, cursor) = match &request {
            Request::ByIds(ids) => (world.by_ids(ids), String::new()),
            Request::Window(w) => {
                let (orders, next) = world.page(w);
                let cursor = match next {
                    Some(key) => {
                        let mut text = query::encode(w.scope.time_type, key);
                        if self.key_in_cursor.load(std::sync::atomic::Ordering::SeqCst) {
                            text = format!("{text}.{vekey}");
                        }
                        cursors.insert(text.clone(), w.scope);
                        text
                    }
                    None => String::new(),
                };
                (orders, cursor)
            }
        };
        let data = orders.into_iter().map(|o| world.row(o)).collect();
        serde_json::to_vec(&Answer {
            error: codes::OK,
            msg: codes::OK_MSG,
            cursor: &cursor,
            data,
            request_id: request_id(self.seed, n),
        })
        .unwrap_or_default()
    }

    fn violation(&self, n: u64, what: &str, params: &Params) {
        let line = format!("request {n}: {what} [{}]", params.echo(&["vekey"]));
        self.ledger.violation(line);
    }
}

/// A 7-character request id, stable for a given seed and request number.
fn request_id(seed: u64, n: u64) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    // splitmix64
    let mut x = seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (0..7)
        .map(|i| char::from(ALPHABET[((x >> (i * 8)) % 62) as usize]))
        .collect()
}
