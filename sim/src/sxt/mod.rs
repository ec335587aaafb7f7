//! Simulator of 随心推 (DOU+ ad orders), `GET /get_sxt_order_list?user_id=…&dy_uid=…&select_status=N`
//! (document: `shared/seeds/000_*.txt`).
//!
//! There is no paging and no time window: every call answers the account's whole order list as it
//! is now, HTTP 200 `{"code":0,"data":[row,…],"msg":"ok"}`, rows shaped exactly like the
//! document's (`ad_indicators` as four `{count, name}` pairs whose counts are decimal *strings*, money
//! in yuan such as `"38.9"`; `ad_info` with the 19-digit `order_id`/`object_id` as strings,
//! `create_time` as Beijing `YYYY-MM-DD HH:MM:SS` and `create_time_int` as unix seconds), newest
//! order first. As in the document's sample, one response may list the same `order_id` several
//! times: about 15% of the orders past state 1 (reshuffled whenever the world changes) come with
//! one or two extra rows right before or after their real row, showing an earlier state of the
//! same order with figures no larger than its real ones — or, now and then, an identical copy of
//! the real row. The truth is always the row with the highest state code (1 < 3 < 5 < 6 < 7 < 8 <
//! 9 < 10 is also the lifecycle order). [`SxtSim::add_stale_copy`] forces such rows for one order.
//! Rows in states 1, 3 and 5 have no `buttons` and no `continue_delivery_url`, like the document's
//! 审核中 row; the signed `item_cover` link is fixed per order.
//!
//! `select_status` picks orders by their current state ([`selected_states`]); an order picked comes
//! with all its rows, so a filtered answer also collapses to the truth. The document lists no error
//! codes; the simulator's are in [`codes`]. A request that breaks a rule is refused that way and
//! recorded as one line in [`SxtSim::violations`] (never containing `user_id` or `dy_uid`);
//! fault-injected answers ([`crate::Faults`]) and forced codes ([`SxtSim::set_forced_code`]) are
//! not violations. Identical requests against an unchanged world get byte-identical answers. Every
//! request that reaches the server is counted.

mod money;
mod query;
mod world;

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
use world::{Row, World};

pub use crate::Mutation;

/// The path the API serves.
pub const PATH: &str = "/get_sxt_order_list";

/// Body codes. The document shows only success; the rest are the simulator's documented choice.
/// Every answer is a JSON object `{"code":…,"data":…,"msg":…}`; `data` is `null` unless `code` is 0.
///
/// | code | meaning | sent as | retry? |
/// |---|---|---|---|
/// | [`OK`](codes::OK) 0 | success | HTTP 200 | — |
/// | [`UNAUTHORIZED`](codes::UNAUTHORIZED) 401 | `user_id` or `dy_uid` missing or not the account's | HTTP 200 | no, fatal |
/// | [`BAD_PARAMETER`](codes::BAD_PARAMETER) 400 | `select_status` missing or not 1..=6 | HTTP 200 | no, fatal |
/// | [`RATE_LIMITED`](codes::RATE_LIMITED) 429 | rate limited | HTTP 200 (body fault), or HTTP 429 with `Retry-After` | yes, back off |
/// | [`WRONG_METHOD`](codes::WRONG_METHOD) 405 | not GET | HTTP 405 | no |
///
/// [`SxtSim::set_forced_code`] answers any other code the test chooses, HTTP 200.
pub mod codes {
    /// Success.
    pub const OK: i64 = 0;
    pub const OK_MSG: &str = "ok";
    /// `user_id` or `dy_uid` missing or not the account's: fatal.
    pub const UNAUTHORIZED: i64 = 401;
    pub const UNAUTHORIZED_MSG: &str = "用户未授权";
    /// `select_status` missing or not one of 1..=6: fatal for that request.
    pub const BAD_PARAMETER: i64 = 400;
    pub const BAD_PARAMETER_MSG: &str = "参数错误:select_status";
    /// Rate limited: back off and retry.
    pub const RATE_LIMITED: i64 = 429;
    pub const RATE_LIMITED_MSG: &str = "请求过于频繁";
    /// The method is not GET (sent with HTTP 405).
    pub const WRONG_METHOD: i64 = 405;
    pub const WRONG_METHOD_MSG: &str = "请求方式不对";
}

/// Every order state the document lists, with its `state_desc`, in lifecycle (= numeric) order.
pub const STATES: [(i64, &str); 8] = [
    (1, "未支付"),
    (3, "创建中"),
    (5, "审核中"),
    (6, "审核不通过"),
    (7, "投放中"),
    (8, "投放终止"),
    (9, "投放完成"),
    (10, "投放结束"),
];

/// The `state_desc` of a documented state code.
pub fn state_desc(state: i64) -> Option<&'static str> {
    STATES.iter().find(|(s, _)| *s == state).map(|(_, d)| *d)
}

/// The states whose orders `select_status` lists: 1 all, 2 unpaid (1), 3 delivering (7), 4 ended
/// (8, 9, 10), 5 rejected (6), 6 reviewing (5); `None` for any other value.
pub fn selected_states(select_status: i64) -> Option<&'static [i64]> {
    const ALL: [i64; 8] = [1, 3, 5, 6, 7, 8, 9, 10];
    match select_status {
        1 => Some(&ALL),
        2 => Some(&[1]),
        3 => Some(&[7]),
        4 => Some(&[8, 9, 10]),
        5 => Some(&[6]),
        6 => Some(&[5]),
        _ => None,
    }
}

/// How to build a simulated 随心推 account. Its `Debug` hides `user_id` and `dy_uid`.
#[derive(Clone)]
pub struct SxtSimConfig {
    pub seed: u64,
    pub user_id: String,
    pub dy_uid: String,
    /// How many orders the world starts with. With two or more, the first two are always the
    /// document's amounts: one costing `"38.9"` (state 8) and one `"0.29"` (state 10).
    pub orders: usize,
    /// Creation times spread over `[now − days, now − 10 min]`.
    pub days: i64,
    /// The Beijing "now" the world is generated against (truncated to whole seconds).
    pub now: NaiveDateTime,
    pub faults: Faults,
}

impl std::fmt::Debug for SxtSimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SxtSimConfig")
            .field("seed", &self.seed)
            .field("user_id", &"***")
            .field("dy_uid", &"***")
            .field("orders", &self.orders)
            .field("days", &self.days)
            .field("now", &self.now)
            .field("faults", &self.faults)
            .finish()
    }
}

impl Default for SxtSimConfig {
    fn default() -> Self {
        SxtSimConfig {
            seed: 1,
            user_id: "sim-user-id".to_string(),
            dy_uid: "sim-dy-uid".to_string(),
            orders: 300,
            days: 60,
            now: crate::beijing_now(),
            faults: Faults::default(),
        }
    }
}

/// One ad order of the ground truth, in its most advanced state; the JSON rows are rendered from
/// it. Money is whole fen; the `*_text` fields are the exact yuan strings sent.
#[derive(Clone, Debug, PartialEq)]
pub struct SxtOrder {
    /// 19 digits (a Douyin snowflake, above 2^53), unique, never reused. Sent as a string.
    pub order_id: String,
    /// The promoted video, 19 digits, sent as a string; a handful per account.
    pub object_id: String,
    /// 1, 3, 5, 6, 7, 8, 9 or 10.
    pub state: i64,
    pub state_desc: String,
    /// Beijing; sent as `create_time` text and as `create_time_int` unix seconds.
    pub create_time: NaiveDateTime,
    /// `消耗(元)` in fen; 0 before delivery (states 1, 3, 5, 6).
    pub cost_fen: i64,
    /// `播放次数`.
    pub plays: i64,
    /// `支付ROI` exactly as sent: GMV ÷ cost, two decimals rounded half up, trailing zeros trimmed
    /// (`"0"` when either is 0).
    pub roi: String,
    /// `成交订单金额(元)` in fen.
    pub gmv_fen: i64,
    /// `消耗(元)` exactly as sent: yuan, at most two decimals, no trailing zeros (`"38.9"`, `"0.29"`, `"100"`, `"0"`).
    pub cost_text: String,
    /// `成交订单金额(元)` exactly as sent, like `cost_text`.
    pub gmv_text: String,
}

/// A running 随心推 simulator; stops when dropped.
pub struct SxtSim {
    shared: Arc<Shared>,
    server: Server,
}

struct Shared {
    world: Mutex<World>,
    credentials: Mutex<Credentials>,
    forced: Mutex<Option<(i64, String)>>,
    ledger: Ledger,
}

struct Credentials {
    user_id: String,
    dy_uid: String,
}

/// The parameters a violation line leaves out: they identify the account.
const SECRETS: &[&str] = &["user_id", "dy_uid"];

impl Simulator for SxtSim {
    fn ledger(&self) -> &Ledger {
        &self.shared.ledger
    }
}

impl SxtSim {
    /// Generates the world, binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start(cfg: SxtSimConfig) -> std::io::Result<SxtSim> {
        SxtSim::start_at(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// As [`SxtSim::start`], on the given address (for the command-line simulator).
    pub async fn start_at(cfg: SxtSimConfig, addr: SocketAddr) -> std::io::Result<SxtSim> {
        let shared = Arc::new(Shared {
            world: Mutex::new(World::generate(&cfg)),
            credentials: Mutex::new(Credentials {
                user_id: cfg.user_id.clone(),
                dy_uid: cfg.dy_uid.clone(),
            }),
            forced: Mutex::new(None),
            ledger: Ledger::new(cfg.faults.clone()),
        });
        let router = Router::new()
            .route(PATH, any(handle))
            .fallback(unknown_path)
            .with_state(shared.clone());
        let server = http::serve(router, addr).await?;
        Ok(SxtSim { shared, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// `http://127.0.0.1:PORT/get_sxt_order_list`.
    pub fn endpoint(&self) -> String {
        format!("http://{}{PATH}", self.server.addr)
    }

    /// Every order now in the world (vanished ones excluded), one per `order_id` in its most
    /// advanced state, sorted by `order_id`.
    pub fn truth(&self) -> Vec<SxtOrder> {
        lock(&self.shared.world).truth()
    }

    /// Changes the `user_id` and `dy_uid` the simulator accepts (a revoked or moved account).
    pub fn set_credentials(&self, user_id: &str, dy_uid: &str) {
        *lock(&self.shared.credentials) = Credentials {
            user_id: user_id.to_string(),
            dy_uid: dy_uid.to_string(),
        };
    }

    /// Until called with `None`, answers every GET to [`PATH`] with HTTP 200
    /// `{"code":c,"data":null,"msg":m}`, before credentials, parameters and faults are looked at
    /// (no fault is drawn for it, and it is not a violation). A method other than GET is still 405.
    pub fn set_forced_code(&self, code: Option<(i64, String)>) {
        *lock(&self.shared.forced) = code;
    }

    /// Moves up to `n` orders one step along their lifecycle — 1→3, 3→5, 5→7 (four in five) or
    /// 5→6, 7→9 (seven in ten, with a last bit of spend) or 7→8, 8→10, 9→10 — and every other
    /// delivering (7) order spends a little more (cost, plays, sometimes GMV), reported with
    /// `from == to == "7"`. `from`/`to` are state codes as decimal text. Only orders last changed
    /// before `at` are eligible (generated orders count as changed at creation), and each changes
    /// at most once per call; `n == 0` changes nothing. Deterministic given the seed and the
    /// sequence of calls. Which orders carry duplicate rows is reshuffled.
    pub fn mutate(&self, n: usize, at: NaiveDateTime) -> Vec<Mutation> {
        lock(&self.shared.world).mutate(n, at)
    }

    /// Adds `n` new orders created 0–5 s before `at`, unpaid (1), creating (3) or reviewing (5),
    /// with zero figures. Returns their ids.
    pub fn add_orders(&self, n: usize, at: NaiveDateTime) -> Vec<String> {
        lock(&self.shared.world).add_orders(n, at)
    }

    /// Removes `n` orders (fewer if there are not that many) from every later snapshot *and* from
    /// [`SxtSim::truth`], as the real list forgets old orders; returns their ids. The two orders
    /// with the document's amounts (`"38.9"` and `"0.29"`) are never chosen.
    pub fn vanish(&self, n: usize) -> Vec<String> {
        lock(&self.shared.world).vanish(n)
    }

    /// From now on, every snapshot that lists `order_id` also carries a copy of it in `state`,
    /// right before its real row (`first`) or right after it (several copies keep the order they
    /// were added in). The copy shows the figures the order had in that state (zero before 7, an
    /// earlier, smaller moment for 7, the final ones for 8/9 of an order now 10; an identical row
    /// for its current state). An order with forced copies carries no random ones, so its rows are
    /// exactly what the test asked for; no other order's rows change.
    ///
    /// Refused, returning `false` and changing nothing, when `order_id` is not an order now in the
    /// world, `state` is not a documented code, or `state` is *above* the order's current state
    /// (the truth is the highest state, so such a copy would become the truth rather than a stale
    /// row). Copies stay as the order advances.
    pub fn add_stale_copy(&self, order_id: &str, state: i64, first: bool) -> bool {
        lock(&self.shared.world).add_stale_copy(order_id, state, first)
    }
}

/// A success, in the document's (alphabetical) key order.
#[derive(Serialize)]
struct Answer<'a> {
    code: i64,
    data: Vec<Row<'a>>,
    msg: &'a str,
}

/// Any other answer: `data` is `null`.
#[derive(Serialize)]
struct ErrorAnswer<'a> {
    code: i64,
    data: (),
    msg: &'a str,
}

fn error_body(code: i64, msg: &str) -> Vec<u8> {
    serde_json::to_vec(&ErrorAnswer {
        code,
        data: (),
        msg,
    })
    .unwrap_or_default()
}

/// Where an answer keeps its rows, for poisoned rows ([`crate::poison`]).
const ROWS_AT: RowsAt = RowsAt {
    rows: "/data",
    id: "/ad_info/order_id",
    amount: "/ad_indicators/0/count",
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
        return http::json_with_status(
            StatusCode::METHOD_NOT_ALLOWED,
            error_body(codes::WRONG_METHOD, codes::WRONG_METHOD_MSG),
        );
    }
    if let Some((code, msg)) = lock(&shared.forced).clone() {
        return http::json(error_body(code, &msg));
    }
    let fault = shared.ledger.injector.decide();
    if let Some(fault) = fault {
        let limited = error_body(codes::RATE_LIMITED, codes::RATE_LIMITED_MSG);
        let bodies = SourceBodies {
            rate_limit: &limited,
            transient: None,
            too_many_requests: Some(&limited),
        };
        if let Some(resp) = faults::canned(fault, &bodies) {
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
    /// The real JSON answer (always HTTP 200) to request number `n`.
    fn answer(&self, n: u64, params: &Params) -> Vec<u8> {
        let parsed = {
            let c = lock(&self.credentials);
            query::parse(params, &c.user_id, &c.dy_uid)
        };
        let states = match parsed {
            Ok(states) => states,
            Err(refusal) => {
                self.violation(n, refusal.code, &refusal.reason, params);
                return error_body(refusal.code, refusal.msg);
            }
        };
        let world = lock(&self.world);
        serde_json::to_vec(&Answer {
            code: codes::OK,
            data: world.snapshot(states),
            msg: codes::OK_MSG,
        })
        .unwrap_or_default()
    }

    fn violation(&self, n: u64, code: i64, what: &str, params: &Params) {
        let line = format!("request {n}: {code} {what} [{}]", params.echo(SECRETS));
        self.ledger.violation(line);
    }
}
