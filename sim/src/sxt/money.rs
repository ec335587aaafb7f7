//! Yuan text as 随心推 sends it: the world keeps money as whole fen and renders it here.
//!
//! The API sends `消耗(元)` and `成交订单金额(元)` as decimal strings in yuan with no trailing zeros:
//! 3890 fen is `"38.9"`, 29 fen `"0.29"`, 10000 fen `"100"`, 0 fen `"0"` (the document's samples are
//! `"0"`, `"0.26"` and `"38.9"`). Invariant: [`yuan_text`] is injective on fen ≥ 0 and its text, read
//! as an exact decimal, is the fen amount divided by 100 — so a client parsing decimals (never
//! floats) gets the truth back exactly. `支付ROI` is rendered the same way, in hundredths.

/// `fen` as yuan text: at most two decimals, trailing zeros (and a bare point) trimmed. The world
/// never holds negative money; a negative amount is rendered as 0.
pub(crate) fn yuan_text(fen: i64) -> String {
    let fen = fen.max(0);
    let (yuan, cents) = (fen / 100, fen % 100);
    match cents {
        0 => yuan.to_string(),
        c if c % 10 == 0 => format!("{yuan}.{}", c / 10),
        c => format!("{yuan}.{c:02}"),
    }
}

/// `支付ROI`: GMV ÷ cost to two decimals, rounded half up, as trimmed decimal text (`"2.35"`,
/// `"1.5"`, `"12"`); `"0"` when either is zero (the document's unspent orders show `"0"`).
pub(crate) fn roi_text(cost_fen: i64, gmv_fen: i64) -> String {
    if cost_fen <= 0 || gmv_fen <= 0 {
        return "0".to_string();
    }
    // hundredths = round(gmv / cost × 100), in integers so no float ever touches it.
    let hundredths = (gmv_fen * 200 + cost_fen) / (2 * cost_fen);
    yuan_text(hundredths)
}

/// Reads yuan text back into fen, exactly (tests only: the simulator never parses money).
#[cfg(test)]
pub(crate) fn parse_yuan(text: &str) -> Option<i64> {
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) if !f.is_empty() && f.len() <= 2 => (w, f),
        Some(_) => return None,
        None => (text, ""),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (!frac.is_empty() && !digits(frac)) {
        return None;
    }
    let cents = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse::<i64>().ok()?,
    };
    whole
        .parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(cents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_and_tricky_values_render_exactly() {
        for (fen, text) in [
            (0, "0"),
            (1, "0.01"),
            (10, "0.1"),
            (26, "0.26"),
            (29, "0.29"),
            (100, "1"),
            (101, "1.01"),
            (1999, "19.99"),
            (3890, "38.9"),
            (10000, "100"),
            (123456, "1234.56"),
            (-5, "0"),
        ] {
            assert_eq!(yuan_text(fen), text, "{fen} fen");
        }
    }

    #[test]
    fn every_amount_round_trips_and_no_text_repeats() {
        let mut seen = std::collections::HashSet::new();
        for fen in (0..=200_000).chain([9_999_999, 123_456_789, i64::MAX / 200]) {
            let text = yuan_text(fen);
            assert_eq!(parse_yuan(&text), Some(fen), "{text}");
            assert!(!text.ends_with('0') || !text.contains('.'), "{text}");
            assert!(!text.ends_with('.'), "{text}");
            assert!(seen.insert(text));
        }
        for bad in [
            "", ".5", "1.", "1.234", "-1", "1e2", "0x10", " 1", "1,5", "１",
        ] {
            assert_eq!(parse_yuan(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn roi_is_gmv_over_cost_rounded_half_up() {
        assert_eq!(roi_text(0, 500), "0");
        assert_eq!(roi_text(3890, 0), "0");
        assert_eq!(roi_text(1000, 2350), "2.35");
        assert_eq!(roi_text(1000, 1500), "1.5");
        assert_eq!(roi_text(100, 1200), "12");
        // 1/3 = 0.333… → 0.33; 2/3 = 0.666… → 0.67; 0.005 exactly → 0.01.
        assert_eq!(roi_text(300, 100), "0.33");
        assert_eq!(roi_text(300, 200), "0.67");
        assert_eq!(roi_text(20_000, 100), "0.01");
        assert_eq!(roi_text(29, 1999), "68.93");
    }
}
