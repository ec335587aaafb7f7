//! The five upstreams, as a closed enum dispatched with `match`.
//!
//! A source is small and pure: it builds the HTTP request for a (window, cursor), parses one page
//! into normalised rows and the next cursor, and classifies upstream errors as transient,
//! rate-limited or fatal. Paging loops, windows, retries, checkpoints and transactions live in
//! `engine`, `planner`, `http` and `store`, written once for all of them.

pub mod damaijia;
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
use crate::money;
use crate::planner::{Window, WindowRules};
use crate::secret::Auth;
use crate::timefmt;
use rawrow::RawRow;

pub use crate::model::SourceKind;

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

    /// Live syncs use the configured type; backfills always ask by payment time.
    pub fn for_axis(self, axis: Axis) -> TimeType {
        match axis {
            Axis::Live => self,
            Axis::Backfill => TimeType::Pay,
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

/// Which time a window is about: live syncs follow updates, backfills follow payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    Live,
    Backfill,
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
/// never the page.
pub fn body_text(body: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(body)
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

/// Codes ordersync gives failures of its own making, whatever the source: the transport (reqwest's
/// error kinds, a body over the size cap, a redirect refused), a body not in the documented shape,
/// page drift, a corrupt saved cursor, a config the request cannot be built from.
const OWN_CODES: &[&str] = &[
    "timeout",
    "connect",
    "body",
    "network",
    "malformed",
    "drift",
    "cursor",
    "config",
    "body_too_large",
    "redirect",
];

/// The `code` label of `ordersync_upstream_errors_total` for an upstream error's code: one of a
/// closed set per source — that source's known codes, ordersync's own codes, `HTTP 429`,
/// `HTTP 5xx`, `HTTP 4xx` — and `other` for anything else. A code is whatever text an upstream
/// sends, so used as a label it would add one series per distinct value without limit, and could
/// echo anything into the metrics (a key included). The error itself (the run's error, the log)
/// keeps the code as sent.
pub fn metric_label(kind: SourceKind, code: &str) -> &'static str {
    let known = match kind {
        SourceKind::Veapi => one_of(veapi::METRIC_CODES, code),
        SourceKind::Miaoyouquan => one_of(miaoyouquan::METRIC_CODES, code),
        SourceKind::Unidesk => unidesk::metric_code(code),
        SourceKind::Damaijia => one_of(damaijia::METRIC_CODES, code),
        SourceKind::Sxt => one_of(sxt::METRIC_CODES, code),
    };
    known
        .or_else(|| http_status_label(code))
        .or_else(|| one_of(OWN_CODES, code))
        .unwrap_or("other")
}

/// `HTTP 429` as itself, any other `HTTP 4xx` or `HTTP 5xx` status as its class.
fn http_status_label(code: &str) -> Option<&'static str> {
    let status = code.strip_prefix("HTTP ")?;
    if status.len() != 3 || !status.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if status == "429" {
        return Some("HTTP 429");
    }
    match status.as_bytes()[0] {
        b'4' => Some("HTTP 4xx"),
        b'5' => Some("HTTP 5xx"),
        _ => None,
    }
}

/// `code` as the `'static` entry of `known` it equals.
pub fn one_of(known: &'static [&'static str], code: &str) -> Option<&'static str> {
    known.iter().find(|k| **k == code).copied()
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

// ---- field readers shared by the sources: upstreams send numbers as strings or numbers --------

/// A text field; numbers are accepted and kept as their exact decimal text. Empty → `None`.
pub fn text(row: &Value, key: &str) -> Option<String> {
    match row.get(key)? {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An id: a string, or an integer JSON number (kept exactly). A float is refused: its digits are
/// already lost.
pub fn id(row: &Value, key: &str) -> Result<Option<String>, String> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() || s == "0" => Ok(None),
        Some(Value::String(s))
            if s.contains(char::REPLACEMENT_CHARACTER) || s.contains(char::is_control) =>
        {
            Err(format!(
                "`{key}` is not an id: {s:?} holds bytes that are not text"
            ))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => {
            let s = n.to_string();
            Ok((s != "0").then_some(s))
        }
        Some(other) => Err(format!("`{key}` is not an exact id: {other}")),
    }
}

/// An integer sent as a number or a decimal string.
pub fn int(row: &Value, key: &str) -> Result<Option<i64>, String> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("`{key}` is not an integer: {s:?}")),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("`{key}` is not an integer: {n}")),
        Some(other) => Err(format!("`{key}` is not an integer: {other}")),
    }
}

/// Fen, possibly with a fraction of a fen, rounded half up. Parsed from the exact text.
pub fn fen(row: &Value, key: &str) -> Result<Option<i64>, String> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => money::fen_round_half_up(s)
            .map(Some)
            .map_err(|e| format!("`{key}`: {e}")),
        Some(Value::Number(n)) => money::fen_round_half_up(&n.to_string())
            .map(Some)
            .map_err(|e| format!("`{key}`: {e}")),
        Some(other) => Err(format!("`{key}` is not an amount: {other}")),
    }
}

pub fn time(row: &Value, key: &str) -> Result<Option<NaiveDateTime>, String> {
    timefmt::parse_upstream_time(row.get(key)).map_err(|e| format!("`{key}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_labels_its_own_codes_as_sent() {
        for (kind, codes) in [
            (SourceKind::Veapi, veapi::METRIC_CODES),
            (SourceKind::Miaoyouquan, miaoyouquan::METRIC_CODES),
            (SourceKind::Unidesk, unidesk::METRIC_CODES),
            (SourceKind::Damaijia, damaijia::METRIC_CODES),
            (SourceKind::Sxt, sxt::METRIC_CODES),
        ] {
            assert!(!codes.is_empty(), "{kind}");
            for code in codes {
                assert_eq!(metric_label(kind, code), *code, "{kind}");
            }
        }
        assert_eq!(metric_label(SourceKind::Veapi, "10001"), "10001");
        assert_eq!(metric_label(SourceKind::Veapi, "10009"), "10009");
        assert_eq!(metric_label(SourceKind::Miaoyouquan, "-1"), "-1");
        assert_eq!(metric_label(SourceKind::Miaoyouquan, "401"), "401");
        assert_eq!(metric_label(SourceKind::Damaijia, "302"), "302");
        assert_eq!(metric_label(SourceKind::Sxt, "429"), "429");
        assert_eq!(
            metric_label(SourceKind::Unidesk, "TOP 41/isv.invalid-parameter"),
            "TOP 41"
        );
        assert_eq!(
            metric_label(
                SourceKind::Unidesk,
                "TOP 7/accesscontrol.limited-by-app-access-count"
            ),
            "TOP 7"
        );
    }

    #[test]
    fn a_code_another_source_knows_is_other() {
        assert_eq!(metric_label(SourceKind::Veapi, "302"), "other");
        assert_eq!(metric_label(SourceKind::Sxt, "10001"), "other");
        assert_eq!(metric_label(SourceKind::Damaijia, "-1"), "other");
        assert_eq!(metric_label(SourceKind::Miaoyouquan, "TOP 7"), "other");
        assert_eq!(metric_label(SourceKind::Unidesk, "429"), "other");
    }

    #[test]
    fn http_statuses_are_labelled_by_class_but_429() {
        for kind in SourceKind::ALL {
            assert_eq!(metric_label(kind, "HTTP 429"), "HTTP 429");
            for status in ["HTTP 500", "HTTP 502", "HTTP 503", "HTTP 599"] {
                assert_eq!(metric_label(kind, status), "HTTP 5xx", "{status}");
            }
            for status in ["HTTP 400", "HTTP 401", "HTTP 404", "HTTP 451"] {
                assert_eq!(metric_label(kind, status), "HTTP 4xx", "{status}");
            }
            for odd in [
                "HTTP 302",
                "HTTP 200",
                "HTTP 5000",
                "HTTP 5x",
                "HTTP 50",
                "HTTP",
                "HTTP  503",
            ] {
                assert_eq!(metric_label(kind, odd), "other", "{odd}");
            }
        }
    }

    #[test]
    fn ordersyncs_own_codes_are_labelled_as_they_are() {
        for kind in SourceKind::ALL {
            for code in OWN_CODES {
                assert_eq!(metric_label(kind, code), *code, "{kind}");
            }
        }
    }

    #[test]
    fn anything_else_is_other() {
        for kind in SourceKind::ALL {
            for code in [
                "",
                "other-thing",
                "SeCrEt-vekey-8d3f21",
                "10001 ",
                "TOP 7x",
                "TOP 99",
                "TOP unknown",
                "Timeout",
                "timeout\n",
                "\"10001\"",
            ] {
                assert_eq!(metric_label(kind, code), "other", "{kind} {code:?}");
            }
        }
    }
}
