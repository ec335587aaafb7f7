//! sxt: mutated snapshots never panic and collapse the same whatever the row order; yuan
//! indicators match an independent decimal reader.

use ordersync::config::Auth;
use ordersync::money;
use ordersync::sources::{self, sxt, Axis, PageQuery, SourceOptions};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};

use super::{
    apply, check_error, check_order_of_kind, damaijia_window, fuzz, json_mutation,
    reference_scaled, statuses,
};
use crate::common::fixture;

/// What an accepted sxt page must look like: ad orders without lines, one per `order_id`, ROI as
/// trimmed decimal text.
fn check_sxt_page(page: &sources::Page) -> Result<(), TestCaseError> {
    prop_assert!(page.next_cursor.is_none(), "a snapshot has no next page");
    let mut ids = std::collections::HashSet::new();
    for o in &page.orders {
        check_order_of_kind(o, "ad")?;
        prop_assert!(o.sub_orders.is_empty(), "ad order {} has lines", o.order_id);
        prop_assert!(
            ids.insert(o.order_id.as_str()),
            "order {} twice",
            o.order_id
        );
        if let Some(roi) = &o.ad_roi {
            prop_assert!(
                !roi.is_empty() && roi.trim() == roi && money::yuan_to_fen(roi).is_ok(),
                "ROI {:?}",
                roi
            );
        }
    }
    Ok(())
}

#[test]
fn fuzz_sxt_pages_never_panic() {
    let full = fixture("tests/fixtures/sxt/sample.json");
    // To mutate: the first five rows (one order three times in states 7, 5, 7; one with spend),
    // without the `ad_info` keys the parser never reads: each case is cheaper and each random
    // edit far more often hits a field that matters.
    let mut base = full.clone();
    let rows = base["data"].as_array_mut().expect("rows");
    rows.truncate(5);
    for row in rows {
        if let Some(Value::Object(info)) = row.get_mut("ad_info") {
            info.retain(|k, _| {
                [
                    "order_id",
                    "state",
                    "state_desc",
                    "create_time",
                    "create_time_int",
                ]
                .contains(&k.as_str())
            });
        }
    }
    // For the shared dispatcher (a snapshot ignores the window, cursor and page size).
    let auth = Auth::default();
    let options = SourceOptions::Sxt(sxt::Options { select_status: 1 });
    let q = PageQuery {
        endpoint: "http://127.0.0.1:1/sxt",
        auth: &auth,
        options: &options,
        window: damaijia_window(),
        cursor: "",
        page_size: 1,
        axis: Axis::Live,
        start: damaijia_window().start,
    };
    let mut total = fuzz(
        "fuzz sxt mutated pages",
        2000,
        (json_mutation(), statuses()),
        |(m, status)| {
            let (value, bytes) = apply(&base, "/data", &m);
            let result = sxt::parse_page(status, &bytes);
            match &result {
                Ok(page) => check_sxt_page(page)?,
                Err(e) => check_error(e)?,
            }
            if let Some(row) = value.pointer("/data/0") {
                if let Ok(o) = sxt::normalise(row) {
                    check_order_of_kind(&o, "ad")?;
                    prop_assert!(o.sub_orders.is_empty());
                }
            }
            // The shared dispatcher agrees with the module.
            let via = sources::parse_page(&q, status, &bytes);
            prop_assert_eq!(
                via.map(|p| p.orders.len()).map_err(|e| e.to_string()),
                result.map(|p| p.orders.len()).map_err(|e| e.to_string())
            );
            Ok(())
        },
    );

    // Collapse is independent of row order: the fixture (one order three times already) plus
    // copies of its rows in other states, other amounts or other text, in any order.
    let rows: Vec<Value> = full["data"].as_array().expect("rows").clone();
    let states = prop::sample::select(vec![
        json!(1),
        json!(3),
        json!(5),
        json!(6),
        json!(7),
        json!(8),
        json!(9),
        json!(10),
        json!("7"),
        json!("9"),
        json!(2),
        json!(99),
        json!("投放中"),
        Value::Null,
    ]);
    let costs = proptest::option::of(prop::sample::select(vec![
        "0", "0.00", "38.9", "38.90", "0.26", "100", "1.005",
    ]));
    let copy = (any::<Index>(), states, costs, proptest::option::of(0u8..4));
    let permutation = (
        prop::collection::vec(copy, 0..10),
        prop::collection::vec(any::<u64>(), rows.len() + 10),
    );
    total += fuzz("fuzz sxt row order", 200, permutation, |(copies, keys)| {
        let mut page_rows = rows.clone();
        for (i, state, cost, tag) in &copies {
            let mut row = rows[i.index(rows.len())].clone();
            row["ad_info"]["state"] = state.clone();
            if let Some(cost) = cost {
                row["ad_indicators"][0] = json!({"count": cost, "name": sxt::COST});
            }
            if let Some(tag) = tag {
                row["ad_info"]["state_desc"] = json!(format!("copy {tag}"));
            }
            page_rows.push(row);
        }
        let mut shuffled: Vec<(u64, usize)> =
            keys.iter().copied().zip(0..page_rows.len()).collect();
        shuffled.sort();
        let permuted: Vec<Value> = shuffled
            .iter()
            .map(|(_, i)| page_rows[*i].clone())
            .collect();
        let parse = |rows: &[Value]| {
            let body = json!({"code": 0, "msg": "ok", "data": rows}).to_string();
            sxt::parse_page(200, body.as_bytes()).map(|p| {
                p.orders
                    .into_iter()
                    .map(|o| {
                        (
                            o.order_id,
                            o.status,
                            o.status_raw,
                            o.ad_cost,
                            o.ad_plays,
                            o.ad_gmv,
                            o.ad_roi,
                            o.raw,
                        )
                    })
                    .collect::<Vec<_>>()
            })
        };
        let a = parse(&page_rows).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let b = parse(&permuted).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(
            &a,
            &b,
            "the same rows in another order collapse differently"
        );
        // Each order is its most advanced copy.
        for (id, _, state, ..) in &a {
            let rank = |s: &str| s.parse::<i64>().unwrap_or(-1);
            for row in page_rows
                .iter()
                .filter(|r| r["ad_info"]["order_id"] == json!(id))
            {
                let copy_state = sources::text(&row["ad_info"], "state").unwrap_or_default();
                prop_assert!(
                    rank(state) >= rank(&copy_state),
                    "order {} kept state {:?} over {:?}",
                    id,
                    state,
                    copy_state
                );
            }
        }
        Ok(())
    });
    println!("sxt fuzz: {total} cases");
}

/// A yuan amount as upstream might write it, with the fen it means when computed from its parts
/// (`None`: not from parts, ask the reference).
fn yuan_text() -> BoxedStrategy<(String, Option<i64>)> {
    let parts = ("[0-9]{0,12}", proptest::option::of("[0-9]{0,2}")).prop_map(|(int, frac)| {
        let text = match &frac {
            Some(f) => format!("{int}.{f}"),
            None => int.clone(),
        };
        let frac = frac.unwrap_or_default();
        let fen = (!int.is_empty() || !frac.is_empty()).then(|| {
            let yuan: i64 = if int.is_empty() {
                0
            } else {
                int.parse().expect("12 digits")
            };
            let mut cents = 0;
            for (i, d) in frac.bytes().enumerate() {
                cents += i64::from(d - b'0') * if i == 0 { 10 } else { 1 };
            }
            yuan * 100 + cents
        });
        (text, fen)
    });
    let other = prop_oneof![
        3 => "[0-9]{0,12}\\.[0-9]{3,8}",
        2 => "[ \t]{0,2}[-+]?[0-9]{0,6}(\\.[0-9]{0,3})?[ \t]{0,2}",
        2 => prop::sample::select(vec![
            "1,5", "1e5", "1E-2", "¥12", "12元", "1.2.3", "-", "+", ".", "abc", "12 34", "0x10",
            "١٢", "１２", "NaN", "inf", "1.-5", "--1", "+-1", " ", "\u{a0}12", "12\u{3000}",
            "99999999999999999999", "92233720368547758.08", "92233720368547758.07",
        ])
        .prop_map(String::from),
        2 => "[0-9.,+\\- e¥元]{0,15}",
        1 => "[0-9]{15,22}(\\.[0-9]{0,3})?",
        1 => any::<String>(),
    ];
    prop_oneof![
        3 => parts,
        2 => other.prop_map(|t| (t, None)),
    ]
    .boxed()
}

#[test]
fn fuzz_sxt_yuan_indicators_match_a_reference() {
    let roi = prop_oneof![
        2 => "[ ]{0,2}[0-9]{1,4}(\\.[0-9]{1,4})?[ ]{0,2}",
        1 => yuan_text().prop_map(|(t, _)| t),
    ];
    let total = fuzz(
        "fuzz sxt yuan indicators",
        3000,
        (yuan_text(), yuan_text(), roi),
        |((cost, cost_fen), (gmv, gmv_fen), roi)| {
            let row = json!({
                "ad_info": {"order_id": "7184687741827891212", "state": 7},
                "ad_indicators": [
                    {"count": cost, "name": sxt::COST},
                    {"count": "12", "name": sxt::PLAYS},
                    {"count": roi, "name": sxt::ROI},
                    {"count": gmv, "name": sxt::GMV},
                ]
            });
            // A text built from its parts: its fen are known twice.
            for (text, from_parts) in [(&cost, cost_fen), (&gmv, gmv_fen)] {
                if from_parts.is_some() {
                    prop_assert_eq!(
                        reference_scaled(text, 2),
                        from_parts,
                        "the two references disagree on {:?}",
                        text
                    );
                }
            }
            // The reference: an empty count is no indicator; anything else is a decimal or an error.
            let want = |text: &str| -> Result<Option<i64>, ()> {
                if text.is_empty() {
                    return Ok(None);
                }
                reference_scaled(text, 2).map(Some).ok_or(())
            };
            let want_cost = want(&cost);
            let want_gmv = want(&gmv);
            let want_roi = if roi.is_empty() {
                Ok(None)
            } else {
                reference_scaled(&roi, 2)
                    .map(|_| Some(roi.trim().to_string()))
                    .ok_or(())
            };
            let got = sxt::normalise(&row);
            match (&got, &want_cost, &want_gmv, &want_roi) {
                (Ok(o), Ok(c), Ok(g), Ok(r)) => {
                    prop_assert_eq!(o.ad_cost, *c, "cost {:?}", cost);
                    prop_assert_eq!(o.ad_gmv, *g, "GMV {:?}", gmv);
                    prop_assert_eq!(&o.ad_roi, r, "ROI {:?}", roi);
                    prop_assert_eq!(o.ad_plays, Some(12));
                }
                (Err(_), _, _, _)
                    if want_cost.is_err() || want_gmv.is_err() || want_roi.is_err() => {}
                _ => prop_assert!(
                    false,
                    "cost {:?} GMV {:?} ROI {:?}: got {:?}, want {:?} {:?} {:?}",
                    cost,
                    gmv,
                    roi,
                    got.as_ref()
                        .map(|o| (o.ad_cost, o.ad_gmv, o.ad_roi.clone())),
                    want_cost,
                    want_gmv,
                    want_roi
                ),
            }
            // Through a page: the same answer, junk a rejected row of the page (never its error).
            let body = json!({"code": 0, "msg": "ok", "data": [row]}).to_string();
            let page = sxt::parse_page(200, body.as_bytes());
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    check_error(&e)?;
                    return Err(TestCaseError::fail(format!("one row failed the page: {e}")));
                }
            };
            prop_assert_eq!(
                page.orders
                    .first()
                    .map(|o| (o.ad_cost, o.ad_gmv, o.ad_roi.clone())),
                got.as_ref()
                    .map(|o| (o.ad_cost, o.ad_gmv, o.ad_roi.clone()))
                    .ok()
            );
            prop_assert_eq!(page.rejected.len(), usize::from(got.is_err()));
            Ok(())
        },
    );
    println!("sxt yuan fuzz: {total} cases");
}
