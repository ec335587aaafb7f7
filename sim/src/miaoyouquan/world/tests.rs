//! Tests of the miaoyouquan world: shop ids past 2^53 and the document's commission arithmetic.

use super::*;

#[test]
fn big_shop_ids_are_not_float_values() {
    let big: Vec<u64> = (0..names::shop_count())
        .map(shop_id)
        .filter(|id| *id > 1 << 53)
        .collect();
    assert!(big.len() >= 5, "{big:?}");
    for id in big {
        assert_ne!(id as f64 as u64, id, "{id} survives a float");
        assert!(id < i64::MAX as u64);
    }
}

#[test]
fn the_documented_sample_amounts_come_out() {
    // 790 fen at 30%: commission 213, tech fee 24, as in the document's sample row.
    assert_eq!(commission(790, 3_000), 213);
    assert_eq!(tech_fee(790, 3_000), 24);
    assert_eq!(commission(100, 50), 1, "never zero");
}
