//! A run's plan, before any I/O: the end of what has settled, a backfill's range, and the windows
//! to read from where the track stands (the window a run was cut off in first). Pure functions: the
//! same track, times and pipeline give the same plan.

use chrono::{Duration, NaiveDateTime, Timelike};

use super::{chrono_of, Mode};
use crate::config::Pipeline;
use crate::planner::{self, Clamp, Window};
use crate::sources;
use crate::store::Track;

/// What a run will read: its windows in order, each with the cursor it starts at (the window a
/// previous run was cut off in first, from its saved cursor), and the clamp of a start older
/// than upstream keeps, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    pub windows: Vec<(Window, String)>,
    pub clamp: Option<Clamp>,
}

/// The end of what a run may ask for at `now`: less the settle lag (none for a snapshot, which is
/// complete as of the moment it is taken), on a whole second — an upstream with inclusive
/// whole-second bounds (veapi) is asked up to the second before a window's end, so a window ending
/// mid-second would be marked finished for part of a second nobody asked for.
pub fn settled_until(p: &Pipeline, now: NaiveDateTime) -> NaiveDateTime {
    let settle_lag = if p.source().is_snapshot() {
        Duration::zero()
    } else {
        chrono_of(p.settle_lag)
    };
    let settled = now - settle_lag;
    settled.with_nanosecond(0).unwrap_or(settled)
}

/// A backfill's range, its end no later than what has settled; `None` for the live track.
pub fn backfill_range(
    mode: Mode,
    settled: NaiveDateTime,
) -> Option<(NaiveDateTime, NaiveDateTime)> {
    match mode {
        Mode::Live => None,
        Mode::Backfill { from, to } => Some((from, to.unwrap_or(settled).min(settled))),
    }
}

/// The run's windows from where its track stands. Pure: the same track, times and pipeline give
/// the same plan.
pub fn plan_run(
    p: &Pipeline,
    mode: Mode,
    track: &Track,
    settled: NaiveDateTime,
    now: NaiveDateTime,
) -> RunPlan {
    let mut windows: Vec<(Window, String)> = Vec::new();
    let resume_end = track.in_progress.as_ref().map(|(w, _)| w.end);
    if let Some((w, cursor)) = &track.in_progress {
        windows.push((*w, sources::resume_cursor(p.source(), cursor)));
    }
    let span = match mode {
        Mode::Live => resume_end
            .or_else(|| {
                planner::live_range(
                    p.start,
                    track.watermark,
                    chrono_of(p.lookback),
                    Duration::zero(),
                    settled,
                )
                .map(|r| r.0)
            })
            .map(|from| (from, settled)),
        Mode::Backfill { from, .. } => {
            let end = backfill_range(mode, settled).map_or(settled, |r| r.1);
            let start = resume_end.or(track.watermark).unwrap_or(from).max(from);
            Some((start, end))
        }
    };
    let plan = match span {
        Some((from, to)) => planner::plan(&p.source().window_rules(), from, to, now),
        None => Default::default(),
    };
    let first = sources::first_cursor(p.source());
    windows.extend(plan.windows.into_iter().map(|w| (w, first.to_string())));
    RunPlan {
        windows,
        clamp: plan.clamped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::timefmt;

    fn t(s: &str) -> NaiveDateTime {
        timefmt::parse_user_time(s).unwrap()
    }

    /// One pipeline of `source` starting at `start`, lookback 2h, settle lag 30s.
    fn pipeline(source: &str, start: &str) -> Pipeline {
        let auth = match source {
            "veapi" => "vekey = \"k\"",
            "miaoyouquan" => "apkey = \"a\"\ndou_key = \"d\"",
            _ => "user_id = \"u\"\ndy_uid = \"d\"",
        };
        let text = format!(
            "[[pipeline]]\nname = \"p\"\nsource = \"{source}\"\nendpoint = \"http://127.0.0.1:1/x\"\n\
             start = \"{start}\"\n[pipeline.auth]\n{auth}\n"
        );
        let config = Config::parse(&text, std::path::Path::new("test.toml")).unwrap();
        config.pipelines[0].clone()
    }

    fn empty() -> Track {
        Track {
            watermark: None,
            in_progress: None,
        }
    }

    #[test]
    fn a_first_live_run_reads_from_start_in_windows_the_source_allows() {
        let p = pipeline("veapi", "2024-01-01");
        let now = t("2024-07-01 12:00:00");
        let settled = settled_until(&p, now);
        assert_eq!(settled, t("2024-07-01 11:59:30"));
        let plan = plan_run(&p, Mode::Live, &empty(), settled, now);
        assert_eq!(plan.clamp, None);
        let first = &plan.windows[0];
        assert_eq!((first.0.start, first.1.as_str()), (t("2024-01-01"), "0"));
        assert_eq!(plan.windows.last().unwrap().0.end, settled);
        for pair in plan.windows.windows(2) {
            assert_eq!(pair[0].0.end, pair[1].0.start, "no gap, no overlap");
        }
        assert!(plan
            .windows
            .iter()
            .all(|(w, _)| w.end - w.start <= Duration::days(90)));
    }

    #[test]
    fn a_live_run_resumes_its_cut_off_window_then_goes_on_from_its_end() {
        let p = pipeline("veapi", "2024-01-01");
        let now = t("2024-07-01 12:00:00");
        let cut = Window {
            start: t("2024-06-30"),
            end: t("2024-07-01 10:00:00"),
        };
        let track = Track {
            watermark: Some(t("2024-06-30")),
            in_progress: Some((cut, "c42".into())),
        };
        let plan = plan_run(&p, Mode::Live, &track, settled_until(&p, now), now);
        assert_eq!(plan.windows[0], (cut, "c42".to_string()));
        assert_eq!(plan.windows[1].0.start, cut.end);
        assert_eq!(plan.windows[1].1, "0");
        // Without a cut-off window: from the watermark less the lookback.
        let track = Track {
            watermark: Some(t("2024-07-01 10:00:00")),
            in_progress: None,
        };
        let plan = plan_run(&p, Mode::Live, &track, settled_until(&p, now), now);
        assert_eq!(plan.windows[0].0.start, t("2024-07-01 08:00:00"));
    }

    #[test]
    fn a_backfill_goes_on_from_its_watermark_to_its_settled_end() {
        let p = pipeline("veapi", "2024-01-01");
        let now = t("2024-07-01 12:00:00");
        let mode = Mode::Backfill {
            from: t("2024-03-01"),
            to: Some(t("2024-09-01")),
        };
        let settled = settled_until(&p, now);
        assert_eq!(
            backfill_range(mode, settled),
            Some((t("2024-03-01"), settled)),
            "never past what has settled"
        );
        let track = Track {
            watermark: Some(t("2024-05-01")),
            in_progress: None,
        };
        let plan = plan_run(&p, mode, &track, settled, now);
        assert_eq!(plan.windows[0].0.start, t("2024-05-01"));
        assert_eq!(plan.windows.last().unwrap().0.end, settled);
        assert_eq!(backfill_range(Mode::Live, settled), None);
    }

    #[test]
    fn a_start_older_than_upstream_keeps_is_clamped_and_said() {
        let p = pipeline("miaoyouquan", "2024-01-01");
        let now = t("2024-07-01 12:00:00");
        let plan = plan_run(&p, Mode::Live, &empty(), settled_until(&p, now), now);
        let clamp = plan.clamp.expect("clamped");
        assert_eq!(clamp.requested, t("2024-01-01"));
        assert!(clamp.effective > now - Duration::days(90));
        assert_eq!(plan.windows[0].0.start, clamp.effective);
    }

    #[test]
    fn a_snapshot_is_settled_as_of_now() {
        let p = pipeline("sxt", "2024-01-01");
        let now = t("2024-07-01 12:00:00") + Duration::milliseconds(700);
        assert_eq!(settled_until(&p, now), t("2024-07-01 12:00:00"));
    }
}
