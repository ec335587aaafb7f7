//! The window planner: windows tile the asked range with no gap or overlap, obey each rule set
//! (max span, same Beijing day, horizon clamp), and are never cut shorter than the rules need.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime};
use ordersync::planner::{self, WindowRules};
use ordersync::sources::{miaoyouquan, veapi};
use proptest::prelude::*;

use super::fuzz;

const INTERESTING_DAYS: &[(i32, u32, u32)] = &[
    (2024, 2, 28),
    (2024, 2, 29),
    (2024, 3, 1),
    (2023, 2, 28),
    (2023, 3, 1),
    (2000, 2, 29),
    (2100, 2, 28),
    (2100, 3, 1),
    (2023, 12, 31),
    (2024, 1, 1),
    (2024, 12, 31),
    (2025, 1, 1),
    (2024, 6, 30),
];

fn instant() -> impl Strategy<Value = NaiveDateTime> {
    let midnight = |(y, m, d): (i32, u32, u32)| {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("date")
    };
    prop_oneof![
        // On or next to a midnight around a leap day or a year's end.
        3 => (prop::sample::select(INTERESTING_DAYS), -2i64..=2, prop_oneof![Just(0i64), Just(1), Just(-1), Just(999), -86_400_000i64..86_400_000])
            .prop_map(move |(d, days, ms)| midnight(d) + Duration::days(days) + Duration::milliseconds(ms)),
        // Anywhere in 2000..2100, to the millisecond.
        2 => (946_684_800_000i64..4_102_444_800_000).prop_map(|ms| {
            DateTime::from_timestamp_millis(ms).expect("in range").naive_utc()
        }),
    ]
}

fn rules() -> impl Strategy<Value = (&'static str, WindowRules)> {
    let hours = |h: i64| Duration::hours(h);
    prop_oneof![
        Just(("veapi", veapi::window_rules())),
        Just(("miaoyouquan", miaoyouquan::window_rules())),
        Just((
            "unidesk-like",
            WindowRules {
                same_day: true,
                ..WindowRules::default()
            }
        )),
        (
            proptest::option::of(1i64..=4800),
            any::<bool>(),
            proptest::option::of(24i64..=9600)
        )
            .prop_map(move |(span, same_day, horizon)| {
                (
                    "random",
                    WindowRules {
                        max_span: span.map(hours),
                        same_day,
                        horizon: horizon.map(hours),
                    },
                )
            }),
    ]
}

fn next_midnight(t: NaiveDateTime) -> NaiveDateTime {
    (t.date() + Duration::days(1)).and_time(NaiveTime::MIN)
}

#[test]
fn fuzz_planner_windows_tile_the_range_within_the_rules() {
    let ms = Duration::milliseconds(1);
    let strategy = (
        rules(),
        instant(),
        prop_oneof![1 => -5 * 86_400_000i64..=0, 8 => 1i64..=400 * 86_400_000],
        -30 * 86_400_000i64..=500 * 86_400_000,
    );
    let total = fuzz(
        "fuzz planner",
        3000,
        strategy,
        |((kind, rules), from, span_ms, now_ms)| {
            let to = from + Duration::milliseconds(span_ms);
            let now = from + Duration::milliseconds(now_ms);
            let plan = planner::plan(&rules, from, to, now);
            let start = match (rules.horizon, plan.clamped) {
                (Some(h), Some(c)) => {
                    prop_assert_eq!(c.requested, from);
                    prop_assert!(
                        c.effective > from && c.effective >= now - h,
                        "{kind}: {c:?}"
                    );
                    prop_assert!(
                        c.effective <= now - h + Duration::hours(1),
                        "{kind}: clamped too far: {c:?}"
                    );
                    c.effective
                }
                (Some(h), None) => {
                    prop_assert!(
                        from >= now - h,
                        "{kind}: {from} is beyond the horizon and not clamped"
                    );
                    from
                }
                (None, c) => {
                    prop_assert!(c.is_none(), "{kind}: clamped without a horizon");
                    from
                }
            };
            let w = &plan.windows;
            if start >= to {
                prop_assert!(w.is_empty(), "{kind}: windows for an empty range: {w:?}");
                return Ok(());
            }
            prop_assert!(!w.is_empty(), "{kind}: no windows for {start} .. {to}");
            prop_assert_eq!(w[0].start, start);
            prop_assert_eq!(w[w.len() - 1].end, to);
            for pair in w.windows(2) {
                prop_assert_eq!(pair[0].end, pair[1].start, "{}: gap or overlap", kind);
            }
            for x in w {
                prop_assert!(x.start < x.end, "{kind}: empty window {x:?}");
                let mut limit = to;
                if let Some(span) = rules.max_span {
                    prop_assert!(x.end - x.start <= span, "{kind}: {x:?} longer than {span}");
                    limit = limit.min(x.start + span);
                }
                if rules.same_day {
                    prop_assert_eq!(
                        x.start.date(),
                        (x.end - ms).date(),
                        "{}: {:?} crosses a day",
                        kind,
                        x
                    );
                    limit = limit.min(next_midnight(x.start));
                }
                if let Some(h) = rules.horizon {
                    prop_assert!(
                        x.start >= now - h,
                        "{kind}: {x:?} starts beyond the horizon"
                    );
                }
                prop_assert_eq!(
                    x.end,
                    limit,
                    "{}: {:?} is cut shorter than its rules need",
                    kind,
                    x
                );
            }
            Ok(())
        },
    );
    println!("planner fuzz: {total} cases");
}
