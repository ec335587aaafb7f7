//! 喵有券 Douyin distribution orders: affiliate orders, cursor paging, start no earlier than 90 days ago.
//!
//! Quirks this module owns (see `shared/seeds/001_*.txt`): the start of a query may not be older than
//! 90 days (the planner clamps, and says so); times are `YYYY-MM-DD HH:MM:SS` strings or `null`;
//! amounts are fen as JSON numbers; ids may be JSON numbers (kept exactly, never through a float);
//! `data.cursor` is the next page's index, and a page shorter than `size` is the last. Status codes
//! come as the body `code` or the HTTP status: 200 ok, -1 "data fetch failed" (transient), 429 rate
//! limited, 401 IP not whitelisted / 403 missing parameter / 405 wrong method (fatal), anything else
//! fatal with its code.

use chrono::Duration;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::rawrow::{self, RawRow};
use super::{Page, PageQuery, TimeType};
use crate::http::{Body, HttpRequest, UpstreamError};
use crate::model::OrderRow;
use crate::planner::WindowRules;
use crate::sources::{self, malformed, SourceKind};
use crate::timefmt;

pub const MAX_PAGE_SIZE: u32 = 200;
pub const FIRST_CURSOR: &str = "0";
pub const OPTION_KEYS: &[&str] = &["time_type", "distribution_type", "pid", "query_order_type"];

/// Status codes from the document: the body `code`, or the HTTP status when the body has none.
pub mod codes {
    pub const OK: i64 = 200;
    /// 数据获取失败: worth asking again.
    pub const FETCH_FAILED: i64 = -1;
    pub const IP_NOT_WHITELISTED: i64 = 401;
    pub const MISSING_PARAMETER: i64 = 403;
    pub const WRONG_METHOD: i64 = 405;
    pub const RATE_LIMITED: i64 = 429;
}

/// The codes above as errors carry them: the closed set of `code` metric labels of this source's
/// own (see [`sources::metric_label`]).
pub const METRIC_CODES: &[&str] = &["-1", "200", "401", "403", "405", "429"];

pub fn window_rules() -> WindowRules {
    WindowRules {
        horizon: Some(Duration::days(90)),
        // Implied by the horizon, and refused by upstream beyond it.
        max_span: Some(Duration::days(90)),
        same_day: false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub time_type: TimeType,
    pub distribution_type: Option<String>,
    pub pid: Option<String>,
    pub query_order_type: Option<u8>,
}

impl Options {
    pub fn parse(table: &toml::Table) -> Result<Options, (String, String)> {
        let time_type = TimeType::option(table)?;
        let distribution_type = match table.get("distribution_type") {
            None => None,
            Some(toml::Value::String(s))
                if ["Live", "ProductDetail", "ActivityMaterial"].contains(&s.as_str()) =>
            {
                Some(s.clone())
            }
            Some(other) => {
                return Err((
                    "distribution_type".into(),
                    format!(
                        "must be \"Live\", \"ProductDetail\" or \"ActivityMaterial\", got {other}"
                    ),
                ))
            }
        };
        let pid = match table.get("pid") {
            None => None,
            Some(toml::Value::String(s)) => Some(s.clone()),
            Some(other) => return Err(("pid".into(), format!("must be a string, got {other}"))),
        };
        let query_order_type = match table.get("query_order_type") {
            None => None,
            Some(toml::Value::Integer(n)) if (0..=1).contains(n) => Some(*n as u8),
            Some(other) => {
                return Err((
                    "query_order_type".into(),
                    format!("must be 0 or 1, got {other}"),
                ))
            }
        };
        Ok(Options {
            time_type,
            distribution_type,
            pid,
            query_order_type,
        })
    }
}

pub fn build_request(q: &PageQuery<'_>, opts: &Options) -> Result<HttpRequest, UpstreamError> {
    let mut url = sources::endpoint_url(q)?;
    let secret = |key: &str| sources::required_secret(q, key);
    let last_second = (q.window.end - Duration::seconds(1)).max(q.window.start);
    {
        let mut pairs = url.query_pairs_mut();
        pairs
            .append_pair("apkey", secret("apkey")?.expose())
            .append_pair("dou_key", secret("dou_key")?.expose())
            .append_pair("size", &q.page_size.to_string())
            .append_pair("cursor", q.cursor)
            .append_pair("start_time", &timefmt::fmt_seconds(q.window.start))
            .append_pair("end_time", &timefmt::fmt_seconds(last_second))
            .append_pair("time_type", opts.time_type.for_axis(q.axis).as_str());
        if let Some(d) = &opts.distribution_type {
            pairs.append_pair("distribution_type", d);
        }
        if let Some(pid) = &opts.pid {
            pairs.append_pair("pid", pid);
        }
        if let Some(t) = opts.query_order_type {
            pairs.append_pair("query_order_type", &t.to_string());
        }
    }
    Ok(HttpRequest {
        method: Method::GET,
        url,
        headers: Vec::new(),
        body: Body::Empty,
    })
}

fn classify(code: i64, msg: &str) -> UpstreamError {
    let code_s = code.to_string();
    match code {
        codes::FETCH_FAILED => UpstreamError::transient(code_s, msg),
        codes::RATE_LIMITED => UpstreamError::RateLimited {
            code: code_s,
            message: msg.into(),
            retry_after: None,
        },
        _ => UpstreamError::fatal(code_s, msg),
    }
}

/// A well-formed answer, read in one pass: its rows come out already split into their fields.
#[derive(Deserialize)]
struct Answer<'a> {
    code: Option<Value>,
    msg: Option<Value>,
    #[serde(borrow)]
    data: Option<AnswerData<'a>>,
}

#[derive(Deserialize)]
struct AnswerData<'a> {
    cursor: Option<Value>,
    #[serde(borrow)]
    orders: Option<Vec<RawRow<'a>>>,
}

pub fn parse_page(q: &PageQuery<'_>, status: u16, body: &[u8]) -> Result<Page, UpstreamError> {
    let body = sources::body_text(body);
    // Anything but a well-formed answer is read again field by field, which says what is wrong.
    let Ok(answer) = serde_json::from_str::<Answer<'_>>(&body) else {
        return parse_page_field_by_field(q, status, &body);
    };
    check_answer(
        status,
        &sources::object_of([("code", answer.code), ("msg", answer.msg)]),
    )?;
    let (cursor, rows) = match answer.data {
        Some(d) => (d.cursor, d.orders.unwrap_or_default()),
        None => (None, Vec::new()),
    };
    page_of(
        q,
        &sources::object_of([("cursor", cursor)]),
        rows.into_iter().map(Ok),
    )
}

fn parse_page_field_by_field(
    q: &PageQuery<'_>,
    status: u16,
    body: &str,
) -> Result<Page, UpstreamError> {
    let envelope = match sources::json_object(status, body) {
        Ok(e) => e,
        // An error status with a non-JSON body still carries the documented code.
        Err(_) if status != 200 => {
            return Err(classify(i64::from(status), "non-JSON error answer"))
        }
        Err(e) => return Err(e),
    };
    check_answer(status, &envelope.pick(&["code", "msg"]).map_err(malformed)?)?;
    // `data` that is not an object reads as one without orders, as it always has.
    let data = envelope
        .get("data")
        .and_then(|d| RawRow::parse(d).ok())
        .unwrap_or_else(RawRow::empty);
    let rows = rawrow::elements(data.get("orders"))
        .map_err(|e| malformed(format!("`data.orders` is {e}")))?;
    page_of(
        q,
        &data.pick(&["cursor"]).map_err(malformed)?,
        rows.into_iter(),
    )
}

/// The answer's own code, then the HTTP status: which error, if any, the answer is.
fn check_answer(status: u16, head: &Value) -> Result<(), UpstreamError> {
    let msg = sources::text(head, "msg").unwrap_or_default();
    let code = match sources::int(head, "code") {
        Ok(Some(c)) => c,
        Ok(None) if status != 200 => i64::from(status),
        Ok(None) => return Err(malformed("body has no `code`")),
        Err(e) => return Err(malformed(e)),
    };
    if code != codes::OK {
        return Err(classify(code, &msg));
    }
    if status != 200 {
        return Err(classify(i64::from(status), &msg));
    }
    Ok(())
}

fn page_of<'a>(
    q: &PageQuery<'_>,
    data: &Value,
    rows: impl ExactSizeIterator<Item = rawrow::Element<'a>>,
) -> Result<Page, UpstreamError> {
    let cursor = sources::text(data, "cursor").unwrap_or_default();
    // Rejected rows count: the page's size is what upstream sent.
    let last = rows.len() < q.page_size as usize || cursor.is_empty() || cursor == FIRST_CURSOR;
    let (orders, rejected) =
        sources::normalise_rows(rows, sources::RowText::Plain, &["order_id"], |row| {
            normalise_row(row)
        });
    Ok(Page {
        orders,
        rejected,
        next_cursor: (!last).then_some(cursor),
    })
}

pub fn normalise(row: &Value) -> Result<OrderRow, String> {
    let text = row.to_string();
    normalise_row(&RawRow::parse(&text)?)
}

fn normalise_row(row: &RawRow<'_>) -> Result<OrderRow, String> {
    sources::affiliate_order(SourceKind::Miaoyouquan, row, "ads_estimated_commission")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Status;
    use crate::secret::Auth;
    use crate::sources::{Axis, SourceOptions};

    const SAMPLE: &str = include_str!("../../tests/fixtures/miaoyouquan/sample_page.json");

    fn with_query<R>(size: u32, f: impl FnOnce(&PageQuery<'_>) -> R) -> R {
        let auth = Auth::default();
        let options = SourceOptions::Miaoyouquan(Options::parse(&toml::Table::new()).unwrap());
        let w = crate::planner::Window {
            start: timefmt::parse_user_time("2023-07-31").unwrap(),
            end: timefmt::parse_user_time("2023-08-01").unwrap(),
        };
        let q = PageQuery {
            endpoint: "http://127.0.0.1:1/orders",
            auth: &auth,
            options: &options,
            window: w,
            cursor: "0",
            page_size: size,
            axis: Axis::Live,
            start: w.start,
        };
        f(&q)
    }

    #[test]
    fn one_pass_and_field_by_field_read_a_page_the_same() {
        assert!(
            serde_json::from_str::<Answer<'_>>(SAMPLE).is_ok(),
            "one pass"
        );
        for size in [1, 20] {
            let one_pass = with_query(size, |q| parse_page(q, 200, SAMPLE.as_bytes())).unwrap();
            let by_field = with_query(size, |q| parse_page_field_by_field(q, 200, SAMPLE)).unwrap();
            assert_eq!(one_pass, by_field);
        }
    }

    #[test]
    fn the_documented_sample_normalises_exactly() {
        let page = with_query(20, |q| parse_page(q, 200, SAMPLE.as_bytes())).unwrap();
        assert_eq!(
            page.next_cursor, None,
            "one row of a page of 20 is the last page"
        );
        let o = &page.orders[0];
        assert_eq!(o.status, Status::Refunded);
        assert_eq!(o.pay_amount, Some(390));
        assert_eq!(o.commission, Some(213));
        assert_eq!(
            o.paid_at.map(timefmt::fmt_seconds).as_deref(),
            Some("2023-07-31 17:34:19")
        );
        assert_eq!(
            o.refunded_at.map(timefmt::fmt_seconds).as_deref(),
            Some("2023-07-31 17:35:18")
        );
        assert_eq!(o.settled_at, None);
        assert_eq!(o.confirmed_at, None);
        assert_eq!(o.shop_id.as_deref(), Some("6800000"));
        assert_eq!(o.sub_orders.len(), 1);
        let full = with_query(1, |q| parse_page(q, 200, SAMPLE.as_bytes())).unwrap();
        assert_eq!(
            full.next_cursor.as_deref(),
            Some("xx"),
            "a full page has a next page"
        );
    }

    #[test]
    fn codes_from_body_or_http_status_are_classified() {
        let check = |status: u16, body: &str| {
            with_query(20, |q| parse_page(q, status, body.as_bytes())).unwrap_err()
        };
        assert!(
            matches!(check(200, r#"{"code":-1,"msg":"数据获取失败"}"#), UpstreamError::Transient { code, .. } if code == "-1")
        );
        assert!(matches!(
            check(200, r#"{"code":429,"msg":"访问次数超限"}"#),
            UpstreamError::RateLimited { .. }
        ));
        for (code, what) in [
            (401, "IP没有添加白名单"),
            (403, "关键参数丢失"),
            (405, "请求方式不对"),
            (500100, "?"),
        ] {
            let body = format!(r#"{{"code":{code},"msg":"{what}"}}"#);
            assert!(
                matches!(check(200, &body), UpstreamError::Fatal { code: c, .. } if c == code.to_string()),
                "{code}"
            );
        }
        assert!(
            matches!(check(401, "<html>forbidden</html>"), UpstreamError::Fatal { code, .. } if code == "401")
        );
        assert!(matches!(check(429, ""), UpstreamError::RateLimited { .. }));
        assert!(matches!(
            check(200, r#"{"code":200,"data":{"orders":[{"order_id""#),
            UpstreamError::Transient { .. }
        ));
    }

    #[test]
    fn a_64_bit_numeric_order_id_stays_exact() {
        let body = SAMPLE.replace("\"order_id\": \"xx\"", "\"order_id\": 6928535482621498461");
        let page = with_query(20, |q| parse_page(q, 200, body.as_bytes())).unwrap();
        assert_eq!(page.orders[0].order_id, "6928535482621498461");
    }
}
