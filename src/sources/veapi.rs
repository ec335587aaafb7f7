//! veapi 抖客 `douke/csj_ordersearch`: affiliate orders, cursor paging, windows of at most 90 days.
//!
//! Quirks this module owns (see `shared/seeds/003_*.txt`): every value arrives as a string, numbers
//! included; times are 10-digit unix seconds as strings, `"0"` meaning "no time"; the cursor is `"0"`
//! for the first page and `""` after the last; `start_time`/`end_time` are inclusive whole seconds,
//! so a half-open planner window `[start, end)` is sent as `start ..= end − 1s`; amounts are fen,
//! commissions are fen that may carry a fraction (rounded half up here, exact text kept in `raw`).
//!
//! The document lists no error codes. We treat `error = "0"` as success, `"10009"` (and any message
//! saying 频繁/limit) as rate limiting, `"10001"` (bad vekey) and everything else as fatal with the
//! code; a body that is not the documented JSON is transient (retried, then reported).

use chrono::Duration;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::rawrow::{self, RawRow};
use super::{Page, PageQuery, TimeType};
use crate::http::{Body, HttpRequest, UpstreamError};
use crate::model::OrderRow;
use crate::planner::WindowRules;
use crate::sources::{self, SourceKind};
use crate::timefmt;

pub const DEFAULT_ENDPOINT: &str = "http://api.veapi.cn/douke/csj_ordersearch";
pub const MAX_PAGE_SIZE: u32 = 50;
pub const FIRST_CURSOR: &str = "0";
pub const OPTION_KEYS: &[&str] = &["time_type", "order_type"];

/// Body codes (our reading of the API; the document lists none).
pub mod codes {
    pub const OK: &str = "0";
    pub const BAD_KEY: &str = "10001";
    pub const BAD_PARAMETER: &str = "10002";
    pub const RATE_LIMITED: &str = "10009";
}

/// The codes above: the closed set of `code` metric labels of this source's own (see
/// [`sources::metric_label`]).
pub const METRIC_CODES: &[&str] = &[
    codes::OK,
    codes::BAD_KEY,
    codes::BAD_PARAMETER,
    codes::RATE_LIMITED,
];

pub fn window_rules() -> WindowRules {
    WindowRules {
        max_span: Some(Duration::days(90)),
        ..Default::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The time live syncs query by; backfills always query by payment time.
    pub time_type: TimeType,
    pub order_type: u8,
}

impl Options {
    pub fn parse(table: &toml::Table) -> Result<Options, (String, String)> {
        let time_type = TimeType::option(table)?;
        let order_type = match table.get("order_type") {
            None => 0,
            Some(toml::Value::Integer(n)) if (0..=3).contains(n) => *n as u8,
            Some(other) => {
                return Err((
                    "order_type".into(),
                    format!("must be 0, 1, 2 or 3, got {other}"),
                ))
            }
        };
        Ok(Options {
            time_type,
            order_type,
        })
    }
}

pub fn build_request(q: &PageQuery<'_>, opts: &Options) -> Result<HttpRequest, UpstreamError> {
    let mut url = sources::endpoint_url(q)?;
    let vekey = sources::required_secret(q, "vekey")?;
    let time_type = opts.time_type.for_axis(q.axis);
    // The API's bounds are inclusive whole seconds.
    let last_second = q.window.end - Duration::seconds(1);
    url.query_pairs_mut()
        .append_pair("vekey", vekey.expose())
        .append_pair("size", &q.page_size.to_string())
        .append_pair("cursor", q.cursor)
        .append_pair("start_time", &timefmt::fmt_seconds(q.window.start))
        .append_pair(
            "end_time",
            &timefmt::fmt_seconds(last_second.max(q.window.start)),
        )
        .append_pair("order_type", &opts.order_type.to_string())
        .append_pair("time_type", time_type.as_str());
    Ok(HttpRequest {
        method: Method::GET,
        url,
        headers: Vec::new(),
        body: Body::Empty,
    })
}

/// A well-formed answer, read in one pass: its rows come out already split into their fields.
#[derive(Deserialize)]
struct Answer<'a> {
    error: Option<Value>,
    msg: Option<Value>,
    cursor: Option<Value>,
    #[serde(borrow)]
    data: Option<Vec<RawRow<'a>>>,
}

pub fn parse_page(status: u16, body: &[u8]) -> Result<Page, UpstreamError> {
    let body = sources::body_text(body);
    // Anything but a well-formed answer is read again field by field, which says what is wrong.
    let Ok(answer) = serde_json::from_str::<Answer<'_>>(&body) else {
        return parse_page_field_by_field(status, &body);
    };
    let head = sources::object_of([
        ("error", answer.error),
        ("msg", answer.msg),
        ("cursor", answer.cursor),
    ]);
    check_answer(status, &head)?;
    page_of(&head, answer.data.unwrap_or_default().into_iter().map(Ok))
}

fn parse_page_field_by_field(status: u16, body: &str) -> Result<Page, UpstreamError> {
    let envelope = sources::json_object(status, body)?;
    let head = envelope
        .pick(&["error", "msg", "cursor"])
        .map_err(sources::malformed)?;
    check_answer(status, &head)?;
    let rows = rawrow::elements(envelope.get("data"))
        .map_err(|e| sources::malformed(format!("`data` is {e}")))?;
    page_of(&head, rows.into_iter())
}

/// The answer's own code, then the HTTP status: which error, if any, the answer is.
fn check_answer(status: u16, head: &Value) -> Result<(), UpstreamError> {
    let code = sources::text(head, "error").unwrap_or_default();
    let msg = sources::text(head, "msg").unwrap_or_default();
    if code != codes::OK {
        if code.is_empty() {
            return Err(sources::malformed(format!(
                "HTTP {status} body has no `error` field"
            )));
        }
        return Err(classify(&code, &msg));
    }
    if status != 200 {
        return Err(UpstreamError::fatal(format!("HTTP {status}"), msg));
    }
    Ok(())
}

fn page_of<'a>(
    head: &Value,
    rows: impl ExactSizeIterator<Item = rawrow::Element<'a>>,
) -> Result<Page, UpstreamError> {
    let cursor = match head.get("cursor") {
        Some(Value::String(c)) => c.clone(),
        Some(Value::Null) | None if rows.len() == 0 => String::new(),
        _ => return Err(sources::malformed("`cursor` is missing or not a string")),
    };
    let (orders, rejected) =
        sources::normalise_rows(rows, sources::RowText::Plain, &["order_id"], |row| {
            normalise_row(row)
        });
    Ok(Page {
        orders,
        rejected,
        next_cursor: (!cursor.is_empty()).then_some(cursor),
    })
}

fn classify(code: &str, msg: &str) -> UpstreamError {
    let limited =
        code == codes::RATE_LIMITED || msg.contains("频繁") || msg.to_lowercase().contains("limit");
    if limited {
        UpstreamError::RateLimited {
            code: code.into(),
            message: msg.into(),
            retry_after: None,
        }
    } else {
        UpstreamError::fatal(code, msg)
    }
}

/// One upstream row → one affiliate order with its single sub-order line.
pub fn normalise(row: &Value) -> Result<OrderRow, String> {
    let text = row.to_string();
    normalise_row(&RawRow::parse(&text)?)
}

fn normalise_row(row: &RawRow<'_>) -> Result<OrderRow, String> {
    sources::affiliate_order(SourceKind::Veapi, row, "estimated_commission")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Status;

    const SAMPLE: &str = include_str!("../../tests/fixtures/veapi/sample_page.json");

    #[test]
    fn the_documented_sample_normalises_exactly() {
        let page = parse_page(200, SAMPLE.as_bytes()).unwrap();
        assert_eq!(page.next_cursor.as_deref(), Some("21051025101712735630"));
        let o = &page.orders[0];
        assert_eq!(o.order_id, "6928535482621498461");
        assert_eq!(o.product_id.as_deref(), Some("3657270007152426945"));
        assert_eq!(o.pay_amount, Some(1198));
        assert_eq!(o.commission, Some(1));
        assert_eq!(o.status, Status::Paid);
        assert_eq!(
            o.paid_at.map(timefmt::fmt_seconds).as_deref(),
            Some("2024-04-05 18:01:35")
        );
        assert_eq!(
            o.updated_at.map(timefmt::fmt_seconds).as_deref(),
            Some("2024-04-05 18:01:47")
        );
        assert_eq!(o.refunded_at, None);
        assert_eq!(o.settled_at, None);
        assert_eq!(o.item_num, Some(2));
        assert_eq!(o.shop_id.as_deref(), Some("141486248"));
        assert_eq!(o.sub_orders.len(), 1);
        assert_eq!(o.sub_orders[0].sub_order_id, o.order_id);
    }

    #[test]
    fn fractional_commission_rounds_half_up_and_raw_keeps_it() {
        let body = SAMPLE.replace(
            "\"estimated_commission\": \"1\"",
            "\"estimated_commission\": \"12.5\"",
        );
        let o = &parse_page(200, body.as_bytes()).unwrap().orders[0];
        assert_eq!(o.commission, Some(13));
        assert!(o.raw.contains("\"12.5\""));
        let settled = SAMPLE.replace(
            "\"ads_real_commission\": \"0\"",
            "\"ads_real_commission\": \"7.49\"",
        );
        assert_eq!(
            parse_page(200, settled.as_bytes()).unwrap().orders[0].commission,
            Some(7)
        );
    }

    #[test]
    fn raw_is_the_upstream_row_and_a_field_not_read_never_refuses_a_page() {
        // JSON that `serde_json::Value` refuses but JSON's grammar (and SQLite) accepts, in a
        // field ordersync does not read: the page is taken, the row stored as it came.
        let body = SAMPLE.replace(
            "\"split_rate\": \"7\"",
            "\"split_rate\": \"\\ud800\", \"odd\": 1e999",
        );
        assert_ne!(body, SAMPLE);
        assert!(serde_json::from_str::<Value>(&body).is_err());
        let o = &parse_page(200, body.as_bytes()).unwrap().orders[0];
        assert!(o.raw.contains(r#""split_rate":"\ud800""#) && o.raw.contains(r#""odd":1e999"#));
        assert_eq!(o.pay_amount, Some(1198));
        // The same in a field that is read costs that row, kept with the field named.
        let bad = SAMPLE.replace("\"shop_name\": \"", "\"shop_name\": \"\\ud800");
        let page = parse_page(200, bad.as_bytes()).unwrap();
        assert!(page.orders.is_empty());
        assert_eq!(page.rejected.len(), 1);
        let r = &page.rejected[0];
        assert_eq!(r.order_id.as_deref(), Some("6928535482621498461"));
        assert!(r.reason.contains("`shop_name`"), "{}", r.reason);
        assert!(r.raw.contains(r#""shop_name":"\ud800"#), "{}", r.raw);
    }

    #[test]
    fn one_pass_and_field_by_field_read_a_page_the_same() {
        assert!(
            serde_json::from_str::<Answer<'_>>(SAMPLE).is_ok(),
            "one pass"
        );
        let one_pass = parse_page(200, SAMPLE.as_bytes()).unwrap();
        assert_eq!(one_pass, parse_page_field_by_field(200, SAMPLE).unwrap());
        // A repeated key is no error for the field-by-field reading, which then takes the page.
        let repeated = SAMPLE.replacen("{", "{\"msg\": \"first\",", 1);
        assert!(serde_json::from_str::<Answer<'_>>(&repeated).is_err());
        assert_eq!(parse_page(200, repeated.as_bytes()).unwrap(), one_pass);
    }

    #[test]
    fn last_page_has_empty_cursor() {
        let body = r#"{"error":"0","msg":"ok","cursor":"","data":[]}"#;
        let page = parse_page(200, body.as_bytes()).unwrap();
        assert!(page.orders.is_empty());
        assert_eq!(page.next_cursor, None);
    }

    #[test]
    fn error_codes_are_classified() {
        let bad_key = r#"{"error":"10001","msg":"vekey错误或已过期","data":[],"cursor":""}"#;
        assert!(
            matches!(parse_page(200, bad_key.as_bytes()), Err(UpstreamError::Fatal { code, .. }) if code == "10001")
        );
        let limited = r#"{"error":"10009","msg":"请求过于频繁","data":[],"cursor":""}"#;
        assert!(matches!(
            parse_page(200, limited.as_bytes()),
            Err(UpstreamError::RateLimited { .. })
        ));
        assert!(
            matches!(parse_page(200, b"{\"error\":\"0\",\"data\":[{\"order_"), Err(UpstreamError::Transient { code, .. }) if code == "malformed")
        );
        assert!(matches!(
            parse_page(200, b"<html>"),
            Err(UpstreamError::Transient { .. })
        ));
    }

    #[test]
    fn a_float_order_id_is_refused_not_rounded() {
        let body = SAMPLE.replace(
            "\"order_id\": \"6928535482621498461\"",
            "\"order_id\": 6.928535482621498e18",
        );
        let page = parse_page(200, body.as_bytes()).unwrap();
        assert!(page.orders.is_empty());
        assert!(page.rejected[0]
            .reason
            .contains("`order_id` is not an exact id"));
        // A 20-digit id (past 64 bits) is kept as its exact digits.
        let body = SAMPLE.replace(
            "\"order_id\": \"6928535482621498461\"",
            "\"order_id\": 69285354826214984617",
        );
        assert_eq!(
            parse_page(200, body.as_bytes()).unwrap().orders[0].order_id,
            "69285354826214984617"
        );
        let body = SAMPLE.replace(
            "\"order_id\": \"6928535482621498461\"",
            "\"order_id\": 6928535482621498461",
        );
        assert_eq!(
            parse_page(200, body.as_bytes()).unwrap().orders[0].order_id,
            "6928535482621498461"
        );
    }

    #[test]
    fn request_sends_inclusive_seconds() {
        use crate::secret::Auth;
        let auth: Auth = Default::default();
        let opts = Options {
            time_type: TimeType::Update,
            order_type: 0,
        };
        let w = crate::planner::Window {
            start: timefmt::parse_user_time("2024-01-01").unwrap(),
            end: timefmt::parse_user_time("2024-01-02").unwrap(),
        };
        use crate::sources::Axis;
        let q = PageQuery {
            endpoint: DEFAULT_ENDPOINT,
            auth: &auth,
            options: &crate::sources::SourceOptions::Veapi(opts.clone()),
            window: w,
            cursor: "0",
            page_size: 50,
            axis: Axis::Live,
            start: w.start,
        };
        // No vekey configured: a clear fatal error, not a panic.
        assert!(build_request(&q, &opts).is_err());
    }
}
