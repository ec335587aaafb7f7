//! Beijing time: the one clock every upstream speaks, and the one the database stores.
//!
//! All times are `chrono::NaiveDateTime` holding Beijing wall-clock time (UTC+8, no DST, so plain
//! arithmetic on them is exact). Stored as TEXT `YYYY-MM-DD HH:MM:SS`; window bounds keep
//! milliseconds. Upstream "no time" markers (`"0"`, `0`, `""`, `null`) become `None`.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime, Offset, Utc};
use serde_json::Value;

pub const SECONDS: &str = "%Y-%m-%d %H:%M:%S";
pub const MILLIS: &str = "%Y-%m-%d %H:%M:%S%.3f";
const BEIJING_OFFSET_SECS: i64 = 8 * 3600;

/// Beijing's fixed UTC offset, for APIs (the cron crate) that want a time zone.
pub fn beijing_offset() -> FixedOffset {
    // In range by construction; UTC is the impossible fallback, not a panic.
    FixedOffset::east_opt(BEIJING_OFFSET_SECS as i32).unwrap_or_else(|| Utc.fix())
}

/// Now, as Beijing wall-clock time, truncated to the millisecond.
pub fn beijing_now() -> NaiveDateTime {
    let now = Utc::now().naive_utc() + Duration::seconds(BEIJING_OFFSET_SECS);
    now - Duration::nanoseconds(i64::from(
        now.and_utc().timestamp_subsec_nanos() % 1_000_000,
    ))
}

pub fn from_unix_seconds(secs: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp(secs.checked_add(BEIJING_OFFSET_SECS)?, 0).map(|t| t.naive_utc())
}

pub fn to_unix_seconds(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp() - BEIJING_OFFSET_SECS
}

/// `t` as `YYYY-MM-DD HH:MM:SS`. Written digit by digit: the store formats half a dozen times per
/// order, and chrono's `format` parses its format string again on every call (2% of a sync's CPU).
/// Years outside 0–9999 (which chrono writes with a sign) and leap seconds are left to chrono.
pub fn fmt_seconds(t: NaiveDateTime) -> String {
    use chrono::{Datelike, Timelike};
    let year = match u32::try_from(t.year()) {
        Ok(year) if year <= 9999 && t.nanosecond() < 1_000_000_000 => year,
        _ => return t.format(SECONDS).to_string(),
    };
    let mut out = String::with_capacity(19);
    let mut push = |n: u32, digits: u32, sep: Option<char>| {
        for place in (0..digits).rev() {
            out.push(char::from(b'0' + (n / 10u32.pow(place) % 10) as u8));
        }
        if let Some(sep) = sep {
            out.push(sep);
        }
    };
    push(year, 4, Some('-'));
    push(t.month(), 2, Some('-'));
    push(t.day(), 2, Some(' '));
    push(t.hour(), 2, Some(':'));
    push(t.minute(), 2, Some(':'));
    push(t.second(), 2, None);
    out
}

pub fn fmt_millis(t: NaiveDateTime) -> String {
    t.format(MILLIS).to_string()
}

/// Parses what an operator types: `YYYY-MM-DD` (midnight) or `YYYY-MM-DD HH:MM:SS[.mmm]`.
pub fn parse_user_time(text: &str) -> Option<NaiveDateTime> {
    let t = text.trim();
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0);
    }
    NaiveDateTime::parse_from_str(t, MILLIS)
        .or_else(|_| NaiveDateTime::parse_from_str(t, SECONDS))
        .ok()
}

/// An upstream time field: a Beijing `YYYY-MM-DD HH:MM:SS`, or unix seconds as a number or a string.
/// `Ok(None)` for the documented "no time" markers; `Err` for anything else unreadable.
pub fn parse_upstream_time(v: Option<&Value>) -> Result<Option<NaiveDateTime>, String> {
    let text = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(other) => return Err(format!("unexpected time value {other}")),
    };
    if text.is_empty() || text == "0" {
        return Ok(None);
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i64 = text
            .parse()
            .map_err(|_| format!("bad unix time {text:?}"))?;
        // 13 digits: milliseconds.
        let secs = if text.len() >= 13 { secs / 1000 } else { secs };
        return from_unix_seconds(secs)
            .map(Some)
            .ok_or_else(|| format!("unix time {text:?} out of range"));
    }
    if text.starts_with("0000-00-00") {
        return Ok(None);
    }
    parse_user_time(&text)
        .map(Some)
        .ok_or_else(|| format!("unreadable time {text:?}"))
}

/// A duration as written in the config: `30s`, `2h`, `10m`, `1d`, `500ms`, or combinations (`1h30m`).
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    let mut total_ms: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        total_ms = total_ms.checked_add(n.checked_mul(unit_ms)?)?;
        rest = &rest[unit_len..];
    }
    Some(std::time::Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seconds_are_formatted_as_chrono_formats_them() {
        let times = [
            "0001-01-01 00:00:00",
            "1970-01-01 08:00:00",
            "2024-02-29 23:59:59",
            "2024-12-31 09:05:07.999",
            "9999-12-31 23:59:59",
        ];
        for text in times {
            let t = NaiveDateTime::parse_from_str(text, MILLIS)
                .or_else(|_| NaiveDateTime::parse_from_str(text, SECONDS))
                .unwrap();
            assert_eq!(fmt_seconds(t), t.format(SECONDS).to_string(), "{text}");
        }
        let far = NaiveDate::from_ymd_opt(12345, 6, 7)
            .unwrap()
            .and_hms_opt(1, 2, 3)
            .unwrap();
        assert_eq!(fmt_seconds(far), far.format(SECONDS).to_string());
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_milli_opt(23, 59, 59, 1500)
            .unwrap();
        assert_eq!(fmt_seconds(leap), "2016-12-31 23:59:60");
    }

    #[test]
    fn unix_strings_are_beijing_wall_clock() {
        // 1712311295 = 2024-04-05 10:01:35 UTC = 18:01:35 in Beijing.
        let t = parse_upstream_time(Some(&json!("1712311295"))).unwrap();
        assert_eq!(t.map(fmt_seconds).as_deref(), Some("2024-04-05 18:01:35"));
        assert_eq!(to_unix_seconds(t.unwrap()), 1712311295);
        let n = parse_upstream_time(Some(&json!(1712311295))).unwrap();
        assert_eq!(n, t);
    }

    #[test]
    fn no_time_markers_are_none() {
        for v in [
            json!("0"),
            json!(0),
            json!(""),
            json!(null),
            json!("0000-00-00 00:00:00"),
        ] {
            assert_eq!(parse_upstream_time(Some(&v)), Ok(None), "{v}");
        }
        assert_eq!(parse_upstream_time(None), Ok(None));
        assert!(parse_upstream_time(Some(&json!("yesterday"))).is_err());
    }

    #[test]
    fn durations() {
        use std::time::Duration as D;
        assert_eq!(parse_duration("30s"), Some(D::from_secs(30)));
        assert_eq!(parse_duration("2h"), Some(D::from_secs(7200)));
        assert_eq!(parse_duration("1h30m"), Some(D::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(D::from_millis(500)));
        assert_eq!(parse_duration("1d"), Some(D::from_secs(86400)));
        for bad in ["", "2", "h", "2 hours", "-1s", "1.5h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn user_times() {
        assert_eq!(
            parse_user_time("2024-01-02").map(fmt_seconds).as_deref(),
            Some("2024-01-02 00:00:00")
        );
        assert_eq!(
            parse_user_time("2024-01-02 03:04:05")
                .map(fmt_seconds)
                .as_deref(),
            Some("2024-01-02 03:04:05")
        );
        assert_eq!(parse_user_time("2024-13-02"), None);
    }
}
