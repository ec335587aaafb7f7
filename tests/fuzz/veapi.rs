//! veapi: mutated pages and arbitrary bytes never panic; a well-formed row normalises to exactly
//! its values.

use chrono::DateTime;
use ordersync::sources::veapi;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;

use super::{apply, check_error, check_order, fuzz, json_mutation};
use crate::common::{expected_fen, fixture};

#[test]
fn fuzz_veapi_pages_and_rows_never_panic() {
    let base = fixture("tests/fixtures/veapi/sample_page.json");
    let mut total = fuzz(
        "fuzz veapi mutated pages",
        3000,
        (
            json_mutation(),
            prop_oneof![8 => Just(200u16), 1 => 100u16..600],
        ),
        |(m, status)| {
            let (value, bytes) = apply(&base, "/data", &m);
            match veapi::parse_page(status, &bytes) {
                Ok(page) => {
                    for o in &page.orders {
                        check_order(o)?;
                    }
                    if let Some(c) = &page.next_cursor {
                        prop_assert!(!c.is_empty());
                    }
                }
                Err(e) => check_error(&e)?,
            }
            if let Some(row) = value.pointer("/data/0") {
                if let Ok(o) = veapi::normalise(row) {
                    check_order(&o)?;
                }
            }
            Ok(())
        },
    );
    total += fuzz(
        "fuzz veapi arbitrary bytes",
        2000,
        prop::collection::vec(any::<u8>(), 0..600),
        |bytes| {
            match veapi::parse_page(200, &bytes) {
                Ok(page) => page.orders.iter().try_for_each(check_order)?,
                Err(e) => check_error(&e)?,
            }
            Ok(())
        },
    );
    println!("veapi fuzz: {total} cases");
}

/// A well-formed veapi row with random values normalises to exactly those values.
#[test]
fn fuzz_veapi_wellformed_rows_normalise_exactly() {
    let base = fixture("tests/fixtures/veapi/sample_page.json")["data"][0].clone();
    let unix = prop_oneof![1 => Just(0i64), 6 => 946_684_800i64..4_102_444_800];
    let strategy = (
        (
            1u64..=u64::MAX,
            any::<u64>(),
            0i64..1_000_000_000_000,
            1i64..10_000,
        ),
        (
            "[0-9]{1,9}(\\.[0-9]{1,4})?",
            prop_oneof![Just("0".to_string()), "[0-9]{1,9}(\\.[0-9]{1,4})?"],
        ),
        prop::sample::select(vec![
            "PAY_SUCC",
            "REFUND",
            "SETTLE",
            "CONFIRM",
            "SOMETHING_NEW",
        ]),
        (unix.clone(), unix.clone(), unix.clone(), unix),
    );
    let total = fuzz(
        "fuzz veapi well-formed rows",
        2000,
        strategy,
        |(
            (order_id, product_id, pay, items),
            (estimated, real),
            flow_point,
            (paid, refund, settle, update),
        )| {
            let mut row = base.clone();
            let set = |row: &mut Value, k: &str, v: String| row[k] = Value::String(v);
            set(&mut row, "order_id", order_id.to_string());
            set(&mut row, "product_id", product_id.to_string());
            set(&mut row, "total_pay_amount", pay.to_string());
            set(&mut row, "item_num", items.to_string());
            set(&mut row, "estimated_commission", estimated.clone());
            set(&mut row, "ads_real_commission", real.clone());
            set(&mut row, "flow_point", flow_point.to_string());
            set(&mut row, "pay_success_time", paid.to_string());
            set(&mut row, "refund_time", refund.to_string());
            set(&mut row, "settle_time", settle.to_string());
            set(&mut row, "update_time", update.to_string());
            let o = veapi::normalise(&row).map_err(TestCaseError::fail)?;
            let beijing = |secs: i64| {
                (secs != 0).then(|| {
                    DateTime::from_timestamp(secs + 8 * 3600, 0)
                        .expect("in range")
                        .naive_utc()
                })
            };
            let real_fen = expected_fen(&real);
            prop_assert_eq!(&o.order_id, &order_id.to_string());
            prop_assert_eq!(
                o.product_id.clone(),
                (product_id != 0).then(|| product_id.to_string())
            );
            prop_assert_eq!(o.pay_amount, Some(pay));
            prop_assert_eq!(o.item_num, Some(items));
            prop_assert_eq!(
                o.commission,
                Some(if real_fen != 0 {
                    real_fen
                } else {
                    expected_fen(&estimated)
                })
            );
            let status = match flow_point {
                "PAY_SUCC" => "paid",
                "REFUND" => "refunded",
                "SETTLE" => "settled",
                "CONFIRM" => "completed",
                _ => "unknown",
            };
            prop_assert_eq!(o.status.as_str(), status);
            prop_assert_eq!(&o.status_raw, flow_point);
            prop_assert_eq!(o.paid_at, beijing(paid));
            prop_assert_eq!(o.refunded_at, beijing(refund));
            prop_assert_eq!(o.settled_at, beijing(settle));
            prop_assert_eq!(o.updated_at, beijing(update));
            prop_assert_eq!(o.sub_orders[0].pay_amount, Some(pay));
            let raw: Value = serde_json::from_str(&o.raw).expect("raw is JSON");
            prop_assert_eq!(raw, row, "raw keeps the exact upstream row");
            Ok(())
        },
    );
    println!("veapi well-formed rows: {total} cases");
}
