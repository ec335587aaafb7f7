//! The two deliberate exceptions to a track only moving forward, each its own transaction:
//! `rewind_live` moves the live watermark back on an operator's word (coverage stays: it says what
//! was read, not what will be), and a new rescan pass (`begin_rescan_pass`) starts the `rescan`
//! track afresh.

use super::runs::running_elsewhere;
use super::sql::{args, Begin, Db, Tx};
use super::tracks::{ensure_track, forget_windows, parse_time_col, watermark, Track};
use super::StoreError;
use crate::timefmt;
use chrono::NaiveDateTime;

/// The scope of the rescan track: one per pipeline, a pass at a time.
pub const RESCAN_SCOPE: &str = "rescan";

/// Starts or resumes a pass of the pipeline's rescan track over `[from, to)`, and returns the
/// track with the pass's range. A pass that did not finish (killed, interrupted, failed) and
/// reaches back at least to `from` is resumed from its checkpoint, its end moved on to `to`;
/// otherwise a new pass starts empty, and the previous pass's coverage is dropped, so the track's
/// coverage is always what the current pass has read.
pub fn begin_rescan_pass(
    db: &mut dyn Db,
    pipeline: &str,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> Result<(Track, (NaiveDateTime, NaiveDateTime)), StoreError> {
    let mut tx = Tx::begin(db, Begin::Write)?;
    let stored: Option<(Option<String>, Option<String>, Option<String>)> = match tx.query_opt(
        "SELECT range_start, range_end, watermark FROM checkpoints WHERE pipeline = ?1 AND scope = ?2",
        args![pipeline, RESCAN_SCOPE],
    )? {
        Some(row) => Some((row.get(0)?, row.get(1)?, row.get(2)?)),
        None => None,
    };
    let resumable = stored.and_then(|(start, end, watermark)| {
        let (start, end) = (parse_time_col(start)?, parse_time_col(end)?);
        let finished = parse_time_col(watermark).is_some_and(|w| w >= end) || start >= end;
        (!finished && start <= from).then_some((start, end.max(to)))
    });
    let now = timefmt::fmt_seconds(timefmt::beijing_now());
    let range = match resumable {
        Some(range) => {
            tx.execute(
                "UPDATE checkpoints SET range_end = ?3, updated_at = ?4 WHERE pipeline = ?1 AND scope = ?2",
                args![pipeline, RESCAN_SCOPE, &timefmt::fmt_millis(range.1), &now],
            )?;
            range
        }
        None => {
            tx.execute(
                "INSERT INTO checkpoints (pipeline, scope, range_start, range_end, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (pipeline, scope) DO UPDATE SET \
                 range_start = excluded.range_start, range_end = excluded.range_end, watermark = NULL, \
                 updated_at = excluded.updated_at",
                args![
                    pipeline,
                    RESCAN_SCOPE,
                    &timefmt::fmt_millis(from),
                    &timefmt::fmt_millis(to.max(from)),
                    &now
                ],
            )?;
            tx.execute(
                "DELETE FROM coverage WHERE pipeline = ?1 AND scope = ?2",
                args![pipeline, RESCAN_SCOPE],
            )?;
            forget_windows(&mut *tx, pipeline, RESCAN_SCOPE)?;
            (from, to.max(from))
        }
    };
    tx.commit()?;
    Ok((ensure_track(db, pipeline, RESCAN_SCOPE, None)?, range))
}

/// What `rewind_live` did, or why it did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewind {
    /// The live watermark moved from `from` back to `to`; the run recording it is `run_id`.
    Done {
        from: NaiveDateTime,
        to: NaiveDateTime,
        run_id: i64,
    },
    /// The live track has no watermark yet: its first sync reads from `start` anyway.
    NothingYet,
    /// `to` is not before the watermark: a rewind never moves it forward.
    NotBack { watermark: NaiveDateTime },
}

/// Moves the pipeline's live watermark back to `to` and records it in `runs` as a `rewind` run
/// whose `detail` says from where, to where and who asked. The window in progress is dropped: the
/// next live sync reads from `to` (less the lookback). Coverage is left as it is. Refused (`Busy`)
/// while any run of the pipeline is in progress in another live process.
pub fn rewind_live(
    db: &mut dyn Db,
    pipeline: &str,
    to: NaiveDateTime,
    who: &str,
) -> Result<Rewind, StoreError> {
    let mut tx = Tx::begin(db, Begin::Write)?;
    if let Some((scope, pid)) = running_elsewhere(&mut *tx, pipeline, None)? {
        return Err(StoreError::Busy {
            pipeline: pipeline.into(),
            scope,
            pid,
        });
    }
    let Some(from) = watermark(&mut *tx, pipeline, "live")? else {
        return Ok(Rewind::NothingYet);
    };
    if to >= from {
        return Ok(Rewind::NotBack { watermark: from });
    }
    let now = timefmt::fmt_millis(timefmt::beijing_now());
    tx.execute(
        "UPDATE checkpoints SET watermark = ?2, updated_at = ?3 WHERE pipeline = ?1 AND scope = 'live'",
        args![pipeline, &timefmt::fmt_millis(to), &now],
    )?;
    forget_windows(&mut *tx, pipeline, "live")?;
    let detail = format!(
        "live watermark {} → {}, by {who}",
        timefmt::fmt_seconds(from),
        timefmt::fmt_seconds(to)
    );
    let run_id: i64 = tx.query_value(
        "INSERT INTO runs (pipeline, command, scope, pid, started_at, finished_at, outcome, detail) \
         VALUES (?1, 'rewind', 'live', ?2, ?3, ?3, 'ok', ?4) RETURNING id",
        args![pipeline, i64::from(std::process::id()), &now, &detail],
    )?;
    tx.commit()?;
    Ok(Rewind::Done { from, to, run_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::Window;
    use crate::store::test_support::{commit, count, on_both_engines, t, text, TestDb};
    use crate::store::tracks::save_progress;
    use crate::store::Progress;

    on_both_engines!(
        an_unfinished_rescan_pass_resumes_and_a_finished_one_starts_anew,
        rewind_moves_only_back_and_records_who,
    );

    fn an_unfinished_rescan_pass_resumes_and_a_finished_one_starts_anew(
        db: &mut TestDb,
        _run: i64,
    ) {
        let (track, range) = begin_rescan_pass(db, "p", t("2024-01-01"), t("2024-01-10")).unwrap();
        assert_eq!(
            (track.watermark, range),
            (None, (t("2024-01-01"), t("2024-01-10")))
        );
        // Half-way: one window done, one in progress.
        let mut tx = Tx::begin(db, Begin::Write).unwrap();
        let first = Window {
            start: t("2024-01-01"),
            end: t("2024-01-05"),
        };
        save_progress(
            &mut *tx,
            "p",
            RESCAN_SCOPE,
            &Progress::WindowDone { window: first },
            "now",
        )
        .unwrap();
        let second = Window {
            start: t("2024-01-05"),
            end: t("2024-01-10"),
        };
        let cut = Progress::Next {
            window: second,
            cursor: "c7".into(),
        };
        save_progress(&mut *tx, "p", RESCAN_SCOPE, &cut, "now").unwrap();
        tx.commit().unwrap();
        // The next rescan, a day later, resumes the pass (its start is older than asked).
        let (track, range) = begin_rescan_pass(db, "p", t("2024-01-02"), t("2024-01-11")).unwrap();
        assert_eq!(range, (t("2024-01-01"), t("2024-01-11")));
        assert_eq!(track.watermark, Some(t("2024-01-05")));
        assert_eq!(track.in_progress, vec![(second, "c7".to_string())]);
        // Asked to reach further back than the pass does: a new pass.
        let (track, range) = begin_rescan_pass(db, "p", t("2023-12-20"), t("2024-01-11")).unwrap();
        assert_eq!(range, (t("2023-12-20"), t("2024-01-11")));
        assert_eq!((track.watermark, track.in_progress), (None, vec![]));
        assert_eq!(
            count(db, "SELECT COUNT(*) FROM coverage WHERE scope = 'rescan'"),
            0,
            "a new pass starts with no coverage"
        );
        // Finished: the next one starts anew even from a later start.
        let mut tx = Tx::begin(db, Begin::Write).unwrap();
        let all = Window {
            start: t("2023-12-20"),
            end: t("2024-01-11"),
        };
        save_progress(
            &mut *tx,
            "p",
            RESCAN_SCOPE,
            &Progress::WindowDone { window: all },
            "now",
        )
        .unwrap();
        tx.commit().unwrap();
        let (track, range) = begin_rescan_pass(db, "p", t("2024-01-01"), t("2024-01-12")).unwrap();
        assert_eq!((track.watermark, range.0), (None, t("2024-01-01")));
        // The live track was never touched.
        assert_eq!(watermark(db, "p", "live").unwrap(), None);
    }

    fn rewind_moves_only_back_and_records_who(db: &mut TestDb, run: i64) {
        assert_eq!(
            rewind_live(db, "p", t("2024-01-01"), "x").unwrap(),
            Rewind::NothingYet
        );
        let w = Window {
            start: t("2024-01-01"),
            end: t("2024-01-05"),
        };
        commit(db, run, vec![], Progress::WindowDone { window: w });
        assert_eq!(
            rewind_live(db, "p", t("2024-01-06"), "x").unwrap(),
            Rewind::NotBack {
                watermark: t("2024-01-05")
            }
        );
        let Rewind::Done { from, to, run_id } =
            rewind_live(db, "p", t("2024-01-02"), "anna").unwrap()
        else {
            panic!("not rewound")
        };
        assert_eq!((from, to), (t("2024-01-05"), t("2024-01-02")));
        assert_eq!(watermark(db, "p", "live").unwrap(), Some(t("2024-01-02")));
        let detail: String = db
            .query_value("SELECT detail FROM runs WHERE id = ?1", args![run_id])
            .unwrap();
        assert_eq!(
            detail,
            "live watermark 2024-01-05 00:00:00 → 2024-01-02 00:00:00, by anna"
        );
        assert_eq!(
            text(db, "SELECT range_end FROM coverage"),
            "2024-01-05 00:00:00.000",
            "coverage is not un-covered"
        );
    }
}
