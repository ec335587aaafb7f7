//! Alimama UniDesk `alibaba.taobao.ud.smart.order.detail.pull` over the TOP gateway: SKU sub-orders.
//!
//! Quirks this module owns (see `shared/seeds/002_*.txt`): every call is signed the TOP way (md5 of
//! the app secret, every other parameter as name+value sorted by name, and the secret again,
//! uppercase hex); the query window is `yyyy-MM-dd HH:mm:ss.SSS` and may not cross a Beijing day
//! (the planner splits at midnight; the half-open window is sent as `start ..= end − 1ms`); paging is
//! by `cursor_id`, with no page size; a row is one SKU line (`sub_order_id`) of a main order
//! (`order_id`), and a main order's lines may arrive on different pages or windows — so rows are
//! `partial` orders whose totals the store sums from all stored lines. Ids are 64-bit JSON numbers,
//! kept exactly. There is no update time: a line's is the latest of its create, pay and refund
//! times. Errors come as `error_response {code, msg, sub_code, sub_msg}`: call limits are rate
//! limiting, `isp.*` and service-unavailable are transient, everything else (signature, app key,
//! session, permission, parameters) is fatal with code and sub_code.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDateTime};
use md5::{Digest, Md5};
use reqwest::Method;
use serde_json::{json, Value};

use super::rawrow::{self, RawRow};
use super::{Page, PageQuery};
use crate::http::{Body, HttpRequest, UpstreamError};
use crate::model::{Kind, OrderRow, Status, SubOrderRow};
use crate::planner::WindowRules;
use crate::secret::Secret;
use crate::sources::{self, SourceKind};
use crate::timefmt;

pub const METHOD: &str = "alibaba.taobao.ud.smart.order.detail.pull";
pub const DEFAULT_ENDPOINT: &str = "https://eco.taobao.com/router/rest";
pub const OPTION_KEYS: &[&str] = &["prod_type"];

/// TOP's platform error codes (the gateway's, the same for every TOP method: call limits,
/// permissions, signature, session, app key, timestamp, version, arguments, remote service) as
/// errors carry them, without a sub-code: the closed set of `code` metric labels of this source's
/// own (see [`sources::metric_label`]).
pub const METRIC_CODES: &[&str] = &[
    "TOP 3", "TOP 7", "TOP 9", "TOP 10", "TOP 11", "TOP 12", "TOP 13", "TOP 15", "TOP 21",
    "TOP 22", "TOP 23", "TOP 24", "TOP 25", "TOP 26", "TOP 27", "TOP 28", "TOP 29", "TOP 30",
    "TOP 31", "TOP 32", "TOP 33", "TOP 34", "TOP 40", "TOP 41", "TOP 42", "TOP 43", "TOP 47",
    "TOP 50",
];

/// The metric label of an error code built by [`classify`]: `TOP <code>` when the code is one of
/// TOP's, its sub-code left out (sub-codes are free text upstream may add to at will).
pub fn metric_code(code: &str) -> Option<&'static str> {
    let main = code.split_once('/').map_or(code, |(main, _)| main);
    sources::one_of(METRIC_CODES, main)
}
const RESPONSE_KEY: &str = "alibaba_taobao_ud_smart_order_detail_pull_response";

pub fn window_rules() -> WindowRules {
    WindowRules {
        same_day: true,
        ..Default::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// 1 udsmart, 2 流量通Pro.
    pub prod_type: Option<u8>,
}

impl Options {
    pub fn parse(table: &toml::Table) -> Result<Options, (String, String)> {
        let prod_type = match table.get("prod_type") {
            None => None,
            Some(toml::Value::Integer(n)) if (1..=2).contains(n) => Some(*n as u8),
            Some(other) => {
                return Err(("prod_type".into(), format!("must be 1 or 2, got {other}")))
            }
        };
        Ok(Options { prod_type })
    }
}

/// TOP's md5 signature: uppercase hex md5(secret + k1v1k2v2… (sorted by name) + secret).
pub fn sign(params: &BTreeMap<String, String>, secret: &Secret) -> String {
    let mut h = Md5::new();
    h.update(secret.expose().as_bytes());
    for (k, v) in params {
        if k != "sign" {
            h.update(k.as_bytes());
            h.update(v.as_bytes());
        }
    }
    h.update(secret.expose().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02X}")).collect()
}

pub fn build_request(q: &PageQuery<'_>, opts: &Options) -> Result<HttpRequest, UpstreamError> {
    let mut url = sources::endpoint_url(q)?;
    let secret = |key: &str| sources::required_secret(q, key);
    let last_ms = (q.window.end - Duration::milliseconds(1)).max(q.window.start);
    let mut dto = json!({
        "start_time": timefmt::fmt_millis(q.window.start),
        "end_time": timefmt::fmt_millis(last_ms),
    });
    if !q.cursor.is_empty() {
        dto["cursor_id"] = json!(q.cursor);
    }
    if let Some(p) = opts.prod_type {
        dto["prod_type"] = json!(p);
    }
    let mut params = BTreeMap::new();
    params.insert("method".to_string(), METHOD.to_string());
    params.insert(
        "app_key".to_string(),
        secret("app_key")?.expose().to_string(),
    );
    if let Some(session) = q.auth.get("session") {
        params.insert("session".to_string(), session.expose().to_string());
    }
    params.insert(
        "timestamp".to_string(),
        timefmt::fmt_seconds(timefmt::beijing_now()),
    );
    params.insert("format".to_string(), "json".to_string());
    params.insert("v".to_string(), "2.0".to_string());
    params.insert("sign_method".to_string(), "md5".to_string());
    params.insert("order_top_cursor_query_dto".to_string(), dto.to_string());
    let signature = sign(&params, secret("app_secret")?);
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &params {
            pairs.append_pair(k, v);
        }
        pairs.append_pair("sign", &signature);
    }
    Ok(HttpRequest {
        method: Method::GET,
        url,
        headers: Vec::new(),
        body: Body::Empty,
    })
}

fn classify(err: &Value) -> UpstreamError {
    let code = sources::text(err, "code").unwrap_or_default();
    let msg = sources::text(err, "msg").unwrap_or_default();
    let sub_code = sources::text(err, "sub_code").unwrap_or_default();
    let sub_msg = sources::text(err, "sub_msg").unwrap_or_default();
    let shown_code = if sub_code.is_empty() {
        format!("TOP {code}")
    } else {
        format!("TOP {code}/{sub_code}")
    };
    let message = if sub_msg.is_empty() {
        msg.clone()
    } else {
        format!("{msg}: {sub_msg}")
    };
    let limited = code == "7" || sub_code.contains("limited") || sub_code.contains("call-limited");
    if limited {
        return UpstreamError::RateLimited {
            code: shown_code,
            message,
            retry_after: None,
        };
    }
    // isp.*: the platform's own trouble; 10 service unavailable; 15 remote service error.
    if sub_code.starts_with("isp.")
        || code == "10"
        || (code == "15" && !sub_code.starts_with("isv."))
    {
        return UpstreamError::transient(shown_code, message);
    }
    UpstreamError::fatal(shown_code, message)
}

/// A field of `row` that must be an object when present, split into its fields.
fn object<'r>(row: &'r RawRow<'_>, key: &str) -> Result<Option<RawRow<'r>>, UpstreamError> {
    match row.get(key) {
        None | Some("null") => Ok(None),
        Some(text) => RawRow::parse(text)
            .map(Some)
            .map_err(|e| sources::malformed(format!("`{key}` is {e}"))),
    }
}

pub fn parse_page(status: u16, body: &[u8]) -> Result<Page, UpstreamError> {
    let body = sources::body_text(body);
    let envelope = sources::json_object(status, &body)?;
    if let Some(err) = object(&envelope, "error_response")? {
        let fields = ["code", "msg", "sub_code", "sub_msg"];
        return Err(classify(&err.pick(&fields).map_err(sources::malformed)?));
    }
    let resp = object(&envelope, RESPONSE_KEY)?
        .ok_or_else(|| sources::malformed(format!("HTTP {status} body has no {RESPONSE_KEY}")))?;
    let head = resp
        .pick(&["success", "error_code", "error_msg", "cursor_id"])
        .map_err(sources::malformed)?;
    if head.get("success") == Some(&Value::Bool(false)) {
        let code = sources::text(&head, "error_code").unwrap_or_else(|| "unknown".into());
        let msg = sources::text(&head, "error_msg").unwrap_or_default();
        return Err(UpstreamError::fatal(format!("TOP {code}"), msg));
    }
    // `result` that is not an object reads as one without rows.
    let result = resp
        .get("result")
        .and_then(|r| RawRow::parse(r).ok())
        .unwrap_or_else(RawRow::empty);
    let rows = rawrow::elements(result.get("order_detail_cursor_top_d_t_o"))
        .map_err(|e| sources::malformed(format!("`result` is {e}")))?;
    let cursor = sources::text(&head, "cursor_id").unwrap_or_default();
    let done = rows.is_empty() || cursor.is_empty();
    let (orders, rejected) =
        sources::normalise_rows(rows, sources::RowText::Plain, &["order_id"], |row| {
            normalise_row(row)
        });
    Ok(Page {
        orders,
        rejected,
        next_cursor: (!done).then_some(cursor),
    })
}

fn status_of(code: i64) -> Status {
    match code {
        1 => Status::Pending,
        2 => Status::Paid,
        3 => Status::Refunded,
        4 => Status::Presale,
        5 => Status::Completed,
        other => {
            sources::note_unknown_status(SourceKind::Unidesk, &other.to_string());
            Status::Unknown
        }
    }
}

fn latest(times: &[Option<NaiveDateTime>]) -> Option<NaiveDateTime> {
    times.iter().flatten().max().copied()
}

/// One SKU line → a partial sale order carrying that line.
pub fn normalise(row: &Value) -> Result<OrderRow, String> {
    let text = row.to_string();
    normalise_row(&RawRow::parse(&text)?)
}

/// The fields of a line that `normalise_row` reads.
const FIELDS: &[&str] = &[
    "order_id",
    "sub_order_id",
    "order_status",
    "order_create_time",
    "order_pay_time",
    "order_refund_time",
    "order_refund_fee",
    "seller_id",
    "shop_name",
    "pay_item_id",
    "pay_item_name",
    "buy_amount",
    "pay_fee",
    "commission_fee",
];

fn normalise_row(upstream: &RawRow<'_>) -> Result<OrderRow, String> {
    let row = &upstream.pick(FIELDS)?;
    let order_id = sources::id(row, "order_id")?.ok_or("row has no order_id")?;
    let sub_order_id = sources::id(row, "sub_order_id")?.ok_or("row has no sub_order_id")?;
    let raw = upstream.to_json();
    let code = sources::int(row, "order_status")?.ok_or("row has no order_status")?;
    let status = status_of(code);
    let created = sources::time(row, "order_create_time")?;
    // Documented as meaningless for some statuses: treated as absent there.
    let paid = if code == 1 {
        None
    } else {
        sources::time(row, "order_pay_time")?
    };
    let refunded = if code == 3 {
        sources::time(row, "order_refund_time")?
    } else {
        None
    };
    let refund_amount = if code == 3 {
        sources::fen(row, "order_refund_fee")?
    } else {
        None
    };
    let updated = latest(&[created, paid, refunded]);
    let mut o = OrderRow::new(SourceKind::Unidesk, order_id, Kind::Sale, raw.clone());
    o.partial = true;
    o.status = status;
    o.status_raw = code.to_string();
    o.created_at = created;
    o.paid_at = paid;
    o.refunded_at = refunded;
    o.updated_at = updated;
    o.shop_id = sources::id(row, "seller_id")?;
    o.shop_name = sources::text(row, "shop_name");
    o.product_id = sources::id(row, "pay_item_id")?;
    o.product_name = sources::text(row, "pay_item_name");
    o.sub_orders.push(SubOrderRow {
        sub_order_id,
        sku_id: sources::id(row, "pay_item_id")?,
        product_id: o.product_id.clone(),
        product_name: o.product_name.clone(),
        item_num: sources::int(row, "buy_amount")?,
        pay_amount: sources::fen(row, "pay_fee")?,
        status,
        status_raw: o.status_raw.clone(),
        raw,
        refund_amount,
        commission: sources::fen(row, "commission_fee")?,
        updated_at: updated,
    });
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../tests/fixtures/unidesk/sample_page.json");

    #[test]
    fn top_signature_matches_a_hand_computed_md5() {
        let mut p = BTreeMap::new();
        p.insert("method".to_string(), "a.b".to_string());
        p.insert("app_key".to_string(), "12345".to_string());
        p.insert("sign".to_string(), "ignored".to_string());
        // md5("s" + "app_key12345" + "methoda.b" + "s"), uppercase hex, computed with Python's hashlib.
        let expected = include_str!("../../tests/fixtures/unidesk/sign_example.txt").trim();
        assert_eq!(sign(&p, &Secret::new("s")), expected);
    }

    #[test]
    fn sample_row_is_a_partial_sale_line_with_exact_ids() {
        let page = parse_page(200, SAMPLE.as_bytes()).unwrap();
        assert_eq!(page.next_cursor.as_deref(), Some("einsqpfgsgx"));
        let o = &page.orders[0];
        assert!(o.partial);
        assert_eq!(o.order_id, "9007199254740993111");
        assert_eq!(o.sub_orders[0].sub_order_id, "9007199254740993112");
        assert_eq!(o.status, Status::Pending);
        assert_eq!(
            o.paid_at, None,
            "order_pay_time is meaningless while status is 1"
        );
        assert_eq!(o.refunded_at, None);
        assert_eq!(o.sub_orders[0].pay_amount, Some(1000));
        assert_eq!(o.sub_orders[0].refund_amount, None);
    }

    #[test]
    fn top_errors_are_classified() {
        let err = |code: &str, sub: &str| {
            let body = format!(
                r#"{{"error_response":{{"code":{code},"msg":"m","sub_code":"{sub}","sub_msg":"s"}}}}"#
            );
            parse_page(200, body.as_bytes()).unwrap_err()
        };
        assert!(matches!(
            err("7", "accesscontrol.limited-by-app-access-count"),
            UpstreamError::RateLimited { .. }
        ));
        assert!(matches!(
            err("15", "isp.remote-service-error"),
            UpstreamError::Transient { .. }
        ));
        assert!(matches!(err("25", ""), UpstreamError::Fatal { code, .. } if code == "TOP 25"));
        assert!(matches!(err("27", ""), UpstreamError::Fatal { .. }));
        assert!(
            matches!(err("41", "isv.invalid-parameter"), UpstreamError::Fatal { code, .. } if code == "TOP 41/isv.invalid-parameter")
        );
    }

    #[test]
    fn metric_labels_keep_the_top_code_and_drop_the_sub_code() {
        let label = |code: &str, sub: &str| {
            let body = format!(
                r#"{{"error_response":{{"code":{code},"msg":"m","sub_code":"{sub}","sub_msg":"s"}}}}"#
            );
            let err = parse_page(200, body.as_bytes()).unwrap_err();
            metric_code(err.code())
        };
        assert_eq!(
            label("7", "accesscontrol.limited-by-app-access-count"),
            Some("TOP 7")
        );
        assert_eq!(label("15", "isp.remote-service-error"), Some("TOP 15"));
        assert_eq!(label("25", ""), Some("TOP 25"));
        assert_eq!(label("41", "isv.invalid-parameter"), Some("TOP 41"));
        assert_eq!(label("43", "isv.anything-new"), Some("TOP 43"));
        // Not one of TOP's codes, or not a code at all.
        assert_eq!(label("99", "isv.x"), None);
        assert_eq!(label("\"7x\"", ""), None);
        let unsuccessful =
            br#"{"alibaba_taobao_ud_smart_order_detail_pull_response":{"success":false}}"#;
        assert_eq!(
            metric_code(parse_page(200, unsuccessful).unwrap_err().code()),
            None
        );
    }
}
