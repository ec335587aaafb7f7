//! 大麦家 Douyin ERP `order-searchList`: shop orders with their SKU lines, page/size paging.
//!
//! Quirks this module owns (see `shared/seeds/004_*.txt`): a `POST` of JSON `{shop_id, params}` with
//! the access token as the `Authorization` header; `create_time_start` is required (we send the
//! pipeline's `start` for live syncs, which follow `update_time` ascending, and the window itself
//! for backfills, which follow `create_time`); bounds are inclusive unix seconds, so a half-open
//! window `[start, end)` is sent as `start ..= end − 1s`; numbers arrive as numbers or strings;
//! `product_id` is a JSON number that has already lost precision, so only `product_id_str` is read.
//!
//! Paging by page number drifts when orders change during a scan. The cursor we keep is
//! `offset:total:rescans`: where the next page starts, the `total` the last page reported, and how
//! often this run has re-read part of this window. When a page reports a different `total`:
//! - fewer matches (orders updated during the scan left the window): the rows not yet read have
//!   shifted back by at most the difference, so we step back that far and go on;
//! - more matches (orders appeared inside the window): they may sit anywhere before us, so the
//!   window is scanned again from its first page.
//!
//! Either costs one unit of a per-run budget ([`MAX_RESCANS`]); past it the run fails with the code
//! `drift` and a clear message, leaving the checkpoint where the last page put it (the next run
//! resumes there with a fresh budget). Rows read twice are harmless: the upsert is idempotent.
//!
//! Customer PII (receiver name, phone, address detail, ID card, buyer message, buyer ids) is masked,
//! kept or dropped per the pipeline's `pii` option *before* the row becomes `raw`: the plain values
//! never reach the store or a log.

use chrono::Duration;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::rawrow::{self, RawRow};
use super::{Axis, Page, PageQuery};
use crate::http::{Body, HttpRequest, UpstreamError};
use crate::model::{Kind, OrderRow, Status, SubOrderRow};
use crate::sources::{self, malformed, SourceKind};
use crate::timefmt;

pub const DEFAULT_ENDPOINT: &str =
    "http://www.damaijia168.com/vv/external/requestDyErp/order-searchList";
pub const MAX_PAGE_SIZE: u32 = 100;
pub const OPTION_KEYS: &[&str] = &["pii"];
/// How many times one run may re-read part of a window because `total` moved under it.
pub const MAX_RESCANS: u32 = 10;

/// Body `status` codes from the document.
pub mod codes {
    pub const OK: i64 = 0;
    /// 请求超时,请重试: the only code worth asking again.
    pub const TIMEOUT_RETRY: i64 = 101;
}

/// The document's error codes (100 bad parameters, 101 timeout, 103 no account, 200 system error,
/// 203 unsupported, 204 no permission or quota used up, 302 shop not authorised), as errors carry
/// them: the closed set of `code` metric labels of this source's own (see
/// [`sources::metric_label`]).
pub const METRIC_CODES: &[&str] = &["100", "101", "103", "200", "203", "204", "302"];

/// What happens to customer PII before a row is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiiMode {
    /// `138****1234`, `张*`, `***`: enough to recognise, not enough to reach anyone.
    Mask,
    Keep,
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub pii: PiiMode,
}

impl Options {
    pub fn parse(table: &toml::Table) -> Result<Options, (String, String)> {
        let pii = match table.get("pii") {
            None => PiiMode::Mask,
            Some(toml::Value::String(s)) if s == "mask" => PiiMode::Mask,
            Some(toml::Value::String(s)) if s == "keep" => PiiMode::Keep,
            Some(toml::Value::String(s)) if s == "drop" => PiiMode::Drop,
            Some(other) => {
                return Err((
                    "pii".into(),
                    format!("must be \"mask\", \"keep\" or \"drop\", got {other}"),
                ))
            }
        };
        Ok(Options { pii })
    }
}

/// Where a window's scan stands: see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ScanCursor {
    offset: u64,
    total: Option<u64>,
    rescans: u32,
}

impl ScanCursor {
    fn parse(text: &str) -> Result<ScanCursor, UpstreamError> {
        if text.is_empty() {
            return Ok(ScanCursor {
                offset: 0,
                total: None,
                rescans: 0,
            });
        }
        let bad = || UpstreamError::fatal("cursor", format!("saved cursor {text:?} is not ours"));
        let mut parts = text.split(':');
        let offset = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let total = match parts.next() {
            Some("") | None => None,
            Some(t) => Some(t.parse().map_err(|_| bad())?),
        };
        let rescans = match parts.next() {
            Some("") | None => 0,
            Some(r) => r.parse().map_err(|_| bad())?,
        };
        Ok(ScanCursor {
            offset,
            total,
            rescans,
        })
    }

    fn text(&self) -> String {
        match self.total {
            Some(t) => format!("{}:{t}:{}", self.offset, self.rescans),
            None => format!("{}::{}", self.offset, self.rescans),
        }
    }
}

/// A window resumed by a new run gets a fresh rescan budget (else a window that once drifted
/// too often would fail every run from then on).
pub fn resume_cursor(saved: &str) -> String {
    match ScanCursor::parse(saved) {
        Ok(c) => ScanCursor { rescans: 0, ..c }.text(),
        Err(_) => saved.to_string(),
    }
}

/// Rows per page as asked and as counted back (the config already keeps it in range).
fn page_size(q: &PageQuery<'_>) -> u64 {
    u64::from(q.page_size.clamp(1, MAX_PAGE_SIZE))
}

pub fn build_request(q: &PageQuery<'_>) -> Result<HttpRequest, UpstreamError> {
    let url = sources::endpoint_url(q)?;
    let secret = |key: &str| sources::required_secret(q, key);
    let token = secret("access_token")?;
    let shop_id = secret("shop_id")?;
    let cursor = ScanCursor::parse(q.cursor)?;
    let size = page_size(q);
    let start = timefmt::to_unix_seconds(q.window.start);
    // Inclusive whole seconds upstream; our windows are half-open.
    let last = timefmt::to_unix_seconds(q.window.end - Duration::seconds(1)).max(start);
    let mut params = json!({
        "page": cursor.offset / size,
        "size": size,
        "order_asc": true,
    });
    match q.axis {
        Axis::Live => {
            params["create_time_start"] = json!(timefmt::to_unix_seconds(q.start).min(start));
            params["update_time_start"] = json!(start);
            params["update_time_end"] = json!(last);
            params["order_by"] = json!("update_time");
        }
        Axis::Backfill => {
            params["create_time_start"] = json!(start);
            params["create_time_end"] = json!(last);
            params["order_by"] = json!("create_time");
        }
    }
    Ok(HttpRequest {
        method: Method::POST,
        url,
        headers: vec![("Authorization", token.expose().to_string())],
        body: Body::Json(json!({ "shop_id": shop_id.expose(), "params": params })),
    })
}

/// A well-formed answer, read in one pass: its rows come out already split into their fields.
#[derive(Deserialize)]
struct Answer<'a> {
    status: Option<Value>,
    msg: Option<Value>,
    message: Option<Value>,
    #[serde(borrow)]
    data: Option<AnswerData<'a>>,
}

#[derive(Deserialize)]
struct AnswerData<'a> {
    total: Option<Value>,
    #[serde(borrow)]
    shop_order_list: Option<Vec<RawRow<'a>>>,
}

pub fn parse_page(q: &PageQuery<'_>, status: u16, body: &[u8]) -> Result<Page, UpstreamError> {
    let pii = match q.options {
        sources::SourceOptions::Damaijia(o) => o.pii,
        // Never store plain PII because of a wiring mistake.
        _ => PiiMode::Mask,
    };
    // Anything but a well-formed answer is read again field by field, which says what is wrong.
    let Ok(answer) = serde_json::from_slice::<Answer<'_>>(body) else {
        return parse_page_field_by_field(q, pii, status, body);
    };
    let head = sources::object_of([
        ("status", answer.status),
        ("msg", answer.msg),
        ("message", answer.message),
    ]);
    check_answer(status, &head)?;
    let data = answer.data.ok_or_else(|| malformed("`data` is missing"))?;
    let total = total_of(&json!({ "total": data.total }))?;
    page_of(q, pii, total, data.shop_order_list.unwrap_or_default())
}

fn parse_page_field_by_field(
    q: &PageQuery<'_>,
    pii: PiiMode,
    status: u16,
    body: &[u8],
) -> Result<Page, UpstreamError> {
    let envelope = sources::json_object(status, body)?;
    let head = envelope
        .pick(&["status", "msg", "message"])
        .map_err(malformed)?;
    check_answer(status, &head)?;
    let data = envelope
        .get("data")
        .and_then(|d| RawRow::parse(d).ok())
        .ok_or_else(|| malformed("`data` is missing"))?;
    let total = total_of(&data.pick(&["total"]).map_err(malformed)?)?;
    let rows = rawrow::rows(data.get("shop_order_list"))
        .map_err(|e| malformed(format!("`shop_order_list` is {e}")))?;
    page_of(q, pii, total, rows)
}

/// The answer's own status, then the HTTP status: which error, if any, the answer is.
fn check_answer(status: u16, head: &Value) -> Result<(), UpstreamError> {
    let code = sources::int(head, "status")
        .map_err(malformed)?
        .ok_or_else(|| malformed(format!("HTTP {status} body has no `status`")))?;
    if code != codes::OK {
        let msg = sources::text(head, "msg")
            .or_else(|| sources::text(head, "message"))
            .unwrap_or_default();
        return Err(if code == codes::TIMEOUT_RETRY {
            UpstreamError::transient(code.to_string(), msg)
        } else {
            UpstreamError::fatal(code.to_string(), msg)
        });
    }
    if status != 200 {
        return Err(UpstreamError::fatal(
            format!("HTTP {status}"),
            "unexpected HTTP status",
        ));
    }
    Ok(())
}

/// `data.total` (in an object holding it as `total`) as a count.
fn total_of(data: &Value) -> Result<u64, UpstreamError> {
    sources::int(data, "total")
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .ok_or_else(|| malformed("`data.total` is missing or not a count"))
}

fn page_of(
    q: &PageQuery<'_>,
    pii: PiiMode,
    total: u64,
    rows: Vec<RawRow<'_>>,
) -> Result<Page, UpstreamError> {
    let row_count = rows.len() as u64;
    let orders = sources::normalise_rows(rows, |row| normalise_row(row, pii))?;
    let next = next_cursor(ScanCursor::parse(q.cursor)?, page_size(q), row_count, total)?;
    Ok(Page {
        orders,
        next_cursor: next.map(|c| c.text()),
    })
}

/// Where to read next after a page of `rows` rows reporting `total`; `None` when the window is done.
fn next_cursor(
    at: ScanCursor,
    size: u64,
    rows: u64,
    total: u64,
) -> Result<Option<ScanCursor>, UpstreamError> {
    let page_start = at.offset - at.offset % size;
    let drifted = at.total.is_some_and(|t| t != total);
    if !drifted {
        if rows < size || page_start.saturating_add(rows) >= total {
            return Ok(None);
        }
        // Only a corrupt checkpoint holds an offset this close to the limit: refuse it.
        let offset = page_start.checked_add(size).ok_or_else(|| {
            UpstreamError::fatal(
                "cursor",
                format!("saved cursor offset {} is out of range", at.offset),
            )
        })?;
        return Ok(Some(ScanCursor {
            offset,
            total: Some(total),
            rescans: at.rescans,
        }));
    }
    let before = at.total.unwrap_or(total);
    let rescans = at.rescans.saturating_add(1);
    if rescans > MAX_RESCANS {
        return Err(UpstreamError::fatal(
            "drift",
            format!(
                "the window's total kept changing while it was read ({before} → {total} at row {page_start}, \
                 {MAX_RESCANS} re-reads this run); stopping here, the next run resumes from the last committed page"
            ),
        ));
    }
    let offset = if total < before {
        // Rows not yet read moved back by at most the shrink.
        page_start.saturating_sub(before - total)
    } else {
        0
    };
    tracing::debug!(
        before,
        total,
        offset,
        "damaijia total changed during the scan; re-reading"
    );
    Ok(Some(ScanCursor {
        offset: offset - offset % size,
        total: Some(total),
        rescans,
    }))
}

/// damaijia `order_status` → the contract's vocabulary.
fn status_of(code: &str) -> Status {
    match code {
        "1" => Status::Pending,
        "105" | "2" => Status::Paid,
        "101" | "3" => Status::Shipped,
        "4" => Status::Closed,
        "5" => Status::Completed,
        other => {
            sources::note_unknown_status(SourceKind::Damaijia, other);
            Status::Unknown
        }
    }
}

/// `after_sale_info.refund_status` 3: 退款成功.
const REFUND_SUCCEEDED: i64 = 3;

/// One shop order (with its `sku_order_list`) → a `sale` order and one line per SKU order.
pub fn normalise(row: &Value, pii: PiiMode) -> Result<OrderRow, String> {
    normalise_text(&row.to_string(), pii)
}

/// The fields of a shop order that `normalise_text` reads.
const ORDER_FIELDS: &[&str] = &[
    "order_id",
    "order_status",
    "pay_amount",
    "create_time",
    "pay_time",
    "update_time",
    "finish_time",
    "shop_id",
    "shop_name",
];

/// The fields of a SKU line that `normalise_line` reads.
const LINE_FIELDS: &[&str] = &[
    "order_id",
    "order_status",
    "product_id_str",
    "product_id",
    "pay_amount",
    "after_sale_info",
    "sku_id",
    "product_name",
    "item_num",
    "update_time",
];

fn normalise_text(text: &str, pii: PiiMode) -> Result<OrderRow, String> {
    normalise_row(RawRow::parse(text)?, pii)
}

/// One shop order as the upstream's JSON text: its personal fields are hidden in that text, the
/// fields ordersync reads are parsed, the rest is stored as it came.
fn normalise_row(mut upstream: RawRow<'_>, pii: PiiMode) -> Result<OrderRow, String> {
    protect_pii(&mut upstream, pii)?;
    let row = &upstream.pick(ORDER_FIELDS)?;
    let order_id = sources::id(row, "order_id")?.ok_or("row has no order_id")?;
    // Each SKU line's row is stored once, as its `sub_orders.raw`; the order's `raw` is the rest
    // of the shop order (a line is ~2 KB: storing it twice was a third of what a sync wrote).
    let lines = rawrow::rows(upstream.get("sku_order_list"))
        .map_err(|e| format!("`sku_order_list` is {e}"))?;
    let mut o = OrderRow::new(
        SourceKind::Damaijia,
        order_id.clone(),
        Kind::Sale,
        String::new(),
    );
    o.status_raw = sources::text(row, "order_status").unwrap_or_default();
    o.status = status_of(&o.status_raw);
    o.pay_amount = sources::fen(row, "pay_amount")?;
    o.created_at = sources::time(row, "create_time")?;
    o.paid_at = sources::time(row, "pay_time")?;
    o.updated_at = sources::time(row, "update_time")?;
    o.confirmed_at = sources::time(row, "finish_time")?;
    o.shop_id = sources::id(row, "shop_id")?;
    o.shop_name = sources::text(row, "shop_name");
    let mut refunded: Option<i64> = None;
    let mut item_num: Option<i64> = None;
    for mut line in lines {
        protect_pii(&mut line, pii)?;
        let sub = normalise_line(&line.pick(LINE_FIELDS)?, line.to_json())?;
        if let Some(r) = sub.refund_amount {
            *refunded.get_or_insert(0) += r;
        }
        if let Some(n) = sub.item_num {
            *item_num.get_or_insert(0) += n;
        }
        o.sub_orders.push(sub);
    }
    if o.sub_orders.is_empty() {
        return Err(format!("order {order_id} has no sku_order_list lines"));
    }
    upstream.remove("sku_order_list");
    o.raw = upstream.to_json();
    o.refund_amount = refunded;
    o.item_num = item_num;
    // The first line names the order's product (most orders have one line).
    o.product_id = o.sub_orders[0].product_id.clone();
    o.product_name = o.sub_orders[0].product_name.clone();
    Ok(o)
}

fn normalise_line(line: &Value, raw: String) -> Result<SubOrderRow, String> {
    let sub_order_id = sources::id(line, "order_id")?.ok_or("a sku line has no order_id")?;
    let status_raw = sources::text(line, "order_status").unwrap_or_default();
    // `product_id` is a JSON number that lost its last digits on the way: only the string is exact.
    let product_id = match sources::id(line, "product_id_str")? {
        Some(p) => Some(p),
        None => sources::id(line, "product_id")?,
    };
    let pay_amount = sources::fen(line, "pay_amount")?;
    let refund_amount = match line.get("after_sale_info") {
        Some(a) if sources::int(a, "refund_status")? == Some(REFUND_SUCCEEDED) => pay_amount,
        _ => None,
    };
    Ok(SubOrderRow {
        sub_order_id,
        sku_id: sources::id(line, "sku_id")?,
        product_id,
        product_name: sources::text(line, "product_name"),
        item_num: sources::int(line, "item_num")?,
        pay_amount,
        status: status_of(&status_raw),
        status_raw,
        raw,
        refund_amount,
        commission: None,
        updated_at: sources::time(line, "update_time")?,
    })
}

/// How one personal field is hidden.
#[derive(Clone, Copy)]
enum PiiKind {
    Phone,
    Name,
    /// Addresses, ID numbers, ciphertexts, buyer messages and ids: nothing of them is kept.
    Opaque,
}

/// Personal fields of an order and of each SKU line (the same names at both levels).
const PII_FIELDS: &[(&str, PiiKind)] = &[
    ("post_tel", PiiKind::Phone),
    ("post_receiver", PiiKind::Name),
    ("encrypt_post_tel", PiiKind::Opaque),
    ("encrypt_post_receiver", PiiKind::Opaque),
    ("buyer_words", PiiKind::Opaque),
    ("doudian_open_id", PiiKind::Opaque),
    ("open_id", PiiKind::Opaque),
];
const ADDRESS_FIELDS: &[(&str, PiiKind)] = &[
    ("detail", PiiKind::Opaque),
    ("encrypt_detail", PiiKind::Opaque),
];
const ID_CARD_FIELDS: &[(&str, PiiKind)] = &[
    ("id_card_no", PiiKind::Opaque),
    ("id_card_name", PiiKind::Name),
];
/// Objects holding personal fields, with those fields.
const NESTED_PII: &[(&str, &[(&str, PiiKind)])] = &[
    ("post_addr", ADDRESS_FIELDS),
    ("user_id_info", ID_CARD_FIELDS),
];

/// Masks, keeps or drops the personal fields of one shop order or SKU line, in its JSON text: the
/// personal fields alone are parsed, protected as a `Value` and written back.
fn protect_pii(row: &mut RawRow<'_>, mode: PiiMode) -> Result<(), String> {
    if mode == PiiMode::Keep {
        return Ok(());
    }
    let keys: Vec<&str> = PII_FIELDS
        .iter()
        .map(|(key, _)| *key)
        .chain(NESTED_PII.iter().map(|(key, _)| *key))
        .collect();
    let mut personal = row.pick(&keys)?;
    protect_level(&mut personal, mode);
    for key in keys {
        match personal.get(key) {
            Some(value) => row.replace(key, value),
            None => row.remove(key),
        }
    }
    Ok(())
}

fn protect_level(v: &mut Value, mode: PiiMode) {
    let Some(obj) = v.as_object_mut() else { return };
    protect_fields(obj, PII_FIELDS, mode);
    for &(key, fields) in NESTED_PII {
        match obj.get_mut(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(inner)) => protect_fields(inner, fields, mode),
            Some(Value::Array(items)) => {
                for item in items {
                    match item {
                        Value::Object(inner) => protect_fields(inner, fields, mode),
                        other => *other = Value::String(mask("", PiiKind::Opaque)),
                    }
                }
            }
            // Not the documented object: its parts cannot be told apart, so none of it is kept.
            Some(_) => match mode {
                PiiMode::Drop => {
                    obj.remove(key);
                }
                _ => {
                    obj.insert(key.to_string(), Value::String(mask("", PiiKind::Opaque)));
                }
            },
        }
    }
}

fn protect_fields(obj: &mut Map<String, Value>, fields: &[(&str, PiiKind)], mode: PiiMode) {
    for (name, kind) in fields {
        match mode {
            PiiMode::Keep => {}
            PiiMode::Drop => {
                obj.remove(*name);
            }
            PiiMode::Mask => {
                if let Some(value) = obj.get_mut(*name) {
                    let masked = match &*value {
                        Value::Null => continue,
                        Value::String(s) if s.is_empty() => continue,
                        Value::String(s) => mask(s, *kind),
                        other => mask(&other.to_string(), *kind),
                    };
                    *value = Value::String(masked);
                }
            }
        }
    }
}

/// `13812341234` → `138****1234`, `张三丰` → `张**`, anything else → `***`.
fn mask(text: &str, kind: PiiKind) -> String {
    // Most personal fields are opaque: they are hidden without looking at their characters.
    let chars = match kind {
        PiiKind::Opaque => return "***".to_string(),
        PiiKind::Phone | PiiKind::Name => text.chars().count(),
    };
    match kind {
        PiiKind::Phone if chars >= 8 => {
            let head: String = text.chars().take(3).collect();
            let tail: String = text.chars().skip(chars - 4).collect();
            format!("{head}****{tail}")
        }
        PiiKind::Name if chars >= 2 => {
            let mut out = String::with_capacity(text.len());
            out.extend(text.chars().take(1));
            out.extend(std::iter::repeat_n('*', chars - 1));
            out
        }
        _ => "***".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Auth;
    use crate::planner::Window;
    use crate::sources::SourceOptions;

    const SAMPLE: &str = include_str!("../../tests/fixtures/damaijia/sample_page.json");

    fn query<'a>(auth: &'a Auth, options: &'a SourceOptions, cursor: &'a str) -> PageQuery<'a> {
        PageQuery {
            endpoint: DEFAULT_ENDPOINT,
            auth,
            options,
            window: Window {
                start: timefmt::parse_user_time("2021-12-01").unwrap(),
                end: timefmt::parse_user_time("2021-12-31").unwrap(),
            },
            cursor,
            page_size: 100,
            axis: Axis::Live,
            start: timefmt::parse_user_time("2021-01-01").unwrap(),
        }
    }

    fn opts(pii: PiiMode) -> SourceOptions {
        SourceOptions::Damaijia(Options { pii })
    }

    #[test]
    fn the_documented_sample_normalises_exactly() {
        let auth = Auth::default();
        let o = opts(PiiMode::Mask);
        let page = parse_page(&query(&auth, &o, ""), 200, SAMPLE.as_bytes()).unwrap();
        assert_eq!(page.next_cursor, None, "total 2, both on the first page");
        assert_eq!(page.orders.len(), 2);
        let first = &page.orders[0];
        assert_eq!(first.order_id, "4879354354618346764");
        assert_eq!(first.kind, Kind::Sale);
        assert_eq!(first.status, Status::Closed);
        assert_eq!(first.status_raw, "4");
        assert_eq!(first.pay_amount, Some(1000));
        assert_eq!(first.refund_amount, Some(1000), "its line was refunded");
        assert_eq!(first.shop_id.as_deref(), Some("20358278"));
        assert_eq!(first.shop_name.as_deref(), Some("淘易淘"));
        assert_eq!(
            first.created_at.map(timefmt::fmt_seconds).as_deref(),
            Some("2021-12-22 15:32:25")
        );
        assert_eq!(first.confirmed_at, None, "finish_time 0 is no time");
        let line = &first.sub_orders[0];
        assert_eq!(line.sub_order_id, "4879354354618346764");
        assert_eq!(
            line.product_id.as_deref(),
            Some("3489373605366769084"),
            "product_id_str, not the rounded number"
        );
        assert_eq!(line.sku_id.as_deref(), Some("1703795743450127"));
        assert_eq!(line.item_num, Some(1));
    }

    #[test]
    fn one_pass_and_field_by_field_read_a_page_the_same() {
        let auth = Auth::default();
        for pii in [PiiMode::Mask, PiiMode::Keep, PiiMode::Drop] {
            let o = opts(pii);
            let q = query(&auth, &o, "");
            assert!(
                serde_json::from_str::<Answer<'_>>(SAMPLE).is_ok(),
                "one pass"
            );
            let one_pass = parse_page(&q, 200, SAMPLE.as_bytes()).unwrap();
            assert_eq!(
                one_pass,
                parse_page_field_by_field(&q, pii, 200, SAMPLE.as_bytes()).unwrap()
            );
        }
    }

    #[test]
    fn numbers_as_strings_read_the_same() {
        let auth = Auth::default();
        let o = opts(PiiMode::Mask);
        let as_strings = SAMPLE
            .replace("\"pay_amount\": 1000", "\"pay_amount\": \"1000\"")
            .replace(
                "\"create_time\": 1640158345",
                "\"create_time\": \"1640158345\"",
            )
            .replace("\"total\": 2", "\"total\": \"2\"");
        let a = parse_page(&query(&auth, &o, ""), 200, SAMPLE.as_bytes()).unwrap();
        let b = parse_page(&query(&auth, &o, ""), 200, as_strings.as_bytes()).unwrap();
        assert_eq!(a.orders[0].pay_amount, b.orders[0].pay_amount);
        assert_eq!(a.orders[0].created_at, b.orders[0].created_at);
        assert_eq!(a.orders[0].sub_orders[0].pay_amount, Some(1000));
    }

    #[test]
    fn pii_is_masked_kept_or_dropped_in_raw() {
        let page: Value = serde_json::from_str(SAMPLE).unwrap();
        let mut row = page["data"]["shop_order_list"][0].clone();
        row["post_tel"] = json!("13912345678");
        row["post_receiver"] = json!("张三丰");
        row["post_addr"]["detail"] = json!("丹棱街1号");
        row["user_id_info"] = json!({"id_card_no": "110105199003071234", "id_card_name": "李四"});
        row["sku_order_list"][0]["post_tel"] = json!("13912345678");
        let masked = normalise(&row, PiiMode::Mask).unwrap();
        for plain in [
            "13912345678",
            "张三丰",
            "丹棱街1号",
            "110105199003071234",
            "李四",
        ] {
            assert!(!masked.raw.contains(plain), "{plain} in masked raw");
            assert!(
                !masked.sub_orders[0].raw.contains(plain),
                "{plain} in masked line raw"
            );
        }
        assert!(masked.raw.contains("139****5678"));
        assert!(masked.raw.contains("张**"));
        let kept = normalise(&row, PiiMode::Keep).unwrap();
        assert!(kept.raw.contains("13912345678") && kept.raw.contains("丹棱街1号"));
        let dropped = normalise(&row, PiiMode::Drop).unwrap();
        let v: Value = serde_json::from_str(&dropped.raw).unwrap();
        assert!(v.get("post_tel").is_none() && v["post_addr"].get("detail").is_none());
        assert_eq!(
            v["post_addr"]["city"]["name"], "杭州市",
            "regions are not personal"
        );
        assert!(!dropped.sub_orders[0].raw.contains("13912345678"));
    }

    #[test]
    fn pii_in_an_undocumented_shape_is_still_hidden() {
        let page: Value = serde_json::from_str(SAMPLE).unwrap();
        let mut row = page["data"]["shop_order_list"][0].clone();
        row["post_addr"] = json!("北京市海淀区丹棱街1号");
        row["user_id_info"] = json!([{"id_card_no": "110105199003071234", "id_card_name": "李四"}, "110105199003075678"]);
        for mode in [PiiMode::Mask, PiiMode::Drop] {
            let o = normalise(&row, mode).unwrap();
            for plain in [
                "丹棱街1号",
                "110105199003071234",
                "李四",
                "110105199003075678",
            ] {
                assert!(!o.raw.contains(plain), "{mode:?}: {plain} in raw");
            }
        }
    }

    #[test]
    fn body_codes_are_classified() {
        let auth = Auth::default();
        let o = opts(PiiMode::Mask);
        let q = query(&auth, &o, "");
        let answer = |code: i64| {
            parse_page(
                &q,
                200,
                format!(r#"{{"status":{code},"msg":"m","data":null}}"#).as_bytes(),
            )
        };
        assert!(matches!(answer(101), Err(UpstreamError::Transient { code, .. }) if code == "101"));
        for fatal in [100, 103, 200, 203, 204, 302] {
            assert!(
                matches!(answer(fatal), Err(UpstreamError::Fatal { code, .. }) if code == fatal.to_string()),
                "{fatal}"
            );
        }
        assert!(matches!(
            parse_page(&q, 200, b"<html>"),
            Err(UpstreamError::Transient { .. })
        ));
    }

    fn at(offset: u64, total: Option<u64>, rescans: u32) -> ScanCursor {
        ScanCursor {
            offset,
            total,
            rescans,
        }
    }

    #[test]
    fn paging_stops_at_total_and_rereads_on_drift() {
        // A steady window of 250 rows, pages of 100.
        assert_eq!(
            next_cursor(at(0, None, 0), 100, 100, 250).unwrap(),
            Some(at(100, Some(250), 0))
        );
        assert_eq!(
            next_cursor(at(200, Some(250), 0), 100, 50, 250).unwrap(),
            None
        );
        assert_eq!(
            next_cursor(at(100, Some(200), 0), 100, 100, 200).unwrap(),
            None
        );
        // Two rows left the window before page 2: step back two rows (to the page holding them).
        assert_eq!(
            next_cursor(at(200, Some(250), 0), 100, 48, 248).unwrap(),
            Some(at(100, Some(248), 1))
        );
        // A row appeared: it may be anywhere before us, start over.
        assert_eq!(
            next_cursor(at(200, Some(250), 0), 100, 51, 251).unwrap(),
            Some(at(0, Some(251), 1))
        );
        // Past the budget: a clear failure, not an endless loop.
        let err = next_cursor(at(200, Some(250), MAX_RESCANS), 100, 51, 251).unwrap_err();
        assert_eq!(err.code(), "drift");
    }

    #[test]
    fn cursors_round_trip_and_resume_with_a_fresh_budget() {
        for c in [at(0, None, 0), at(300, Some(1234), 4)] {
            assert_eq!(ScanCursor::parse(&c.text()).unwrap(), c);
        }
        assert_eq!(resume_cursor("300:1234:4"), "300:1234:0");
        assert!(ScanCursor::parse("x:y").is_err());
    }

    #[test]
    fn live_asks_by_update_time_backfill_by_create_time() {
        let auth: Auth = [("access_token", "tok"), ("shop_id", "77977")]
            .into_iter()
            .collect();
        let o = opts(PiiMode::Mask);
        let mut q = query(&auth, &o, "200:250:0");
        let req = build_request(&q).unwrap();
        assert_eq!(req.headers, vec![("Authorization", "tok".to_string())]);
        let Body::Json(body) = &req.body else {
            panic!("not JSON")
        };
        assert_eq!(body["shop_id"], "77977");
        let p = &body["params"];
        assert_eq!(p["page"], 2);
        assert_eq!(p["order_by"], "update_time");
        assert_eq!(p["order_asc"], true);
        assert_eq!(p["update_time_start"], 1638288000);
        assert_eq!(p["update_time_end"], 1638288000 + 30 * 86400 - 1);
        assert_eq!(p["create_time_start"], 1609430400, "the pipeline's start");
        q.axis = Axis::Backfill;
        let req = build_request(&q).unwrap();
        let Body::Json(body) = &req.body else {
            panic!("not JSON")
        };
        assert_eq!(body["params"]["order_by"], "create_time");
        assert_eq!(body["params"]["create_time_start"], 1638288000);
        assert!(body["params"].get("update_time_start").is_none());
    }
}
