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
mod tests {
    use super::*;
    use axum::body::Bytes;
    use axum::http::HeaderMap;

    fn creds() -> Credentials {
        Credentials {
            app_key: "k".into(),
            app_secret: "s".into(),
            session: Some("sess".into()),
            timestamp_tolerance_secs: TIMESTAMP_TOLERANCE_SECS,
        }
    }

    fn now() -> NaiveDateTime {
        parse_wall_clock("2024-09-02 12:00:00").expect("valid time")
    }

    /// A signed request: the pairs given (plus the system parameters not among them), signed.
    fn signed(extra: &[(&str, &str)]) -> Params {
        let mut pairs: Vec<(String, String)> = vec![
            ("method".into(), METHOD.into()),
            ("app_key".into(), "k".into()),
            ("session".into(), "sess".into()),
            ("timestamp".into(), "2024-09-02 12:00:00".into()),
            ("format".into(), "json".into()),
            ("v".into(), "2.0".into()),
            ("sign_method".into(), "md5".into()),
            (
                DTO.into(),
                r#"{"start_time":"2024-09-01 00:00:00.000","end_time":"2024-09-01 23:59:59.999","prod_type":1}"#.into(),
            ),
        ];
        for (k, v) in extra {
            match pairs.iter_mut().find(|p| p.0 == *k) {
                Some(p) => p.1 = v.to_string(),
                None => pairs.push((k.to_string(), v.to_string())),
            }
        }
        pairs.retain(|p| p.1 != "<absent>");
        let query = |pairs: &[(String, String)]| {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
        };
        let unsigned = Params::new(Some(&query(&pairs)), &HeaderMap::new(), &Bytes::new());
        let signature = sign(&unsigned, "s");
        pairs.push(("sign".into(), signature));
        Params::new(Some(&query(&pairs)), &HeaderMap::new(), &Bytes::new())
    }

    fn check(extra: &[(&str, &str)]) -> Result<Window, Refusal> {
        parse(&signed(extra), &creds(), &HashMap::new(), now())
    }

    fn code(extra: &[(&str, &str)]) -> (i64, &'static str) {
        match check(extra) {
            Ok(_) => (0, ""),
            Err(r) => (r.error.code, r.error.sub_code),
        }
    }

    #[test]
    fn the_signature_is_tops_md5() {
        // md5("s" + "app_key12345" + "methoda.b" + "s"), as ordersync's own fixture has it.
        let p = Params::new(
            Some("method=a.b&app_key=12345&sign=ignored"),
            &HeaderMap::new(),
            &Bytes::new(),
        );
        assert_eq!(sign(&p, "s"), "3FA11AF30286D3DD7E07935B987B9370");
        // The worked example: a first page, signed with `sim-app-secret` (checked with Python's hashlib).
        let dto = r#"{"start_time":"2024-09-01 00:00:00.000","end_time":"2024-09-01 23:59:59.999","prod_type":1}"#;
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("method", METHOD),
                ("app_key", "sim-app-key"),
                ("session", "sim-session"),
                ("timestamp", "2024-09-02 12:00:00"),
                ("format", "json"),
                ("v", "2.0"),
                ("sign_method", "md5"),
                (DTO, dto),
            ])
            .finish();
        let p = Params::new(Some(&query), &HeaderMap::new(), &Bytes::new());
        assert_eq!(
            sign(&p, "sim-app-secret"),
            "8CE4857A7ACFC05313C1AE5171609606"
        );
    }

    #[test]
    fn a_good_request_reads_its_window() {
        let w = check(&[]).expect("accepted");
        assert_eq!(w.after, None);
        assert_eq!(w.scope.prod_type, PROD_TYPE_UDSMART);
        assert_eq!(w.scope.end - w.scope.start, 86_400_000 - 1);
        assert_eq!(w.start.to_string(), "2024-09-01 00:00:00");
        assert!(check(&[(DTO, r#"{"start_time":"2024-09-01 00:00:00.100","end_time":"2024-09-01 00:00:05.200","cursor_id":""}"#)]).is_ok());
        assert!(check(&[(DTO, r#"{"start_time":"2024-09-01 00:00:00.100","end_time":"2024-09-01 00:00:00.100","prod_type":2}"#)]).is_ok());
        assert!(
            check(&[("timestamp", "2024-09-02 12:10:00")]).is_ok(),
            "10 minutes exactly"
        );
        assert!(check(&[("timestamp", "2024-09-02 11:50:00")]).is_ok());
        assert!(
            check(&[("extra", "anything")]).is_ok(),
            "unknown parameters are signed and ignored"
        );
    }

    #[test]
    fn each_system_rule_has_its_code() {
        let bad_dto = codes::INVALID_ARGUMENTS.sub_code;
        for (extra, want) in [
            (vec![("method", "<absent>")], (21, "isv.missing-method")),
            (
                vec![("method", "taobao.trades.sold.get")],
                (22, "isv.invalid-method"),
            ),
            (vec![("app_key", "<absent>")], (28, "isv.missing-app-key")),
            (vec![("app_key", "other")], (29, "isv.appkey-not-exists")),
            (vec![("sign_method", "hmac")], (41, bad_dto)),
            (vec![("sign_method", "<absent>")], (41, bad_dto)),
            (vec![("session", "<absent>")], (26, "isv.missing-session")),
            (vec![("session", "other")], (27, "invalid-sessionkey")),
            (
                vec![("timestamp", "<absent>")],
                (30, "isv.missing-timestamp"),
            ),
            (
                vec![("timestamp", "2024-09-02 12:10:01")],
                (43, "isv.invalid-timestamp"),
            ),
            (
                vec![("timestamp", "2024-09-02 11:49:59")],
                (43, "isv.invalid-timestamp"),
            ),
            (
                vec![("timestamp", "1725249600000")],
                (43, "isv.invalid-timestamp"),
            ),
            (vec![("format", "xml")], (23, "isv.invalid-format")),
            (vec![("format", "<absent>")], (23, "isv.invalid-format")),
            (vec![("v", "<absent>")], (32, "isv.missing-version")),
            (vec![("v", "1.0")], (34, "isv.unsupported-version")),
        ] {
            assert_eq!(code(&extra), want, "{extra:?}");
        }
        let mut p = signed(&[])
            .sorted()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>();
        p.retain(|(k, _)| k != "sign");
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&p)
            .finish();
        let unsigned = Params::new(Some(&query), &HeaderMap::new(), &Bytes::new());
        let r = parse(&unsigned, &creds(), &HashMap::new(), now()).unwrap_err();
        assert_eq!(
            (r.error.code, r.error.sub_code),
            (24, "isv.missing-signature")
        );
        let tampered = Params::new(
            Some(&format!("{query}&sign={}&v=2.0", sign(&unsigned, "s"))),
            &HeaderMap::new(),
            &Bytes::new(),
        );
        assert!(
            parse(&tampered, &creds(), &HashMap::new(), now()).is_ok(),
            "a repeated name signs its last value"
        );
        let wrong = Params::new(
            Some(&format!("{query}&sign={}", sign(&unsigned, "other"))),
            &HeaderMap::new(),
            &Bytes::new(),
        );
        let r = parse(&wrong, &creds(), &HashMap::new(), now()).unwrap_err();
        assert_eq!(
            (r.error.code, r.error.sub_code),
            (25, "isv.invalid-signature")
        );
        let lower = Params::new(
            Some(&format!(
                "{query}&sign={}",
                sign(&unsigned, "s").to_lowercase()
            )),
            &HeaderMap::new(),
            &Bytes::new(),
        );
        assert_eq!(
            parse(&lower, &creds(), &HashMap::new(), now())
                .map_err(|r| r.error.code)
                .err(),
            Some(25),
            "uppercase hex only"
        );
        // Without a configured session, none is needed and any is ignored.
        let open = Credentials {
            session: None,
            ..creds()
        };
        assert!(parse(
            &signed(&[("session", "<absent>")]),
            &open,
            &HashMap::new(),
            now()
        )
        .is_ok());
        assert!(parse(&signed(&[("session", "x")]), &open, &HashMap::new(), now()).is_ok());
    }

    #[test]
    fn each_dto_rule_refuses_with_41_naming_the_field() {
        let q =
            |start: &str, end: &str| format!(r#"{{"start_time":"{start}","end_time":"{end}"}}"#);
        for (dto, field) in [
            ("<absent>".to_string(), DTO.to_string()),
            ("".to_string(), DTO.to_string()),
            ("{".to_string(), DTO.to_string()),
            ("[1]".to_string(), DTO.to_string()),
            (r#"{"end_time":"2024-09-01 00:00:05.200"}"#.to_string(), format!("{DTO}.start_time")),
            (r#"{"start_time":"2024-09-01 00:00:05.200"}"#.to_string(), format!("{DTO}.end_time")),
            (q("2024-09-01 00:00:00", "2024-09-01 00:00:05.200"), format!("{DTO}.start_time")),
            (q("2024-09-01 00:00:00.1", "2024-09-01 00:00:05.200"), format!("{DTO}.start_time")),
            (q("2024-09-01 00:00:00.100", "2024-09-01T00:00:05.200"), format!("{DTO}.end_time")),
            (q("2024-09-01 00:00:05.200", "2024-09-01 00:00:05.199"), format!("{DTO}.end_time")),
            (q("2024-09-01 23:59:59.999", "2024-09-02 00:00:00.000"), format!("{DTO}.end_time")),
            (q("2024-09-01 00:00:00.000", "2024-09-02 00:00:00.000"), format!("{DTO}.end_time")),
            (r#"{"start_time":1725120000000,"end_time":"2024-09-01 00:00:05.200"}"#.to_string(), format!("{DTO}.start_time")),
            (r#"{"start_time":"2024-09-01 00:00:00.000","end_time":"2024-09-01 00:00:05.200","prod_type":3}"#.to_string(), format!("{DTO}.prod_type")),
            (r#"{"start_time":"2024-09-01 00:00:00.000","end_time":"2024-09-01 00:00:05.200","prod_type":"1"}"#.to_string(), format!("{DTO}.prod_type")),
            (r#"{"start_time":"2024-09-01 00:00:00.000","end_time":"2024-09-01 00:00:05.200","cursor_id":"einsqpfgsgx"}"#.to_string(), format!("{DTO}.cursor_id")),
            (r#"{"start_time":"2024-09-01 00:00:00.000","end_time":"2024-09-01 00:00:05.200","cursor_id":7}"#.to_string(), format!("{DTO}.cursor_id")),
        ] {
            let r = check(&[(DTO, dto.as_str())]).expect_err(&dto);
            assert_eq!(r.error, codes::INVALID_ARGUMENTS, "{dto}");
            assert!(r.sub_msg.starts_with(&format!("{}{field}:", codes::INVALID_PARAMETER_SUB_MSG_PREFIX)), "{dto}: {}", r.sub_msg);
        }
    }

    #[test]
    fn a_cursor_only_continues_the_query_it_came_from() {
        let w = check(&[]).expect("accepted");
        let key = (
            w.scope.start + 5,
            3_100_000_000_000_000_001,
            4_100_000_000_000_000_003,
        );
        let cursor = encode(key);
        assert_eq!(cursor.len(), CURSOR_LEN);
        assert_eq!(decode(&cursor), Some(key));
        for bad in [
            "",
            "ud",
            "einsqpfgsgx",
            &cursor[1..],
            &cursor.replace("ud", "xx"),
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
        let issued = HashMap::from([(cursor.clone(), w.scope)]);
        let dto = |start: &str, prod: u8| {
            format!(
                r#"{{"start_time":"{start}","end_time":"2024-09-01 23:59:59.999","cursor_id":"{cursor}","prod_type":{prod}}}"#
            )
        };
        let same = signed(&[(DTO, &dto("2024-09-01 00:00:00.000", 1))]);
        assert_eq!(
            parse(&same, &creds(), &issued, now()).map(|w| w.after),
            Ok(Some(key))
        );
        for other in [
            dto("2024-09-01 00:00:00.001", 1),
            dto("2024-09-01 00:00:00.000", 2),
        ] {
            let p = signed(&[(DTO, &other)]);
            assert!(parse(&p, &creds(), &issued, now()).is_err(), "{other}");
        }
    }
}
