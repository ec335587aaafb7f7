//! Reading one veapi request: the documented parameters checked against the documented rules, and
//! the keyset cursor.
//!
//! [`parse`] either returns a [`Request`] the world can answer or a [`Refusal`] carrying the body
//! code, the Chinese `msg` upstream-style, and an English reason for the violation log. It never
//! panics on any input. The cursor is the shared keyset cursor ([`crate::keyset`]); the next page
//! starts strictly after its key. A cursor is accepted only if this simulator issued it, for the
//! same time type, order type and window.

use std::collections::HashMap;

use super::codes;
use crate::http::Params;
pub(crate) use crate::keyset::{decode, encode, Key, TimeType};
use crate::time::parse_request_time;

/// The longest window, inclusive of both ends: 90 days exactly.
pub(crate) const MAX_SPAN_SECS: i64 = 90 * 86_400;
pub(crate) const MAX_SIZE: i64 = 50;
pub(crate) const DEFAULT_SIZE: usize = 20;
pub(crate) const MAX_ORDER_IDS: usize = 10;

/// What a cursor is bound to: a query with the same scope may continue from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Scope {
    pub(crate) time_type: TimeType,
    pub(crate) order_type: u8,
    pub(crate) start: i64,
    pub(crate) end: i64,
}

/// One page of a time-window query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) scope: Scope,
    pub(crate) size: usize,
    /// Continue strictly after this key (`None`: from the start of the window).
    pub(crate) after: Option<Key>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// Look up these orders (1..=10 ids); time, cursor and size are ignored.
    ByIds(Vec<String>),
    Window(Window),
}

/// A refused request: the answer's code and message, and the violation's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: &'static str,
    pub(crate) msg: String,
    pub(crate) reason: String,
}

fn bad_parameter(msg: &str, reason: String) -> Refusal {
    Refusal {
        code: codes::BAD_PARAMETER,
        msg: format!("参数错误:{msg}"),
        reason,
    }
}

/// Checks a request against the rules. `issued` maps every cursor handed out to its scope.
pub(crate) fn parse(
    params: &Params,
    vekey: &str,
    issued: &HashMap<String, Scope>,
) -> Result<Request, Refusal> {
    match params.get("vekey") {
        Some(k) if k == vekey => {}
        given => {
            return Err(Refusal {
                code: codes::BAD_KEY,
                msg: codes::BAD_KEY_MSG.to_string(),
                reason: if given.is_none_or(str::is_empty) {
                    "vekey missing".to_string()
                } else {
                    "vekey is wrong".to_string()
                },
            })
        }
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
                "order_ids格式错误,应为逗号分隔的订单号",
                format!("order_ids={raw:?} is not a comma list of numeric ids"),
            ));
        }
        return Ok(Request::ByIds(ids));
    }

    let size = match params.non_empty("size") {
        None => DEFAULT_SIZE,
        Some(text) => match text.trim().parse::<i64>() {
            Ok(n) if (1..=MAX_SIZE).contains(&n) => n as usize,
            _ => {
                return Err(bad_parameter(
                    "size取值区间为[1, 50]",
                    format!("size={text:?} is outside 1..=50"),
                ))
            }
        },
    };
    let order_type = match params.non_empty("order_type") {
        None => 0,
        Some(text) => match text.trim().parse::<u8>() {
            Ok(n) if n <= 3 => n,
            _ => {
                return Err(bad_parameter(
                    "order_type取值为0、1、2、3",
                    format!("order_type={text:?} is not one of 0..=3"),
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
    let start = time_param(params, "start_time")?;
    let end = time_param(params, "end_time")?;
    if end < start {
        return Err(bad_parameter(
            "开始时间不能大于结束时间(start_time > end_time)",
            format!("end_time {end} is before start_time {start}"),
        ));
    }
    if end - start > MAX_SPAN_SECS {
        return Err(bad_parameter(
            "结束时间与开始时间间隔不能超过90天(end_time - start_time)",
            format!(
                "end_time - start_time = {}s exceeds 90 days ({MAX_SPAN_SECS}s)",
                end - start
            ),
        ));
    }
    let scope = Scope {
        time_type,
        order_type,
        start,
        end,
    };

    let after = match params.non_empty("cursor").map(str::trim) {
        None | Some("0") => None,
        Some(text) => {
            let bad = |why: String| bad_parameter("cursor无效,请使用上一次查询返回的cursor", why);
            // A cursor handed out with the key echoed after a dot (see `set_key_in_cursor`).
            let core = text.split_once('.').map_or(text, |(core, _)| core);
            let (tt, key) =
                decode(core).ok_or_else(|| bad(format!("cursor {core:?} cannot be decoded")))?;
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

fn time_param(params: &Params, name: &str) -> Result<i64, Refusal> {
    let text = params.non_empty(name).ok_or_else(|| {
        bad_parameter(
            &format!("缺少{name}"),
            format!("{name} missing (required unless order_ids is given)"),
        )
    })?;
    parse_request_time(text).ok_or_else(|| {
        bad_parameter(
            &format!("{name}格式错误,支持YYYY-MM-DD HH:MM:SS或10位时间戳"),
            format!("{name}={text:?} is neither YYYY-MM-DD HH:MM:SS nor 10-digit unix seconds"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use axum::http::HeaderMap;

    fn params(query: &str) -> Params {
        Params::new(Some(query), &HeaderMap::new(), &Bytes::new())
    }

    fn check(query: &str) -> Result<Request, Refusal> {
        parse(&params(query), "k", &HashMap::new())
    }

    const OK_WINDOW: &str =
        "vekey=k&start_time=2024-01-01+00%3A00%3A00&end_time=2024-03-31+00%3A00%3A00";

    #[test]
    fn defaults_apply() {
        let Ok(Request::Window(w)) = check(OK_WINDOW) else {
            panic!("refused")
        };
        assert_eq!(w.size, 20);
        assert_eq!(w.after, None);
        assert_eq!(w.scope.time_type, TimeType::Pay);
        assert_eq!(w.scope.order_type, 0);
        // An empty cursor is a first page, as in the document's own example.
        assert!(check(&format!("{OK_WINDOW}&cursor=&size=")).is_ok());
    }

    #[test]
    fn ninety_days_exactly_is_allowed_one_second_more_is_not() {
        let start = 1_700_000_000;
        let ok = format!(
            "vekey=k&start_time={start}&end_time={}",
            start + MAX_SPAN_SECS
        );
        assert!(check(&ok).is_ok());
        let over = format!(
            "vekey=k&start_time={start}&end_time={}",
            start + MAX_SPAN_SECS + 1
        );
        assert_eq!(check(&over).map_err(|r| r.code), Err(codes::BAD_PARAMETER));
    }

    #[test]
    fn each_rule_refuses() {
        for (query, code) in [
            ("start_time=1700000000&end_time=1700000001", codes::BAD_KEY),
            (
                "vekey=x&start_time=1700000000&end_time=1700000001",
                codes::BAD_KEY,
            ),
            ("vekey=k&end_time=1700000001", codes::BAD_PARAMETER),
            ("vekey=k&start_time=1700000000", codes::BAD_PARAMETER),
            (
                "vekey=k&start_time=1700000002&end_time=1700000001",
                codes::BAD_PARAMETER,
            ),
            (
                "vekey=k&start_time=2024/01/01&end_time=1700000001",
                codes::BAD_PARAMETER,
            ),
            (&format!("{OK_WINDOW}&size=0"), codes::BAD_PARAMETER),
            (&format!("{OK_WINDOW}&size=51"), codes::BAD_PARAMETER),
            (&format!("{OK_WINDOW}&size=ten"), codes::BAD_PARAMETER),
            (&format!("{OK_WINDOW}&order_type=4"), codes::BAD_PARAMETER),
            (
                &format!("{OK_WINDOW}&time_type=create"),
                codes::BAD_PARAMETER,
            ),
            (&format!("{OK_WINDOW}&cursor=abc"), codes::BAD_PARAMETER),
            (
                &format!("{OK_WINDOW}&cursor={}", encode(TimeType::Pay, (1, 1))),
                codes::BAD_PARAMETER,
            ),
            (
                "vekey=k&order_ids=1,2,3,4,5,6,7,8,9,10,11",
                codes::BAD_PARAMETER,
            ),
            ("vekey=k&order_ids=1,x", codes::BAD_PARAMETER),
        ] {
            let got = check(query);
            assert_eq!(
                got.as_ref().map_err(|r| r.code),
                Err(code),
                "{query}: {got:?}"
            );
        }
    }

    #[test]
    fn order_ids_ignore_the_time_parameters() {
        assert_eq!(
            check("vekey=k&order_ids=6918598319523671223,+12&size=999&start_time=bad"),
            Ok(Request::ByIds(vec![
                "6918598319523671223".to_string(),
                "12".to_string()
            ]))
        );
    }

    #[test]
    fn a_cursor_only_continues_the_query_it_came_from() {
        let Ok(Request::Window(w)) = check(OK_WINDOW) else {
            panic!("refused")
        };
        let cursor = encode(
            TimeType::Pay,
            (w.scope.start + 5, 4_000_000_000_000_000_001),
        );
        let issued = HashMap::from([(cursor.clone(), w.scope)]);
        let same = params(&format!("{OK_WINDOW}&cursor={cursor}&size=50"));
        let Ok(Request::Window(next)) = parse(&same, "k", &issued) else {
            panic!("refused")
        };
        assert_eq!(next.after, decode(&cursor).map(|(_, k)| k));
        let other = params(&format!("{OK_WINDOW}&cursor={cursor}&time_type=update"));
        assert!(parse(&other, "k", &issued).is_err());
    }
}
