//! The buyers' personal data in the damaijia world: recognisable and unique per order, so that a
//! test can search a database file's bytes for every value and know which order leaked it.
//!
//! Each value is a pure function of the order's serial number `k` (1 for the first order the world
//! ever made, counting generated, added and drift-inserted orders alike), and two serial numbers
//! never share a value of any kind, nor does a value of one order occur inside another order's value
//! of the same kind: phones and ID-card numbers have a fixed width, and the texts end their serial
//! number with a fixed character (`号`, `室`) after a non-digit. Phones are unique for
//! `k < 10^8`, ID-card numbers for `k < 1.5 × 10^7` — far beyond any world a test builds.

use chrono::{Duration, NaiveDate};

/// The PII of one order, as the API sends it in plain text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pii {
    /// `139` and 8 more digits.
    pub(crate) tel: String,
    /// e.g. `收件人丙0042号`.
    pub(crate) receiver: String,
    /// e.g. `幸福路42号院3单元0042室`.
    pub(crate) detail: String,
    /// 18 characters: region, birth date, sequence, GB 11643 check character (a digit or `X`).
    pub(crate) id_card_no: String,
    /// e.g. `王实名0042`.
    pub(crate) id_card_name: String,
}

const STEMS: [&str; 10] = ["甲", "乙", "丙", "丁", "戊", "己", "庚", "辛", "壬", "癸"];
const ROADS: [&str; 8] = [
    "幸福路",
    "建设路",
    "人民路",
    "解放路",
    "中山路",
    "和平街",
    "文化路",
    "滨江大道",
];
const SURNAMES: [&str; 12] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙",
];
/// Where the ID cards were issued (district codes).
const ID_REGIONS: [&str; 8] = [
    "330106", "110108", "440305", "310115", "510107", "420111", "320106", "410105",
];
/// Birth dates are drawn from this many days after 1960-01-01 (about 41 years).
const BIRTH_DAYS: u64 = 15_000;
/// Coprime with both 10^8 and [`BIRTH_DAYS`], so `k ↦ k × SPREAD mod m` is a bijection.
const SPREAD: u64 = 7_919;

impl Pii {
    /// The PII of the order with serial number `k`.
    pub(crate) fn of(k: u64) -> Pii {
        let i = k as usize;
        Pii {
            tel: format!(
                "139{:08}",
                (k.wrapping_mul(SPREAD) + 24_681_357) % 100_000_000
            ),
            receiver: format!("收件人{}{k:04}号", STEMS[i % STEMS.len()]),
            detail: format!(
                "{}{}号院{}单元{k:04}室",
                ROADS[i % ROADS.len()],
                1 + k.wrapping_mul(37) % 199,
                1 + k % 6
            ),
            id_card_no: id_card_no(k),
            id_card_name: format!("{}实名{k:04}", SURNAMES[i % SURNAMES.len()]),
        }
    }

    /// The five values, in the order of the fields.
    #[cfg(test)]
    pub(crate) fn values(&self) -> [&str; 5] {
        [
            &self.tel,
            &self.receiver,
            &self.detail,
            &self.id_card_no,
            &self.id_card_name,
        ]
    }
}

/// A well-formed resident ID number unique to `k`: the birth date spreads `k mod 15000` over 41
/// years and the sequence number encodes `k / 15000`, so the pair is unique for `k < 1.5 × 10^7`.
fn id_card_no(k: u64) -> String {
    let region = ID_REGIONS[(k / 3) as usize % ID_REGIONS.len()];
    let day = k.wrapping_mul(SPREAD) % BIRTH_DAYS;
    let birth =
        NaiveDate::from_ymd_opt(1960, 1, 1).unwrap_or_default() + Duration::days(day as i64);
    // 7 is coprime with 1000: the sequence numbers of 1000 consecutive blocks are all different.
    let sequence = ((k / BIRTH_DAYS) % 1000 * 7 + 101) % 1000;
    let body = format!("{region}{}{sequence:03}", birth.format("%Y%m%d"));
    let check = check_character(&body);
    format!("{body}{check}")
}

/// The GB 11643-1999 check character of the first 17 digits.
fn check_character(body: &str) -> char {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];
    let sum: u32 = body
        .chars()
        .filter_map(|c| c.to_digit(10))
        .zip(WEIGHTS)
        .map(|(d, w)| d * w)
        .sum();
    CHECK[(sum % 11) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn values_are_well_formed_and_unique_per_order() {
        let mut seen = HashSet::new();
        for k in 1..=20_000u64 {
            let p = Pii::of(k);
            assert_eq!(p.tel.len(), 11);
            assert!(p.tel.starts_with("139") && p.tel.bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(p.id_card_no.len(), 18, "{}", p.id_card_no);
            assert!(p.id_card_no[..17].bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(
                check_character(&p.id_card_no[..17]),
                p.id_card_no.chars().last().unwrap_or(' ')
            );
            assert!(p.receiver.chars().count() >= 4 && p.id_card_name.chars().count() >= 4);
            for v in p.values() {
                assert!(seen.insert(v.to_string()), "{v} twice (k = {k})");
            }
        }
        assert_eq!(Pii::of(42).receiver, "收件人丙0042号");
        assert_eq!(Pii::of(42).detail, "人民路162号院1单元0042室");
    }

    #[test]
    fn the_check_character_follows_the_standard() {
        // A published example: 11010519491231002X.
        assert_eq!(check_character("11010519491231002"), 'X');
    }

    #[test]
    fn no_value_hides_inside_another_orders_value() {
        let small = Pii::of(42);
        for k in [420, 1042, 10_042, 4_200, 142] {
            let big = Pii::of(k);
            for (a, b) in small.values().into_iter().zip(big.values()) {
                assert!(!b.contains(a), "{a} inside {b}");
            }
        }
    }
}
