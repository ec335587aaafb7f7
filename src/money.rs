//! Exact money: decimal strings to integer fen, never through a float.
//!
//! Upstreams send amounts as strings or JSON numbers: fen as integers (`"1198"`), fen with a
//! fraction for some commission fields (`"12.5"`, rounded half up to whole fen), or yuan as decimals
//! (`"38.9"` = 3890 fen). Each is parsed digit by digit so that `"0.29"` yuan is 29 fen, not 28.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyError {
    pub text: String,
}

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a decimal amount", self.text)
    }
}

impl std::error::Error for MoneyError {}

/// A non-negative or negative decimal split into its parts: `-12.345` is (true, 12, "345").
struct Decimal<'a> {
    negative: bool,
    int: i64,
    frac: &'a str,
}

fn split_decimal(text: &str) -> Result<Decimal<'_>, MoneyError> {
    let err = || MoneyError {
        text: text.to_string(),
    };
    let t = text.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int_part, frac) = match t.split_once('.') {
        Some((i, f)) => (i, f),
        None => (t, ""),
    };
    if int_part.is_empty() && frac.is_empty() {
        return Err(err());
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let int = if int_part.is_empty() {
        0
    } else {
        int_part.parse::<i64>().map_err(|_| err())?
    };
    Ok(Decimal {
        negative,
        int,
        frac,
    })
}

/// Scales a decimal by 10^`shift` and rounds half away from zero ("half up" for amounts).
fn scaled_round_half_up(text: &str, shift: u32) -> Result<i64, MoneyError> {
    let err = || MoneyError {
        text: text.to_string(),
    };
    let d = split_decimal(text)?;
    let mut value = d.int.checked_mul(10_i64.pow(shift)).ok_or_else(err)?;
    let frac = d.frac.as_bytes();
    for i in 0..shift as usize {
        let digit = frac.get(i).map_or(0, |b| i64::from(b - b'0'));
        value = value
            .checked_add(digit * 10_i64.pow(shift - 1 - i as u32))
            .ok_or_else(err)?;
    }
    if frac.get(shift as usize).is_some_and(|b| *b >= b'5') {
        value = value.checked_add(1).ok_or_else(err)?;
    }
    Ok(if d.negative { -value } else { value })
}

/// Fen sent as a decimal that may carry a fraction of a fen (`"12.5"` → 13, `"1198"` → 1198).
pub fn fen_round_half_up(text: &str) -> Result<i64, MoneyError> {
    scaled_round_half_up(text, 0)
}

/// Yuan sent as a decimal string (`"38.9"` → 3890 fen; a third decimal rounds half up).
pub fn yuan_to_fen(text: &str) -> Result<i64, MoneyError> {
    scaled_round_half_up(text, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fen_strings_parse_exactly() {
        assert_eq!(fen_round_half_up("1198"), Ok(1198));
        assert_eq!(fen_round_half_up("0"), Ok(0));
        assert_eq!(
            fen_round_half_up("9007199254740993"),
            Ok(9_007_199_254_740_993)
        );
    }

    #[test]
    fn fractional_fen_round_half_up() {
        assert_eq!(fen_round_half_up("12.5"), Ok(13));
        assert_eq!(fen_round_half_up("12.49"), Ok(12));
        assert_eq!(fen_round_half_up("0.5"), Ok(1));
        assert_eq!(fen_round_half_up("3.25"), Ok(3));
        assert_eq!(fen_round_half_up("-2.5"), Ok(-3));
        assert_eq!(fen_round_half_up(".5"), Ok(1));
    }

    #[test]
    fn yuan_converts_without_float_error() {
        assert_eq!(yuan_to_fen("38.9"), Ok(3890));
        assert_eq!(yuan_to_fen("0.29"), Ok(29));
        assert_eq!(yuan_to_fen("1.005"), Ok(101));
        assert_eq!(yuan_to_fen("100"), Ok(10000));
        assert_eq!(yuan_to_fen("0.07"), Ok(7));
    }

    #[test]
    fn garbage_is_an_error_not_a_zero() {
        for bad in ["", "abc", "1.2.3", "1e5", "12,5", " ", "-", "."] {
            assert!(fen_round_half_up(bad).is_err(), "{bad:?} accepted");
        }
        assert!(fen_round_half_up("99999999999999999999").is_err());
    }
}
