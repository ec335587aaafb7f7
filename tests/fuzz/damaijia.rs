//! damaijia: mutated pages never panic and their cursors always move on within the re-read
//! budget; customer PII never leaks into `raw`, a reason or an error in any PII mode; and a
//! cursor at the integer limits is refused without a panic.

use chrono::NaiveDate;
use ordersync::config::Auth;
use ordersync::model::OrderRow;
use ordersync::sources::{self, damaijia, Axis, PageQuery, SourceOptions};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};

use super::{
    apply, check_error, check_order_of_kind, damaijia_window, fuzz, is_json_object, json_mutation,
    statuses,
};
use crate::common::fixture;

/// Where customer PII sits in a damaijia shop order and in each of its SKU lines (the same places
/// at both levels): `(container, key)`, the container `None` for the row itself. The names are
/// the upstream document's; `damaijia::protect_pii` must cover every one of them.
const DAMAIJIA_PII_SLOTS: &[(Option<&str>, &str)] = &[
    (None, "post_tel"),
    (None, "post_receiver"),
    (None, "encrypt_post_tel"),
    (None, "encrypt_post_receiver"),
    (None, "buyer_words"),
    (None, "doudian_open_id"),
    (None, "open_id"),
    (Some("post_addr"), "detail"),
    (Some("post_addr"), "encrypt_detail"),
    (Some("user_id_info"), "id_card_no"),
    (Some("user_id_info"), "id_card_name"),
];

/// Recognisable plain PII planted in each fixture row (`.0`) and in each of its lines (`.1`).
const DAMAIJIA_PLANTED: &[(Option<&str>, &str, &str, &str)] = &[
    (None, "post_tel", "13912345678", "13887654321"),
    (None, "post_receiver", "张三丰", "欧阳娜娜"),
    (None, "buyer_words", "放丰巢柜别敲门", "周末再送谢谢"),
    (
        Some("post_addr"),
        "detail",
        "丹棱街1号银科大厦",
        "中关村大街27号",
    ),
    (
        Some("user_id_info"),
        "id_card_no",
        "110105199003071234",
        "44030119881111222X",
    ),
    (Some("user_id_info"), "id_card_name", "李四光", "赵钱孙"),
];

/// The slot of `v` (a row or a line) named by `container`/`key`, creating the container.
fn pii_slot<'a>(v: &'a mut Value, container: Option<&str>, key: &str) -> &'a mut Value {
    match container {
        Some(c) => &mut v[c][key],
        None => &mut v[key],
    }
}

/// The value at a slot, without creating anything.
fn pii_value<'a>(v: &'a Value, container: Option<&str>, key: &str) -> Option<&'a Value> {
    match container {
        Some(c) => v.get(c)?.get(key),
        None => v.get(key),
    }
}

/// The damaijia fixture without the keys the parser never reads (tag lists, promotion amounts, …):
/// a quarter of the size, so each case is cheaper and each random edit far more often hits a
/// field that matters. Every PII field and its container stays.
fn damaijia_fixture_trimmed() -> Value {
    const ROW_KEYS: &[&str] = &[
        "order_id",
        "order_status",
        "order_status_desc",
        "pay_amount",
        "order_amount",
        "create_time",
        "pay_time",
        "update_time",
        "finish_time",
        "shop_id",
        "shop_name",
        "sku_order_list",
        "post_addr",
    ];
    const LINE_KEYS: &[&str] = &[
        "order_id",
        "parent_order_id",
        "order_status",
        "product_id",
        "product_id_str",
        "product_name",
        "pay_amount",
        "after_sale_info",
        "sku_id",
        "item_num",
        "create_time",
        "update_time",
        "post_addr",
    ];
    let keep = |v: &mut Value, keys: &[&str]| {
        if let Some(o) = v.as_object_mut() {
            o.retain(|k, _| {
                keys.contains(&k.as_str()) || DAMAIJIA_PII_SLOTS.iter().any(|(_, key)| key == k)
            });
        }
        if let Some(Value::Object(addr)) = v.get_mut("post_addr") {
            addr.retain(|k, _| ["city", "detail", "encrypt_detail"].contains(&k.as_str()));
        }
    };
    let mut page = fixture("tests/fixtures/damaijia/sample_page.json");
    let rows = page
        .pointer_mut("/data/shop_order_list")
        .and_then(Value::as_array_mut)
        .expect("the fixture has rows");
    for row in rows {
        keep(row, ROW_KEYS);
        if let Some(Value::Array(lines)) = row.get_mut("sku_order_list") {
            lines.iter_mut().for_each(|line| keep(line, LINE_KEYS));
        }
    }
    page
}

/// The trimmed damaijia fixture with recognisable PII planted in every row and line, and every
/// plain PII text of it (planted, and the ciphertexts and buyer ids the fixture already had).
fn damaijia_base_with_pii() -> (Value, Vec<String>) {
    let mut base = damaijia_fixture_trimmed();
    let mut plain = Vec::new();
    let rows = base
        .pointer_mut("/data/shop_order_list")
        .and_then(Value::as_array_mut)
        .expect("the fixture has rows");
    for row in rows {
        for (container, key, at_order, at_line) in DAMAIJIA_PLANTED {
            *pii_slot(row, *container, key) = json!(at_order);
            if let Some(Value::Array(lines)) = row.get_mut("sku_order_list") {
                for line in lines {
                    *pii_slot(line, *container, key) = json!(at_line);
                }
            }
        }
        let mut levels = vec![row.clone()];
        if let Some(Value::Array(lines)) = row.get("sku_order_list") {
            levels.extend(lines.iter().cloned());
        }
        for level in &levels {
            for (container, key) in DAMAIJIA_PII_SLOTS {
                if let Some(Value::String(s)) = pii_value(level, *container, key) {
                    if s.chars().count() >= 4 && !plain.contains(s) {
                        plain.push(s.clone());
                    }
                }
            }
        }
    }
    (base, plain)
}

/// The texts of `plain` that a damaijia page carries outside the PII fields of its rows and lines.
fn damaijia_pii_outside_slots<'a>(page: &Value, plain: &'a [String]) -> Vec<&'a String> {
    let mut page = page.clone();
    if let Some(Value::Array(rows)) = page.pointer_mut("/data/shop_order_list") {
        for row in rows {
            let lines = match row.get("sku_order_list") {
                Some(Value::Array(lines)) => lines.len(),
                _ => 0,
            };
            for level in 0..=lines {
                let at = level_mut(row, level);
                for (container, key) in DAMAIJIA_PII_SLOTS {
                    if matches!(pii_value(at, *container, key), Some(v) if !v.is_null()) {
                        *pii_slot(at, *container, key) = Value::Null;
                    }
                }
            }
        }
    }
    let text = page.to_string();
    plain.iter().filter(|p| text.contains(p.as_str())).collect()
}

fn damaijia_options(pii: damaijia::PiiMode) -> SourceOptions {
    SourceOptions::Damaijia(damaijia::Options { pii })
}

/// A damaijia cursor text `offset:total:rescans` (`total` empty before the first page; `""` is
/// the first page), as this test reads it, independently of the module's own parser.
fn parse_damaijia_cursor(text: &str) -> Option<(u64, Option<u64>, u32)> {
    if text.is_empty() {
        return Some((0, None, 0));
    }
    let mut parts = text.split(':');
    let offset = parts.next()?.parse().ok()?;
    let total = match parts.next()? {
        "" => None,
        t => Some(t.parse().ok()?),
    };
    let rescans = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((offset, total, rescans))
}

/// A damaijia live cursor `k:since:skip:total:resets` (`since` and `total` empty before the first
/// page), as this test reads it. Anything else asks for the window from its start.
fn parse_damaijia_key(text: &str) -> Option<(Option<i64>, u64, Option<u64>, u32)> {
    let Some(rest) = text.strip_prefix("k:") else {
        return parse_damaijia_cursor(text).map(|_| (None, 0, None, 0));
    };
    fn opt<T: std::str::FromStr>(p: &str) -> Option<Option<T>> {
        if p.is_empty() {
            Some(None)
        } else {
            p.parse().ok().map(Some)
        }
    }
    let mut parts = rest.split(':');
    let since = opt(parts.next()?)?;
    let skip = parts.next()?.parse().ok()?;
    let total = opt(parts.next()?)?;
    let resets = parts.next()?.parse().ok()?;
    parts
        .next()
        .is_none()
        .then_some((since, skip, total, resets))
}

const PII_MODES: [damaijia::PiiMode; 3] = [
    damaijia::PiiMode::Mask,
    damaijia::PiiMode::Keep,
    damaijia::PiiMode::Drop,
];

#[test]
fn fuzz_damaijia_pages_never_panic() {
    let (base, plain) = damaijia_base_with_pii();
    assert!(plain.len() >= 12, "planted PII: {plain:?}");
    let auth = Auth::default();
    let options = PII_MODES.map(damaijia_options);
    let window = damaijia_window();
    let start = NaiveDate::from_ymd_opt(2021, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("date");
    let cursors = prop_oneof![
        3 => prop::sample::select(vec![
            "", "0:2:0", "0::0", "0:2:", "100:250:3", "200:2:0", "0:2:10", "0:5:10", "37:2:1",
            "2:3:0", "9999999999999:2:0", "x:y", "5", "-1:2:0", "1:2:3:4", ":", "::", "0:-2:0",
            "0:2:x", " 0:2:0",
        ])
        .prop_map(String::from),
        2 => (0u64..1000, proptest::option::of(0u64..1000), 0u32..=12).prop_map(|(o, t, r)| match t {
            Some(t) => format!("{o}:{t}:{r}"),
            None => format!("{o}::{r}"),
        }),
        2 => (proptest::option::of(1640158000i64..1640161000), 0u64..300, proptest::option::of(0u64..1000), 0u32..=12)
            .prop_map(|(since, skip, total, resets)| format!(
                "k:{}:{skip}:{}:{resets}",
                since.map(|s| s.to_string()).unwrap_or_default(),
                total.map(|t| t.to_string()).unwrap_or_default()
            )),
        1 => prop::sample::select(vec!["k:", "k:1:2", "k:x:0::0", "k:1:-2::0", "k::::", "k:1:2:3:4:5"]).prop_map(String::from),
    ];
    let total = fuzz(
        "fuzz damaijia mutated pages",
        3000,
        (
            json_mutation(),
            statuses(),
            1u32..=100,
            cursors,
            0usize..PII_MODES.len(),
            any::<bool>(),
        ),
        |(m, status, size, cursor, mode, live)| {
            let axis = if live { Axis::Live } else { Axis::Backfill };
            let (value, bytes) = apply(&base, "/data/shop_order_list", &m);
            let pii = PII_MODES[mode];
            let q = PageQuery {
                endpoint: damaijia::DEFAULT_ENDPOINT,
                auth: &auth,
                options: &options[mode],
                window,
                cursor: &cursor,
                page_size: size,
                axis,
                start,
            };
            // A planted value the page as sent also carries outside the PII fields (a byte splice
            // renamed its key) is ordinary data there; every other one must stay hidden. The page
            // is read as the client reads it: a byte that is not UTF-8 stands for U+FFFD.
            let outside = |p: &String| {
                let sent: Value = serde_json::from_str(&String::from_utf8_lossy(&bytes))
                    .unwrap_or_else(|_| value.clone());
                damaijia_pii_outside_slots(&sent, &plain).contains(&p)
            };
            let hidden = pii != damaijia::PiiMode::Keep;
            let no_plain_pii = |what: &str, text: &str| -> Result<(), TestCaseError> {
                if hidden {
                    for p in &plain {
                        prop_assert!(
                            !text.contains(p.as_str()) || outside(p),
                            "{:?} ({:?}) in {}: {}",
                            p,
                            pii,
                            what,
                            text
                        );
                    }
                }
                Ok(())
            };
            let result = damaijia::parse_page(&q, status, &bytes);
            match &result {
                Ok(page) => {
                    for o in &page.orders {
                        check_damaijia_order(o)?;
                        no_plain_pii("raw", &o.raw)?;
                        for line in &o.sub_orders {
                            no_plain_pii("line raw", &line.raw)?;
                        }
                    }
                    for r in &page.rejected {
                        no_plain_pii("rejected raw", &r.raw)?;
                        no_plain_pii("rejected reason", &r.reason)?;
                    }
                    if let (Some(c), Axis::Live) = (&page.next_cursor, axis) {
                        let parsed =
                            parse_damaijia_key(c).filter(|(_, _, total, _)| total.is_some());
                        prop_assert!(
                            c.starts_with("k:") && parsed.is_some(),
                            "next live cursor {:?} is not k:since:skip:total:resets",
                            c
                        );
                        // The scan ends: each page moves the key on, reads further into its
                        // second, or spends one re-read of a budget.
                        let (since, skip, _, resets) = parsed.unwrap_or_default();
                        if let Some((at_since, at_skip, _, at_resets)) = parse_damaijia_key(&cursor)
                        {
                            let moved = since > at_since
                                || (since == at_since && skip > at_skip)
                                || resets == at_resets + 1;
                            prop_assert!(moved, "cursor {:?} → {:?}", cursor, c);
                            prop_assert!(
                                resets <= at_resets.max(damaijia::MAX_RESCANS),
                                "cursor {:?} → {:?}: past the re-read budget",
                                cursor,
                                c
                            );
                        }
                        let auth_ok: Auth = [("access_token", "t"), ("shop_id", "1")]
                            .into_iter()
                            .collect();
                        let asked = damaijia::build_request(&PageQuery {
                            cursor: c,
                            auth: &auth_ok,
                            ..q
                        });
                        prop_assert!(
                            asked.is_ok(),
                            "next cursor {:?} is refused: {:?}",
                            c,
                            asked.err()
                        );
                    }
                    if let (Some(c), Axis::Backfill) = (&page.next_cursor, axis) {
                        let parsed = parse_damaijia_cursor(c).filter(|(_, t, _)| t.is_some());
                        prop_assert!(
                            parsed.is_some(),
                            "next cursor {:?} is not offset:total:rescans",
                            c
                        );
                        let (offset, _, rescans) = parsed.unwrap_or_default();
                        prop_assert_eq!(
                            offset % u64::from(size),
                            0,
                            "next cursor {:?} with pages of {}",
                            c,
                            size
                        );
                        // The scan ends: each page moves on, or spends one re-read of a budget.
                        if let Some((at, _, at_rescans)) = parse_damaijia_cursor(&cursor) {
                            let page_start = at - at % u64::from(size);
                            prop_assert!(
                                rescans == at_rescans + 1
                                    || (rescans == at_rescans && offset > page_start),
                                "cursor {:?} → {:?} with pages of {}",
                                cursor,
                                c,
                                size
                            );
                            prop_assert!(
                                rescans <= at_rescans.max(damaijia::MAX_RESCANS),
                                "cursor {:?} → {:?}: past the re-read budget",
                                cursor,
                                c
                            );
                        }
                        let next = PageQuery { cursor: c, ..q };
                        let auth_ok: Auth = [("access_token", "t"), ("shop_id", "1")]
                            .into_iter()
                            .collect();
                        let asked = damaijia::build_request(&PageQuery {
                            auth: &auth_ok,
                            ..next
                        });
                        prop_assert!(
                            asked.is_ok(),
                            "next cursor {:?} is refused: {:?}",
                            c,
                            asked.err()
                        );
                    }
                }
                Err(e) => {
                    check_error(e)?;
                    no_plain_pii("error", &e.to_string())?;
                }
            }
            if let Some(row) = value.pointer("/data/shop_order_list/0") {
                if let Ok(o) = damaijia::normalise(row, pii) {
                    check_damaijia_order(&o)?;
                    no_plain_pii("raw", &o.raw)?;
                }
            }
            // The shared dispatcher agrees with the module (asked on a sample: a page costs).
            if size % 8 != 0 {
                return Ok(());
            }
            let via = sources::parse_page(&q, status, &bytes);
            prop_assert_eq!(
                via.as_ref()
                    .map(|p| (p.orders.len(), p.next_cursor.clone()))
                    .map_err(|e| e.to_string()),
                result
                    .as_ref()
                    .map(|p| (p.orders.len(), p.next_cursor.clone()))
                    .map_err(|e| e.to_string())
            );
            Ok(())
        },
    );
    println!("damaijia fuzz: {total} cases");
}

/// What one PII slot of a damaijia row holds in the PII fuzz: nothing, a text, or another JSON value.
fn pii_input() -> BoxedStrategy<Option<Value>> {
    let text = prop_oneof![
        3 => any::<String>(),
        2 => "[0-9]{0,20}",
        2 => "[\\u{4e00}-\\u{9fa5}]{1,10}",
        1 => "[😀-🙏🇦-🇿]{1,6}",
        1 => "\\PC{0,12}",
        1 => ("[ -~]{10,30}", 5usize..30).prop_map(|(s, n)| s.repeat(n)),
        1 => Just(String::new()),
        2 => prop::sample::select(vec![
            "13912345678", "+86 139-1234-5678", "张三丰", "欧阳", "丹棱街1号", "110105199003071234",
            "44030119881111222X", "李", "\u{202e}8765", "\\u0000\u{0}abcd", "\"quoted\"", "a\nb\nc",
        ])
        .prop_map(String::from),
    ];
    let text = text.boxed();
    prop_oneof![
        1 => Just(None),
        6 => text.clone().prop_map(|s| Some(Value::String(s))),
        3 => prop_oneof![
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            Just(json!(13912345678u64)),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
            text.clone().prop_map(|s| json!({ "value": s, "n": 1 })),
            text.clone().prop_map(|s| json!([s, 2, null])),
            Just(json!({})),
            Just(json!([])),
        ]
        .prop_map(Some),
    ]
    .boxed()
}

/// Every text of at least 4 characters that a PII value would show if it leaked: the string
/// itself, a non-string value's JSON text, and any string inside it.
fn leakable_texts(v: &Value, out: &mut Vec<String>) {
    let mut push = |s: String| {
        if s.chars().count() >= 4 {
            out.push(s);
        }
    };
    match v {
        Value::String(s) => push(s.clone()),
        Value::Null => {}
        other => {
            push(other.to_string());
            if let Value::Array(items) = other {
                for item in items {
                    leakable_texts(item, out);
                }
            } else if let Value::Object(m) = other {
                for item in m.values() {
                    leakable_texts(item, out);
                }
            }
        }
    }
}

/// Level `level` of a damaijia row: the order itself (0) or its line `level - 1`.
fn level_mut(row: &mut Value, level: usize) -> &mut Value {
    if level == 0 {
        row
    } else {
        &mut row["sku_order_list"][level - 1]
    }
}

fn level_ref(row: &Value, level: usize) -> &Value {
    if level == 0 {
        row
    } else {
        &row["sku_order_list"][level - 1]
    }
}

/// Removes one PII slot (the key, not its container).
fn remove_pii_slot(v: &mut Value, container: Option<&str>, key: &str) {
    let holder = match container {
        Some(c) => v.get_mut(c),
        None => Some(v),
    };
    if let Some(Value::Object(o)) = holder {
        o.remove(key);
    }
}

#[test]
fn fuzz_damaijia_pii_masking_never_leaks() {
    let mut base = damaijia_fixture_trimmed()["data"]["shop_order_list"][0].clone();
    // Two lines, so that "each line" means something.
    let mut second = base["sku_order_list"][0].clone();
    second["order_id"] = json!("4879354354618346765");
    base["sku_order_list"]
        .as_array_mut()
        .expect("lines")
        .push(second);
    let levels = 3; // the order and its two lines
    for level in 0..levels {
        for (container, key) in DAMAIJIA_PII_SLOTS {
            remove_pii_slot(level_mut(&mut base, level), *container, key);
        }
    }
    let n = DAMAIJIA_PII_SLOTS.len();
    let total = fuzz(
        "fuzz damaijia pii masking",
        1200,
        prop::collection::vec((0..n * levels, pii_input()), 1..12),
        |pairs| {
            // Slot `i` is field `i % n` of level `i / n`; a later pair for a slot wins.
            let mut values = vec![None; n * levels];
            for (i, v) in pairs {
                values[i] = v;
            }
            // The row as sent; the same with every PII value nulled (what `raw` may show in any
            // case) and with every PII key removed (what `drop` must give).
            let (mut row, mut nulled, mut dropped) = (base.clone(), base.clone(), base.clone());
            let mut leakable = Vec::new();
            for (i, v) in values.iter().enumerate() {
                let Some(v) = v else { continue };
                let (level, (container, key)) = (i / n, DAMAIJIA_PII_SLOTS[i % n]);
                *pii_slot(level_mut(&mut row, level), container, key) = v.clone();
                *pii_slot(level_mut(&mut nulled, level), container, key) = Value::Null;
                // The container exists in `dropped` too, empty if need be, as protect_pii leaves it.
                let d = level_mut(&mut dropped, level);
                *pii_slot(d, container, key) = Value::Null;
                remove_pii_slot(d, container, key);
                leakable_texts(v, &mut leakable);
            }
            let baseline = nulled.to_string();
            for mode in PII_MODES {
                let o = damaijia::normalise(&row, mode).map_err(TestCaseError::fail)?;
                prop_assert_eq!(o.sub_orders.len(), 2);
                // What raw must be, compared as text: a float does not survive a JSON round trip
                // through serde_json exactly, the text `raw` was written from does.
                let (mut kept_by_mask, mut masked) = (Vec::new(), Vec::new());
                let expected = match mode {
                    damaijia::PiiMode::Keep => row.clone(),
                    damaijia::PiiMode::Drop => dropped.clone(),
                    damaijia::PiiMode::Mask => {
                        // Every non-empty PII value became a masked string; nothing else changed.
                        // The order's raw without its lines, each line's raw on its own: put
                        // together again, they are the row with its PII hidden.
                        let mut raw: Value = serde_json::from_str(&o.raw)
                            .map_err(|e| TestCaseError::fail(format!("raw is not JSON: {e}")))?;
                        raw["sku_order_list"] = o
                            .sub_orders
                            .iter()
                            .map(|l| serde_json::from_str(&l.raw))
                            .collect::<Result<Vec<Value>, _>>()
                            .map(Value::Array)
                            .map_err(|e| {
                                TestCaseError::fail(format!("line raw is not JSON: {e}"))
                            })?;
                        let mut expected = row.clone();
                        for level in 0..levels {
                            for (container, key) in DAMAIJIA_PII_SLOTS {
                                let Some(before) =
                                    pii_value(level_ref(&row, level), *container, key)
                                else {
                                    continue;
                                };
                                let after = pii_value(level_ref(&raw, level), *container, key);
                                match before {
                                    Value::Null => continue,
                                    Value::String(s) if s.is_empty() => continue,
                                    _ => {}
                                }
                                let Some(Value::String(after)) = after else {
                                    return Err(TestCaseError::fail(format!(
                                        "{key}: {before} masked as {after:?}"
                                    )));
                                };
                                prop_assert!(
                                    after.contains('*'),
                                    "{}: {} masked as {:?}",
                                    key,
                                    before,
                                    after
                                );
                                let chars: Vec<char> = after.chars().collect();
                                if chars.len() >= 4 {
                                    kept_by_mask
                                        .push(chars[chars.len() - 4..].iter().collect::<String>());
                                }
                                masked.push(after.clone());
                                masked.push(Value::String(after.clone()).to_string());
                                *pii_slot(level_mut(&mut expected, level), *container, key) =
                                    Value::String(after.clone());
                            }
                        }
                        expected
                    }
                };
                let mut without_lines = expected.clone();
                if let Some(order) = without_lines.as_object_mut() {
                    order.remove("sku_order_list");
                }
                prop_assert_eq!(
                    &o.raw,
                    &without_lines.to_string(),
                    "{:?}: raw is the row without its lines, with exactly its PII values hidden",
                    mode
                );
                for (i, line) in o.sub_orders.iter().enumerate() {
                    prop_assert_eq!(
                        &line.raw,
                        &expected["sku_order_list"][i].to_string(),
                        "{:?}: line raw",
                        mode
                    );
                }
                if mode == damaijia::PiiMode::Keep {
                    continue;
                }
                for plain in &leakable {
                    // Not a leak: a text `raw` shows anyway (a key name, a number of the row), the
                    // four last characters a masked phone number keeps by design, or a text with
                    // `*` that a masked value happens to contain (a plain `张**` is its own mask).
                    let escaped = Value::String(plain.clone()).to_string();
                    let escaped = &escaped[1..escaped.len() - 1];
                    for needle in [plain.as_str(), escaped] {
                        if baseline.contains(needle)
                            || kept_by_mask.iter().any(|t| t == needle)
                            || (needle.contains('*') && masked.iter().any(|m| m.contains(needle)))
                        {
                            continue;
                        }
                        prop_assert!(
                            !o.raw.contains(needle),
                            "{:?} leaked into raw ({:?})",
                            needle,
                            mode
                        );
                        for l in &o.sub_orders {
                            prop_assert!(
                                !l.raw.contains(needle),
                                "{:?} leaked into a line raw ({:?})",
                                needle,
                                mode
                            );
                        }
                    }
                }
            }
            Ok(())
        },
    );
    println!("damaijia pii fuzz: {total} cases");
}

/// An accepted damaijia order: a sale with at least one line, each line with an id and its own
/// upstream row as `raw`.
fn check_damaijia_order(o: &OrderRow) -> Result<(), TestCaseError> {
    check_order_of_kind(o, "sale")?;
    prop_assert!(
        !o.sub_orders.is_empty(),
        "order {} has no lines",
        o.order_id
    );
    for line in &o.sub_orders {
        prop_assert!(
            !line.sub_order_id.is_empty() && line.sub_order_id != "0",
            "sub-order id {:?}",
            line.sub_order_id
        );
        prop_assert!(
            is_json_object(&line.raw),
            "line raw is not a JSON object: {}",
            line.raw
        );
    }
    Ok(())
}

/// Regression, found by `fuzz_damaijia_pages_never_panic` with cursors at the integer limits: a
/// saved cursor whose numbers parse but overflowed the paging arithmetic in `damaijia::next_cursor`
/// (`at.rescans + 1`, `page_start + rows`) panicked in a debug build and wrapped silently in
/// release, instead of being refused like any other cursor that is not ours. Only a corrupt or hand-edited
/// checkpoint carries such a cursor (this source writes offsets up to `total`, rescans up to 10).
#[test]
fn damaijia_cursor_at_integer_limits_is_refused_without_a_panic() {
    // The fixture as it is: total 2, both rows on the page.
    let body = fixture("tests/fixtures/damaijia/sample_page.json").to_string();
    let auth = Auth::default();
    let options = damaijia_options(damaijia::PiiMode::Mask);
    let window = damaijia_window();
    for (axis, cursor, page_size) in [
        // total moved 5 → 2: a re-read, and the rescan count overflows.
        (Axis::Backfill, "0:5:4294967295", 100),
        // two rows on a page of one at the last representable offset.
        (Axis::Backfill, "18446744073709551615::0", 1),
        // Live scans by key: the same limits for the rows skipped and the re-reads, and a key
        // at the last representable second.
        (
            Axis::Live,
            "k:1640158345:18446744073709551615:5:4294967295",
            1,
        ),
        (
            Axis::Live,
            "k:9223372036854775807:18446744073709551615::0",
            1,
        ),
        (Axis::Live, "k:-9223372036854775808:0::0", 100),
    ] {
        let q = PageQuery {
            endpoint: damaijia::DEFAULT_ENDPOINT,
            auth: &auth,
            options: &options,
            window,
            cursor,
            page_size,
            axis,
            start: window.start,
        };
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = damaijia::build_request(&q);
            damaijia::parse_page(&q, 200, body.as_bytes()).map(|p| p.next_cursor)
        }));
        assert!(
            answer.is_ok(),
            "cursor {cursor:?}, pages of {page_size}: parse_page panicked"
        );
    }
}
