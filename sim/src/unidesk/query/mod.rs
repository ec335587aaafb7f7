//! Reading one unidesk request: the TOP system parameters and signature, the business parameter
//! `order_top_cursor_query_dto`, and the keyset cursor.
//!
//! [`parse`] either returns a [`Window`] the world can answer or a [`Refusal`] carrying the TOP
//! `code`/`msg`/`sub_code`/`sub_msg` and an English reason for the violation log. It never panics on
//! any input. The checks, in order (the first broken one answers):
//!
//! 1. `method` present (21) and `alibaba.taobao.ud.smart.order.detail.pull` (22);
//! 2. `app_key` present (28) and the configured one (29);
//! 3. `sign_method` is `md5` (41, naming it);
//! 4. `sign` present (24) and equal to [`sign`] over every other parameter (25);
//! 5. if a session is configured: `session` present (26) and equal to it (27);
//! 6. `timestamp` present (30), `YYYY-MM-DD HH:MM:SS` Beijing, and at most 10 minutes from the
//!    real Beijing now of the request (43);
//! 7. `format` is `json` (23); `v` present (32) and `2.0` (34);
//! 8. the dto present and a JSON object; `start_time` and `end_time` present as strings in exactly
//!    `YYYY-MM-DD HH:MM:SS.mmm`; `end ≥ start`; both on the same Beijing calendar day; `prod_type`
//!    absent, `null`, 1 or 2; `cursor_id` absent, `null`, `""`, or a cursor this simulator issued for
//!    the same window and product type (all 41 `isv.invalid-parameter`, `sub_msg` naming the field).
//!
//! The cursor is `ud` + the 13-digit unix milliseconds, 19-digit order id and 19-digit sub-order id
//! of the last line of the previous page (its keyset key); the next page starts strictly after it.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use md5::{Digest, Md5};
use serde_json::Value;

use super::codes::{self, TopError};
use super::world::UdKey;
use super::METHOD;
use crate::http::Params;
use crate::time::{millis_text, parse_wall_clock, parse_wall_clock_millis, to_unix_millis};

/// The business parameter holding the query.
pub(crate) const DTO: &str = "order_top_cursor_query_dto";
/// How far the `timestamp` may be from now, either way, unless a test narrows it.
pub(crate) const TIMESTAMP_TOLERANCE_SECS: i64 = 600;
/// `prod_type` 1: udsmart (the default); 2: 流量通Pro.
pub(crate) const PROD_TYPE_UDSMART: u8 = 1;
pub(crate) const PROD_TYPE_PRO: u8 = 2;

const CURSOR_PREFIX: &str = "ud";
const CURSOR_LEN: usize = 2 + 13 + 19 + 19;

/// What a cursor is bound to: a query with the same scope may continue from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Scope {
    /// Unix milliseconds, both inclusive.
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) prod_type: u8,
}

/// One page of a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) scope: Scope,
    /// The window as asked, Beijing wall clock with milliseconds.
    pub(crate) start: NaiveDateTime,
    pub(crate) end: NaiveDateTime,
    /// Continue strictly after this key (`None`: from the start of the window).
    pub(crate) after: Option<UdKey>,
}

/// What the simulator accepts.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) app_key: String,
    pub(crate) app_secret: String,
    pub(crate) session: Option<String>,
    /// How far the `timestamp` may be from now, in seconds, either way.
    pub(crate) timestamp_tolerance_secs: i64,
}

/// A refused request: the TOP error, its `sub_msg`, and the violation's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) error: TopError,
    pub(crate) sub_msg: String,
    pub(crate) reason: String,
}

fn refuse(error: TopError, sub_msg: &str, reason: String) -> Refusal {
    Refusal {
        error,
        sub_msg: sub_msg.to_string(),
        reason,
    }
}

/// 41 `isv.invalid-parameter`, `sub_msg` `非法参数:<name>:<what>`.
fn invalid(name: &str, what: &str, reason: String) -> Refusal {
    refuse(
        codes::INVALID_ARGUMENTS,
        &format!("{}{name}:{what}", codes::INVALID_PARAMETER_SUB_MSG_PREFIX),
        reason,
    )
}

/// TOP's md5 signature of `params`: every parameter except `sign`, sorted by name (bytes), each as
/// name then value (as sent, URL-decoded), between two copies of the secret; md5 of the UTF-8
/// bytes, uppercase hex.
pub(crate) fn sign(params: &Params, secret: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(secret.as_bytes());
    for (name, value) in params.sorted() {
        if name != "sign" {
            md5.update(name.as_bytes());
            md5.update(value.as_bytes());
        }
    }
    md5.update(secret.as_bytes());
    md5.finalize().iter().map(|b| format!("{b:02X}")).collect()
}

/// Checks a request against the rules. `issued` maps every cursor handed out to its scope; `now` is
/// the Beijing now the timestamp is compared with.
pub(crate) fn parse(
    params: &Params,
    creds: &Credentials,
    issued: &HashMap<String, Scope>,
    now: NaiveDateTime,
) -> Result<Window, Refusal> {
    match params.non_empty("method") {
        None => {
            return Err(refuse(
                codes::MISSING_METHOD,
                "缺少method参数",
                "method missing".into(),
            ))
        }
        Some(m) if m != METHOD => {
            return Err(refuse(
                codes::INVALID_METHOD,
                "不存在的方法名",
                format!("method={m:?} is not {METHOD}"),
            ))
        }
        Some(_) => {}
    }
    match params.non_empty("app_key") {
        None => {
            return Err(refuse(
                codes::MISSING_APP_KEY,
                "缺少app_key参数",
                "app_key missing".into(),
            ))
        }
        Some(k) if k != creds.app_key => {
            return Err(refuse(
                codes::INVALID_APP_KEY,
                "不存在的AppKey",
                "app_key is not the configured one".into(),
            ))
        }
        Some(_) => {}
    }
    match params.get("sign_method") {
        Some("md5") => {}
        other => {
            return Err(invalid(
                "sign_method",
                "只支持md5",
                format!("sign_method={other:?} is not md5"),
            ))
        }
    }
    match params.non_empty("sign") {
        None => {
            return Err(refuse(
                codes::MISSING_SIGNATURE,
                "缺少sign参数",
                "sign missing".into(),
            ))
        }
        Some(given) if given != sign(params, &creds.app_secret) => {
            return Err(refuse(
                codes::INVALID_SIGNATURE,
                "签名错误",
                "sign does not match md5(secret + sorted name+value pairs + secret)".into(),
            ))
        }
        Some(_) => {}
    }
    if let Some(session) = &creds.session {
        match params.non_empty("session") {
            None => {
                return Err(refuse(
                    codes::MISSING_SESSION,
                    "缺少session参数",
                    "session missing (the simulator is configured with one)".into(),
                ))
            }
            Some(s) if s != session => {
                return Err(refuse(
                    codes::INVALID_SESSION,
                    "SessionKey非法",
                    "session is not the configured one".into(),
                ))
            }
            Some(_) => {}
        }
    }
    let Some(timestamp) = params.non_empty("timestamp") else {
        return Err(refuse(
            codes::MISSING_TIMESTAMP,
            "缺少timestamp参数",
            "timestamp missing".into(),
        ));
    };
    let Some(at) = parse_wall_clock(timestamp) else {
        return Err(refuse(
            codes::INVALID_TIMESTAMP,
            "timestamp格式应为yyyy-MM-dd HH:mm:ss",
            format!("timestamp={timestamp:?} is not YYYY-MM-DD HH:MM:SS"),
        ));
    };
    let off = (at - now).num_seconds();
    if off.abs() > creds.timestamp_tolerance_secs {
        return Err(refuse(
            codes::INVALID_TIMESTAMP,
            "timestamp与服务器时间相差超过10分钟",
            format!(
                "timestamp {at} is {off}s from now ({now}); at most {}s either way",
                creds.timestamp_tolerance_secs
            ),
        ));
    }
    match params.get("format") {
        Some("json") => {}
        other => {
            return Err(refuse(
                codes::INVALID_FORMAT,
                "只支持json格式",
                format!("format={other:?} is not json"),
            ))
        }
    }
    match params.non_empty("v") {
        None => {
            return Err(refuse(
                codes::MISSING_VERSION,
                "缺少v参数",
                "v missing".into(),
            ))
        }
        Some(v) if v != "2.0" => {
            return Err(refuse(
                codes::UNSUPPORTED_VERSION,
                "只支持2.0版本",
                format!("v={v:?} is not 2.0"),
            ))
        }
        Some(_) => {}
    }
    dto(params, issued)
}

/// The business parameter: the window, product type and cursor.
fn dto(params: &Params, issued: &HashMap<String, Scope>) -> Result<Window, Refusal> {
    let Some(raw) = params.non_empty(DTO) else {
        return Err(invalid(DTO, "不能为空", format!("{DTO} missing")));
    };
    let dto = match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(invalid(
                DTO,
                "应为JSON对象",
                format!("{DTO}={raw:?} is not a JSON object"),
            ))
        }
        Err(e) => {
            return Err(invalid(
                DTO,
                "不是合法的JSON",
                format!("{DTO}={raw:?} is not JSON ({e})"),
            ))
        }
    };
    let time = |name: &str| -> Result<NaiveDateTime, Refusal> {
        let field = format!("{DTO}.{name}");
        match dto.get(name) {
            None | Some(Value::Null) => Err(invalid(&field, "不能为空", format!("{name} missing"))),
            Some(Value::String(text)) => parse_wall_clock_millis(text).ok_or_else(|| {
                invalid(
                    &field,
                    "日期格式应为yyyy-MM-dd HH:mm:ss.SSS",
                    format!("{name}={text:?} is not YYYY-MM-DD HH:MM:SS.mmm"),
                )
            }),
            Some(other) => Err(invalid(
                &field,
                "日期格式应为yyyy-MM-dd HH:mm:ss.SSS",
                format!("{name}={other} is not a string"),
            )),
        }
    };
    let start = time("start_time")?;
    let end = time("end_time")?;
    let end_field = format!("{DTO}.end_time");
    if end < start {
        return Err(invalid(
            &end_field,
            "结束时间不能早于开始时间",
            format!(
                "end_time {} is before start_time {}",
                millis_text(end),
                millis_text(start)
            ),
        ));
    }
    if end.date() != start.date() {
        return Err(invalid(
            &end_field,
            "不可与开始日期跨天",
            format!(
                "start_time {} and end_time {} are on different Beijing days (the window may not cross midnight)",
                millis_text(start),
                millis_text(end)
            ),
        ));
    }
    let prod_type = match dto.get("prod_type") {
        None | Some(Value::Null) => PROD_TYPE_UDSMART,
        Some(v) if v.as_u64() == Some(1) => PROD_TYPE_UDSMART,
        Some(v) if v.as_u64() == Some(2) => PROD_TYPE_PRO,
        Some(other) => {
            return Err(invalid(
                &format!("{DTO}.prod_type"),
                "只能为1或2",
                format!("prod_type={other} is neither the number 1 nor 2"),
            ))
        }
    };
    let scope = Scope {
        start: to_unix_millis(start),
        end: to_unix_millis(end),
        prod_type,
    };
    let cursor_field = format!("{DTO}.cursor_id");
    let bad_cursor = |why: String| {
        invalid(
            &cursor_field,
            "无效的游标,请使用上一次请求返回的cursor_id",
            why,
        )
    };
    let after = match dto.get("cursor_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.is_empty() => None,
        Some(Value::String(text)) => {
            let key = decode(text)
                .ok_or_else(|| bad_cursor(format!("cursor_id {text:?} cannot be decoded")))?;
            match issued.get(text.as_str()) {
                None => {
                    return Err(bad_cursor(format!(
                        "cursor_id {text:?} was never issued by this simulator"
                    )))
                }
                Some(s) if *s != scope => {
                    return Err(bad_cursor(format!(
                        "cursor_id {text:?} was issued for another query ({s:?}), not {scope:?}"
                    )))
                }
                Some(_) => Some(key),
            }
        }
        Some(other) => return Err(bad_cursor(format!("cursor_id={other} is not a string"))),
    };
    Ok(Window {
        scope,
        start,
        end,
        after,
    })
}

/// The cursor continuing after `key`.
pub(crate) fn encode(key: UdKey) -> String {
    format!("{CURSOR_PREFIX}{:013}{:019}{:019}", key.0, key.1, key.2)
}

/// The key inside a cursor, if it has the shape [`encode`] gives.
pub(crate) fn decode(text: &str) -> Option<UdKey> {
    let digits = text.strip_prefix(CURSOR_PREFIX)?;
    if text.len() != CURSOR_LEN || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((
        digits.get(..13)?.parse().ok()?,
        digits.get(13..32)?.parse().ok()?,
        digits.get(32..)?.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests;
