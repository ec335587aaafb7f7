//! Reading one miaoyouquan request: the documented parameters checked against the documented
//! rules, and the keyset cursor.
//!
//! [`parse`] either returns a [`Request`] the world can answer or a [`Refusal`] carrying the HTTP
//! status, the body code, the Chinese `msg` upstream-style, and an English reason for the violation
//! log. It never panics on any input. The rules: `apkey` and `dou_key` present (403) and right
//! (401); unless `order_ids` is given, `start_time` and `end_time` present (403) as exactly
//! `YYYY-MM-DD HH:MM:SS` Beijing, `end ≥ start`, at most 90 days apart, and `start` no earlier than
//! 90 days before the real Beijing now of the request; `size` in 1..=200; `time_type`,
//! `distribution_type`, `query_order_type` among their documented values; `order_ids` at most 10
//! numeric ids. The cursor is the shared keyset cursor ([`crate::keyset`]), accepted only if this
//! simulator issued it for the same time type, filters and window.

use std::collections::HashMap;

use axum::http::StatusCode;
use chrono::{Duration, NaiveDateTime};

use super::codes;
use super::world::DISTRIBUTION_TYPES;
use crate::http::Params;
use crate::keyset::decode;
pub(crate) use crate::keyset::{Key, TimeType};
use crate::time::{parse_wall_clock, to_unix};

/// How far back `start_time` may reach, from the request's now.
pub(crate) const HORIZON_DAYS: i64 = 90;
/// The longest window, inclusive of both ends: 90 days exactly.
pub(crate) const MAX_SPAN_SECS: i64 = 90 * 86_400;
pub(crate) const MAX_SIZE: i64 = 200;
pub(crate) const DEFAULT_SIZE: usize = 20;
pub(crate) const MAX_ORDER_IDS: usize = 10;

/// What a cursor is bound to: a query with the same scope may continue from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scope {
    pub(crate) time_type: TimeType,
    /// Unix seconds, both inclusive.
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// One of [`DISTRIBUTION_TYPES`], or any.
    pub(crate) distribution_type: Option<&'static str>,
    pub(crate) pid: Option<String>,
    /// 0 distribution orders, 1 price-comparison orders.
    pub(crate) query_order_type: u8,
}

/// One page of a time-window query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) scope: Scope,
    pub(crate) size: usize,
    /// Continue strictly after this key (`None`: from the start of the window).
    pub(crate) after: Option<Key>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// Look up these orders (1..=10 ids); time, filters, cursor and size are ignored.
    ByIds(Vec<String>),
    Window(Window),
}

/// A refused request: the answer's HTTP status, code and message, and the violation's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) code: i64,
    pub(crate) msg: String,
    pub(crate) reason: String,
}

fn missing(name: &str, reason: String) -> Refusal {
    Refusal {
        status: StatusCode::OK,
        code: codes::MISSING_PARAMETER,
        msg: format!("{}:{name}", codes::MISSING_PARAMETER_MSG),
        reason,
    }
}

fn bad_parameter(msg: &str, reason: String) -> Refusal {
    Refusal {
        status: StatusCode::OK,
        code: codes::MISSING_PARAMETER,
        msg: format!("{}{msg}", codes::BAD_PARAMETER_MSG_PREFIX),
        reason,
    }
}

fn not_whitelisted(status: StatusCode, reason: &str) -> Refusal {
    Refusal {
        status,
        code: codes::NOT_WHITELISTED,
        msg: codes::NOT_WHITELISTED_MSG.to_string(),
        reason: reason.to_string(),
    }
}

/// Checks a request against the rules. `issued` maps every cursor handed out to its scope; `now`
/// is the Beijing now the 90-day horizon is measured from.
pub(crate) fn parse(
    params: &Params,
    apkey: &str,
    dou_key: &str,
    issued: &HashMap<String, Scope>,
    now: NaiveDateTime,
) -> Result<Request, Refusal> {
    let given_apkey = params.non_empty("apkey");
    let given_dou_key = params.non_empty("dou_key");
    for (name, given) in [("apkey", given_apkey), ("dou_key", given_dou_key)] {
        if given.is_none() {
            return Err(missing(name, format!("{name} missing")));
        }
    }
    if given_apkey != Some(apkey) {
        return Err(not_whitelisted(
            StatusCode::UNAUTHORIZED,
            "apkey is wrong (answered as an unrecognised caller, HTTP 401)",
        ));
    }
    if given_dou_key != Some(dou_key) {
        return Err(not_whitelisted(
            StatusCode::OK,
            "dou_key is wrong (answered as an unrecognised caller, body code 401)",
        ));
    }

    if let Some(raw) = params.non_empty("order_ids") {
        let ids: Vec<String> = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if ids.len() > MAX_ORDER_IDS {
            return Err(bad_parameter(
                "order_ids最多支持10个订单号",
                format!("order_ids has {} ids, at most 10 allowed", ids.len()),
            ));
        }
        if ids.is_empty() || ids.iter().any(|id| !id.bytes().all(|b| b.is_ascii_digit())) {
            return Err(bad_parameter(
                "order_ids格式错误,应为英文逗号分隔的订单号",
                format!("order_ids={raw:?} is not a comma list of numeric ids"),
            ));
        }
        return Ok(Request::ByIds(ids));
    }

    let start = time_param(params, "start_time")?;
    let end = time_param(params, "end_time")?;
    if end < start {
        return Err(bad_parameter(
            "end_time不能早于start_time",
            format!("end_time {end} is before start_time {start}"),
        ));
    }
    let span = (end - start).num_seconds();
    if span > MAX_SPAN_SECS {
        return Err(bad_parameter(
            "start_time与end_time间隔不能超过90天",
            format!("end_time - start_time = {span}s exceeds 90 days ({MAX_SPAN_SECS}s)"),
        ));
    }
    let earliest = now - Duration::days(HORIZON_DAYS);
    if start < earliest {
        return Err(bad_parameter(
            "start_time最早支持90天前",
            format!(
                "start_time {start} is earlier than 90 days before now ({now}): earliest allowed is {earliest}"
            ),
        ));
    }

    let size = match params.non_empty("size") {
        None => DEFAULT_SIZE,
        Some(text) => match text.trim().parse::<i64>() {
            Ok(n) if (1..=MAX_SIZE).contains(&n) => n as usize,
            _ => {
                return Err(bad_parameter(
                    "size取值区间为[1, 200]",
                    format!("size={text:?} is outside 1..=200"),
                ))
            }
        },
    };
    let time_type = match params.non_empty("time_type").map(str::trim) {
        None | Some("pay") => TimeType::Pay,
        Some("update") => TimeType::Update,
        Some(other) => {
            return Err(bad_parameter(
                "time_type只能为pay或update",
                format!("time_type={other:?} is neither pay nor update"),
            ))
        }
    };
    let distribution_type = match params.non_empty("distribution_type").map(str::trim) {
        None => None,
        Some(text) => match DISTRIBUTION_TYPES.iter().find(|d| **d == text) {
            Some(d) => Some(*d),
            None => {
                return Err(bad_parameter(
                    "distribution_type只能为Live、ProductDetail或ActivityMaterial",
                    format!(
                        "distribution_type={text:?} is not Live, ProductDetail or ActivityMaterial"
                    ),
                ))
            }
        },
    };
    let query_order_type = match params.non_empty("query_order_type").map(str::trim) {
        None | Some("0") => 0,
        Some("1") => 1,
        Some(other) => {
            return Err(bad_parameter(
                "query_order_type只能为0或1",
                format!("query_order_type={other:?} is neither 0 nor 1"),
            ))
        }
    };
    let scope = Scope {
        time_type,
        start: to_unix(start),
        end: to_unix(end),
        distribution_type,
        pid: params.non_empty("pid").map(|p| p.trim().to_string()),
        query_order_type,
    };

    let after = match params.non_empty("cursor").map(str::trim) {
        None | Some("0") => None,
        Some(text) => {
            let bad = |why: String| bad_parameter("cursor无效,请使用上一页返回的cursor", why);
            let (tt, key) =
                decode(text).ok_or_else(|| bad(format!("cursor {text:?} cannot be decoded")))?;
            match issued.get(text) {
                None => {
                    return Err(bad(format!(
                        "cursor {text:?} was never issued by this simulator"
                    )))
                }
                Some(s) if *s != scope || tt != time_type => {
                    return Err(bad(format!(
                        "cursor {text:?} was issued for another query ({s:?}), not {scope:?}"
                    )))
                }
                Some(_) => Some(key),
            }
        }
    };
    Ok(Request::Window(Window { scope, size, after }))
}

fn time_param(params: &Params, name: &str) -> Result<NaiveDateTime, Refusal> {
    let text = params.non_empty(name).ok_or_else(|| {
        missing(
            name,
            format!("{name} missing (required unless order_ids is given)"),
        )
    })?;
    parse_wall_clock(text).ok_or_else(|| {
        bad_parameter(
            &format!("{name}格式错误,应为YYYY-MM-DD HH:MM:SS"),
            format!("{name}={text:?} is not YYYY-MM-DD HH:MM:SS"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyset::encode;
    use axum::body::Bytes;
    use axum::http::HeaderMap;

    fn params(query: &str) -> Params {
        Params::new(Some(query), &HeaderMap::new(), &Bytes::new())
    }

    fn now() -> NaiveDateTime {
        parse_wall_clock("2025-06-01 12:00:00").expect("valid time")
    }

    fn check(query: &str) -> Result<Request, Refusal> {
        parse(&params(query), "a", "d", &HashMap::new(), now())
    }

    const OK_WINDOW: &str =
        "apkey=a&dou_key=d&start_time=2025-05-01+00%3A00%3A00&end_time=2025-05-31+23%3A59%3A59";

    fn at(text: &str) -> String {
        text.replace(' ', "+").replace(':', "%3A")
    }

    #[test]
    fn defaults_apply() {
        let Ok(Request::Window(w)) = check(OK_WINDOW) else {
            panic!("refused")
        };
        assert_eq!(w.size, 20);
        assert_eq!(w.after, None);
        assert_eq!(w.scope.time_type, TimeType::Pay);
        assert_eq!(w.scope.distribution_type, None);
        assert_eq!(w.scope.pid, None);
        assert_eq!(w.scope.query_order_type, 0);
        assert!(check(&format!("{OK_WINDOW}&cursor=&size=&pid=")).is_ok());
        assert!(check(&format!("{OK_WINDOW}&cursor=0&size=200")).is_ok());
    }

    #[test]
    fn the_horizon_is_ninety_days_before_now_to_the_second() {
        let edge = "2025-03-03 12:00:00"; // now − 90 days
        let ok = format!(
            "apkey=a&dou_key=d&start_time={}&end_time={}",
            at(edge),
            at("2025-03-04 00:00:00")
        );
        assert!(check(&ok).is_ok());
        let early = format!(
            "apkey=a&dou_key=d&start_time={}&end_time={}",
            at("2025-03-03 11:59:59"),
            at("2025-03-04 00:00:00")
        );
        let r = check(&early).unwrap_err();
        assert_eq!(
            (r.status, r.code),
            (StatusCode::OK, codes::MISSING_PARAMETER)
        );
        assert!(r.msg.contains("start_time") && r.reason.contains("90 days"));
    }

    #[test]
    fn ninety_days_exactly_is_allowed_one_second_more_is_not() {
        let q = |end: &str| {
            format!(
                "apkey=a&dou_key=d&start_time={}&end_time={}",
                at("2025-03-10 00:00:00"),
                at(end)
            )
        };
        assert!(check(&q("2025-06-08 00:00:00")).is_ok());
        assert!(check(&q("2025-06-08 00:00:01")).is_err());
    }

    #[test]
    fn keys_missing_are_403_wrong_are_401() {
        let r = check("dou_key=d&start_time=x").unwrap_err();
        assert_eq!((r.status, r.code), (StatusCode::OK, 403));
        assert!(r.msg.contains("apkey"));
        let r = check("apkey=a&dou_key=").unwrap_err();
        assert_eq!((r.status, r.code), (StatusCode::OK, 403));
        assert!(r.msg.contains("dou_key"));
        let r = check("apkey=x&dou_key=d").unwrap_err();
        assert_eq!((r.status, r.code), (StatusCode::UNAUTHORIZED, 401));
        let r = check("apkey=a&dou_key=x").unwrap_err();
        assert_eq!((r.status, r.code), (StatusCode::OK, 401));
    }

    #[test]
    fn each_rule_refuses_with_403() {
        for query in [
            "apkey=a&dou_key=d&end_time=2025-05-31+00%3A00%3A00".to_string(),
            "apkey=a&dou_key=d&start_time=2025-05-31+00%3A00%3A00".to_string(),
            format!("{OK_WINDOW}&size=0"),
            format!("{OK_WINDOW}&size=201"),
            format!("{OK_WINDOW}&size=ten"),
            format!("{OK_WINDOW}&time_type=create"),
            format!("{OK_WINDOW}&distribution_type=live"),
            format!("{OK_WINDOW}&query_order_type=2"),
            format!("{OK_WINDOW}&cursor=abc"),
            format!("{OK_WINDOW}&cursor={}", encode(TimeType::Pay, (1, 1))),
            "apkey=a&dou_key=d&start_time=1748700000&end_time=1748750000".to_string(),
            "apkey=a&dou_key=d&order_ids=1,2,3,4,5,6,7,8,9,10,11".to_string(),
            "apkey=a&dou_key=d&order_ids=1,x".to_string(),
        ] {
            let got = check(&query);
            assert_eq!(
                got.as_ref().map_err(|r| (r.status, r.code)),
                Err((StatusCode::OK, codes::MISSING_PARAMETER)),
                "{query}: {got:?}"
            );
        }
    }

    #[test]
    fn order_ids_ignore_the_time_parameters() {
        assert_eq!(
            check("apkey=a&dou_key=d&order_ids=6918598319523671223,+12&size=999&start_time=bad"),
            Ok(Request::ByIds(vec![
                "6918598319523671223".to_string(),
                "12".to_string()
            ]))
        );
    }

    #[test]
    fn a_cursor_only_continues_the_query_it_came_from() {
        let Ok(Request::Window(w)) = check(&format!("{OK_WINDOW}&pid=dy_1")) else {
            panic!("refused")
        };
        let cursor = encode(
            TimeType::Pay,
            (w.scope.start + 5, 4_000_000_000_000_000_001),
        );
        let issued = HashMap::from([(cursor.clone(), w.scope.clone())]);
        let same = params(&format!("{OK_WINDOW}&pid=dy_1&cursor={cursor}&size=50"));
        let Ok(Request::Window(next)) = parse(&same, "a", "d", &issued, now()) else {
            panic!("refused")
        };
        assert_eq!(next.after, decode(&cursor).map(|(_, k)| k));
        for other in ["pid=dy_2", "time_type=update", "distribution_type=Live"] {
            let q = params(&format!("{OK_WINDOW}&pid=dy_1&{other}&cursor={cursor}"));
            assert!(parse(&q, "a", "d", &issued, now()).is_err(), "{other}");
        }
    }
}
