//! The five upstreams, as a closed enum dispatched with `match`.
//!
//! A source is small and pure: it builds the HTTP request for a (window, cursor), parses one page
//! into normalised rows and the next cursor, and classifies upstream errors as transient,
//! rate-limited or fatal. Paging loops, windows, retries, checkpoints and transactions live in
//! `engine`, `planner`, `http` and `store`, written once for all of them.

pub mod damaijia;
mod fields;
mod labels;
pub mod miaoyouquan;
pub mod rawrow;
pub mod sxt;
pub mod unidesk;
pub mod veapi;

use std::collections::HashSet;
use std::fmt;
use std::sync::{Mutex, OnceLock};

use chrono::NaiveDateTime;
use serde_json::Value;

use crate::http::{HttpRequest, UpstreamError};
use crate::model::{OrderRow, RejectedRow};
use crate::planner::{Window, WindowRules};
use crate::secret::Auth;
use rawrow::RawRow;

pub use crate::model::SourceKind;
pub use fields::{fen, id, int, text, time};
pub use labels::{metric_label, one_of};

/// What each upstream's API allows and needs, known here where the source modules are.
impl SourceKind {
    pub fn default_endpoint(self) -> Option<&'static str> {
        match self {
            SourceKind::Veapi => Some(veapi::DEFAULT_ENDPOINT),
            SourceKind::Unidesk => Some(unidesk::DEFAULT_ENDPOINT),
            SourceKind::Damaijia => Some(damaijia::DEFAULT_ENDPOINT),
            // The document gives only the path.
            SourceKind::Sxt | SourceKind::Miaoyouquan => None,
        }
    }

    pub fn max_page_size(self) -> u32 {
        match self {
            SourceKind::Veapi => veapi::MAX_PAGE_SIZE,
            SourceKind::Miaoyouquan => miaoyouquan::MAX_PAGE_SIZE,
            SourceKind::Unidesk => 100,
            SourceKind::Damaijia => damaijia::MAX_PAGE_SIZE,
            SourceKind::Sxt => 1,
        }
    }

    /// `(key, required)` of the `[pipeline.auth]` table.
    pub fn auth_keys(self) -> &'static [(&'static str, bool)] {
        match self {
            SourceKind::Sxt => &[("user_id", true), ("dy_uid", true)],
            SourceKind::Miaoyouquan => &[("apkey", true), ("dou_key", true)],
            SourceKind::Unidesk => &[("app_key", true), ("app_secret", true), ("session", false)],
            SourceKind::Veapi => &[("vekey", true)],
            SourceKind::Damaijia => &[("access_token", true), ("shop_id", true)],
        }
    }

    pub fn auth_key_list(self) -> String {
        self.auth_keys()
            .iter()
            .map(|(k, _)| *k)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Source-specific plain keys a pipeline of this source may carry.
    fn option_keys(self) -> &'static [&'static str] {
        match self {
            SourceKind::Veapi => veapi::OPTION_KEYS,
            SourceKind::Miaoyouquan => miaoyouquan::OPTION_KEYS,
            SourceKind::Unidesk => unidesk::OPTION_KEYS,
            SourceKind::Damaijia => damaijia::OPTION_KEYS,
            SourceKind::Sxt => sxt::OPTION_KEYS,
        }
    }

    pub fn takes_option(self, key: &str) -> bool {
        self.option_keys().contains(&key)
    }

    pub fn any_takes_option(key: &str) -> bool {
        SourceKind::ALL.iter().any(|s| s.takes_option(key))
    }

    pub fn window_rules(self) -> WindowRules {
        match self {
            SourceKind::Veapi => veapi::window_rules(),
            SourceKind::Miaoyouquan => miaoyouquan::window_rules(),
            SourceKind::Unidesk => unidesk::window_rules(),
            _ => WindowRules::default(),
        }
    }
}

/// The checked source-specific options of one pipeline.
#[derive(Debug, Clone)]
pub enum SourceOptions {
    Veapi(veapi::Options),
    Miaoyouquan(miaoyouquan::Options),
    Unidesk(unidesk::Options),
    Damaijia(damaijia::Options),
    Sxt(sxt::Options),
}

impl SourceOptions {
    /// The source these options are of: a pipeline's source is its options' variant, one value
    /// that cannot disagree with itself.
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceOptions::Veapi(_) => SourceKind::Veapi,
            SourceOptions::Miaoyouquan(_) => SourceKind::Miaoyouquan,
            SourceOptions::Unidesk(_) => SourceKind::Unidesk,
            SourceOptions::Damaijia(_) => SourceKind::Damaijia,
            SourceOptions::Sxt(_) => SourceKind::Sxt,
        }
    }

    /// Checks the option keys already known to belong to `kind`; the error is `(key, message)`.
    pub fn parse(kind: SourceKind, table: &toml::Table) -> Result<SourceOptions, (String, String)> {
        match kind {
            SourceKind::Veapi => veapi::Options::parse(table).map(SourceOptions::Veapi),
            SourceKind::Miaoyouquan => {
                miaoyouquan::Options::parse(table).map(SourceOptions::Miaoyouquan)
            }
            SourceKind::Unidesk => unidesk::Options::parse(table).map(SourceOptions::Unidesk),
            SourceKind::Damaijia => damaijia::Options::parse(table).map(SourceOptions::Damaijia),
            SourceKind::Sxt => sxt::Options::parse(table).map(SourceOptions::Sxt),
        }
    }
}

/// What a window's times refer to, for the APIs that can query either (veapi, miaoyouquan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeType {
    Pay,
    Update,
}

impl TimeType {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeType::Pay => "pay",
            TimeType::Update => "update",
        }
    }

    /// The `time_type` option (default `update`: live syncs follow updates).
    pub fn option(table: &toml::Table) -> Result<TimeType, (String, String)> {
        match table.get("time_type") {
            None => Ok(TimeType::Update),
            Some(toml::Value::String(s)) if s == "update" => Ok(TimeType::Update),
            Some(toml::Value::String(s)) if s == "pay" => Ok(TimeType::Pay),
            Some(other) => Err((
                "time_type".into(),
                format!("must be \"pay\" or \"update\", got {other}"),
            )),
        }
    }

    /// Live syncs use the configured type; backfills always ask by payment time, rescans by
    /// update time.
    pub fn for_axis(self, axis: Axis) -> TimeType {
        match axis {
            Axis::Live => self,
            Axis::Backfill => TimeType::Pay,
            Axis::Rescan => TimeType::Update,
        }
    }
}

/// The Douyin affiliate `flow_point` vocabulary shared by veapi and miaoyouquan.
pub fn flow_point_status(kind: SourceKind, flow_point: &str) -> crate::model::Status {
    use crate::model::Status;
    match flow_point {
        "PAY_SUCC" => Status::Paid,
        "REFUND" => Status::Refunded,
        "SETTLE" => Status::Settled,
        "CONFIRM" => Status::Completed,
        other => {
            note_unknown_status(kind, other);
            Status::Unknown
        }
    }
}

/// One Douyin affiliate order row (veapi, miaoyouquan: the same fields under the same names, but
/// for the commission estimate) → an `affiliate` order with its single line.
pub fn affiliate_order(
    kind: SourceKind,
    upstream: &RawRow<'_>,
    estimated_commission_key: &str,
) -> Result<OrderRow, String> {
    use crate::model::{Kind, SubOrderRow};
    let row = &upstream.pick(&[
        "order_id",
        "flow_point",
        "total_pay_amount",
        "ads_real_commission",
        estimated_commission_key,
        "pay_success_time",
        "update_time",
        "refund_time",
        "settle_time",
        "confirm_time",
        "shop_id",
        "shop_name",
        "product_id",
        "product_name",
        "item_num",
    ])?;
    let order_id = id(row, "order_id")?.ok_or("row has no order_id")?;
    let mut o = OrderRow::new(kind, order_id.clone(), Kind::Affiliate, upstream.to_json());
    o.status_raw = text(row, "flow_point").unwrap_or_default();
    o.status = flow_point_status(kind, &o.status_raw);
    o.pay_amount = fen(row, "total_pay_amount")?;
    // Settled orders carry the real commission; until then, the estimate.
    o.commission = match fen(row, "ads_real_commission")?.filter(|c| *c != 0) {
        Some(c) => Some(c),
        None => fen(row, estimated_commission_key)?,
    };
    o.paid_at = time(row, "pay_success_time")?;
    o.updated_at = time(row, "update_time")?;
    o.refunded_at = time(row, "refund_time")?;
    o.settled_at = time(row, "settle_time")?;
    o.confirmed_at = time(row, "confirm_time")?;
    o.shop_id = id(row, "shop_id")?;
    o.shop_name = text(row, "shop_name");
    o.product_id = id(row, "product_id")?;
    o.product_name = text(row, "product_name");
    o.item_num = int(row, "item_num")?;
    o.sub_orders.push(SubOrderRow {
        sub_order_id: order_id,
        sku_id: None,
        product_id: o.product_id.clone(),
        product_name: o.product_name.clone(),
        item_num: o.item_num,
        pay_amount: o.pay_amount,
        status: o.status,
        status_raw: o.status_raw.clone(),
        // The order's row is the line's: `orders.raw` holds it once.
        raw: String::new(),
        refund_amount: None,
        commission: None,
        updated_at: None,
    });
    Ok(o)
}

/// Which time a window is about: live syncs follow updates (or `time_type`), backfills follow
/// payment, rescans follow updates whatever `time_type` says — a late change is an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    Live,
    Backfill,
    Rescan,
}

/// Everything a source needs to build one page's request.
pub struct PageQuery<'a> {
    pub endpoint: &'a str,
    pub auth: &'a Auth,
    pub options: &'a SourceOptions,
    pub window: Window,
    pub cursor: &'a str,
    pub page_size: u32,
    pub axis: Axis,
    /// The pipeline's `start` (damaijia needs a creation-time floor on every request).
    pub start: NaiveDateTime,
}

/// One parsed page: its rows, those that could not be read, and the cursor of the next page
/// (`None` when the window is done).
#[derive(Debug, PartialEq)]
pub struct Page {
    pub orders: Vec<OrderRow>,
    pub rejected: Vec<RejectedRow>,
    pub next_cursor: Option<String>,
}

/// The cursor the first page of a window is asked with.
pub fn first_cursor(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Veapi => veapi::FIRST_CURSOR,
        SourceKind::Miaoyouquan => miaoyouquan::FIRST_CURSOR,
        _ => "",
    }
}

/// The pipeline's endpoint as a URL.
pub fn endpoint_url(q: &PageQuery<'_>) -> Result<url::Url, UpstreamError> {
    url::Url::parse(q.endpoint)
        .map_err(|e| UpstreamError::fatal("config", format!("endpoint is not a URL: {e}")))
}

/// A `[pipeline.auth]` value the request cannot be built without.
pub fn required_secret<'a>(
    q: &PageQuery<'a>,
    key: &str,
) -> Result<&'a crate::secret::Secret, UpstreamError> {
    q.auth
        .get(key)
        .ok_or_else(|| UpstreamError::fatal("config", format!("auth.{key} is not set")))
}

/// An answer's body (see [`body_text`]) as one JSON object split into its fields, their values left
/// as text (see `rawrow`). Anything else (an HTML error page, a cut-off body) is transient:
/// retried, then reported.
pub fn json_object(status: u16, body: &str) -> Result<RawRow<'_>, UpstreamError> {
    RawRow::parse(body).map_err(|e| not_json(status, e))
}

/// An object of the fields given that are present: an answer's head (codes, message, cursor)
/// read in one pass, in the shape the field helpers below read.
pub fn object_of<const N: usize>(fields: [(&str, Option<Value>); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v?)))
            .collect(),
    )
}

/// An answer that is JSON but not the documented shape: transient (retried, then reported).
pub fn malformed(what: impl Into<String>) -> UpstreamError {
    UpstreamError::transient("malformed", what)
}

/// Whether a source's rows may carry customer PII, and so what a row that cannot be read keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowText {
    /// Kept as it came.
    Plain,
    /// Kept only as `normalise` left it (which hides the personal fields first, whatever else is
    /// wrong with the row); an element that is not an object is not kept at all.
    Personal,
}

/// What a rejected element that is not an object keeps of a source's row text under `Personal`.
const HIDDEN: &str = "\"(not kept: it may hold personal data)\"";

/// A page's rows, each normalised by `normalise`. A row that cannot be normalised, or whose `raw`
/// SQLite's JSON functions could not read, is rejected with its reason and text: it costs itself,
/// never the page. `order_key` is the path of fields a rejected row's order id is read from.
pub fn normalise_rows<'a>(
    rows: impl IntoIterator<Item = rawrow::Element<'a>>,
    text: RowText,
    order_key: &[&str],
    mut normalise: impl FnMut(&mut RawRow<'a>) -> Result<OrderRow, String>,
) -> (Vec<OrderRow>, Vec<RejectedRow>) {
    let mut orders = Vec::new();
    let mut rejected = Vec::new();
    for element in rows {
        let mut row = match element {
            Ok(row) => row,
            Err(other) => {
                rejected.push(RejectedRow {
                    order_id: None,
                    reason: "row is not a JSON object".into(),
                    raw: match text {
                        RowText::Plain => other.to_string(),
                        RowText::Personal => HIDDEN.to_string(),
                    },
                });
                continue;
            }
        };
        let outcome = normalise(&mut row).and_then(|o| {
            let deep = !rawrow::within_depth(&o.raw)
                || o.sub_orders.iter().any(|s| !rawrow::within_depth(&s.raw));
            if deep {
                return Err(format!(
                    "row nests deeper than {} levels, more than SQLite's JSON functions read",
                    rawrow::MAX_DEPTH
                ));
            }
            Ok(o)
        });
        match outcome {
            Ok(order) => orders.push(order),
            Err(reason) => rejected.push(RejectedRow {
                order_id: id_at(&row, order_key),
                reason,
                raw: row.to_json(),
            }),
        }
    }
    (orders, rejected)
}

/// The id at a path of fields (`["ad_info", "order_id"]`), if it can be read.
fn id_at(row: &RawRow<'_>, path: &[&str]) -> Option<String> {
    let (key, inner) = path.split_last()?;
    match inner.split_first() {
        None => id(&row.pick(&[key]).ok()?, key).ok().flatten(),
        Some((first, rest)) => {
            let nested = RawRow::parse(row.get(first)?).ok()?;
            let mut path = rest.to_vec();
            path.push(key);
            id_at(&nested, &path)
        }
    }
}

/// An answer's body as text. Invalid UTF-8 (a byte upstream mangled) becomes U+FFFD where it
/// stands: it costs the string it is in (an id holding one is refused, so that row is rejected),
/// never the page. Almost every body is valid: `from_utf8` says so several times faster than
/// the lossy pass, which only a body that is not runs.
pub fn body_text(body: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(body) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(body),
    }
}

fn not_json(status: u16, e: impl fmt::Display) -> UpstreamError {
    malformed(format!("HTTP {status} body is not JSON ({e})"))
}

/// The cursor a new run continues a window with, from the one its checkpoint saved.
pub fn resume_cursor(kind: SourceKind, saved: &str) -> String {
    match kind {
        SourceKind::Damaijia => damaijia::resume_cursor(saved),
        _ => saved.to_string(),
    }
}

/// The request for one page: the source is the one `q.options` are of.
pub fn build_request(q: &PageQuery<'_>) -> Result<HttpRequest, UpstreamError> {
    match q.options {
        SourceOptions::Veapi(opts) => veapi::build_request(q, opts),
        SourceOptions::Miaoyouquan(opts) => miaoyouquan::build_request(q, opts),
        SourceOptions::Unidesk(opts) => unidesk::build_request(q, opts),
        SourceOptions::Damaijia(_) => damaijia::build_request(q),
        SourceOptions::Sxt(opts) => sxt::build_request(q, opts),
    }
}

/// Parses one HTTP answer (already known not to be a 5xx or 429) to the request built from `q`
/// into a page or an upstream error.
pub fn parse_page(q: &PageQuery<'_>, status: u16, body: &[u8]) -> Result<Page, UpstreamError> {
    match q.options.kind() {
        SourceKind::Veapi => veapi::parse_page(status, body),
        SourceKind::Miaoyouquan => miaoyouquan::parse_page(q, status, body),
        SourceKind::Unidesk => unidesk::parse_page(status, body),
        SourceKind::Damaijia => damaijia::parse_page(q, status, body),
        SourceKind::Sxt => sxt::parse_page(status, body),
    }
}

/// Logs an upstream status code we have no mapping for, once per (source, code) per process.
pub fn note_unknown_status(kind: SourceKind, code: &str) {
    static SEEN: OnceLock<Mutex<HashSet<(SourceKind, String)>>> = OnceLock::new();
    let seen = SEEN.get_or_init(|| Mutex::new(HashSet::new()));
    let first = match seen.lock() {
        Ok(mut s) => s.insert((kind, code.to_string())),
        Err(_) => false,
    };
    if first {
        tracing::warn!(source = %kind, code, "unknown upstream status, stored as `unknown` (kept in status_raw)");
    }
}
