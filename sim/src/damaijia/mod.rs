//! Simulator of 大麦家's Douyin-ERP order search, `POST /vv/external/requestDyErp/order-searchList`
//! (document: `shared/seeds/004_*.txt`).
//!
//! It answers from a deterministic world (`world::World`) of one shop's orders as the document
//! shows: HTTP 200, `{"data":{"page":P,"shop_order_list":[rows],"size":S,"total":T,
//! "deduct_money":0},"status":0,"msg":"success"}`, each row a shop order with its SKU lines in
//! `sku_order_list` (see `row` for the traps in it: a lossy numeric `product_id`, amounts and times
//! sometimes as strings, plain PII). A request is authorised by the `Authorization` header (the bare
//! access token) and the body's `shop_id`, and must follow the document's parameter rules (see
//! `query`); one that breaks a rule is refused as HTTP 200 `{"status":CODE,"msg":…,"data":null}`
//! with one of [`codes`] and recorded as one line in [`DamaijiaSim::violations`]. Faults
//! ([`crate::Faults`], plus the body-level transient set with [`DamaijiaSim::set_body_transient`])
//! are not violations; for this source both the body rate limit and the body transient answer
//! status 101, the document's only "try again" code.
//!
//! Paging is by offset (`page` from 0, `size` ≤ 100) over the orders matching the query *at the
//! moment of each request*, so it drifts when orders change during a scan:
//! [`DamaijiaSim::schedule_drift`] makes that happen on cue, so that a client's rescan rule can be
//! tested. Every request that reaches the server is counted.

mod pii;
mod query;
mod row;
mod world;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use chrono::NaiveDateTime;
use serde::Serialize;

use crate::faults::{self, Fault, Faults, SourceBodies};
use crate::http::{self, Server};
use crate::ledger::{lock, Ledger, Simulator};
use crate::poison::RowsAt;
use crate::Mutation;
use query::{Credentials, Refusal};
use row::Row;
use world::World;

/// The path the API serves (the document's 接口地址).
pub const PATH: &str = "/vv/external/requestDyErp/order-searchList";

pub mod codes {
    //! The document's status codes, each the body `status` of a JSON answer sent with HTTP 200
    //! (`{"status":CODE,"msg":MSG,"data":null}` for all but [`OK`]):
    //!
    //! | status | msg | when the simulator sends it | client should |
    //! |---|---|---|---|
    //! | [`OK`] 0 | `success` | every real answer | — |
    //! | [`BAD_PARAMS`] 100 | 请求参数错误 | a body or parameter breaking a rule; also (as HTTP 405) a method other than POST | fix the request (fatal) |
    //! | [`TIMEOUT_RETRY`] 101 | 请求超时,请重试 | the body rate-limit and body-transient faults | retry with backoff |
    //! | [`NO_ACCOUNT`] 103 | 旺旺账号不存在 | only when forced | fatal |
    //! | [`SYSTEM_ERROR`] 200 | 系统错误,请联系客服 | only when forced | fatal (the document says to contact support) |
    //! | [`UNSUPPORTED`] 203 | 暂不支持当前接口 | only when forced | fatal |
    //! | [`NO_PERMISSION`] 204 | 请求异常:无该接口权限,请前往官网开通正式接口。 | a missing or wrong `Authorization` | fatal |
    //! | [`SHOP_NOT_AUTHORISED`] 302 | 未授权店铺 | a `shop_id` other than the authorised shop | fatal |
    //!
    //! 204 is also the document's code for an exhausted call quota ([`QUOTA_EXHAUSTED_MSG`]); the
    //! simulator has no quota. [`set_forced_status`](super::DamaijiaSim::set_forced_status) makes
    //! every answer any of these.

    pub const OK: i64 = 0;
    pub const OK_MSG: &str = "success";
    /// The request (body or parameters) is wrong: fatal.
    pub const BAD_PARAMS: i64 = 100;
    pub const BAD_PARAMS_MSG: &str = "请求参数错误";
    /// Upstream timed out: transient, retry.
    pub const TIMEOUT_RETRY: i64 = 101;
    pub const TIMEOUT_RETRY_MSG: &str = "请求超时,请重试";
    pub const NO_ACCOUNT: i64 = 103;
    pub const NO_ACCOUNT_MSG: &str = "旺旺账号不存在";
    pub const SYSTEM_ERROR: i64 = 200;
    pub const SYSTEM_ERROR_MSG: &str = "系统错误,请联系客服";
    pub const UNSUPPORTED: i64 = 203;
    pub const UNSUPPORTED_MSG: &str = "暂不支持当前接口";
    /// No permission for this API (missing or wrong token), or no calls left: fatal.
    pub const NO_PERMISSION: i64 = 204;
    pub const NO_PERMISSION_MSG: &str = "请求异常:无该接口权限,请前往官网开通正式接口。";
    /// The other message the document gives for 204.
    pub const QUOTA_EXHAUSTED_MSG: &str = "请求异常:API调用次数不足,请前往网站兑换次数。";
    /// The shop has not authorised this token: fatal.
    pub const SHOP_NOT_AUTHORISED: i64 = 302;
    pub const SHOP_NOT_AUTHORISED_MSG: &str = "未授权店铺";

    /// The document's message for a status (`未知错误` for one it does not list).
    pub fn message(status: i64) -> &'static str {
        match status {
            OK => OK_MSG,
            BAD_PARAMS => BAD_PARAMS_MSG,
            TIMEOUT_RETRY => TIMEOUT_RETRY_MSG,
            NO_ACCOUNT => NO_ACCOUNT_MSG,
            SYSTEM_ERROR => SYSTEM_ERROR_MSG,
            UNSUPPORTED => UNSUPPORTED_MSG,
            NO_PERMISSION => NO_PERMISSION_MSG,
            SHOP_NOT_AUTHORISED => SHOP_NOT_AUTHORISED_MSG,
            _ => "未知错误",
        }
    }
}

/// How to build a simulated damaijia. Its `Debug` hides the access token.
#[derive(Clone)]
pub struct DamaijiaSimConfig {
    pub seed: u64,
    /// What the `Authorization` header must carry.
    pub access_token: String,
    /// The authorised shop: decimal digits (sent in rows as a JSON number), e.g. `"20358278"`.
    pub shop_id: String,
    /// How many orders the world starts with.
    pub orders: usize,
    /// Create times spread over `[now − days, now − 1 h]`.
    pub days: i64,
    /// The Beijing "now" the world is generated against (truncated to whole seconds): no update
    /// time is later than `now − 5 min`.
    pub now: NaiveDateTime,
    pub faults: Faults,
}

impl std::fmt::Debug for DamaijiaSimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DamaijiaSimConfig")
            .field("seed", &self.seed)
            .field("access_token", &"***")
            .field("shop_id", &self.shop_id)
            .field("orders", &self.orders)
            .field("days", &self.days)
            .field("now", &self.now)
            .field("faults", &self.faults)
            .finish()
    }
}

impl Default for DamaijiaSimConfig {
    fn default() -> Self {
        DamaijiaSimConfig {
            seed: 1,
            access_token: "sim-damaijia-token".to_string(),
            shop_id: "20358278".to_string(),
            orders: 1000,
            days: 60,
            now: crate::beijing_now(),
            faults: Faults::default(),
        }
    }
}

/// One shop order of the ground truth, typed; the JSON rows are rendered from it. Times are
/// Beijing, whole seconds; on the wire they are unix seconds, `0` for none.
#[derive(Clone, Debug, PartialEq)]
pub struct DmjOrder {
    /// 19 digits; unique. Sent as a string.
    pub order_id: String,
    /// The configured shop (sent as a JSON number).
    pub shop_id: String,
    pub shop_name: String,
    /// 1 待支付, 105 已支付, 2 备货中, 101 部分发货, 3 已发货, 4 已关闭, 5 已完成.
    pub order_status: i64,
    pub create_time: NaiveDateTime,
    /// `None` (sent as `0`) while unpaid, and for an order closed unpaid.
    pub pay_time: Option<NaiveDateTime>,
    pub update_time: NaiveDateTime,
    /// `Some` exactly when the status is 5.
    pub finish_time: Option<NaiveDateTime>,
    /// Fen: the lines' `order_amount` (price × quantity less shop discounts) summed.
    pub order_amount: i64,
    /// Fen: the sum of the lines' `pay_amount`.
    pub pay_amount: i64,
    /// PII, plain: `139` + 8 digits, unique per order.
    pub post_tel: String,
    /// PII, plain, unique per order, e.g. `收件人丙0042号`.
    pub post_receiver: String,
    /// PII, plain (`post_addr.detail`), unique per order, e.g. `幸福路42号院3单元0042室`.
    pub address_detail: String,
    /// PII, plain (`user_id_info.id_card_no`): 18 characters, unique per order.
    pub id_card_no: String,
    /// PII, plain (`user_id_info.id_card_name`), unique per order.
    pub id_card_name: String,
    pub lines: Vec<DmjLine>,
}

/// One SKU line of an order (`sku_order_list[]`).
#[derive(Clone, Debug, PartialEq)]
pub struct DmjLine {
    /// The line's `order_id`: 19 digits, unique across the world; equal to the order's id when the
    /// order has a single line (as in the document's sample).
    pub sku_order_id: String,
    /// Exact 19-digit id above 2^53 (`product_id_str`); the JSON number `product_id` has lost precision.
    pub product_id: String,
    pub product_name: String,
    /// Below 2^53, sent as an exact JSON number.
    pub sku_id: String,
    pub item_num: i64,
    /// Fen.
    pub pay_amount: i64,
    /// Mostly the order's; in a 101 order some lines are 3 and the rest 2; a returned line of a
    /// shipped order is 4.
    pub order_status: i64,
    /// `after_sale_info.refund_status`: 0 none, 3 refund succeeded.
    pub refund_status: i64,
}

/// A change to the orders a query matches, made while a client pages through it
/// ([`DamaijiaSim::schedule_drift`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drift {
    /// Insert this many new paid (105) orders that sort before every row already served.
    Insert(usize),
    /// Move this many already-served orders on one status step, with `update_time` = real now.
    Touch(usize),
    /// Move this many already-served orders on one status step, with an `update_time` that lags
    /// behind the change and still falls inside the query (its last second): an ERP that mirrors
    /// another platform stamps updates late. `total` does not change.
    Lag(usize),
}

/// A running damaijia simulator; stops when dropped.
pub struct DamaijiaSim {
    shared: Arc<Shared>,
    server: Server,
}

struct Shared {
    world: Mutex<World>,
    creds: Mutex<Credentials>,
    forced: Mutex<Option<i64>>,
    ledger: Ledger,
}

/// How much of a refused body a violation line repeats.
const ECHO_LIMIT: usize = 400;

impl Simulator for DamaijiaSim {
    fn ledger(&self) -> &Ledger {
        &self.shared.ledger
    }
}

impl DamaijiaSim {
    /// Generates the world, binds `127.0.0.1:0` and serves on the current tokio runtime. Fails
    /// (`InvalidInput`) if `shop_id` is not a decimal number.
    pub async fn start(cfg: DamaijiaSimConfig) -> std::io::Result<DamaijiaSim> {
        DamaijiaSim::start_at(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// As [`DamaijiaSim::start`], on the given address (for the command-line simulator).
    pub async fn start_at(
        cfg: DamaijiaSimConfig,
        addr: SocketAddr,
    ) -> std::io::Result<DamaijiaSim> {
        let numeric = !cfg.shop_id.is_empty()
            && cfg.shop_id.bytes().all(|b| b.is_ascii_digit())
            && cfg.shop_id.parse::<u64>().is_ok();
        if !numeric {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("damaijia shop_id {:?} is not a decimal number", cfg.shop_id),
            ));
        }
        let shared = Arc::new(Shared {
            world: Mutex::new(World::generate(&cfg)),
            creds: Mutex::new(Credentials {
                access_token: cfg.access_token.clone(),
                shop_id: cfg.shop_id.clone(),
            }),
            forced: Mutex::new(None),
            ledger: Ledger::new(cfg.faults.clone()),
        });
        let router = Router::new()
            .route(PATH, any(handle))
            .fallback(unknown_path)
            .with_state(shared.clone());
        let server = http::serve(router, addr).await?;
        Ok(DamaijiaSim { shared, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// `http://127.0.0.1:PORT/vv/external/requestDyErp/order-searchList`.
    pub fn endpoint(&self) -> String {
        format!("http://{}{PATH}", self.server.addr)
    }

    /// Every order as it is now, sorted by `order_id`.
    pub fn truth(&self) -> Vec<DmjOrder> {
        lock(&self.shared.world).truth()
    }

    /// Every plain PII value (phone, receiver, address detail, ID-card number and name) of every
    /// order the world holds — generated, added or drift-inserted — sorted and deduplicated. Orders
    /// are never removed and their PII never changes, so this is everything ever served.
    pub fn pii_values(&self) -> Vec<String> {
        lock(&self.shared.world).pii_values()
    }

    /// How often to answer HTTP 200 `{"status":101,"msg":"请求超时,请重试","data":null}` (the *body
    /// transient* fault, drawn after the body rate limit and before truncation; 0 at start).
    pub fn set_body_transient(&self, p: f64) {
        self.shared.ledger.injector.set_body_transient(p);
    }

    /// `Some(status)`: answer every request from now on with HTTP 200
    /// `{"status":status,"msg":<the document's message>,"data":null}` — before any rule is checked
    /// or fault drawn, and without recording a violation — until `None`.
    pub fn set_forced_status(&self, status: Option<i64>) {
        *lock(&self.shared.forced) = status;
    }

    /// Changes the token and shop the simulator accepts (to simulate a revoked token or a shop that
    /// withdrew its authorisation). The orders keep their `shop_id`.
    pub fn set_credentials(&self, access_token: &str, shop_id: &str) {
        *lock(&self.shared.creds) = Credentials {
            access_token: access_token.to_string(),
            shop_id: shop_id.to_string(),
        };
    }

    /// Moves up to `n` orders one status step — 1→105, 105→2 (or →4 refunded, one in seven),
    /// 2→3 (or →101 for a multi-line order, one in four; or →4 refunded, one in ten), 101→3,
    /// 3→5 — setting `update_time` (and the pay, ship or finish time the step implies) to `at`
    /// (truncated to whole seconds). A refund closes every line with `refund_status` 3. Only orders
    /// whose `update_time` is before `at` are eligible; none moves twice in one call. `from`/`to`
    /// are the statuses as decimal text. Deterministic given the seed and the sequence of calls.
    pub fn mutate(&self, n: usize, at: NaiveDateTime) -> Vec<Mutation> {
        lock(&self.shared.world).mutate(n, at)
    }

    /// Adds `n` new paid (105) orders created 1–5 s before `at`, paid after that and updated when
    /// paid (at most `at`). Returns their ids.
    pub fn add_orders(&self, n: usize, at: NaiveDateTime) -> Vec<String> {
        lock(&self.shared.world).add_orders(n, at)
    }

    /// Once `after_pages` more pages have been served whole (no fault other than a slow answer, not
    /// refused, not forced), applies `drift` to the query of the next page request, just before
    /// answering it — so its `total` and rows already show the change:
    /// - [`Drift::Insert`]`(n)`: `n` new paid orders that the query matches and that sort before
    ///   every row of the pages before it: they copy the create and update times of the query's
    ///   first match (position 0, so every bound holds and they tie with it on the sort time) and
    ///   take ids that win the tie (larger when descending, smaller when ascending). `total` grows
    ///   by `n`, and a client that does not rescan never sees them.
    /// - [`Drift::Touch`]`(n)`: `n` orders this scan has already served (a scan: requests that
    ///   differ only in their page and the start of their update window; those that can still
    ///   move first, in the order served) move on one status step and get
    ///   `update_time` = the real Beijing now ([`crate::beijing_now`]). A query whose update window
    ///   ends in the past loses them: `total` shrinks by `n`, and the unread rows shift back by `n`.
    /// - [`Drift::Lag`]`(n)`: `n` orders this scan has already served move on one status step
    ///   with `update_time` = the query's last second (or the real now when it has no upper update
    ///   bound): they stay inside the query and sort last, so `total` is unchanged while the unread
    ///   rows shift back by `n` — an offset reader skips `n` of them and cannot tell.
    ///
    /// Several drifts may be pending; each counts its own pages.
    pub fn schedule_drift(&self, after_pages: u64, drift: Drift) {
        lock(&self.shared.world).schedule_drift(after_pages, drift);
    }

    /// The order ids inserted or touched by drift so far, in the order it happened.
    pub fn drift_log(&self) -> Vec<String> {
        lock(&self.shared.world).drift_log()
    }
}

#[derive(Serialize)]
struct Answer<'a> {
    data: Data<'a>,
    status: i64,
    msg: &'a str,
}

#[derive(Serialize)]
struct Data<'a> {
    page: u64,
    shop_order_list: Vec<Row<'a>>,
    size: usize,
    total: usize,
    deduct_money: i64,
}

#[derive(Serialize)]
struct ErrorAnswer<'a> {
    status: i64,
    msg: &'a str,
    data: (),
}

fn error_body(status: i64) -> Vec<u8> {
    serde_json::to_vec(&ErrorAnswer {
        status,
        msg: codes::message(status),
        data: (),
    })
    .unwrap_or_default()
}

/// Where an answer keeps its rows, for poisoned rows ([`crate::poison`]).
const ROWS_AT: RowsAt = RowsAt {
    rows: "/data/shop_order_list",
    id: "/order_id",
    amount: "/pay_amount",
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
    if let Some(status) = *lock(&shared.forced) {
        return http::json(error_body(status));
    }
    if method != Method::POST {
        shared.violation(
            n,
            codes::BAD_PARAMS,
            &format!("method {method} not allowed (POST only)"),
            &body,
        );
        return http::json_with_status(
            StatusCode::METHOD_NOT_ALLOWED,
            error_body(codes::BAD_PARAMS),
        );
    }
    let fault = shared.ledger.injector.decide();
    if let Some(fault) = fault {
        let retry = error_body(codes::TIMEOUT_RETRY);
        let bodies = SourceBodies {
            rate_limit: &retry,
            transient: Some(&retry),
            too_many_requests: None,
        };
        if let Some(resp) = faults::canned(fault, &bodies) {
            return resp;
        }
    }
    if let Some(Fault::Slow { ms }) = fault {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    // Only an answer the client can read counts as a served page for drift.
    let whole = fault != Some(Fault::Truncated);
    let answer = shared
        .ledger
        .poison
        .apply(shared.answer(n, &headers, &body, whole), ROWS_AT);
    if whole {
        http::json(answer)
    } else {
        faults::truncated(answer)
    }
}

async fn unknown_path(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let n = shared.ledger.next_request();
    shared.violation(
        n,
        404,
        &format!("{method} {} is not {PATH}", uri.path()),
        &body,
    );
    http::with_type(
        StatusCode::NOT_FOUND,
        "text/html",
        b"<html>404 Not Found</html>".to_vec(),
    )
}

impl Shared {
    /// The real answer to request number `n` (HTTP 200): a page, or a refusal. `whole`: the client
    /// will read it, so scheduled drift may apply and it counts as a served page.
    fn answer(&self, n: u64, headers: &HeaderMap, body: &Bytes, whole: bool) -> Vec<u8> {
        let creds = lock(&self.creds).clone();
        let q = match query::parse(headers.get(header::AUTHORIZATION), body, &creds) {
            Ok(q) => q,
            Err(Refusal { code, reason }) => {
                self.violation(n, code, &reason, body);
                return error_body(code);
            }
        };
        let mut world = lock(&self.world);
        if whole {
            world.before_page(&q, crate::beijing_now());
        }
        let (total, entries) = if whole {
            world.serve(&q)
        } else {
            world.page(&q)
        };
        serde_json::to_vec(&Answer {
            data: Data {
                page: q.page,
                shop_order_list: entries.into_iter().map(row::render).collect(),
                size: q.size,
                total,
                deduct_money: 0,
            },
            status: codes::OK,
            msg: codes::OK_MSG,
        })
        .unwrap_or_default()
    }

    fn violation(&self, n: u64, code: i64, what: &str, body: &[u8]) {
        let mut echo = String::from_utf8_lossy(body).into_owned();
        let token = lock(&self.creds).access_token.clone();
        if !token.is_empty() {
            echo = echo.replace(&token, "***");
        }
        if echo.len() > ECHO_LIMIT {
            let mut cut = ECHO_LIMIT;
            while !echo.is_char_boundary(cut) {
                cut -= 1;
            }
            echo.truncate(cut);
            echo.push('…');
        }
        let line = format!("request {n}: {code} {what} [{echo}]");
        self.ledger.violation(line);
    }
}
