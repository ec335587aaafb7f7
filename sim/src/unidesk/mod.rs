//! Simulator of Alimama UniDesk `alibaba.taobao.ud.smart.order.detail.pull` (UD效果外投订单明细拉取)
//! over the Taobao TOP gateway, `GET|POST /router/rest` (document: `shared/seeds/002_*.txt`).
//!
//! It answers from a deterministic [`World`](world::World) of SKU sub-orders (lines) under main
//! orders: HTTP 200, `{"alibaba_taobao_ud_smart_order_detail_pull_response":{"result":
//! {"order_detail_cursor_top_d_t_o":[rows]},"cursor_id":…,"success":true,"request_id":…}}`, one row
//! per line, `order_id`/`sub_order_id` as exact 19-digit JSON numbers above 2^53, money in fen as
//! numbers, times as `YYYY-MM-DD HH:MM:SS` (`""` where the document calls them meaningless: the pay
//! time of a status-1 line, the refund time of a line not in status 3). A window selects the lines
//! whose modified time — the latest of their create, pay and refund times, not sent — lies in
//! `[start_time, end_time]` to the millisecond, in (modified time, order id, sub-order id) order, in
//! pages of a fixed [`PAGE_SIZE`] (the API has no size parameter). `cursor_id` is a keyset cursor,
//! stable while lines change between pages, and `""` on the last page. The lines of a main order
//! mostly share their modified time and so sit together, where a page boundary regularly cuts
//! through them ([`UnideskSim::split_orders`]).
//!
//! It enforces TOP's system parameters and md5 signature and the document's window rules (see
//! `query`), refusing a request that breaks one with one of [`codes`] as
//! `{"error_response":{"code":…,"msg":…,"sub_code":…,"sub_msg":…,"request_id":…}}` (HTTP 200) and
//! recording one line in [`UnideskSim::violations`]; fault-injected answers ([`crate::Faults`], plus
//! the `isp` transient error set with [`UnideskSim::set_isp_error`]) are not violations. The
//! timestamp tolerance is measured from the real Beijing now of each request ([`crate::beijing_now`]),
//! not from the configured `now` the world was generated against. Every request that reaches the
//! server is counted.

mod query;
mod world;

use std::collections::{BTreeSet, HashMap};
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
use crate::Mutation;
use codes::TopError;
use query::{Credentials, Refusal, Scope};
use world::{Row, World};

/// The TOP gateway's path.
pub const PATH: &str = "/router/rest";
/// The only `method` this simulator serves.
pub const METHOD: &str = "alibaba.taobao.ud.smart.order.detail.pull";
/// Rows per page, fixed: the API has no page-size parameter.
pub const PAGE_SIZE: usize = 100;
/// The key of a successful answer's object.
pub const RESPONSE_KEY: &str = "alibaba_taobao_ud_smart_order_detail_pull_response";

/// The TOP errors the simulator sends, each as HTTP 200
/// `{"error_response":{"code":…,"msg":…,"sub_code":…,"sub_msg":…,"request_id":…}}`.
///
/// | code | msg | sub_code | when | |
/// |---|---|---|---|---|
/// | 7 | App Call Limited | `accesscontrol.limited-by-app-access-count` | body rate-limit fault; also the body of the HTTP 429 fault | retry later |
/// | 15 | Remote service error | `isp.remote-service-error` | the `isp` fault ([`super::UnideskSim::set_isp_error`]) | retry |
/// | 21 | Missing method | `isv.missing-method` | no `method` | fatal |
/// | 22 | Invalid method | `isv.invalid-method` | `method` is not [`super::METHOD`] | fatal |
/// | 23 | Invalid format | `isv.invalid-format` | `format` missing or not `json` | fatal |
/// | 24 | Missing signature | `isv.missing-signature` | no `sign` | fatal |
/// | 25 | Invalid signature | `isv.invalid-signature` | `sign` is not the md5 signature | fatal |
/// | 26 | Missing session | `isv.missing-session` | no `session` while one is configured | fatal |
/// | 27 | Invalid session | `invalid-sessionkey` | `session` is not the configured one | fatal |
/// | 28 | Missing app key | `isv.missing-app-key` | no `app_key` | fatal |
/// | 29 | Invalid app Key | `isv.appkey-not-exists` | `app_key` unknown | fatal |
/// | 30 | Missing timestamp | `isv.missing-timestamp` | no `timestamp` | fatal |
/// | 32 | Missing version | `isv.missing-version` | no `v` | fatal |
/// | 34 | Unsupported version | `isv.unsupported-version` | `v` is not `2.0` | fatal |
/// | 41 | Invalid arguments | `isv.invalid-parameter` | the dto (missing, not a JSON object, bad or missing times, end before start, window crossing a Beijing midnight, bad `prod_type`, unknown or foreign `cursor_id`) or `sign_method` not `md5`; `sub_msg` is `非法参数:<parameter>:<what>` | fatal |
/// | 43 | Invalid timestamp | `isv.invalid-timestamp` | `timestamp` not `yyyy-MM-dd HH:mm:ss`, or more than 10 minutes from now ([`UnideskSim::set_timestamp_tolerance`] narrows it) | fatal |
///
/// The codes and messages are TOP's; the sub-codes other than 7's, 15's, 27's, 29's and 41's are the
/// simulator's choice in TOP's style (the document lists none). Only 7 (and any `*limited*`
/// sub-code) means rate limiting and only `isp.*` means a transient failure.
pub mod codes {
    /// One TOP error as the simulator sends it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct TopError {
        pub code: i64,
        pub msg: &'static str,
        pub sub_code: &'static str,
    }

    const fn top(code: i64, msg: &'static str, sub_code: &'static str) -> TopError {
        TopError {
            code,
            msg,
            sub_code,
        }
    }

    /// The app's call quota is used up for now: back off and retry.
    pub const APP_CALL_LIMITED: TopError = top(
        7,
        "App Call Limited",
        "accesscontrol.limited-by-app-access-count",
    );
    pub const APP_CALL_LIMITED_SUB_MSG: &str = "This ban will last for 1 more seconds";
    /// The platform failed behind the gateway: transient, retry.
    pub const REMOTE_SERVICE_ERROR: TopError =
        top(15, "Remote service error", "isp.remote-service-error");
    pub const REMOTE_SERVICE_ERROR_SUB_MSG: &str = "服务暂时不可用,请稍后重试";
    /// No `method`.
    pub const MISSING_METHOD: TopError = top(21, "Missing method", "isv.missing-method");
    /// `method` is not `alibaba.taobao.ud.smart.order.detail.pull`.
    pub const INVALID_METHOD: TopError = top(22, "Invalid method", "isv.invalid-method");
    /// `format` missing or not `json`.
    pub const INVALID_FORMAT: TopError = top(23, "Invalid format", "isv.invalid-format");
    /// No `sign`.
    pub const MISSING_SIGNATURE: TopError = top(24, "Missing signature", "isv.missing-signature");
    /// `sign` is not md5(secret + sorted name+value pairs + secret) in uppercase hex.
    pub const INVALID_SIGNATURE: TopError = top(25, "Invalid signature", "isv.invalid-signature");
    /// No `session`, while the simulator is configured with one.
    pub const MISSING_SESSION: TopError = top(26, "Missing session", "isv.missing-session");
    /// `session` is not the configured one.
    pub const INVALID_SESSION: TopError = top(27, "Invalid session", "invalid-sessionkey");
    /// No `app_key`.
    pub const MISSING_APP_KEY: TopError = top(28, "Missing app key", "isv.missing-app-key");
    /// `app_key` is not the configured one.
    pub const INVALID_APP_KEY: TopError = top(29, "Invalid app Key", "isv.appkey-not-exists");
    /// No `timestamp`.
    pub const MISSING_TIMESTAMP: TopError = top(30, "Missing timestamp", "isv.missing-timestamp");
    /// No `v`.
    pub const MISSING_VERSION: TopError = top(32, "Missing version", "isv.missing-version");
    /// `v` is not `2.0`.
    pub const UNSUPPORTED_VERSION: TopError =
        top(34, "Unsupported version", "isv.unsupported-version");
    /// The business parameter (or `sign_method`) breaks a rule; `sub_msg` names the parameter.
    pub const INVALID_ARGUMENTS: TopError = top(41, "Invalid arguments", "isv.invalid-parameter");
    /// How the `sub_msg` of a 41 begins; `<parameter>:<what>` follows, e.g.
    /// `非法参数:order_top_cursor_query_dto.end_time:不可与开始日期跨天`.
    pub const INVALID_PARAMETER_SUB_MSG_PREFIX: &str = "非法参数:";
    /// `timestamp` unreadable, or more than 10 minutes from the gateway's now.
    pub const INVALID_TIMESTAMP: TopError = top(43, "Invalid timestamp", "isv.invalid-timestamp");
}

/// How to build a simulated unidesk. Its `Debug` hides the app key, secret and session.
#[derive(Clone)]
pub struct UnideskSimConfig {
    pub seed: u64,
    pub app_key: String,
    pub app_secret: String,
    /// When set, every request must carry this `session`; when `None`, any (or none) is accepted.
    pub session: Option<String>,
    /// How many main orders the world starts with (each has 1–4 lines).
    pub orders: usize,
    /// Create times spread over `[now − days, now − 1 h]`.
    pub days: i64,
    /// The Beijing "now" the world is generated against (truncated to whole seconds).
    pub now: NaiveDateTime,
    pub faults: Faults,
}

impl std::fmt::Debug for UnideskSimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnideskSimConfig")
            .field("seed", &self.seed)
            .field("app_key", &"***")
            .field("app_secret", &"***")
            .field("session", &self.session.as_ref().map(|_| "***"))
            .field("orders", &self.orders)
            .field("days", &self.days)
            .field("now", &self.now)
            .field("faults", &self.faults)
            .finish()
    }
}

impl Default for UnideskSimConfig {
    fn default() -> Self {
        UnideskSimConfig {
            seed: 1,
            app_key: "sim-app-key".to_string(),
            app_secret: "sim-app-secret".to_string(),
            session: Some("sim-session".to_string()),
            orders: 500,
            days: 20,
            now: crate::beijing_now(),
            faults: Faults::default(),
        }
    }
}

/// One SKU line (sub-order) of the ground truth, typed; the JSON rows are rendered from it. Times
/// are Beijing, whole seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct UdSubOrder {
    /// The main order: exact decimal text of the JSON number sent, 19 digits, odd, above 2^53.
    pub order_id: String,
    /// The line: exact decimal text of the JSON number sent, 19 digits, odd, above 2^53; unique.
    pub sub_order_id: String,
    /// The clicked item (12 digits).
    pub item_id: String,
    pub item_name: String,
    /// The item ordered; the clicked one four times in five.
    pub pay_item_id: String,
    pub pay_item_name: String,
    /// The same for every line of a main order.
    pub seller_id: String,
    pub shop_name: String,
    /// 1 拍下 (placed), 2 支付 (paid), 3 退款 (refunded), 4 预售 (presale), 5 收货 (received).
    pub order_status: i64,
    pub order_create_time: NaiveDateTime,
    /// `None` exactly when the status is 1.
    pub order_pay_time: Option<NaiveDateTime>,
    /// `Some` exactly when the status is 3.
    pub order_refund_time: Option<NaiveDateTime>,
    /// Fen: the line's price (unit price × `buy_amount`).
    pub pay_fee: i64,
    /// Fen: what was paid — 0 while placed, the deposit (a fifth) in presale, else `pay_fee` less
    /// shipping and tax (usually all of it).
    pub actual_pay_fee: i64,
    /// Fen; non-zero only when refunded (all of `actual_pay_fee`, or a part).
    pub order_refund_fee: i64,
    pub buy_amount: i64,
    /// Fen: `pay_fee` × `commission_rate`%, rounded; 0 when refunded.
    pub commission_fee: i64,
    /// Not sent: the latest of the create, pay and refund times, what windows select on.
    pub modified_time: NaiveDateTime,
}

/// A running unidesk simulator; stops when dropped.
pub struct UnideskSim {
    shared: Arc<Shared>,
    server: Server,
}

struct Shared {
    seed: u64,
    world: Mutex<World>,
    creds: Mutex<Credentials>,
    /// Every cursor handed out, with the query it continues.
    cursors: Mutex<HashMap<String, Scope>>,
    ledger: Ledger,
    /// The window of every accepted request, in arrival order.
    log: Mutex<Vec<(NaiveDateTime, NaiveDateTime)>>,
    /// Main orders a page boundary has cut through.
    split: Mutex<BTreeSet<u64>>,
}

/// The parameters a violation line leaves out.
const SECRETS: &[&str] = &["app_key", "session", "sign"];

impl Simulator for UnideskSim {
    fn ledger(&self) -> &Ledger {
        &self.shared.ledger
    }
}

impl UnideskSim {
    /// Generates the world, binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start(cfg: UnideskSimConfig) -> std::io::Result<UnideskSim> {
        UnideskSim::start_at(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// As [`UnideskSim::start`], on the given address (for the command-line simulator).
    pub async fn start_at(cfg: UnideskSimConfig, addr: SocketAddr) -> std::io::Result<UnideskSim> {
        let shared = Arc::new(Shared {
            seed: cfg.seed,
            world: Mutex::new(World::generate(&cfg)),
            creds: Mutex::new(Credentials {
                app_key: cfg.app_key.clone(),
                app_secret: cfg.app_secret.clone(),
                session: cfg.session.clone(),
                timestamp_tolerance_secs: query::TIMESTAMP_TOLERANCE_SECS,
            }),
            cursors: Mutex::new(HashMap::new()),
            ledger: Ledger::new(cfg.faults.clone()),
            log: Mutex::new(Vec::new()),
            split: Mutex::new(BTreeSet::new()),
        });
        let router = Router::new()
            .route(PATH, any(handle))
            .fallback(unknown_path)
            .with_state(shared.clone());
        let server = http::serve(router, addr).await?;
        Ok(UnideskSim { shared, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// `http://127.0.0.1:PORT/router/rest`.
    pub fn endpoint(&self) -> String {
        format!("http://{}{PATH}", self.server.addr)
    }

    /// Every line as it is now, sorted by (`order_id`, `sub_order_id`).
    pub fn truth(&self) -> Vec<UdSubOrder> {
        lock(&self.shared.world).truth()
    }

    /// How often to answer HTTP 200 with code 15 `isp.remote-service-error` (the *body transient*
    /// fault, drawn after the body rate limit and before truncation; 0 at start).
    pub fn set_isp_error(&self, p: f64) {
        self.shared.ledger.injector.set_body_transient(p);
    }

    /// Changes the app secret the signature is checked with (to simulate a rotated secret).
    pub fn set_secret(&self, app_secret: &str) {
        lock(&self.shared.creds).app_secret = app_secret.to_string();
    }

    /// Accepts a `timestamp` at most `secs` seconds from the gateway's now (600 at start): a
    /// narrow tolerance stands in for ten minutes passing, so a test can show that a request
    /// retried later is signed with the time it is sent at, not the time it was first built.
    pub fn set_timestamp_tolerance(&self, secs: i64) {
        lock(&self.shared.creds).timestamp_tolerance_secs = secs;
    }

    /// The `[start_time, end_time]` of every accepted request (refused and answer-replacing faulted
    /// ones are not), in arrival order, to the millisecond: a test can check none crossed midnight.
    pub fn requests_log(&self) -> Vec<(NaiveDateTime, NaiveDateTime)> {
        lock(&self.shared.log).clone()
    }

    /// The main orders whose lines a page boundary cut through so far (the page ended inside the
    /// order and the next page of the same window starts with its next line), sorted.
    pub fn split_orders(&self) -> Vec<String> {
        lock(&self.shared.split)
            .iter()
            .map(u64::to_string)
            .collect()
    }

    /// Moves up to `n` main orders on from status 2 (支付), each once: one in four has one of its
    /// status-2 lines refunded at `at` (status 3, `order_refund_time` = `at` truncated to whole
    /// seconds, `order_refund_fee` all or part of what it paid, commission 0; its modified time
    /// becomes `at`), reported `2`→`3`; the others have all their status-2 lines received (status
    /// 5), reported `2`→`5` — receipt has no time of its own, so those lines keep their modified
    /// time and only a window re-read over it shows the change. Only lines whose modified time is
    /// before `at` are eligible. Deterministic given the seed and the sequence of calls.
    pub fn mutate(&self, n: usize, at: NaiveDateTime) -> Vec<Mutation> {
        lock(&self.shared.world).mutate(n, at)
    }

    /// Adds `n` new paid main orders (1–4 lines each) created 0–5 s before `at` and paid at most at
    /// `at`. Returns their ids.
    pub fn add_orders(&self, n: usize, at: NaiveDateTime) -> Vec<String> {
        lock(&self.shared.world).add_orders(n, at)
    }
}

#[derive(Serialize)]
struct Answer<'a> {
    alibaba_taobao_ud_smart_order_detail_pull_response: Pulled<'a>,
}

#[derive(Serialize)]
struct Pulled<'a> {
    result: Rows<'a>,
    cursor_id: &'a str,
    success: bool,
    request_id: String,
}

#[derive(Serialize)]
struct Rows<'a> {
    order_detail_cursor_top_d_t_o: Vec<Row<'a>>,
}

#[derive(Serialize)]
struct ErrorAnswer<'a> {
    error_response: ErrorResponse<'a>,
}

#[derive(Serialize)]
struct ErrorResponse<'a> {
    code: i64,
    msg: &'a str,
    sub_code: &'a str,
    sub_msg: &'a str,
    request_id: String,
}

fn error_body(error: TopError, sub_msg: &str, request_id: String) -> Vec<u8> {
    serde_json::to_vec(&ErrorAnswer {
        error_response: ErrorResponse {
            code: error.code,
            msg: error.msg,
            sub_code: error.sub_code,
            sub_msg,
            request_id,
        },
    })
    .unwrap_or_default()
}

/// Where an answer keeps its rows, for poisoned rows ([`crate::poison`]).
const ROWS_AT: RowsAt = RowsAt {
    rows:
        "/alibaba_taobao_ud_smart_order_detail_pull_response/result/order_detail_cursor_top_d_t_o",
    id: "/order_id",
    amount: "/pay_fee",
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
        shared.violation(
            n,
            "405",
            &format!("method {method} not allowed (GET or POST only)"),
            &params,
        );
        return http::with_type(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/html",
            b"<html>405 Not Allowed</html>".to_vec(),
        );
    }
    let fault = shared.ledger.injector.decide();
    if let Some(fault) = fault {
        let id = request_id(shared.seed, n);
        let limited = error_body(
            codes::APP_CALL_LIMITED,
            codes::APP_CALL_LIMITED_SUB_MSG,
            id.clone(),
        );
        let failed = error_body(
            codes::REMOTE_SERVICE_ERROR,
            codes::REMOTE_SERVICE_ERROR_SUB_MSG,
            id,
        );
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
        "404",
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
        let now = crate::beijing_now();
        let creds = lock(&self.creds).clone();
        let world = lock(&self.world);
        let mut cursors = lock(&self.cursors);
        let window = match query::parse(params, &creds, &cursors, now) {
            Ok(window) => window,
            Err(Refusal {
                error,
                sub_msg,
                reason,
            }) => {
                let code = format!("{}/{}", error.code, error.sub_code);
                self.violation(n, &code, &reason, params);
                return error_body(error, &sub_msg, request_id(self.seed, n));
            }
        };
        lock(&self.log).push((window.start, window.end));
        let page = world.page(&window, PAGE_SIZE);
        if let Some(order) = page.split {
            lock(&self.split).insert(order);
        }
        let cursor = match page.next {
            Some(key) => {
                let text = query::encode(key);
                cursors.insert(text.clone(), window.scope);
                text
            }
            None => String::new(),
        };
        serde_json::to_vec(&Answer {
            alibaba_taobao_ud_smart_order_detail_pull_response: Pulled {
                result: Rows {
                    order_detail_cursor_top_d_t_o: page
                        .lines
                        .into_iter()
                        .map(|l| world.row(l))
                        .collect(),
                },
                cursor_id: &cursor,
                success: true,
                request_id: request_id(self.seed, n),
            },
        })
        .unwrap_or_default()
    }

    fn violation(&self, n: u64, code: &str, what: &str, params: &Params) {
        let line = format!("request {n}: {code} {what} [{}]", params.echo(SECRETS));
        self.ledger.violation(line);
    }
}

/// A 13-character lowercase request id in TOP's style, stable for a given seed and request number.
fn request_id(seed: u64, n: u64) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    // splitmix64, twice for enough digits.
    let mix = |mut x: u64| {
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    };
    let a = mix(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let b = mix(a ^ 0x7564_6573_6b21);
    (0..13)
        .map(|i| {
            let x = if i < 7 {
                a >> (i * 9)
            } else {
                b >> ((i - 7) * 9)
            };
            char::from(ALPHABET[(x % 36) as usize])
        })
        .collect()
}
