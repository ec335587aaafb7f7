//! Money: `fen_round_half_up` and `yuan_to_fen` agree with an independent reference, on decimals
//! built from their parts and on arbitrary text.

use ordersync::money;
use proptest::prelude::*;

use super::{fuzz, reference_scaled};

#[test]
fn fuzz_money_matches_an_independent_reference() {
    // Decimals built from their parts: the expected value is computed from the parts, not the text.
    let parts = (
        any::<bool>(),
        any::<bool>(),
        prop_oneof![3 => any::<u64>(), 3 => 0u64..100_000, 1 => Just(0u64)],
        0usize..3,
        proptest::option::of("[0-9]{0,25}"),
        any::<bool>(),
        prop::sample::select(vec!["", " ", "\t", "  "]),
    );
    let mut total = fuzz(
        "fuzz money from parts",
        4000,
        parts,
        |(negative, plus, int, zeros, frac, omit_zero_int, pad)| {
            let int_text = if int == 0 && omit_zero_int && frac.is_some() {
                String::new()
            } else {
                format!("{}{int}", "0".repeat(zeros))
            };
            let sign = if negative {
                "-"
            } else if plus {
                "+"
            } else {
                ""
            };
            let text = match &frac {
                Some(f) => format!("{pad}{sign}{int_text}.{f}{pad}"),
                None => format!("{pad}{sign}{int_text}{pad}"),
            };
            for (shift, got) in [
                (0u32, money::fen_round_half_up(&text)),
                (2, money::yuan_to_fen(&text)),
            ] {
                let f = frac.as_deref().unwrap_or("").as_bytes();
                let mut v = i128::from(int) * 10i128.pow(shift);
                for i in 0..shift as usize {
                    v += i128::from(f.get(i).map_or(0, |b| b - b'0'))
                        * 10i128.pow(shift - 1 - i as u32);
                }
                if f.get(shift as usize).is_some_and(|b| *b >= b'5') {
                    v += 1;
                }
                let nothing = int_text.is_empty() && frac.as_deref() == Some("");
                let want =
                    i64::try_from(v)
                        .ok()
                        .filter(|_| !nothing)
                        .map(|v| if negative { -v } else { v });
                prop_assert_eq!(got.ok(), want, "{:?} at shift {}", text, shift);
            }
            Ok(())
        },
    );
    total += fuzz(
        "fuzz money arbitrary text",
        4000,
        prop_oneof![3 => "[0-9+\\-. e,\t]{0,30}", 1 => any::<String>()],
        |text| {
            prop_assert_eq!(
                money::fen_round_half_up(&text).ok(),
                reference_scaled(&text, 0),
                "{:?}",
                text
            );
            prop_assert_eq!(
                money::yuan_to_fen(&text).ok(),
                reference_scaled(&text, 2),
                "{:?}",
                text
            );
            Ok(())
        },
    );
    println!("money fuzz: {total} cases");
}
