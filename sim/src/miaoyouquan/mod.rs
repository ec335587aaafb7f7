//! Simulator of 喵有券 Douyin distribution order search, `GET /miaoyouquan/orders` (document:
//! `shared/seeds/001_*.txt`).
//!
//! It answers from a deterministic [`World`](world::World) of affiliate orders as the document shows:
//! HTTP 200, `{"code":200,"msg":"success","data":{"cursor":…,"orders":[rows]}}`, amounts and most ids
//! as JSON numbers (`shop_id` sometimes above 2^53, sent exactly), `order_id` and `product_id` as
//! strings, times as `YYYY-MM-DD HH:MM:SS` or `null`. It enforces the documented rules (see `query`)
//! and refuses a request that breaks one with one of [`codes`], recording one line in
//! [`MiaoyouquanSim::violations`]; fault-injected answers ([`crate::Faults`], plus the body-level
//! transient `-1` set with [`MiaoyouquanSim::set_body_transient`]) are not violations. Paging is
//! keyset-based ([`crate::keyset`]): a full page whose orders are the last gets `cursor: ""`, so a
//! cursor stays valid and loses nothing while orders change between pages. The 90-day horizon on
//! `start_time` is measured from the real Beijing now of each request ([`crate::beijing_now`]), not
//! from the configured `now` the world was generated against. Every request that reaches the server
//! is counted.

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
use crate::keyset;
use crate::ledger::{lock, Ledger, Simulator};
use crate::poison::RowsAt;
use crate::Mutation;
use query::{Refusal, Request, Scope};
use world::{Row, World};

/// The path the API serves (the simulator's choice; the document names none).
pub const PATH: &str = "/miaoyouquan/orders";

/// The document's status codes. Each arrives as the body `code` of a JSON `{"code":…,"msg":…}`;
/// some also as the HTTP status itself, with the same JSON body:
///
/// | code | meaning | body (HTTP 200) | HTTP status |
/// |---|---|---|---|
/// | [`OK`] 200 | success | every real answer | — |
/// | [`FETCH_FAILED`] −1 | transient failure | the *body transient* fault | never |
/// | [`NOT_WHITELISTED`] 401 | unrecognised caller | wrong `dou_key` | wrong `apkey` |
/// | [`RATE_LIMITED`] 429 | rate limited | the body rate-limit fault | the HTTP 429 fault (with `Retry-After`) |
/// | [`MISSING_PARAMETER`] 403 | parameter missing or invalid | every parameter refusal | never |
/// | [`WRONG_METHOD`] 405 | not GET | `POST` | any other method |
///
/// The simulator's choices: the API reports an unrecognised caller (unknown `apkey` — the account
/// whose IP whitelist applies — or a `dou_key` not authorised on it) as 401 "IP没有添加白名单"; a
/// *missing* key is 403. A parameter that is present but breaks a rule (size, time format, end
/// before start, window over 90 days, start older than 90 days, cursor, time_type,
/// distribution_type, query_order_type, order_ids) is also 403, with `msg`
/// `参数错误:<what>` naming the parameter; a missing one has `msg` `关键参数丢失:<name>`.
pub mod codes {
    /// Success.
    pub const OK: i64 = 200;
    pub const OK_MSG: &str = "success";
    /// Data could not be fetched: transient, retry.
    pub const FETCH_FAILED: i64 = -1;
    pub const FETCH_FAILED_MSG: &str = "数据获取失败";
    /// Caller not recognised (wrong `apkey` or `dou_key`): fatal.
    pub const NOT_WHITELISTED: i64 = 401;
    pub const NOT_WHITELISTED_MSG: &str = "IP没有添加白名单";
    /// Rate limited: back off and retry.
    pub const RATE_LIMITED: i64 = 429;
    pub const RATE_LIMITED_MSG: &str = "访问次数超限";
    /// A required parameter is missing, or a parameter breaks a rule: fatal for that request.
    pub const MISSING_PARAMETER: i64 = 403;
    pub const MISSING_PARAMETER_MSG: &str = "关键参数丢失";
    /// How the `msg` of a 403 for a present-but-invalid parameter begins.
    pub const BAD_PARAMETER_MSG_PREFIX: &str = "参数错误:";
    /// The method is not GET.
    pub const WRONG_METHOD: i64 = 405;
    pub const WRONG_METHOD_MSG: &str = "请求方式不对";
}

/// How to build a simulated miaoyouquan. Its `Debug` hides the keys.
#[derive(Clone)]
pub struct MiaoyouquanSimConfig {
    pub seed: u64,
    pub apkey: String,
    pub dou_key: String,
    /// How many orders the world starts with.
    pub orders: usize,
    /// Payment times spread over `[now − days, now − 1 h]`. Orders paid before the 90-day horizon
    /// are in [`MiaoyouquanSim::truth`] but no query by payment time can reach them.
    pub days: i64,
    /// The Beijing "now" the world is generated against (truncated to whole seconds).
    pub now: NaiveDateTime,
    pub faults: Faults,
}

impl std::fmt::Debug for MiaoyouquanSimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiaoyouquanSimConfig")
            .field("seed", &self.seed)
            .field("apkey", &"***")
            .field("dou_key", &"***")
            .field("orders", &self.orders)
            .field("days", &self.days)
            .field("now", &self.now)
            .field("faults", &self.faults)
            .finish()
    }
}

impl Default for MiaoyouquanSimConfig {
    fn default() -> Self {
        MiaoyouquanSimConfig {
            seed: 1,
            apkey: "sim-apkey".to_string(),
            dou_key: "sim-dou-key".to_string(),
            orders: 1000,
            days: 80,
            now: crate::beijing_now(),
            faults: Faults::default(),
        }
    }
}

/// One order of the ground truth, typed; the JSON rows are rendered from it. Times are Beijing.
#[derive(Clone, Debug, PartialEq)]
pub struct MyqOrder {
    /// 19 digits, above 2^53 (a float would lose it); unique. Sent as a string.
    pub order_id: String,
    /// 19 digits, sent as a string.
    pub product_id: String,
    pub product_name: String,
    /// Exact decimal text of the JSON number sent; about a third of the shops are above 2^53.
    pub shop_id: String,
    pub shop_name: String,
    pub item_num: i64,
    /// Fen.
    pub total_pay_amount: i64,
    /// Fen; equal to or slightly above `total_pay_amount`.
    pub pay_goods_amount: i64,
    /// Fen, whole, at least 1.
    pub ads_estimated_commission: i64,
    /// Fen; 0 until SETTLE.
    pub ads_real_commission: i64,
    /// `PAY_SUCC`, `REFUND`, `SETTLE` or `CONFIRM`.
    pub flow_point: String,
    pub pay_success_time: NaiveDateTime,
    pub update_time: NaiveDateTime,
    pub refund_time: Option<NaiveDateTime>,
    pub settle_time: Option<NaiveDateTime>,
    pub confirm_time: Option<NaiveDateTime>,
    /// `Live`, `ProductDetail` or `ActivityMaterial`.
    pub distribution_type: String,
    /// One of a handful of the account's PIDs (`pid_info.pid`).
    pub pid: String,
}

/// A running miaoyouquan simulator; stops when dropped.
pub struct MiaoyouquanSim {
    shared: Arc<Shared>,
    server: Server,
}

struct Shared {
    world: Mutex<World>,
    keys: Mutex<Keys>,
    /// Every cursor handed out, with the query it continues.
    cursors: Mutex<HashMap<String, Scope>>,
    ledger: Ledger,
}

struct Keys {
    apkey: String,
    dou_key: String,
}

/// The parameters a violation line leaves out.
const SECRETS: &[&str] = &["apkey", "dou_key"];

impl Simulator for MiaoyouquanSim {
    fn ledger(&self) -> &Ledger {
        &self.shared.ledger
    }
}

impl MiaoyouquanSim {
    /// Generates the world, binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start(cfg: MiaoyouquanSimConfig) -> std::io::Result<MiaoyouquanSim> {
        MiaoyouquanSim::start_at(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// As [`MiaoyouquanSim::start`], on the given address (for the command-line simulator).
    pub async fn start_at(
        cfg: MiaoyouquanSimConfig,
        addr: SocketAddr,
    ) -> std::io::Result<MiaoyouquanSim> {
        let shared = Arc::new(Shared {
            world: Mutex::new(World::generate(&cfg)),
            keys: Mutex::new(Keys {
                apkey: cfg.apkey.clone(),
                dou_key: cfg.dou_key.clone(),
            }),
            cursors: Mutex::new(HashMap::new()),
            ledger: Ledger::new(cfg.faults.clone()),
        });
        let router = Router::new()
            .route(PATH, any(handle))
            .fallback(unknown_path)
            .with_state(shared.clone());
        let server = http::serve(router, addr).await?;
        Ok(MiaoyouquanSim { shared, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// `http://127.0.0.1:PORT/miaoyouquan/orders`.
    pub fn endpoint(&self) -> String {
        format!("http://{}{PATH}", self.server.addr)
    }

    /// Every order as it is now, sorted by `order_id` (those older than the 90-day horizon too).
    pub fn truth(&self) -> Vec<MyqOrder> {
        lock(&self.shared.world).truth()
    }

    /// The orders paid at or after `t`, as they are now, sorted by `order_id`: what a sync by
    /// payment time from `t` can see.
    pub fn truth_since(&self, t: NaiveDateTime) -> Vec<MyqOrder> {
        let mut all = self.truth();
        all.retain(|o| o.pay_success_time >= t);
        all
    }

    /// How often to answer HTTP 200 `{"code":-1,"msg":"数据获取失败"}` (the *body transient* fault,
    /// drawn after the body rate limit and before truncation; 0 at start).
    pub fn set_body_transient(&self, p: f64) {
        self.shared.ledger.injector.set_body_transient(p);
    }

    /// Changes the keys the simulator accepts (to simulate a revoked or rotated key).
    pub fn set_keys(&self, apkey: &str, dou_key: &str) {
        *lock(&self.shared.keys) = Keys {
            apkey: apkey.to_string(),
            dou_key: dou_key.to_string(),
        };
    }

    /// Moves up to `n` orders one step along PAY_SUCC→CONFIRM→SETTLE (or PAY_SUCC→REFUND, one in
    /// five), setting the matching `*_time` and `update_time` to `at` (truncated to whole seconds).
    /// Only orders whose `update_time` is before `at` are eligible; no order moves twice in one call.
    /// SETTLE gives `ads_real_commission` a value. Also revises `ads_estimated_commission` of
    /// ⌈n/8⌉ other eligible orders without a status change (bumping `update_time` too); those are
    /// reported with `from == to`. Deterministic given the seed and the sequence of calls.
    pub fn mutate(&self, n: usize, at: NaiveDateTime) -> Vec<Mutation> {
        lock(&self.shared.world).mutate(n, at)
    }

    /// Adds `n` new PAY_SUCC orders paid 0–5 s before `at` and updated at most at `at`. Returns their ids.
    pub fn add_orders(&self, n: usize, at: NaiveDateTime) -> Vec<String> {
        lock(&self.shared.world).add_orders(n, at)
    }
}

#[derive(Serialize)]
struct Answer<'a> {
    code: i64,
    msg: &'a str,
    data: Data<'a>,
}

#[derive(Serialize)]
struct Data<'a> {
    cursor: &'a str,
    orders: Vec<Row<'a>>,
}

#[derive(Serialize)]
struct ErrorAnswer<'a> {
    code: i64,
    msg: &'a str,
}

fn error_body(code: i64, msg: &str) -> Vec<u8> {
    serde_json::to_vec(&ErrorAnswer { code, msg }).unwrap_or_default()
}

/// Where an answer keeps its rows, for poisoned rows ([`crate::poison`]).
const ROWS_AT: RowsAt = RowsAt {
    rows: "/data/orders",
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
    if method != Method::GET {
        shared.violation(
            n,
            codes::WRONG_METHOD,
            &format!("method {method} not allowed (GET only)"),
            &params,
        );
        let body = error_body(codes::WRONG_METHOD, codes::WRONG_METHOD_MSG);
        // The application refuses a POST in its body; anything else is refused by the server.
        return if method == Method::POST {
            http::json(body)
        } else {
            http::json_with_status(StatusCode::METHOD_NOT_ALLOWED, body)
        };
    }
    let fault = shared.ledger.injector.decide();
    if let Some(fault) = fault {
        let limited = error_body(codes::RATE_LIMITED, codes::RATE_LIMITED_MSG);
        let failed = error_body(codes::FETCH_FAILED, codes::FETCH_FAILED_MSG);
        let bodies = SourceBodies {
            rate_limit: &limited,
            transient: Some(&failed),
            too_many_requests: Some(&limited),
        };
        if let Some(resp) = faults::canned(fault, &bodies) {
            return resp;
        }
    }
    if let Some(Fault::Slow { ms }) = fault {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let (status, answer) = shared.answer(n, &params);
    let answer = shared.ledger.poison.apply(answer, ROWS_AT);
    if fault == Some(Fault::Truncated) {
        faults::truncated(answer)
    } else {
        http::json_with_status(status, answer)
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
        404,
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
    /// The real answer to request number `n`: its HTTP status and JSON body.
    fn answer(&self, n: u64, params: &Params) -> (StatusCode, Vec<u8>) {
        let now = crate::beijing_now();
        let (apkey, dou_key) = {
            let keys = lock(&self.keys);
            (keys.apkey.clone(), keys.dou_key.clone())
        };
        let world = lock(&self.world);
        let mut cursors = lock(&self.cursors);
        let request = match query::parse(params, &apkey, &dou_key, &cursors, now) {
            Ok(request) => request,
            Err(Refusal {
                status,
                code,
                msg,
                reason,
            }) => {
                self.violation(n, code, &reason, params);
                return (status, error_body(code, &msg));
            }
        };
        let (entries, cursor) = match &request {
            Request::ByIds(ids) => (world.by_ids(ids), String::new()),
            Request::Window(w) => {
                let (entries, next) = world.page(w);
                let cursor = match next {
                    Some(key) => {
                        let text = keyset::encode(w.scope.time_type, key);
                        cursors.insert(text.clone(), w.scope.clone());
                        text
                    }
                    None => String::new(),
                };
                (entries, cursor)
            }
        };
        let body = serde_json::to_vec(&Answer {
            code: codes::OK,
            msg: codes::OK_MSG,
            data: Data {
                cursor: &cursor,
                orders: entries.into_iter().map(|e| e.row()).collect(),
            },
        })
        .unwrap_or_default();
        (StatusCode::OK, body)
    }

    fn violation(&self, n: u64, code: i64, what: &str, params: &Params) {
        let line = format!("request {n}: {code} {what} [{}]", params.echo(SECRETS));
        self.ledger.violation(line);
    }
}
