//! Tracks: the resumable state of one (pipeline, scope) in `checkpoints`, and the finished time
//! ranges in `coverage`.
//!
//! Invariant: a watermark never moves back as pages commit, and a range is in `coverage` only once
//! its window's last page committed — both are written in that page's transaction (see
//! `commit_page`). Ranges of one (pipeline, scope) never overlap or touch: a new one is merged with
//! its neighbours. Two deliberate exceptions live in `store::late`.

use chrono::NaiveDateTime;

use super::sql::{args, Begin, Db, Tx};
use super::StoreError;
use crate::planner::Window;
use crate::timefmt;

/// The resumable state of one (pipeline, scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub watermark: Option<NaiveDateTime>,
    /// The windows planned and not finished, by start, each with the cursor of its next page.
    pub in_progress: Vec<(Window, String)>,
    /// The end of the furthest window planned (finished ones ahead of the watermark included):
    /// where a resumed run plans new windows from.
    pub planned_until: Option<NaiveDateTime>,
}

/// What the checkpoint says once this page is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// More pages in this window; the next one is asked with `cursor`.
    Next { window: Window, cursor: String },
    /// This was the window's last page: it is finished.
    WindowDone { window: Window },
}

pub(super) fn parse_time_col(text: Option<String>) -> Option<NaiveDateTime> {
    text.as_deref().and_then(timefmt::parse_user_time)
}

/// Loads the track, creating it (empty) when it does not exist yet. A backfill "up to now" run again
/// later extends its range to the new now.
pub fn ensure_track(
    db: &mut dyn Db,
    pipeline: &str,
    scope: &str,
    range: Option<(NaiveDateTime, NaiveDateTime)>,
) -> Result<Track, StoreError> {
    db.execute(
        "INSERT INTO checkpoints (pipeline, scope, range_start, range_end, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (pipeline, scope) DO UPDATE SET \
         range_end = CASE WHEN excluded.range_end > checkpoints.range_end \
         THEN excluded.range_end ELSE checkpoints.range_end END",
        args![
            pipeline,
            scope,
            &range.map(|r| timefmt::fmt_millis(r.0)),
            &range.map(|r| timefmt::fmt_millis(r.1)),
            &timefmt::fmt_seconds(timefmt::beijing_now()),
        ],
    )?;
    let watermark = watermark(db, pipeline, scope)?;
    let mut in_progress = Vec::new();
    for row in db.query(
        "SELECT window_start, window_end, cursor FROM track_windows \
         WHERE pipeline = ?1 AND scope = ?2 AND NOT done ORDER BY window_start",
        args![pipeline, scope],
    )? {
        let window = (|| {
            Some(Window {
                start: parse_time_col(row.get(0).ok()?)?,
                end: parse_time_col(row.get(1).ok()?)?,
            })
        })();
        if let Some(window) = window {
            in_progress.push((window, row.get(2)?));
        }
    }
    let planned_until: Option<String> = db.query_value(
        "SELECT MAX(window_end) FROM track_windows WHERE pipeline = ?1 AND scope = ?2",
        args![pipeline, scope],
    )?;
    Ok(Track {
        watermark,
        in_progress,
        planned_until: parse_time_col(planned_until),
    })
}

/// Records the windows a run has planned, each with its first cursor, before any is fetched (a
/// window already there keeps its cursor). From now on the watermark cannot pass one of them until
/// it is finished, whichever order windows read at once finish in.
pub fn register_windows(
    db: &mut dyn Db,
    pipeline: &str,
    scope: &str,
    windows: &[(Window, String)],
) -> Result<(), StoreError> {
    let mut tx = Tx::begin(db, Begin::Write)?;
    for (w, cursor) in windows {
        tx.execute(
            "INSERT INTO track_windows (pipeline, scope, window_start, window_end, cursor) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            args![
                pipeline,
                scope,
                &timefmt::fmt_millis(w.start),
                &timefmt::fmt_millis(w.end),
                cursor
            ],
        )?;
    }
    tx.commit()
}

/// Forgets the windows of a track (a new rescan pass, a rewind): the next run plans afresh.
pub(super) fn forget_windows(
    db: &mut dyn Db,
    pipeline: &str,
    scope: &str,
) -> Result<(), StoreError> {
    db.execute(
        "DELETE FROM track_windows WHERE pipeline = ?1 AND scope = ?2",
        args![pipeline, scope],
    )?;
    Ok(())
}

/// The watermark of one track, if it has one.
pub fn watermark(
    db: &mut dyn Db,
    pipeline: &str,
    scope: &str,
) -> Result<Option<NaiveDateTime>, StoreError> {
    let text: Option<String> = match db.query_opt(
        "SELECT watermark FROM checkpoints WHERE pipeline = ?1 AND scope = ?2",
        args![pipeline, scope],
    )? {
        Some(row) => row.get(0)?,
        None => None,
    };
    Ok(parse_time_col(text))
}

/// Writes where the track stands once a page is committed, in that page's transaction: the cursor
/// of its window's next page, or, when the window is done, the window marked done and merged into
/// coverage, and the watermark moved to where the first window not done starts (or, when every one
/// is done, to the end of the furthest) — never back; done windows behind it are forgotten.
/// Returns the windows finished (0 or 1).
pub(super) fn save_progress(
    db: &mut dyn Db,
    pipeline: &str,
    scope: &str,
    progress: &Progress,
    now: &str,
) -> Result<i64, StoreError> {
    match progress {
        Progress::Next { window, cursor } => {
            db.execute(
                "INSERT INTO track_windows (pipeline, scope, window_start, window_end, cursor) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (pipeline, scope, window_start) DO UPDATE SET \
                 window_end = excluded.window_end, cursor = excluded.cursor",
                args![
                    pipeline,
                    scope,
                    &timefmt::fmt_millis(window.start),
                    &timefmt::fmt_millis(window.end),
                    cursor,
                ],
            )?;
            db.execute(
                "UPDATE checkpoints SET updated_at = ?3 WHERE pipeline = ?1 AND scope = ?2",
                args![pipeline, scope, now],
            )?;
            Ok(0)
        }
        Progress::WindowDone { window } => {
            db.execute(
                "INSERT INTO track_windows (pipeline, scope, window_start, window_end, cursor, done) \
                 VALUES (?1, ?2, ?3, ?4, '', TRUE) ON CONFLICT (pipeline, scope, window_start) DO UPDATE SET \
                 done = TRUE",
                args![
                    pipeline,
                    scope,
                    &timefmt::fmt_millis(window.start),
                    &timefmt::fmt_millis(window.end)
                ],
            )?;
            // The watermark moves to the start of the first window not done, else to the end of
            // the furthest, and never back: the CASE is `MAX` of the two, which the engines spell
            // differently.
            db.execute(
                "UPDATE checkpoints SET watermark = CASE WHEN watermark IS NULL OR watermark < next.at \
                     THEN next.at ELSE watermark END, updated_at = ?3 \
                 FROM (SELECT COALESCE( \
                     (SELECT MIN(window_start) FROM track_windows WHERE pipeline = ?1 AND scope = ?2 AND NOT done), \
                     (SELECT MAX(window_end) FROM track_windows WHERE pipeline = ?1 AND scope = ?2)) AS at) AS next \
                 WHERE pipeline = ?1 AND scope = ?2",
                args![pipeline, scope, now],
            )?;
            db.execute(
                "DELETE FROM track_windows WHERE pipeline = ?1 AND scope = ?2 AND done \
                 AND window_end <= (SELECT watermark FROM checkpoints WHERE pipeline = ?1 AND scope = ?2)",
                args![pipeline, scope],
            )?;
            add_coverage(db, pipeline, scope, window)?;
            Ok(1)
        }
    }
}

/// Merges `[start, end)` into the pipeline's finished ranges of this scope.
fn add_coverage(
    db: &mut dyn Db,
    pipeline: &str,
    scope: &str,
    w: &Window,
) -> Result<(), StoreError> {
    let (mut start, mut end) = (timefmt::fmt_millis(w.start), timefmt::fmt_millis(w.end));
    let touching = db.query(
        "SELECT range_start, range_end FROM coverage WHERE pipeline = ?1 AND scope = ?2 \
         AND range_start <= ?4 AND range_end >= ?3",
        args![pipeline, scope, &start, &end],
    )?;
    for row in touching {
        let (s, e): (String, String) = (row.get(0)?, row.get(1)?);
        db.execute(
            "DELETE FROM coverage WHERE pipeline = ?1 AND scope = ?2 AND range_start = ?3",
            args![pipeline, scope, &s],
        )?;
        start = start.min(s);
        end = end.max(e);
    }
    db.execute(
        "INSERT INTO coverage (pipeline, scope, range_start, range_end) VALUES (?1, ?2, ?3, ?4)",
        args![pipeline, scope, &start, &end],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{commit, count, on_both_engines, t, TestDb};

    on_both_engines!(
        windows_finishing_out_of_order_never_take_the_watermark_past_an_unfinished_one,
        window_done_moves_watermark_and_merges_coverage,
    );

    fn windows_finishing_out_of_order_never_take_the_watermark_past_an_unfinished_one(
        db: &mut TestDb,
        run: i64,
    ) {
        let day = |d: u32| t(&format!("2024-01-{d:02}"));
        let w = |a: u32, b: u32| Window {
            start: day(a),
            end: day(b),
        };
        let planned: Vec<(Window, String)> = [w(1, 3), w(3, 5), w(5, 7)]
            .map(|w| (w, "0".to_string()))
            .to_vec();
        register_windows(db, "p", "live", &planned).unwrap();
        // Registering again (a resumed run) keeps the saved cursors.
        commit(
            db,
            run,
            vec![],
            Progress::Next {
                window: w(1, 3),
                cursor: "c9".into(),
            },
        );
        register_windows(db, "p", "live", &planned).unwrap();
        let track = ensure_track(db, "p", "live", None).unwrap();
        assert_eq!(track.in_progress[0], (w(1, 3), "c9".to_string()));
        assert_eq!(track.in_progress.len(), 3);
        commit(db, run, vec![], Progress::WindowDone { window: w(3, 5) });
        assert_eq!(
            watermark(db, "p", "live").unwrap(),
            Some(day(1)),
            "not past 1..3"
        );
        commit(db, run, vec![], Progress::WindowDone { window: w(1, 3) });
        assert_eq!(watermark(db, "p", "live").unwrap(), Some(day(5)));
        commit(db, run, vec![], Progress::WindowDone { window: w(5, 7) });
        let track = ensure_track(db, "p", "live", None).unwrap();
        assert_eq!((track.watermark, track.in_progress), (Some(day(7)), vec![]));
        assert_eq!(
            count(db, "SELECT COUNT(*) FROM coverage"),
            1,
            "merged as they finished"
        );
        // The last window finishing first: once all are, the watermark is its end, not the end
        // of the one that finished last.
        let planned: Vec<(Window, String)> = [w(7, 9), w(9, 11), w(11, 13)]
            .map(|w| (w, "0".to_string()))
            .to_vec();
        register_windows(db, "p", "live", &planned).unwrap();
        for done in [w(11, 13), w(7, 9), w(9, 11)] {
            commit(db, run, vec![], Progress::WindowDone { window: done });
        }
        let track = ensure_track(db, "p", "live", None).unwrap();
        assert_eq!(
            (track.watermark, track.planned_until),
            (Some(day(13)), None)
        );
    }

    fn window_done_moves_watermark_and_merges_coverage(db: &mut TestDb, run: i64) {
        let a = Window {
            start: t("2024-01-01"),
            end: t("2024-01-02"),
        };
        let b = Window {
            start: t("2024-01-02"),
            end: t("2024-01-03"),
        };
        let far = Window {
            start: t("2024-02-01"),
            end: t("2024-02-02"),
        };
        commit(
            db,
            run,
            vec![],
            Progress::Next {
                window: a,
                cursor: "x".into(),
            },
        );
        let track = ensure_track(db, "p", "live", None).unwrap();
        assert_eq!(track.in_progress, vec![(a, "x".to_string())]);
        assert_eq!(track.watermark, None);
        commit(db, run, vec![], Progress::WindowDone { window: a });
        commit(db, run, vec![], Progress::WindowDone { window: b });
        commit(db, run, vec![], Progress::WindowDone { window: far });
        let track = ensure_track(db, "p", "live", None).unwrap();
        assert_eq!(track.in_progress, vec![]);
        assert_eq!(track.watermark, Some(t("2024-02-02")));
        let ranges: Vec<(String, String)> = db
            .query_map(
                "SELECT range_start, range_end FROM coverage ORDER BY range_start",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(ranges.len(), 2, "{ranges:?}");
        assert_eq!(ranges[0].0, "2024-01-01 00:00:00.000");
        assert_eq!(ranges[0].1, "2024-01-03 00:00:00.000");
    }
}
