//! damaijia's request, answer and normalising, on the document's sample page.
use super::*;
use crate::planner::Window;
use crate::secret::Auth;
use crate::sources::SourceOptions;

const SAMPLE: &str = include_str!("../../../tests/fixtures/damaijia/sample_page.json");

fn query<'a>(auth: &'a Auth, options: &'a SourceOptions, cursor: &'a str) -> PageQuery<'a> {
    PageQuery {
        endpoint: DEFAULT_ENDPOINT,
        auth,
        options,
        window: Window {
            start: timefmt::parse_user_time("2021-12-01").unwrap(),
            end: timefmt::parse_user_time("2021-12-31").unwrap(),
        },
        cursor,
        page_size: 100,
        axis: Axis::Live,
        start: timefmt::parse_user_time("2021-01-01").unwrap(),
    }
}

fn opts(pii: PiiMode) -> SourceOptions {
    SourceOptions::Damaijia(Options { pii })
}

#[test]
fn the_documented_sample_normalises_exactly() {
    let auth = Auth::default();
    let o = opts(PiiMode::Mask);
    let page = parse_page(&query(&auth, &o, ""), 200, SAMPLE.as_bytes()).unwrap();
    assert_eq!(page.next_cursor, None, "total 2, both on the first page");
    assert_eq!(page.orders.len(), 2);
    let first = &page.orders[0];
    assert_eq!(first.order_id, "4879354354618346764");
    assert_eq!(first.kind, Kind::Sale);
    assert_eq!(first.status, Status::Closed);
    assert_eq!(first.status_raw, "4");
    assert_eq!(first.pay_amount, Some(1000));
    assert_eq!(first.refund_amount, Some(1000), "its line was refunded");
    assert_eq!(first.shop_id.as_deref(), Some("20358278"));
    assert_eq!(first.shop_name.as_deref(), Some("淘易淘"));
    assert_eq!(
        first.created_at.map(timefmt::fmt_seconds).as_deref(),
        Some("2021-12-22 15:32:25")
    );
    assert_eq!(first.confirmed_at, None, "finish_time 0 is no time");
    let line = &first.sub_orders[0];
    assert_eq!(line.sub_order_id, "4879354354618346764");
    assert_eq!(
        line.product_id.as_deref(),
        Some("3489373605366769084"),
        "product_id_str, not the rounded number"
    );
    assert_eq!(line.sku_id.as_deref(), Some("1703795743450127"));
    assert_eq!(line.item_num, Some(1));
}

#[test]
fn one_pass_and_field_by_field_read_a_page_the_same() {
    let auth = Auth::default();
    for pii in [PiiMode::Mask, PiiMode::Keep, PiiMode::Drop] {
        let o = opts(pii);
        let q = query(&auth, &o, "");
        assert!(
            serde_json::from_str::<Answer<'_>>(SAMPLE).is_ok(),
            "one pass"
        );
        let one_pass = parse_page(&q, 200, SAMPLE.as_bytes()).unwrap();
        assert_eq!(
            one_pass,
            parse_page_field_by_field(&q, pii, 200, SAMPLE).unwrap()
        );
    }
}

#[test]
fn numbers_as_strings_read_the_same() {
    let auth = Auth::default();
    let o = opts(PiiMode::Mask);
    let as_strings = SAMPLE
        .replace("\"pay_amount\": 1000", "\"pay_amount\": \"1000\"")
        .replace(
            "\"create_time\": 1640158345",
            "\"create_time\": \"1640158345\"",
        )
        .replace("\"total\": 2", "\"total\": \"2\"");
    let a = parse_page(&query(&auth, &o, ""), 200, SAMPLE.as_bytes()).unwrap();
    let b = parse_page(&query(&auth, &o, ""), 200, as_strings.as_bytes()).unwrap();
    assert_eq!(a.orders[0].pay_amount, b.orders[0].pay_amount);
    assert_eq!(a.orders[0].created_at, b.orders[0].created_at);
    assert_eq!(a.orders[0].sub_orders[0].pay_amount, Some(1000));
}

#[test]
fn pii_is_masked_kept_or_dropped_in_raw() {
    let page: Value = serde_json::from_str(SAMPLE).unwrap();
    let mut row = page["data"]["shop_order_list"][0].clone();
    row["post_tel"] = json!("13912345678");
    row["post_receiver"] = json!("张三丰");
    row["post_addr"]["detail"] = json!("丹棱街1号");
    row["user_id_info"] = json!({"id_card_no": "110105199003071234", "id_card_name": "李四"});
    row["sku_order_list"][0]["post_tel"] = json!("13912345678");
    let masked = normalise(&row, PiiMode::Mask).unwrap();
    for plain in [
        "13912345678",
        "张三丰",
        "丹棱街1号",
        "110105199003071234",
        "李四",
    ] {
        assert!(!masked.raw.contains(plain), "{plain} in masked raw");
        assert!(
            !masked.sub_orders[0].raw.contains(plain),
            "{plain} in masked line raw"
        );
    }
    assert!(masked.raw.contains("139****5678"));
    assert!(masked.raw.contains("张**"));
    let kept = normalise(&row, PiiMode::Keep).unwrap();
    assert!(kept.raw.contains("13912345678") && kept.raw.contains("丹棱街1号"));
    let dropped = normalise(&row, PiiMode::Drop).unwrap();
    let v: Value = serde_json::from_str(&dropped.raw).unwrap();
    assert!(v.get("post_tel").is_none() && v["post_addr"].get("detail").is_none());
    assert_eq!(
        v["post_addr"]["city"]["name"], "杭州市",
        "regions are not personal"
    );
    assert!(!dropped.sub_orders[0].raw.contains("13912345678"));
}

#[test]
fn pii_in_an_undocumented_shape_is_still_hidden() {
    let page: Value = serde_json::from_str(SAMPLE).unwrap();
    let mut row = page["data"]["shop_order_list"][0].clone();
    row["post_addr"] = json!("北京市海淀区丹棱街1号");
    row["user_id_info"] =
        json!([{"id_card_no": "110105199003071234", "id_card_name": "李四"}, "110105199003075678"]);
    for mode in [PiiMode::Mask, PiiMode::Drop] {
        let o = normalise(&row, mode).unwrap();
        for plain in [
            "丹棱街1号",
            "110105199003071234",
            "李四",
            "110105199003075678",
        ] {
            assert!(!o.raw.contains(plain), "{mode:?}: {plain} in raw");
        }
    }
}

#[test]
fn body_codes_are_classified() {
    let auth = Auth::default();
    let o = opts(PiiMode::Mask);
    let q = query(&auth, &o, "");
    let answer = |code: i64| {
        parse_page(
            &q,
            200,
            format!(r#"{{"status":{code},"msg":"m","data":null}}"#).as_bytes(),
        )
    };
    assert!(matches!(answer(101), Err(UpstreamError::Transient { code, .. }) if code == "101"));
    for fatal in [100, 103, 200, 203, 204, 302] {
        assert!(
            matches!(answer(fatal), Err(UpstreamError::Fatal { code, .. }) if code == fatal.to_string()),
            "{fatal}"
        );
    }
    assert!(matches!(
        parse_page(&q, 200, b"<html>"),
        Err(UpstreamError::Transient { .. })
    ));
}

#[test]
fn live_asks_by_update_time_backfill_by_create_time() {
    let auth: Auth = [("access_token", "tok"), ("shop_id", "77977")]
        .into_iter()
        .collect();
    let o = opts(PiiMode::Mask);
    // Live: from the key's second, past the rows already read at it.
    let mut q = query(&auth, &o, "k:1638300000:250:900:0");
    let req = build_request(&q).unwrap();
    assert_eq!(req.headers, vec![("Authorization", "tok".to_string())]);
    let Body::Json(body) = &req.body else {
        panic!("not JSON")
    };
    assert_eq!(body["shop_id"], "77977");
    let p = &body["params"];
    assert_eq!(p["page"], 2);
    assert_eq!(p["order_by"], "update_time");
    assert_eq!(p["order_asc"], true);
    assert_eq!(p["update_time_start"], 1638300000);
    assert_eq!(p["update_time_end"], 1638288000 + 30 * 86400 - 1);
    assert_eq!(p["create_time_start"], 1609430400, "the pipeline's start");
    q.axis = Axis::Backfill;
    q.cursor = "200:250:0";
    let req = build_request(&q).unwrap();
    let Body::Json(body) = &req.body else {
        panic!("not JSON")
    };
    assert_eq!(body["params"]["order_by"], "create_time");
    assert_eq!(body["params"]["page"], 2);
    assert_eq!(body["params"]["create_time_start"], 1638288000);
    assert!(body["params"].get("update_time_start").is_none());
}
