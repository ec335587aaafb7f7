//! 大麦家 Douyin ERP `order-searchList`: shop orders with their SKU lines, page/size paging.
//!
//! Quirks this module owns (see `shared/seeds/004_*.txt`): a `POST` of JSON `{shop_id, params}` with
//! the access token as the `Authorization` header; `create_time_start` is required (we send the
//! pipeline's `start` for live syncs, which follow `update_time` ascending, and the window itself
//! for backfills, which follow `create_time`); bounds are inclusive unix seconds, so a half-open
//! window `[start, end)` is sent as `start ..= end − 1s`; numbers arrive as numbers or strings;
//! `product_id` is a JSON number that has already lost precision, so only `product_id_str` is read.
//!
//! Paging by page number drifts when orders change during a scan: live syncs page by key, backfills
//! by offset with a `total` guard (see `paging`). Customer PII is masked, kept or dropped per the
//! pipeline's `pii` option *before* the row becomes `raw` (see `pii`).

mod paging;
mod pii;

use chrono::Duration;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::rawrow::{self, RawRow};
use super::{Axis, Page, PageQuery};
use crate::http::{Body, HttpRequest, UpstreamError};
use crate::model::{Kind, OrderRow, Status, SubOrderRow};
use crate::sources::{self, malformed, SourceKind};
use crate::timefmt;
use paging::Cursor;
pub use paging::{resume_cursor, MAX_RESCANS};
use pii::protect_pii;
pub use pii::PiiMode;

pub const DEFAULT_ENDPOINT: &str =
    "http://www.damaijia168.com/vv/external/requestDyErp/order-searchList";
pub const MAX_PAGE_SIZE: u32 = 100;
pub const OPTION_KEYS: &[&str] = &["pii"];

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

/// Rows per page as asked and as counted back (the config already keeps it in range).
fn page_size(q: &PageQuery<'_>) -> u64 {
    u64::from(q.page_size.clamp(1, MAX_PAGE_SIZE))
}

pub fn build_request(q: &PageQuery<'_>) -> Result<HttpRequest, UpstreamError> {
    let url = sources::endpoint_url(q)?;
    let secret = |key: &str| sources::required_secret(q, key);
    let token = secret("access_token")?;
    let shop_id = secret("shop_id")?;
    let cursor = Cursor::parse(q.axis, q.cursor)?;
    let size = page_size(q);
    let start = timefmt::to_unix_seconds(q.window.start);
    // Inclusive whole seconds upstream; our windows are half-open.
    let last = timefmt::to_unix_seconds(q.window.end - Duration::seconds(1)).max(start);
    let mut params = json!({
        "page": cursor.page(size),
        "size": size,
        "order_asc": true,
    });
    match q.axis {
        Axis::Live | Axis::Rescan => {
            params["create_time_start"] = json!(timefmt::to_unix_seconds(q.start).min(start));
            params["update_time_start"] = json!(cursor.since().unwrap_or(start).clamp(start, last));
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
    let body = sources::body_text(body);
    // Anything but a well-formed answer is read again field by field, which says what is wrong.
    let Ok(answer) = serde_json::from_str::<Answer<'_>>(&body) else {
        return parse_page_field_by_field(q, pii, status, &body);
    };
    let head = sources::object_of([
        ("status", answer.status),
        ("msg", answer.msg),
        ("message", answer.message),
    ]);
    check_answer(status, &head)?;
    let data = answer.data.ok_or_else(|| malformed("`data` is missing"))?;
    let total = total_of(&json!({ "total": data.total }))?;
    let rows = data.shop_order_list.unwrap_or_default();
    page_of(q, pii, total, rows.into_iter().map(Ok).collect())
}

fn parse_page_field_by_field(
    q: &PageQuery<'_>,
    pii: PiiMode,
    status: u16,
    body: &str,
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
    let rows = rawrow::elements(data.get("shop_order_list"))
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
    rows: Vec<rawrow::Element<'_>>,
) -> Result<Page, UpstreamError> {
    let cursor = Cursor::parse(q.axis, q.cursor)?;
    // Every row counts where it stands, a rejected one too: paging goes by upstream's order.
    let times: Vec<Option<i64>> = rows
        .iter()
        .map(|row| row.as_ref().ok().and_then(update_second))
        .collect();
    let (orders, rejected) =
        sources::normalise_rows(rows, sources::RowText::Personal, &["order_id"], |row| {
            normalise_row(row, pii)
        });
    let next = cursor.next(page_size(q), &times, total)?;
    Ok(Page {
        orders,
        rejected,
        next_cursor: next.map(|c| c.text()),
    })
}

/// A row's `update_time` in unix seconds, if it has one that can be read: what live paging keys on.
fn update_second(row: &RawRow<'_>) -> Option<i64> {
    let field = row.pick(&["update_time"]).ok()?;
    let time = sources::time(&field, "update_time").ok()??;
    Some(timefmt::to_unix_seconds(time))
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
    normalise_row(&mut RawRow::parse(text)?, pii)
}

/// One shop order as the upstream's JSON text: its personal fields, and its lines', are hidden in
/// that text first, so that the text holds no plain PII even if the row is rejected; then the
/// fields ordersync reads are parsed, and the rest is stored as it came.
fn normalise_row<'a>(upstream: &mut RawRow<'a>, pii: PiiMode) -> Result<OrderRow, String> {
    protect_pii(upstream, pii);
    let list = upstream.get_text("sku_order_list");
    let mut lines = match rawrow::rows(list.as_deref()) {
        Ok(lines) => lines,
        Err(e) => {
            // Lines that cannot be split cannot be masked: none of them is kept.
            match pii {
                PiiMode::Keep => {}
                PiiMode::Mask => upstream.replace_text("sku_order_list", "\"***\"".into()),
                PiiMode::Drop => upstream.remove("sku_order_list"),
            }
            return Err(format!("`sku_order_list` is {e}"));
        }
    };
    let line_texts: Vec<String> = lines
        .iter_mut()
        .map(|line| {
            protect_pii(line, pii);
            line.to_json()
        })
        .collect();
    let order = order_of(upstream, &lines, line_texts.clone());
    match order {
        Ok(mut o) => {
            // Each SKU line's row is stored once, as its `sub_orders.raw`; the order's `raw` is the
            // rest of the shop order (a line is ~2 KB: storing it twice was a third of what a sync
            // wrote).
            upstream.remove("sku_order_list");
            o.raw = upstream.to_json();
            Ok(o)
        }
        Err(e) => {
            if pii != PiiMode::Keep {
                upstream.replace_text("sku_order_list", format!("[{}]", line_texts.join(",")));
            }
            Err(e)
        }
    }
}

/// The order a shop order's fields and its (already protected) lines make; its `raw` is left to
/// the caller.
fn order_of(
    upstream: &RawRow<'_>,
    lines: &[RawRow<'_>],
    line_texts: Vec<String>,
) -> Result<OrderRow, String> {
    let row = &upstream.pick(ORDER_FIELDS)?;
    let order_id = sources::id(row, "order_id")?.ok_or("row has no order_id")?;
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
    for (line, text) in lines.iter().zip(line_texts) {
        let sub = normalise_line(&line.pick(LINE_FIELDS)?, text)?;
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

#[cfg(test)]
mod tests;
