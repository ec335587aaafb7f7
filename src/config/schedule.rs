//! A pipeline's cron `schedule`, read in Beijing time: 5 fields as cron users write them (Sunday 0
//! or 7), or 6 with seconds first; and its ticks: the next one, those in a span, the longest gap.

use std::str::FromStr;

use chrono::{NaiveDateTime, TimeZone};

use crate::timefmt;

/// A cron schedule in Beijing time; the text is kept for display.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub text: String,
    pub cron: cron::Schedule,
}

impl Schedule {
    /// Accepts standard 5-field cron (minute hour day month weekday, Sunday = 0 or 7) and the
    /// 6-field form with seconds in front. The `cron` crate numbers weekdays 1 = Sunday, so numeric
    /// weekdays of the standard forms are translated rather than silently shifted by a day.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(format!(
                    "must be a 5-field cron expression (or 6 with seconds), got {n} fields"
                ))
            }
        };
        let dow = translate_weekdays(rest[4])?;
        let expr = format!(
            "{seconds} {} {} {} {} {dow}",
            rest[0], rest[1], rest[2], rest[3]
        );
        let cron = cron::Schedule::from_str(&expr)
            .map_err(|e| format!("is not a valid cron expression ({e})"))?;
        Ok(Schedule {
            text: text.to_string(),
            cron,
        })
    }
}

fn translate_weekdays(field: &str) -> Result<String, String> {
    let map_one = |s: &str| -> Result<String, String> {
        match s.parse::<u8>() {
            Ok(n) if n <= 7 => Ok(((n % 7) + 1).to_string()),
            Ok(n) => Err(format!("has weekday {n}, which is not 0-7")),
            Err(_) => Ok(s.to_string()),
        }
    };
    let mut parts = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let mapped = match range.split_once('-') {
            Some((a, b)) => {
                let (na, nb) = (a.parse::<u8>(), b.parse::<u8>());
                match (na, nb) {
                    // `5-7` (Fri-Sun) becomes Fri-Sat plus Sun.
                    (Ok(a), Ok(7)) if a > 0 && step.is_none() => {
                        parts.push("1".to_string());
                        format!("{}-7", a + 1)
                    }
                    (Ok(a), Ok(b)) if a <= b && b <= 7 => format!("{}-{}", a % 7 + 1, b % 7 + 1),
                    (Ok(_), Ok(_)) => {
                        return Err(format!("has weekday range {range} that is not within 0-7"))
                    }
                    _ => format!("{}-{}", map_one(a)?, map_one(b)?),
                }
            }
            None => map_one(range)?,
        };
        parts.push(match step {
            Some(s) => format!("{mapped}/{s}"),
            None => mapped,
        });
    }
    Ok(parts.join(","))
}

/// The first tick strictly after `after` (Beijing wall-clock).
pub fn next_tick(schedule: &Schedule, after: NaiveDateTime) -> Option<NaiveDateTime> {
    let tz = timefmt::beijing_offset();
    let after = tz.from_local_datetime(&after).single()?;
    schedule.cron.after(&after).next().map(|t| t.naive_local())
}

/// How many ticks fall in `(from, to]`: the ticks a run that ended at `to` made us skip.
pub fn ticks_between(schedule: &Schedule, from: NaiveDateTime, to: NaiveDateTime) -> u64 {
    let mut n = 0;
    let mut t = from;
    while let Some(next) = next_tick(schedule, t) {
        if next > to || n >= 10_000 {
            break;
        }
        n += 1;
        t = next;
    }
    n
}

/// The longest gap between two consecutive ticks after `from`, looking a year ahead (at most 1000
/// ticks): a schedule's period when it is regular, its longest quiet spell (a night, a weekend)
/// when it is not. `None` for a schedule with fewer than two ticks ahead.
pub fn longest_gap(schedule: &Schedule, from: NaiveDateTime) -> Option<chrono::Duration> {
    let horizon = from + chrono::Duration::days(366);
    let mut previous = next_tick(schedule, from)?;
    let mut longest: Option<chrono::Duration> = None;
    for _ in 0..1000 {
        let Some(next) = next_tick(schedule, previous) else {
            break;
        };
        longest = Some(longest.map_or(next - previous, |l| l.max(next - previous)));
        if next > horizon {
            break;
        }
        previous = next;
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timefmt::parse_user_time;

    fn t(s: &str) -> NaiveDateTime {
        parse_user_time(s).unwrap()
    }

    #[test]
    fn ticks_are_in_beijing_time() {
        // 09:00 every day, Beijing: after 08:59:59 Beijing comes 09:00 the same Beijing day.
        let s = Schedule::parse("0 9 * * *").unwrap();
        assert_eq!(
            next_tick(&s, t("2024-03-01 08:59:59")),
            Some(t("2024-03-01 09:00:00"))
        );
        assert_eq!(
            next_tick(&s, t("2024-03-01 09:00:00")),
            Some(t("2024-03-02 09:00:00"))
        );
        let every10 = Schedule::parse("*/10 * * * *").unwrap();
        assert_eq!(
            ticks_between(&every10, t("2024-03-01 09:00:00"), t("2024-03-01 09:35:00")),
            3
        );
    }

    #[test]
    fn the_schedule_interval_is_its_longest_gap_between_ticks() {
        let from = t("2024-03-01 09:03:00"); // a Friday
        let gap = |cron: &str| {
            longest_gap(&Schedule::parse(cron).unwrap(), from).map(|d| d.num_seconds())
        };
        assert_eq!(gap("*/10 * * * *"), Some(600));
        assert_eq!(gap("*/2 * * * * *"), Some(2));
        // Every 10 minutes from 08:00 to 20:50: the night is the longest gap.
        assert_eq!(gap("*/10 8-20 * * *"), Some(11 * 3600 + 10 * 60));
        // Weekdays at 09:00: Friday to Monday.
        assert_eq!(gap("0 9 * * 1-5"), Some(3 * 86400));
        // Once a year: 2025-01-01 to 2026-01-01, past the year's horizon but still measured.
        assert_eq!(gap("0 0 1 1 *"), Some(365 * 86400));
    }
}
