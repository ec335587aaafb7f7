//! Tests of reading one unidesk request: the signature, the system and dto rules, and the cursor.

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
    let q = |start: &str, end: &str| format!(r#"{{"start_time":"{start}","end_time":"{end}"}}"#);
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
