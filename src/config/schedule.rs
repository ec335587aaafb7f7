//! A pipeline's cron `schedule`, read in Beijing time: 5 fields as cron users write them (Sunday 0
//! or 7), or 6 with seconds first.

use std::str::FromStr;

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
