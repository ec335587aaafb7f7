//! 随心推 (DOU+) `get_sxt_order_list`: ad orders, one full snapshot per call.
//!
//! Quirks this module owns (see `shared/seeds/000_*.txt`): no paging and no time filter — every
//! call answers every order, so a run is one request over one window whose end becomes the
//! watermark (the time of the last complete snapshot); orders missing from a later snapshot are
//! simply not touched. One response may carry the same `order_id` several times in different
//! states: the copies collapse here, deterministically, to the most advanced state (state codes
//! 1 < 3 < 5 < 6 < 7 < 8 < 9 < 10 follow the ad's life), ties broken by the larger indicators and
//! then the row text, so the order of the rows never matters. `ad_indicators` are `{count, name}`
//! pairs with decimal strings: cost and GMV are yuan (→ exact fen), plays an integer, ROI a
//! decimal kept as text.
//!
//! The document lists no error codes: `code` 0 is success, 429 (and a message saying 频繁) is rate
//! limiting, any other code is fatal with its message.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::Value;

use super::rawrow::{self, RawRow};
use super::{Page, PageQuery};
use crate::http::{Body, HttpRequest, UpstreamError};
use crate::model::{Kind, OrderRow, Status};
use crate::money;
use crate::sources::{self, SourceKind};

pub const OPTION_KEYS: &[&str] = &["select_status"];

pub const COST: &str = "消耗(元)";
pub const PLAYS: &str = "播放次数";
pub const ROI: &str = "支付ROI";
pub const GMV: &str = "成交订单金额(元)";
/// The one error code we know (rate limited; the document lists none): the closed set of `code`
/// metric labels of this source's own (see [`sources::metric_label`]).
pub const METRIC_CODES: &[&str] = &["429"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// 1 all orders (the default; anything else is a filtered view), 2 unpaid, 3 delivering,
    /// 4 ended, 5 rejected, 6 reviewing.
    pub select_status: u8,
}

impl Options {
    pub fn parse(table: &toml::Table) -> Result<Options, (String, String)> {
        let select_status = match table.get("select_status") {
            None => 1,
            Some(toml::Value::Integer(n)) if (1..=6).contains(n) => *n as u8,
            Some(other) => {
                return Err((
                    "select_status".into(),
                    format!("must be 1 to 6 (1 = all orders), got {other}"),
                ))
            }
        };
        Ok(Options { select_status })
    }
}

pub fn build_request(q: &PageQuery<'_>, opts: &Options) -> Result<HttpRequest, UpstreamError> {
    let mut url = sources::endpoint_url(q)?;
    let secret = |key: &str| sources::required_secret(q, key);
    url.query_pairs_mut()
        .append_pair("user_id", secret("user_id")?.expose())
        .append_pair("dy_uid", secret("dy_uid")?.expose())
        .append_pair("select_status", &opts.select_status.to_string());
    Ok(HttpRequest {
        method: Method::GET,
        url,
        headers: Vec::new(),
        body: Body::Empty,
    })
}

pub fn parse_page(status: u16, body: &[u8]) -> Result<Page, UpstreamError> {
    let body = sources::body_text(body);
    let envelope = sources::json_object(status, &body)?;
    let v = envelope
        .pick(&["code", "msg"])
        .map_err(sources::malformed)?;
    let code = sources::int(&v, "code")
        .map_err(sources::malformed)?
        .ok_or_else(|| sources::malformed(format!("HTTP {status} body has no `code`")))?;
    let msg = sources::text(&v, "msg").unwrap_or_default();
    if code != 0 {
        return Err(if code == 429 || msg.contains("频繁") {
            UpstreamError::RateLimited {
                code: code.to_string(),
                message: msg,
                retry_after: None,
            }
        } else {
            UpstreamError::fatal(code.to_string(), msg)
        });
    }
    if status != 200 {
        return Err(UpstreamError::fatal(format!("HTTP {status}"), msg));
    }
    let rows = rawrow::elements(envelope.get("data"))
        .map_err(|e| sources::malformed(format!("`data` is {e}")))?;
    let (orders, rejected) = sources::normalise_rows(
        rows,
        sources::RowText::Plain,
        &["ad_info", "order_id"],
        |row| normalise_row(row),
    );
    Ok(Page {
        orders: collapse(orders),
        rejected,
        next_cursor: None,
    })
}

/// One order per `order_id`: the most advanced copy wins, whatever the order of the rows.
pub fn collapse(rows: Vec<OrderRow>) -> Vec<OrderRow> {
    let mut best: BTreeMap<String, OrderRow> = BTreeMap::new();
    for row in rows {
        match best.get(&row.order_id) {
            Some(kept) if rank(kept) >= rank(&row) => {}
            _ => {
                best.insert(row.order_id.clone(), row);
            }
        }
    }
    best.into_values().collect()
}

type Rank<'a> = (i64, i64, i64, i64, &'a str);

fn rank(o: &OrderRow) -> Rank<'_> {
    (
        o.status_raw.parse::<i64>().unwrap_or(-1),
        o.ad_cost.unwrap_or(0),
        o.ad_plays.unwrap_or(0),
        o.ad_gmv.unwrap_or(0),
        &o.raw,
    )
}

fn status_of(state: &str) -> Status {
    match state {
        "1" => Status::AdUnpaid,
        "3" => Status::AdCreating,
        "5" => Status::AdReviewing,
        "6" => Status::AdRejected,
        "7" => Status::AdDelivering,
        "8" => Status::AdTerminated,
        "9" => Status::AdCompleted,
        "10" => Status::AdEnded,
        other => {
            sources::note_unknown_status(SourceKind::Sxt, other);
            Status::Unknown
        }
    }
}

/// One row (`ad_info` + `ad_indicators`) → an `ad` order without lines.
pub fn normalise(row: &Value) -> Result<OrderRow, String> {
    let text = row.to_string();
    normalise_row(&RawRow::parse(&text)?)
}

fn normalise_row(row: &RawRow<'_>) -> Result<OrderRow, String> {
    let info = row.get("ad_info").ok_or("row has no ad_info")?;
    let info = RawRow::parse(info)
        .map_err(|e| format!("`ad_info` is {e}"))?
        .pick(&["order_id", "state", "create_time", "create_time_int"])?;
    let order_id = sources::id(&info, "order_id")?.ok_or("row has no ad_info.order_id")?;
    let mut o = OrderRow::new(SourceKind::Sxt, order_id, Kind::Ad, row.to_json());
    let info = &info;
    o.status_raw = sources::text(info, "state").unwrap_or_default();
    o.status = status_of(&o.status_raw);
    o.created_at = match sources::time(info, "create_time")? {
        Some(t) => Some(t),
        None => sources::time(info, "create_time_int")?,
    };
    let indicators = row.pick(&["ad_indicators"])?;
    let indicators = match indicators.get("ad_indicators") {
        Some(Value::Array(list)) => list.as_slice(),
        Some(Value::Null) | None => &[],
        Some(_) => return Err("`ad_indicators` is not a list".into()),
    };
    for item in indicators {
        let Some(count) = sources::text(item, "count") else {
            continue;
        };
        let yuan = |what: &str| {
            money::yuan_to_fen(&count)
                .map(Some)
                .map_err(|e| format!("{what}: {e}"))
        };
        match sources::text(item, "name").as_deref() {
            Some(COST) => o.ad_cost = yuan(COST)?,
            Some(GMV) => o.ad_gmv = yuan(GMV)?,
            Some(PLAYS) => {
                o.ad_plays = Some(
                    count
                        .trim()
                        .parse()
                        .map_err(|_| format!("{PLAYS}: {count:?} is not a count"))?,
                )
            }
            Some(ROI) => {
                // Checked as a decimal, kept as the exact text.
                money::yuan_to_fen(&count).map_err(|e| format!("{ROI}: {e}"))?;
                o.ad_roi = Some(count.trim().to_string());
            }
            _ => {}
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../tests/fixtures/sxt/sample.json");

    #[test]
    fn the_documented_sample_collapses_and_converts_exactly() {
        let page = parse_page(200, SAMPLE.as_bytes()).unwrap();
        assert_eq!(page.next_cursor, None);
        // 12 rows, one order three times (states 7, 5, 7).
        assert_eq!(page.orders.len(), 10);
        let by_id = |id: &str| page.orders.iter().find(|o| o.order_id == id).unwrap();
        let twice = by_id("7184687741827891212");
        assert_eq!(twice.status, Status::AdDelivering);
        assert_eq!(twice.status_raw, "7");
        let spent = by_id("7174678361057263654");
        assert_eq!(spent.ad_cost, Some(3890), "\"38.9\" yuan");
        assert_eq!(spent.ad_plays, Some(344));
        assert_eq!(spent.ad_roi.as_deref(), Some("0"));
        assert_eq!(spent.ad_gmv, Some(0));
        assert_eq!(spent.status, Status::AdTerminated);
        assert_eq!(by_id("7174651843426172961").ad_cost, Some(26));
        assert_eq!(
            spent.created_at.map(crate::timefmt::fmt_seconds).as_deref(),
            Some("2022-12-08 15:36:20")
        );
        assert!(page
            .orders
            .iter()
            .all(|o| o.kind == Kind::Ad && o.sub_orders.is_empty()));
    }

    fn row(order_id: &str, state: i64, cost: &str) -> Value {
        serde_json::json!({
            "ad_indicators": [
                {"count": cost, "name": COST},
                {"count": "12", "name": PLAYS},
                {"count": "2.350", "name": ROI},
                {"count": "0.29", "name": GMV}
            ],
            "ad_info": {"order_id": order_id, "state": state, "create_time": "2023-01-04 14:57:52"}
        })
    }

    #[test]
    fn the_most_advanced_copy_wins_in_either_order() {
        for rows in [
            vec![row("1", 7, "1"), row("1", 9, "2")],
            vec![row("1", 9, "2"), row("1", 7, "1")],
        ] {
            let body = serde_json::json!({"code": 0, "msg": "ok", "data": rows}).to_string();
            let page = parse_page(200, body.as_bytes()).unwrap();
            assert_eq!(page.orders.len(), 1);
            assert_eq!(page.orders[0].status, Status::AdCompleted);
            assert_eq!(page.orders[0].ad_cost, Some(200));
            assert_eq!(page.orders[0].ad_gmv, Some(29), "\"0.29\" yuan");
            assert_eq!(
                page.orders[0].ad_roi.as_deref(),
                Some("2.350"),
                "exact text"
            );
        }
        // Same state: the larger indicators win, deterministically.
        let a = collapse(vec![
            normalise(&row("1", 7, "3.5")).unwrap(),
            normalise(&row("1", 7, "3.49")).unwrap(),
        ]);
        let b = collapse(vec![
            normalise(&row("1", 7, "3.49")).unwrap(),
            normalise(&row("1", 7, "3.5")).unwrap(),
        ]);
        assert_eq!(a[0].ad_cost, Some(350));
        assert_eq!(a[0].raw, b[0].raw);
    }

    #[test]
    fn codes_are_classified() {
        let fatal = r#"{"code":401,"msg":"用户未授权","data":null}"#.as_bytes();
        assert!(
            matches!(parse_page(200, fatal), Err(UpstreamError::Fatal { code, .. }) if code == "401")
        );
        let limited = r#"{"code":429,"msg":"请求过于频繁"}"#.as_bytes();
        assert!(matches!(
            parse_page(200, limited),
            Err(UpstreamError::RateLimited { .. })
        ));
        assert!(matches!(
            parse_page(200, b"{\"code\":0,\"data\":[{\"ad_"),
            Err(UpstreamError::Transient { .. })
        ));
        // One bad amount costs its row, never the snapshot.
        let bad_money =
            serde_json::json!({"code": 0, "data": [row("1", 7, "3,5"), row("2", 7, "1")]})
                .to_string();
        let page = parse_page(200, bad_money.as_bytes()).unwrap();
        assert_eq!(page.orders.len(), 1);
        assert_eq!(page.orders[0].order_id, "2");
        assert_eq!(page.rejected.len(), 1);
        assert_eq!(page.rejected[0].order_id.as_deref(), Some("1"));
        assert!(
            page.rejected[0].reason.contains(COST),
            "{:?}",
            page.rejected
        );
    }
}
