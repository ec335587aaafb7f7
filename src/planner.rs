//! The window planner: which time windows to ask upstream for, as a pure function.
//!
//! Windows are half-open `[start, end)` in Beijing time with millisecond precision; consecutive
//! windows share their boundary, so there is never a gap or an overlap. A source renders the end as
//! its API wants it (veapi: inclusive whole seconds, `end − 1s`; unidesk: `end − 1ms`). The rules of
//! each upstream — longest span, never crossing a Beijing day, not earlier than a horizon — are
//! data ([`WindowRules`]), applied here and nowhere else.

use chrono::{Duration, NaiveDateTime, NaiveTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window {
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
}

/// What one upstream allows a single query window to be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowRules {
    /// Longest `end − start` upstream accepts (veapi: 90 days).
    pub max_span: Option<Duration>,
    /// Start and end must fall on the same Beijing calendar day (unidesk).
    pub same_day: bool,
    /// `start` may be no earlier than `now − horizon` (miaoyouquan: 90 days).
    pub horizon: Option<Duration>,
}

/// A requested start that the horizon rule moved later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clamp {
    pub requested: NaiveDateTime,
    pub effective: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WindowPlan {
    pub windows: Vec<Window>,
    pub clamped: Option<Clamp>,
}

/// Upstream's "now" may run ahead of ours and a request takes time to arrive: stay this far inside
/// a horizon rather than on its edge.
const HORIZON_MARGIN: Duration = Duration::minutes(10);

/// Splits `[from, to)` into windows that obey `rules`. Empty when `to <= from` (after clamping).
pub fn plan(
    rules: &WindowRules,
    from: NaiveDateTime,
    to: NaiveDateTime,
    now: NaiveDateTime,
) -> WindowPlan {
    let mut clamped = None;
    let mut start = from;
    if let Some(h) = rules.horizon {
        let earliest = now - h + HORIZON_MARGIN;
        if start < earliest {
            clamped = Some(Clamp {
                requested: start,
                effective: earliest,
            });
            start = earliest;
        }
    }
    let mut windows = Vec::new();
    while start < to {
        let mut end = to;
        if let Some(span) = rules.max_span {
            end = end.min(start + span);
        }
        if rules.same_day {
            end = end.min(next_midnight(start));
        }
        windows.push(Window { start, end });
        start = end;
    }
    WindowPlan { windows, clamped }
}

fn next_midnight(t: NaiveDateTime) -> NaiveDateTime {
    (t.date() + Duration::days(1)).and_time(NaiveTime::MIN)
}

/// The range a live sync covers: from the watermark less the lookback (never before the configured
/// start) up to `now − settle_lag`. `None` when there is nothing settled to fetch yet.
pub fn live_range(
    start: NaiveDateTime,
    watermark: Option<NaiveDateTime>,
    lookback: Duration,
    settle_lag: Duration,
    now: NaiveDateTime,
) -> Option<(NaiveDateTime, NaiveDateTime)> {
    let from = match watermark {
        Some(w) => (w - lookback).max(start),
        None => start,
    };
    let to = now - settle_lag;
    (to > from).then_some((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timefmt::parse_user_time;

    fn t(s: &str) -> NaiveDateTime {
        parse_user_time(s).unwrap()
    }

    fn assert_tiles(plan: &WindowPlan, from: NaiveDateTime, to: NaiveDateTime) {
        let w = &plan.windows;
        assert_eq!(w.first().unwrap().start, from);
        assert_eq!(w.last().unwrap().end, to);
        for pair in w.windows(2) {
            assert_eq!(
                pair[0].end, pair[1].start,
                "gap or overlap between {pair:?}"
            );
        }
        assert!(w.iter().all(|x| x.start < x.end));
    }

    #[test]
    fn veapi_windows_never_exceed_90_days() {
        let rules = WindowRules {
            max_span: Some(Duration::days(90)),
            ..Default::default()
        };
        let (from, to) = (t("2024-01-01"), t("2024-07-24 13:14:15"));
        let p = plan(&rules, from, to, to);
        assert_eq!(p.windows.len(), 3);
        assert!(p
            .windows
            .iter()
            .all(|w| w.end - w.start <= Duration::days(90)));
        assert_eq!(p.windows[0].end - p.windows[0].start, Duration::days(90));
        assert_tiles(&p, from, to);
        assert_eq!(p.clamped, None);
    }

    #[test]
    fn unidesk_windows_never_cross_a_beijing_day() {
        let rules = WindowRules {
            same_day: true,
            ..Default::default()
        };
        let (from, to) = (t("2024-02-28 22:00:00"), t("2024-03-02 01:30:00.250"));
        let p = plan(&rules, from, to, to);
        assert_tiles(&p, from, to);
        assert_eq!(p.windows.len(), 4); // 28th, 29th (leap day), 1st, 2nd
        for w in &p.windows {
            // The inclusive end a millisecond-exact API is sent stays on the start's day.
            assert_eq!(
                w.start.date(),
                (w.end - Duration::milliseconds(1)).date(),
                "{w:?}"
            );
        }
        assert_eq!(p.windows[1].start, t("2024-02-29"));
        assert_eq!(p.windows[3].end, t("2024-03-02 01:30:00.250"));
    }

    #[test]
    fn miaoyouquan_start_is_clamped_inside_the_horizon_and_says_so() {
        let rules = WindowRules {
            horizon: Some(Duration::days(90)),
            ..Default::default()
        };
        let now = t("2024-06-30 12:00:00");
        let p = plan(&rules, t("2024-01-01"), now, now);
        let c = p.clamped.expect("clamp reported");
        assert_eq!(c.requested, t("2024-01-01"));
        assert!(c.effective > now - Duration::days(90));
        assert_eq!(p.windows[0].start, c.effective);
        assert_tiles(&p, c.effective, now);
        // A start inside the horizon is left alone.
        let p = plan(&rules, now - Duration::days(30), now, now);
        assert_eq!(p.clamped, None);
    }

    #[test]
    fn empty_and_combined_rules() {
        let rules = WindowRules {
            max_span: Some(Duration::hours(5)),
            same_day: true,
            horizon: None,
        };
        let from = t("2024-01-01 20:00:00");
        assert!(plan(&rules, from, from, from).windows.is_empty());
        let p = plan(&rules, from, t("2024-01-02 09:00:00"), from);
        let ends: Vec<_> = p.windows.iter().map(|w| w.end).collect();
        assert_eq!(
            ends,
            vec![
                t("2024-01-02"),
                t("2024-01-02 05:00:00"),
                t("2024-01-02 09:00:00")
            ]
        );
    }

    #[test]
    fn live_range_uses_lookback_but_never_goes_before_start() {
        let start = t("2024-01-01");
        let now = t("2024-01-10 12:00:00");
        let (lb, lag) = (Duration::hours(2), Duration::seconds(30));
        assert_eq!(
            live_range(start, None, lb, lag, now),
            Some((start, now - lag))
        );
        let w = t("2024-01-10 11:00:00");
        assert_eq!(
            live_range(start, Some(w), lb, lag, now),
            Some((w - lb, now - lag))
        );
        assert_eq!(
            live_range(start, Some(t("2024-01-01 01:00:00")), lb, lag, now)
                .unwrap()
                .0,
            start
        );
        assert_eq!(live_range(now, None, lb, lag, now), None);
    }
}
