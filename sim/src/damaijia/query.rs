//! The request rules of `order-searchList`: the `Authorization` header, the JSON body and its
//! `params`, checked in the order upstream checks them.
//!
//! [`parse`] either returns a [`Query`] the world can answer or a [`Refusal`] carrying the body
//! status to answer with and an English reason for the violation log (never a secret). It never
//! panics on any input. The rules, in order:
//! 1. `Authorization` is exactly the access token (surrounding blanks ignored; no `Bearer `) → else 204;
//! 2. the body is a JSON object → else 100;
//! 3. `shop_id` (a string of digits, or a JSON integer) is present → else 100, and is the
//!    configured shop → else 302;
//! 4. `params` is a JSON object → else 100;
//! 5. inside it, `create_time_start`, `page` and `size` are present; each numeric parameter is a
//!    JSON integer or its decimal text (as the document's example sends them), `null` or `""`
//!    counting as absent; times are unix seconds of at most 10 digits (a 13-digit millisecond
//!    value is a caller's bug, refused rather than silently matching nothing); `page ≥ 0`;
//!    `1 ≤ size ≤ 100`; `order_by` ∈ {`create_time`, `update_time`}; `order_asc` a JSON bool (or
//!    `"true"`/`"false"`, `1`/`0`); a start after its end is refused. All of these → 100.
//!
//! Parameters the simulator does not know (the API has many optional filters) are ignored.

use axum::http::HeaderValue;
use serde_json::{Map, Value};

use super::codes;

/// The largest `size`.
pub(crate) const MAX_SIZE: i64 = 100;
/// The largest time accepted: 10 digits of unix seconds (the year 2286).
const MAX_UNIX_SECONDS: i64 = 9_999_999_999;

/// What the simulator accepts: the token and the shop it is authorised for.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) access_token: String,
    pub(crate) shop_id: String,
}

/// The time a query sorts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OrderBy {
    CreateTime,
    UpdateTime,
}

/// One accepted page request. Bounds are unix seconds, both inclusive; an absent bound is the
/// extreme value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Query {
    pub(crate) order_by: OrderBy,
    /// Ascending (`order_asc: true`); the default is descending.
    pub(crate) asc: bool,
    pub(crate) create: (i64, i64),
    pub(crate) update: (i64, i64),
    pub(crate) page: u64,
    pub(crate) size: usize,
}

impl Query {
    /// How many matches the pages before this one covered.
    pub(crate) fn offset(&self) -> usize {
        usize::try_from(self.page)
            .unwrap_or(usize::MAX)
            .saturating_mul(self.size)
    }
}

/// A refused request: the body status to answer with and the violation's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: i64,
    pub(crate) reason: String,
}

fn bad(reason: impl Into<String>) -> Refusal {
    Refusal {
        code: codes::BAD_PARAMS,
        reason: reason.into(),
    }
}

/// Checks a request (its `Authorization` header and body) against the rules.
pub(crate) fn parse(
    authorization: Option<&HeaderValue>,
    body: &[u8],
    creds: &Credentials,
) -> Result<Query, Refusal> {
    let token = authorization
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty());
    match token {
        None => {
            return Err(Refusal {
                code: codes::NO_PERMISSION,
                reason: "no Authorization header (it must carry the access token)".to_string(),
            })
        }
        Some(t) if t != creds.access_token => {
            let hint = if t.starts_with("Bearer ") {
                " (send the bare token, without `Bearer `)"
            } else {
                ""
            };
            return Err(Refusal {
                code: codes::NO_PERMISSION,
                reason: format!("Authorization is not the access token{hint}"),
            });
        }
        Some(_) => {}
    }

    let body: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    let Value::Object(body) = body else {
        return Err(bad("body is not a JSON object"));
    };
    let shop = match body.get("shop_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Some(Value::Number(n)) if n.is_u64() => Some(n.to_string()),
        Some(other) => return Err(bad(format!("shop_id {other} is not a shop id"))),
    };
    let Some(shop) = shop else {
        return Err(bad("shop_id missing"));
    };
    if shop != creds.shop_id {
        return Err(Refusal {
            code: codes::SHOP_NOT_AUTHORISED,
            reason: format!("shop_id {shop} is not authorised for this token"),
        });
    }
    let params = match body.get("params") {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) => return Err(bad("params missing")),
        Some(other) => return Err(bad(format!("params is not a JSON object: {other}"))),
    };

    let create_start = time(params, "create_time_start")?
        .ok_or_else(|| bad("params.create_time_start missing (required)"))?;
    let create_end = time(params, "create_time_end")?;
    let update_start = time(params, "update_time_start")?;
    let update_end = time(params, "update_time_end")?;
    let page = integer(params, "page")?.ok_or_else(|| bad("params.page missing (required)"))?;
    let page = u64::try_from(page).map_err(|_| {
        bad(format!(
            "params.page {page} is negative (the first page is 0)"
        ))
    })?;
    let size = integer(params, "size")?.ok_or_else(|| bad("params.size missing (required)"))?;
    if !(1..=MAX_SIZE).contains(&size) {
        return Err(bad(format!("params.size {size} is outside 1..=100")));
    }
    let order_by = match params.get("order_by") {
        None | Some(Value::Null) => OrderBy::CreateTime,
        Some(Value::String(s)) => match s.trim() {
            "" | "create_time" => OrderBy::CreateTime,
            "update_time" => OrderBy::UpdateTime,
            other => {
                return Err(bad(format!(
                    "params.order_by {other:?} is neither create_time nor update_time"
                )))
            }
        },
        Some(other) => return Err(bad(format!("params.order_by {other} is not a string"))),
    };
    let asc = match params.get("order_asc") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) if n.as_u64() == Some(0) => false,
        Some(Value::Number(n)) if n.as_u64() == Some(1) => true,
        Some(Value::String(s)) if matches!(s.trim(), "" | "false" | "0") => false,
        Some(Value::String(s)) if matches!(s.trim(), "true" | "1") => true,
        Some(other) => return Err(bad(format!("params.order_asc {other} is not a bool"))),
    };

    let create = bounds("create_time", Some(create_start), create_end)?;
    let update = bounds("update_time", update_start, update_end)?;
    Ok(Query {
        order_by,
        asc,
        create,
        update,
        page,
        size: size as usize,
    })
}

/// An inclusive range from optional bounds; a start after its end is refused.
fn bounds(name: &str, start: Option<i64>, end: Option<i64>) -> Result<(i64, i64), Refusal> {
    let range = (start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX));
    if range.0 > range.1 {
        return Err(bad(format!(
            "params.{name}_start {} is after params.{name}_end {}",
            range.0, range.1
        )));
    }
    Ok(range)
}

/// An integer parameter: a JSON integer or its decimal text; `null` and `""` are absent.
fn integer(params: &Map<String, Value>, name: &str) -> Result<Option<i64>, Refusal> {
    let refuse = |v: &Value| bad(format!("params.{name} {v} is not an integer"));
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| refuse(v)),
        Some(v @ Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(refuse(v));
            }
            s.parse().map(Some).map_err(|_| refuse(v))
        }
        Some(v) => Err(refuse(v)),
    }
}

/// A time parameter: unix seconds, 0 to 10 digits' worth.
fn time(params: &Map<String, Value>, name: &str) -> Result<Option<i64>, Refusal> {
    match integer(params, name)? {
        Some(t) if t < 0 => Err(bad(format!("params.{name} {t} is negative"))),
        Some(t) if t > MAX_UNIX_SECONDS => Err(bad(format!(
            "params.{name} {t} is not unix seconds (milliseconds?)"
        ))),
        t => Ok(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn creds() -> Credentials {
        Credentials {
            access_token: "tok".to_string(),
            shop_id: "20358278".to_string(),
        }
    }

    fn check(auth: Option<&str>, body: &Value) -> Result<Query, Refusal> {
        let header = auth.map(|a| HeaderValue::from_str(a).expect("header"));
        parse(header.as_ref(), body.to_string().as_bytes(), &creds())
    }

    fn with(params: Value) -> Value {
        json!({"shop_id": "20358278", "params": params})
    }

    #[test]
    fn the_documents_example_is_accepted_with_defaults() {
        let body = json!({
            "shop_id": "20358278",
            "params": {"create_time_start": "1639324800", "size": "3", "page": "0"}
        });
        assert_eq!(
            check(Some(" tok "), &body),
            Ok(Query {
                order_by: OrderBy::CreateTime,
                asc: false,
                create: (1_639_324_800, i64::MAX),
                update: (i64::MIN, i64::MAX),
                page: 0,
                size: 3,
            })
        );
    }

    #[test]
    fn numbers_strings_and_options_are_read() {
        let q = check(
            Some("tok"),
            &json!({"shop_id": 20358278, "params": {
                "create_time_start": 100, "create_time_end": "200",
                "update_time_start": 150, "update_time_end": 150,
                "page": 7, "size": 100, "order_by": "update_time", "order_asc": true,
                "product": "衣服", "b_type": 2, "edition": "2"
            }}),
        )
        .expect("accepted");
        assert_eq!(
            (q.order_by, q.asc, q.create, q.update, q.page, q.size),
            (OrderBy::UpdateTime, true, (100, 200), (150, 150), 7, 100)
        );
        assert_eq!(q.offset(), 700);
        for (asc, want) in [(json!("true"), true), (json!(0), false), (json!(""), false)] {
            let q = check(
                Some("tok"),
                &with(json!({"create_time_start": 1, "page": 0, "size": 1, "order_asc": asc})),
            );
            assert_eq!(q.map(|q| q.asc), Ok(want));
        }
    }

    #[test]
    fn credentials_come_first() {
        let good = with(json!({"create_time_start": 1, "page": 0, "size": 1}));
        for auth in [None, Some(""), Some("nope"), Some("Bearer tok")] {
            let r = check(auth, &good).unwrap_err();
            assert_eq!(r.code, codes::NO_PERMISSION, "{auth:?}");
            assert!(!r.reason.contains("nope"), "{}", r.reason);
        }
        let r = check(Some("nope"), &json!("not even an object")).unwrap_err();
        assert_eq!(
            r.code,
            codes::NO_PERMISSION,
            "the token is checked before the body"
        );
        let other_shop = json!({"shop_id": "1212212121", "params": {}});
        assert_eq!(
            check(Some("tok"), &other_shop).map_err(|r| r.code),
            Err(codes::SHOP_NOT_AUTHORISED)
        );
    }

    #[test]
    fn each_rule_refuses_with_100() {
        let cases = [
            json!([1, 2]),
            json!({"params": {"create_time_start": 1, "page": 0, "size": 1}}),
            json!({"shop_id": "", "params": {"create_time_start": 1, "page": 0, "size": 1}}),
            json!({"shop_id": 1.5, "params": {}}),
            json!({"shop_id": "20358278"}),
            json!({"shop_id": "20358278", "params": "create_time_start=1"}),
            with(json!({"page": 0, "size": 1})),
            with(json!({"create_time_start": "", "page": 0, "size": 1})),
            with(json!({"create_time_start": 1, "size": 1})),
            with(json!({"create_time_start": 1, "page": 0})),
            with(json!({"create_time_start": 1, "page": -1, "size": 1})),
            with(json!({"create_time_start": 1, "page": 0, "size": 0})),
            with(json!({"create_time_start": 1, "page": 0, "size": 101})),
            with(json!({"create_time_start": 1, "page": 0, "size": "ten"})),
            with(json!({"create_time_start": 1.5, "page": 0, "size": 1})),
            with(json!({"create_time_start": "1e9", "page": 0, "size": 1})),
            with(json!({"create_time_start": -5, "page": 0, "size": 1})),
            with(json!({"create_time_start": 1_639_324_800_000i64, "page": 0, "size": 1})),
            with(json!({"create_time_start": 10, "create_time_end": 9, "page": 0, "size": 1})),
            with(
                json!({"create_time_start": 1, "update_time_start": 10, "update_time_end": 9,
                "page": 0, "size": 1}),
            ),
            with(json!({"create_time_start": 1, "page": 0, "size": 1, "order_by": "pay_time"})),
            with(json!({"create_time_start": 1, "page": 0, "size": 1, "order_by": 1})),
            with(json!({"create_time_start": 1, "page": 0, "size": 1, "order_asc": "yes"})),
            with(json!({"create_time_start": 1, "page": 0, "size": 1, "order_asc": 2})),
        ];
        for body in cases {
            let got = check(Some("tok"), &body);
            assert_eq!(
                got.as_ref().map_err(|r| r.code),
                Err(codes::BAD_PARAMS),
                "{body}: {got:?}"
            );
        }
        let garbage = parse(
            Some(&HeaderValue::from_static("tok")),
            b"\xff{not json",
            &creds(),
        );
        assert_eq!(garbage.map_err(|r| r.code), Err(codes::BAD_PARAMS));
    }
}
