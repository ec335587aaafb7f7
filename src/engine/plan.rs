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

/// A backfill's range, its end no later than what has settled; `None` for the live track (and a
/// rescan, whose range also depends on the live watermark: see [`rescan_range`]).
pub fn backfill_range(
    mode: Mode,
    settled: NaiveDateTime,
) -> Option<(NaiveDateTime, NaiveDateTime)> {
    match mode {
        Mode::Live => None,
        Mode::Backfill { from, to } => Some((from, to.unwrap_or(settled).min(settled))),
        Mode::Rescan { .. } => None,
    }
}

/// A rescan's range at `now`: from `since` ago (not before the pipeline's `start`) to the live
/// watermark less the lookback (not after what has settled). What lies after that end the next live
/// sync re-reads anyway, so every change a rescan finds is one the live syncs had missed for good —
/// the figure an operator sets `lookback` from. Without a live watermark the range is empty.
pub fn rescan_range(
    p: &Pipeline,
    since: std::time::Duration,
    live_watermark: Option<NaiveDateTime>,
    settled: NaiveDateTime,
    now: NaiveDateTime,
) -> (NaiveDateTime, NaiveDateTime) {
    let from = now - chrono_of(since);
    let from = from.with_nanosecond(0).unwrap_or(from).max(p.start);
    let to = live_watermark.map_or(from, |w| (w - chrono_of(p.lookback)).min(settled));
    (from, to.max(from))
}

/// The run's windows from where its track stands: first the windows an earlier run planned and did
/// not finish (from their saved cursors), then new ones after them — the live track's from its
/// watermark less the lookback, a ranged track's (`range`: a backfill, a rescan pass) from its
/// watermark to the range's end — cut finer when the pipeline reads several at once
/// ([`split_for_workers`]). Pure: the same track, times and pipeline give the same plan.
pub fn plan_run(
    p: &Pipeline,
    range: Option<(NaiveDateTime, NaiveDateTime)>,
    track: &Track,
    settled: NaiveDateTime,
    now: NaiveDateTime,
) -> RunPlan {
    let mut windows: Vec<(Window, String)> = track
        .in_progress
        .iter()
        .map(|(w, cursor)| (*w, sources::resume_cursor(p.source(), cursor)))
        .collect();
    let resume_end = track.planned_until;
    let span = match range {
        None => resume_end
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
        Some((from, end)) => {
            let start = resume_end.or(track.watermark).unwrap_or(from).max(from);
            Some((start, end))
        }
    };
    let plan = match span {
        Some((from, to)) => planner::plan(&p.source().window_rules(), from, to, now),
        None => Default::default(),
    };
    let first = sources::first_cursor(p.source());
    let new = match p.source().is_snapshot() {
        true => plan.windows,
        false => split_for_workers(plan.windows, p.concurrency),
    };
    windows.extend(new.into_iter().map(|w| (w, first.to_string())));
    RunPlan {
        windows,
        clamp: plan.clamped,
    }
}

/// The shortest window [`split_for_workers`] cuts: shorter ones would cost a partly filled last page
/// each for little gain, and keep the short ranges of routine live syncs in one window.
const MIN_PIECE: Duration = Duration::days(7);

/// Cuts `windows` so that `workers` reading at once have about two each, no piece shorter than
/// [`MIN_PIECE`] (nor than a whole second, for upstreams with whole-second bounds). A window rule
/// is a maximum, so a piece of a window obeys every rule the window obeys; windows stay in order,
/// with no gap and no overlap. One worker, or enough windows already: unchanged.
pub fn split_for_workers(windows: Vec<Window>, workers: u32) -> Vec<Window> {
    let want = workers as usize * 2;
    if workers <= 1 || windows.len() >= want {
        return windows;
    }
    let total = windows
        .iter()
        .fold(Duration::zero(), |sum, w| sum + (w.end - w.start));
    let piece = (total / want as i32).max(MIN_PIECE);
    let piece = Duration::seconds(piece.num_seconds().max(1));
    let mut out = Vec::new();
    for w in windows {
        let mut start = w.start;
        while w.end - start > piece + piece / 2 {
            out.push(Window {
                start,
                end: start + piece,
            });
            start += piece;
        }
        out.push(Window { start, end: w.end });
    }
    out
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
            "unidesk" => "app_key = \"k\"\napp_secret = \"s\"",
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
            in_progress: vec![],
            planned_until: None,
        }
    }

    #[test]
    fn a_first_live_run_reads_from_start_in_windows_the_source_allows() {
        let p = pipeline("veapi", "2024-01-01");
        let now = t("2024-07-01 12:00:00");
        let settled = settled_until(&p, now);
        assert_eq!(settled, t("2024-07-01 11:59:30"));
        let plan = plan_run(&p, None, &empty(), settled, now);
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
            in_progress: vec![(cut, "c42".into())],
            planned_until: Some(cut.end),
        };
        let plan = plan_run(&p, None, &track, settled_until(&p, now), now);
        assert_eq!(plan.windows[0], (cut, "c42".to_string()));
        assert_eq!(plan.windows[1].0.start, cut.end);
        assert_eq!(plan.windows[1].1, "0");
        // Without a cut-off window: from the watermark less the lookback.
        let track = Track {
            watermark: Some(t("2024-07-01 10:00:00")),
            in_progress: vec![],
            planned_until: None,
        };
        let plan = plan_run(&p, None, &track, settled_until(&p, now), now);
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
            in_progress: vec![],
            planned_until: None,
        };
        let plan = plan_run(&p, backfill_range(mode, settled), &track, settled, now);
        assert_eq!(plan.windows[0].0.start, t("2024-05-01"));
        assert_eq!(plan.windows.last().unwrap().0.end, settled);
        assert_eq!(backfill_range(Mode::Live, settled), None);
    }

    #[test]
    fn a_rescan_reads_from_since_ago_to_what_no_live_sync_reads_again() {
        let p = pipeline("veapi", "2024-01-01");
        let now = t("2024-07-01 12:00:00");
        let settled = settled_until(&p, now);
        let since = std::time::Duration::from_secs(15 * 86_400);
        let live = Some(t("2024-07-01 11:50:00"));
        // lookback 2h: the live sync reads from 09:50 again on its next run.
        assert_eq!(
            rescan_range(&p, since, live, settled, now),
            (t("2024-06-16 12:00:00"), t("2024-07-01 09:50:00"))
        );
        // Not before `start`; empty without a live watermark, or one not past from + lookback.
        let young = pipeline("veapi", "2024-06-25");
        assert_eq!(
            rescan_range(&young, since, live, settled, now).0,
            t("2024-06-25")
        );
        let (from, to) = rescan_range(&p, since, None, settled, now);
        assert_eq!(from, to);
        let (from, to) = rescan_range(&p, since, Some(t("2024-06-16 13:00:00")), settled, now);
        assert_eq!(from, to);
        // A pass's windows obey the source's rules like any other (unidesk: day by day).
        let ud = pipeline("unidesk", "2024-01-01");
        let range = rescan_range(&ud, since, live, settled_until(&ud, now), now);
        let plan = plan_run(&ud, Some(range), &empty(), settled, now);
        assert_eq!(plan.windows.len(), 16);
        assert!(plan
            .windows
            .iter()
            .all(|(w, _)| w.start.date() == (w.end - Duration::milliseconds(1)).date()));
    }

    #[test]
    fn windows_are_cut_for_workers_in_order_with_no_gap_and_no_piece_under_a_week() {
        let w = |a: &str, b: &str| Window {
            start: t(a),
            end: t(b),
        };
        let year = vec![
            w("2024-01-01", "2024-03-31"),
            w("2024-03-31", "2024-06-29"),
            w("2024-06-29", "2024-09-27"),
            w("2024-09-27", "2024-12-26"),
        ];
        let cut = split_for_workers(year.clone(), 8);
        assert!(cut.len() >= 16, "{}", cut.len());
        assert_eq!(
            (cut[0].start, cut.last().unwrap().end),
            (t("2024-01-01"), t("2024-12-26"))
        );
        for pair in cut.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "no gap, no overlap");
        }
        assert!(cut.iter().all(|w| w.end - w.start >= MIN_PIECE));
        assert!(cut.iter().all(|w| w.end - w.start <= Duration::days(90)));
        assert_eq!(
            split_for_workers(year.clone(), 1),
            year,
            "one worker: as planned"
        );
        let live = vec![w("2024-07-01 08:00:00", "2024-07-01 10:00:00")];
        assert_eq!(
            split_for_workers(live.clone(), 8),
            live,
            "a live sync's range stays whole"
        );
    }

    #[test]
    fn a_start_older_than_upstream_keeps_is_clamped_and_said() {
        let p = pipeline("miaoyouquan", "2024-01-01");
        let now = t("2024-07-01 12:00:00");
        let plan = plan_run(&p, None, &empty(), settled_until(&p, now), now);
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
