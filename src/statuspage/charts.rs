//! The status page's pictures as inline SVG: the runs of the last 24 h on a time axis, orders and
//! GMV per day and source, and a track's coverage as a bar with its gaps.
//!
//! Invariant: every text that came from the database is escaped, and the size of a picture is
//! bounded by its width, not by the number of rows: runs closer than a pixel to each other with the
//! same outcome are drawn as one mark (its tooltip counts them).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{Duration, NaiveDate, NaiveDateTime, Timelike};

use super::html::escape;
use crate::status::TrackStatus;
use crate::store::report::{DailyTotal, TimelineRun};
use crate::timefmt;

/// Run outcomes in drawing order (later ones on top) with their colours.
pub const OUTCOMES: [(&str, &str); 5] = [
    ("ok", "#2e7d32"),
    ("interrupted", "#f9a825"),
    ("running", "#1565c0"),
    ("abandoned", "#6a1b9a"),
    ("failed", "#c62828"),
];

/// Runs of one lane, outcome and track kind, merged while closer than a pixel.
struct Mark {
    x0: f64,
    x1: f64,
    runs: usize,
    first_start: NaiveDateTime,
    last_end: NaiveDateTime,
}

/// One lane per pipeline (in `pipelines` order, then any other that ran), live runs in its upper
/// part and every other track's runs (backfills, rescans) in its lower part.
pub fn timeline(pipelines: &[String], runs: &[TimelineRun], now: NaiveDateTime) -> String {
    const W: f64 = 1000.0;
    const LEFT: f64 = 150.0;
    const RIGHT: f64 = 12.0;
    const TOP: f64 = 6.0;
    const LANE: f64 = 26.0;
    const AXIS: f64 = 22.0;
    let since = now - Duration::hours(24);
    let plot = W - LEFT - RIGHT;
    let x = |t: NaiveDateTime| {
        LEFT + plot * ((t - since).num_seconds() as f64 / 86_400.0).clamp(0.0, 1.0)
    };
    let mut lanes: Vec<&str> = pipelines.iter().map(String::as_str).collect();
    for r in runs {
        if !lanes.contains(&r.pipeline.as_str()) {
            lanes.push(&r.pipeline);
        }
    }
    let height = TOP + LANE * lanes.len().max(1) as f64 + AXIS;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="timeline" viewBox="0 0 {W} {height}" role="img" aria-label="Runs of the last 24 hours per pipeline" xmlns="http://www.w3.org/2000/svg">"#
    );
    // Hour grid every 3 hours, on the hour.
    let axis_y = TOP + LANE * lanes.len().max(1) as f64;
    let mut tick = since
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(since)
        + Duration::hours(1);
    while tick <= now {
        if tick.hour() % 3 == 0 {
            let tx = x(tick);
            let _ = write!(
                svg,
                r##"<line x1="{tx:.1}" y1="{TOP}" x2="{tx:.1}" y2="{axis_y}" stroke="#ddd"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle" class="axis">{}</text>"##,
                axis_y + 15.0,
                tick.format("%H:%M")
            );
        }
        tick += Duration::hours(1);
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="end" class="axis">now</text>"#,
        W - RIGHT,
        axis_y + 15.0
    );
    for (i, lane) in lanes.iter().enumerate() {
        let y = TOP + LANE * i as f64;
        let _ = write!(
            svg,
            r##"<rect x="{LEFT}" y="{:.1}" width="{plot}" height="{:.1}" fill="#f3f3f3"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="lane">{}</text>"##,
            y + 2.0,
            LANE - 4.0,
            LEFT - 8.0,
            y + LANE / 2.0 + 4.0,
            escape(lane)
        );
        let mut marks: BTreeMap<(bool, usize), Vec<Mark>> = BTreeMap::new();
        for r in runs.iter().filter(|r| r.pipeline == *lane) {
            let Some(start) = timefmt::parse_user_time(&r.started_at) else {
                continue;
            };
            let end = match r.finished_at.as_deref() {
                Some(f) => timefmt::parse_user_time(f).unwrap_or(start),
                None => now,
            };
            if end < since {
                continue;
            }
            let rank = OUTCOMES
                .iter()
                .position(|(o, _)| *o == r.outcome)
                .unwrap_or(OUTCOMES.len());
            let (x0, x1) = (x(start), x(end).max(x(start) + 2.0));
            let list = marks.entry((r.scope == "live", rank)).or_default();
            match list.last_mut() {
                Some(m) if x0 <= m.x1 + 1.0 => {
                    m.x1 = m.x1.max(x1);
                    m.runs += 1;
                    m.last_end = m.last_end.max(end);
                }
                _ => list.push(Mark {
                    x0,
                    x1,
                    runs: 1,
                    first_start: start,
                    last_end: end,
                }),
            }
        }
        // Other tracks first, then live; within each, outcomes in drawing order.
        for ((live, rank), list) in &marks {
            let (outcome, colour) = OUTCOMES.get(*rank).copied().unwrap_or(("other", "#757575"));
            let (top, h) = if *live {
                (y + 3.0, LANE * 0.5)
            } else {
                (y + 4.0 + LANE * 0.5, LANE * 0.5 - 7.0)
            };
            let kind = if *live {
                "live"
            } else {
                "backfill/other track"
            };
            for m in list {
                let _ = write!(
                    svg,
                    r#"<rect class="run {outcome}" x="{:.1}" y="{top:.1}" width="{:.1}" height="{h:.1}" fill="{colour}"><title>{} {kind} run{} {outcome}: {} – {}</title></rect>"#,
                    m.x0,
                    m.x1 - m.x0,
                    m.runs,
                    if m.runs == 1 { "" } else { "s" },
                    timefmt::fmt_seconds(m.first_start),
                    timefmt::fmt_seconds(m.last_end),
                );
            }
        }
        if marks.is_empty() {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" class="none">no runs in the last 24 hours</text>"#,
                LEFT + 8.0,
                y + LANE / 2.0 + 4.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Fixed colours for the five sources, so a source keeps its colour whatever else has data.
const SOURCE_COLOURS: [(&str, &str); 5] = [
    ("veapi", "#1f77b4"),
    ("miaoyouquan", "#ff7f0e"),
    ("unidesk", "#2ca02c"),
    ("damaijia", "#d62728"),
    ("sxt", "#9467bd"),
];
const OTHER_COLOURS: [&str; 3] = ["#8c564b", "#e377c2", "#17becf"];

pub fn source_colour(source: &str, index: usize) -> &'static str {
    SOURCE_COLOURS
        .iter()
        .find(|(s, _)| *s == source)
        .map_or(OTHER_COLOURS[index % OTHER_COLOURS.len()], |(_, c)| c)
}

/// The sources with data, in order, with their colours.
pub fn sources(totals: &[DailyTotal]) -> Vec<(String, &'static str)> {
    let mut names: Vec<&str> = totals.iter().map(|t| t.source.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .enumerate()
        .map(|(i, s)| (s.to_string(), source_colour(s, i)))
        .collect()
}

/// What a daily chart plots.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Orders,
    GmvYuan,
}

/// A line per source over the `days` days ending with `last` (today: drawn dashed, it is not over),
/// a missing day counted as zero so that a collapse shows as one.
pub fn daily(totals: &[DailyTotal], last: NaiveDate, days: i64, measure: Measure) -> String {
    const W: f64 = 480.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 84.0;
    const RIGHT: f64 = 12.0;
    const TOP: f64 = 10.0;
    const BOTTOM: f64 = 24.0;
    let first = last - Duration::days(days - 1);
    let value = |t: &DailyTotal| match measure {
        Measure::Orders => t.orders,
        Measure::GmvYuan => t.gmv_fen,
    };
    let sources = sources(totals);
    let mut series: Vec<Vec<i64>> = vec![vec![0; days as usize]; sources.len()];
    for t in totals {
        let (Some(s), Ok(day)) = (
            sources.iter().position(|(name, _)| *name == t.source),
            NaiveDate::parse_from_str(&t.day, "%Y-%m-%d"),
        ) else {
            continue;
        };
        let i = (day - first).num_days();
        if (0..days).contains(&i) {
            series[s][i as usize] += value(t);
        }
    }
    let max = series.iter().flatten().copied().max().unwrap_or(0).max(1);
    let step = nice_step(max, 4);
    let top_value = step * ((max + step - 1) / step).max(1);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |i: usize| LEFT + plot_w * i as f64 / (days - 1).max(1) as f64;
    let y = |v: i64| TOP + plot_h * (1.0 - v as f64 / top_value as f64);
    let (label, class) = match measure {
        Measure::Orders => ("Orders per day per source", "orders"),
        Measure::GmvYuan => ("GMV per day per source, in yuan", "gmv"),
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="daily {class}" viewBox="0 0 {W} {H}" role="img" aria-label="{label}" xmlns="http://www.w3.org/2000/svg">"#
    );
    let mut v = 0;
    while v <= top_value {
        let vy = y(v);
        let text = match measure {
            Measure::Orders => group_digits(v),
            Measure::GmvYuan => yuan(v),
        };
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{vy:.1}" x2="{:.1}" y2="{vy:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="axis">{text}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            vy + 4.0
        );
        v += step;
    }
    // Weekly labels counted back from today, which is labelled by name.
    for i in (0..days as usize).rev().step_by(7).skip(1) {
        let day = first + Duration::days(i as i64);
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="axis">{}</text>"#,
            x(i),
            H - 6.0,
            day.format("%m-%d")
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="end" class="axis">today</text>"#,
        W - RIGHT,
        H - 6.0
    );
    let n = days as usize;
    for ((source, colour), values) in sources.iter().zip(&series) {
        let points = |range: std::ops::Range<usize>| {
            range
                .map(|i| format!("{:.1},{:.1}", x(i), y(values[i])))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = write!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            points(0..n.saturating_sub(1))
        );
        let _ = write!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="4 3"/>"#,
            points(n.saturating_sub(2)..n)
        );
        for (i, v) in values.iter().enumerate() {
            let day = first + Duration::days(i as i64);
            let shown = match measure {
                Measure::Orders => format!("{} orders", group_digits(*v)),
                Measure::GmvYuan => format!("GMV {}", yuan(*v)),
            };
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"><title>{} {}: {shown}</title></circle>"#,
                x(i),
                y(*v),
                day.format("%Y-%m-%d"),
                escape(source)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A step of 1, 2 or 5 times a power of ten that divides `0..=max` into at most `ticks` steps.
pub fn nice_step(max: i64, ticks: i64) -> i64 {
    let raw = (max.max(1) + ticks - 1) / ticks.max(1);
    let mut magnitude = 1i64;
    while magnitude.saturating_mul(10) <= raw {
        magnitude = magnitude.saturating_mul(10);
    }
    [1, 2, 5, 10]
        .iter()
        .map(|m| magnitude.saturating_mul(*m))
        .find(|s| *s >= raw)
        .unwrap_or(raw)
}

/// `1234567` → `1,234,567`.
pub fn group_digits(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Fen as yuan, exactly: `123456` → `¥1,234.56`, `500` → `¥5`.
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let (whole, cents) = (fen.unsigned_abs() / 100, fen.unsigned_abs() % 100);
    let whole = group_digits(i64::try_from(whole).unwrap_or(i64::MAX));
    if cents == 0 {
        format!("{sign}¥{whole}")
    } else {
        format!("{sign}¥{whole}.{cents:02}")
    }
}

/// A track's time line, `range_start` (or its first covered time) to `range_end` (or now): covered
/// ranges green, gaps red, the window in progress blue, the rest grey.
pub fn coverage_bar(track: &TrackStatus, now: NaiveDateTime) -> Option<String> {
    const W: f64 = 300.0;
    const H: f64 = 14.0;
    let parse = |s: &str| timefmt::parse_user_time(s);
    let covered: Vec<(NaiveDateTime, NaiveDateTime)> = track
        .covered
        .iter()
        .filter_map(|[a, b]| Some((parse(a)?, parse(b)?)))
        .collect();
    let start = track
        .range_start
        .as_deref()
        .and_then(parse)
        .or_else(|| covered.first().map(|c| c.0))?;
    let end = match track.range_end.as_deref().and_then(parse) {
        Some(end) => end,
        None => covered.iter().map(|c| c.1).max().unwrap_or(now).max(now),
    };
    let span = (end - start).num_seconds();
    if span <= 0 {
        return None;
    }
    let x = |t: NaiveDateTime| W * ((t - start).num_seconds() as f64 / span as f64).clamp(0.0, 1.0);
    let mut svg = format!(
        r##"<svg class="coverage" viewBox="0 0 {W} {H}" role="img" aria-label="coverage of {scope}" xmlns="http://www.w3.org/2000/svg"><rect width="{W}" height="{H}" fill="#e0e0e0"><title>not yet covered</title></rect>"##,
        scope = escape(&track.scope)
    );
    let mut rect = |a: NaiveDateTime, b: NaiveDateTime, colour: &str, what: &str| {
        let (x0, x1) = (x(a), x(b));
        let _ = write!(
            svg,
            r#"<rect x="{x0:.1}" width="{:.1}" height="{H}" fill="{colour}"><title>{what} {} .. {}</title></rect>"#,
            (x1 - x0).max(1.0),
            timefmt::fmt_seconds(a),
            timefmt::fmt_seconds(b)
        );
    };
    for (a, b) in &covered {
        rect(*a, *b, "#43a047", "covered");
    }
    for [a, b] in &track.gaps {
        if let (Some(a), Some(b)) = (parse(a), parse(b)) {
            rect(a, b, "#e53935", "GAP");
        }
    }
    if let Some((a, b)) = track
        .in_progress
        .as_deref()
        .and_then(|w| w.split_once(" .. "))
        .and_then(|(a, b)| Some((parse(a)?, parse(b)?)))
    {
        rect(a, b, "#1e88e5", "window in progress");
    }
    svg.push_str("</svg>");
    Some(svg)
}

/// How much of a track's range is covered, 0..=1; `None` for a track without a range (live).
pub fn progress(track: &TrackStatus) -> Option<f64> {
    let parse = |s: &str| timefmt::parse_user_time(s);
    let start = parse(track.range_start.as_deref()?)?;
    let end = parse(track.range_end.as_deref()?)?;
    let span = (end - start).num_seconds();
    if span <= 0 {
        return Some(1.0);
    }
    let done: i64 = track
        .covered
        .iter()
        .filter_map(|[a, b]| Some((parse(a)?.max(start), parse(b)?.min(end))))
        .map(|(a, b)| (b - a).num_seconds().max(0))
        .sum();
    Some((done as f64 / span as f64).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        timefmt::parse_user_time(s).unwrap()
    }

    #[test]
    fn money_and_counts_read_exactly() {
        assert_eq!(yuan(0), "¥0");
        assert_eq!(yuan(3890), "¥38.90");
        assert_eq!(yuan(123_456_700), "¥1,234,567");
        assert_eq!(yuan(-29), "-¥0.29");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(-1_234_567), "-1,234,567");
    }

    #[test]
    fn axis_steps_are_round_and_cover_the_maximum() {
        for (max, step) in [(1, 1), (7, 2), (40, 10), (41, 20), (99_999, 50_000), (0, 1)] {
            assert_eq!(nice_step(max, 4), step, "max {max}");
        }
        for max in [1, 3, 17, 230, 9_999, 123_456_789] {
            let s = nice_step(max, 4);
            assert!(s * 4 >= max, "{max}: {s}");
        }
    }

    #[test]
    fn runs_closer_than_a_pixel_are_one_mark_and_failures_stay_visible() {
        let now = t("2024-03-04 12:00:00");
        let mut runs: Vec<TimelineRun> = (0..3000)
            .map(|i| {
                let start = now - Duration::seconds(20 * i);
                TimelineRun {
                    pipeline: "p".into(),
                    scope: "live".into(),
                    started_at: timefmt::fmt_seconds(start),
                    finished_at: Some(timefmt::fmt_seconds(start + Duration::seconds(5))),
                    outcome: "ok".into(),
                }
            })
            .rev()
            .collect();
        runs.push(TimelineRun {
            pipeline: "p".into(),
            scope: "live".into(),
            started_at: "2024-03-04 11:00:00".into(),
            finished_at: Some("2024-03-04 11:00:01".into()),
            outcome: "failed".into(),
        });
        let svg = timeline(&["p".into(), "idle".into()], &runs, now);
        let ok_marks = svg.matches(r#"class="run ok""#).count();
        assert!((1..=10).contains(&ok_marks), "{ok_marks} ok marks");
        assert_eq!(svg.matches(r#"class="run failed""#).count(), 1);
        assert!(
            svg.contains("no runs in the last 24 hours"),
            "the idle lane"
        );
        assert!(svg.len() < 20_000, "{} bytes", svg.len());
    }

    #[test]
    fn a_missing_day_is_drawn_as_zero() {
        let totals = vec![
            DailyTotal {
                day: "2024-03-01".into(),
                source: "veapi".into(),
                orders: 100,
                gmv_fen: 1_000_000,
            },
            DailyTotal {
                day: "2024-03-03".into(),
                source: "veapi".into(),
                orders: 50,
                gmv_fen: 500_000,
            },
        ];
        let last = NaiveDate::from_ymd_opt(2024, 3, 3).unwrap();
        let svg = daily(&totals, last, 3, Measure::Orders);
        assert!(svg.contains("2024-03-02 veapi: 0 orders"), "{svg}");
        let svg = daily(&totals, last, 3, Measure::GmvYuan);
        assert!(svg.contains("GMV ¥10,000"), "{svg}");
        assert!(svg.contains(">¥10,000<"), "an axis label in yuan: {svg}");
    }

    #[test]
    fn progress_counts_covered_time_inside_the_range() {
        let track = TrackStatus {
            scope: "backfill 2024-01-01..2024-01-11".into(),
            range_start: Some("2024-01-01 00:00:00".into()),
            range_end: Some("2024-01-11 00:00:00".into()),
            watermark: Some("2024-01-05 00:00:00".into()),
            in_progress: Some("2024-01-05 00:00:00.000 .. 2024-01-06 00:00:00.000".into()),
            windows_left: 1,
            finished: false,
            covered: vec![
                ["2024-01-01 00:00:00".into(), "2024-01-03 00:00:00".into()],
                ["2024-01-04 00:00:00".into(), "2024-01-05 00:00:00".into()],
            ],
            gaps: vec![["2024-01-03 00:00:00".into(), "2024-01-04 00:00:00".into()]],
        };
        let p = progress(&track).unwrap();
        assert!((p - 0.3).abs() < 1e-9, "{p}");
        let bar = coverage_bar(&track, t("2024-02-01 00:00:00")).unwrap();
        assert!(bar.contains("GAP 2024-01-03 00:00:00 .. 2024-01-04 00:00:00"));
        assert!(bar.contains("window in progress"));
    }
}
