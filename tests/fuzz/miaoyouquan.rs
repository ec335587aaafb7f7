//! miaoyouquan: mutated pages never panic, and a short page is the last.

use chrono::NaiveDate;
use ordersync::config::Auth;
use ordersync::planner::Window;
use ordersync::sources::{self, miaoyouquan, Axis, PageQuery, SourceOptions};
use proptest::prelude::*;

use super::{apply, check_error, check_order, fuzz, json_mutation, statuses};
use crate::common::fixture;

#[test]
fn fuzz_miaoyouquan_pages_never_panic() {
    let base = fixture("tests/fixtures/miaoyouquan/sample_page.json");
    let auth = Auth::default();
    let options = SourceOptions::Miaoyouquan(
        miaoyouquan::Options::parse(&toml::Table::new()).expect("default options"),
    );
    let window = Window {
        start: NaiveDate::from_ymd_opt(2023, 7, 31)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("date"),
        end: NaiveDate::from_ymd_opt(2023, 8, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("date"),
    };
    let total = fuzz(
        "fuzz miaoyouquan mutated pages",
        3000,
        (json_mutation(), statuses(), 1u32..=200),
        |(m, status, size)| {
            let (value, bytes) = apply(&base, "/data/orders", &m);
            let q = PageQuery {
                endpoint: "http://127.0.0.1:1/orders",
                auth: &auth,
                options: &options,
                window,
                cursor: "0",
                page_size: size,
                axis: Axis::Live,
                start: window.start,
            };
            match miaoyouquan::parse_page(&q, status, &bytes) {
                Ok(page) => {
                    for o in &page.orders {
                        check_order(o)?;
                    }
                    if page.orders.len() < size as usize {
                        prop_assert!(page.next_cursor.is_none(), "a short page is the last");
                    }
                }
                Err(e) => check_error(&e)?,
            }
            if let Some(row) = value.pointer("/data/orders/0") {
                if let Ok(o) = miaoyouquan::normalise(row) {
                    check_order(&o)?;
                }
            }
            // The shared dispatcher agrees with the module.
            let _ = sources::parse_page(&q, status, &bytes);
            Ok(())
        },
    );
    println!("miaoyouquan fuzz: {total} cases");
}
