//! Beijing wall-clock time ↔ unix seconds, as the simulated APIs speak it.
//!
//! A `NaiveDateTime` here is always Beijing time (UTC+8, no DST); its instant is that wall clock
//! minus eight hours read as UTC. Every conversion is total: unreadable text gives `None`, never a panic.

use chrono::{NaiveDateTime, Timelike};

/// Beijing is UTC+8 all year.
pub(crate) const BEIJING_OFFSET: i64 = 8 * 3600;

/// The `YYYY-MM-DD HH:MM:SS` wall-clock format the APIs accept.
pub(crate) const WALL_CLOCK: &str = "%Y-%m-%d %H:%M:%S";

/// The `YYYY-MM-DD HH:MM:SS.mmm` wall-clock format with milliseconds (unidesk's query window).
pub(crate) const WALL_CLOCK_MILLIS: &str = "%Y-%m-%d %H:%M:%S%.3f";

/// Drops any fraction of a second.
pub(crate) fn truncate(t: NaiveDateTime) -> NaiveDateTime {
    t.with_nanosecond(0).unwrap_or(t)
}

/// The unix seconds of a Beijing wall-clock time.
pub(crate) fn to_unix(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp() - BEIJING_OFFSET
}

/// The unix milliseconds of a Beijing wall-clock time (any fraction below a millisecond dropped).
pub(crate) fn to_unix_millis(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_millis() - BEIJING_OFFSET * 1000
}

/// The Beijing wall-clock time of unix seconds, if representable.
pub(crate) fn from_unix(secs: i64) -> Option<NaiveDateTime> {
    chrono::DateTime::from_timestamp(secs.checked_add(BEIJING_OFFSET)?, 0).map(|t| t.naive_utc())
}

/// Renders a time the way veapi does: 10-digit unix seconds, `"0"` for none.
pub(crate) fn unix_text(t: Option<NaiveDateTime>) -> String {
    t.map_or_else(|| "0".to_string(), |t| to_unix(t).to_string())
}

/// Renders a time the way miaoyouquan does: `YYYY-MM-DD HH:MM:SS`, `None` (JSON `null`) for none.
pub(crate) fn wall_text(t: Option<NaiveDateTime>) -> Option<String> {
    t.map(|t| t.format(WALL_CLOCK).to_string())
}

/// Renders a time as `YYYY-MM-DD HH:MM:SS.mmm` (exactly three millisecond digits).
pub(crate) fn millis_text(t: NaiveDateTime) -> String {
    t.format(WALL_CLOCK_MILLIS).to_string()
}

/// Reads a request time that must be exactly `YYYY-MM-DD HH:MM:SS.mmm` (zero-padded, exactly three
/// millisecond digits, 23 characters; surrounding blanks ignored), as Beijing wall clock.
pub(crate) fn parse_wall_clock_millis(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    let (seconds, millis) = (text.get(..19)?, text.get(19..)?);
    let shaped = millis.len() == 4
        && millis.starts_with('.')
        && millis.bytes().skip(1).all(|b| b.is_ascii_digit());
    if !shaped {
        return None;
    }
    let millis: i64 = millis.get(1..)?.parse().ok()?;
    parse_wall_clock(seconds).map(|t| t + chrono::Duration::milliseconds(millis))
}

/// Reads a request time that must be exactly `YYYY-MM-DD HH:MM:SS` (zero-padded, 19 characters;
/// surrounding blanks ignored), as Beijing wall clock.
pub(crate) fn parse_wall_clock(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    let shaped = text.len() == 19
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shaped {
        return None;
    }
    NaiveDateTime::parse_from_str(text, WALL_CLOCK).ok()
}

/// Reads a request time: Beijing `YYYY-MM-DD HH:MM:SS` or 10-digit unix seconds, as unix seconds.
pub(crate) fn parse_request_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.len() == 10 && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    NaiveDateTime::parse_from_str(text, WALL_CLOCK)
        .ok()
        .map(to_unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_request_formats_name_the_same_instant() {
        let wall = parse_request_time("2024-04-05 17:21:35");
        assert_eq!(wall, Some(1_712_308_895));
        assert_eq!(parse_request_time("1712308895"), wall);
        assert_eq!(from_unix(1_712_308_895).map(to_unix), Some(1_712_308_895));
    }

    #[test]
    fn wall_clock_only_means_exactly_that_shape() {
        let t = parse_wall_clock(" 2024-04-05 17:21:35 ");
        assert_eq!(t.map(to_unix), Some(1_712_308_895));
        assert_eq!(
            wall_text(t).as_deref(),
            Some("2024-04-05 17:21:35"),
            "round trip"
        );
        assert_eq!(wall_text(None), None);
        for bad in [
            "",
            "1712308895",
            "2024-4-5 17:21:35",
            "2024-04-05 7:21:35",
            "2024-04-05T17:21:35",
            "2024/04/05 17:21:35",
            "2024-04-05 17:21:35.000",
            "2024-02-30 17:21:35",
            "2024-04-05 24:00:00",
            "２０２４-04-05 17:21:35",
        ] {
            assert_eq!(parse_wall_clock(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn millisecond_wall_clock_means_exactly_three_digits() {
        let t = parse_wall_clock_millis("2024-09-01 00:00:05.200");
        assert_eq!(t.map(to_unix_millis), Some(1_725_120_005_200));
        assert_eq!(
            t.map(millis_text).as_deref(),
            Some("2024-09-01 00:00:05.200")
        );
        let last = parse_wall_clock_millis(" 2024-09-01 23:59:59.999 ");
        assert_eq!(
            last.map(millis_text).as_deref(),
            Some("2024-09-01 23:59:59.999")
        );
        for bad in [
            "",
            "2024-09-01 00:00:05",
            "2024-09-01 00:00:05.",
            "2024-09-01 00:00:05.2",
            "2024-09-01 00:00:05.20",
            "2024-09-01 00:00:05.2000",
            "2024-09-01 00:00:05,200",
            "2024-09-01 00:00:05.-20",
            "2024-09-01 00:00:05.+20",
            "2024-09-01T00:00:05.200",
            "2024-9-01 00:00:05.200",
            "2024-02-30 00:00:05.200",
            "2024-09-01 00:00:05.２００",
            "1725120005200",
        ] {
            assert_eq!(parse_wall_clock_millis(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn other_shapes_are_refused() {
        for bad in [
            "",
            "171230889",
            "17123088950",
            "1712308895000",
            "2024-04-05",
            "2024-04-05T17:21:35",
            "2024-04-05 17:21:35.000",
            "2024-13-05 17:21:35",
            "yesterday",
            "-712308895",
        ] {
            assert_eq!(parse_request_time(bad), None, "{bad:?}");
        }
    }
}
