//! The read side: what `status`, `metrics`, `rejects` and the status page show, read from `runs`,
//! `checkpoints`, `coverage`, `rejected_rows` and the `daily_summary` view as typed rows.
//!
//! Invariant: nothing here writes, and this is the only SQL over those tables outside the store's
//! writers, so a schema change is made in one folder; the reports assemble and render these rows
//! and know no column names. Every function reads through [`Db`], so the reports read either engine.

use std::fmt::Write as _;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use super::pg::PgDb;
use super::sql::{args, Db, Param, Row};
use super::{Location, StoreError};

type Result<T> = std::result::Result<T, StoreError>;

/// A read-only connection for a scrape: it never migrates or writes, so it works beside the
/// daemon's writer and never holds the write lock. Blocking (PostgreSQL's client runs a runtime of
/// its own): call it from a plain thread or `spawn_blocking`.
pub fn open_read_only(location: &Location) -> Result<Box<dyn Db + Send>> {
    match location {
        Location::File(path) => {
            let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            conn.busy_timeout(Duration::from_secs(5))?;
            Ok(Box::new(conn))
        }
        Location::Postgres(target) => Ok(Box::new(PgDb::connect_for_reading(target)?)),
    }
}

// ---- status -------------------------------------------------------------------------------------

/// Every pipeline that has a track or a run.
pub fn pipelines(db: &mut dyn Db) -> Result<Vec<String>> {
    db.query_map(
        "SELECT DISTINCT pipeline FROM checkpoints UNION SELECT DISTINCT pipeline FROM runs",
        &[],
        |r| r.get(0),
    )
}

/// One run, as `status` shows the last one.
#[derive(Debug, Serialize)]
pub struct RunRow {
    pub command: String,
    pub scope: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: String,
    pub rows_seen: i64,
    pub rows_changed: i64,
    pub rows_rejected: i64,
    pub requests: i64,
    pub error: Option<String>,
    /// What a run that fetched nothing did (a rewind: from where, to where, who asked).
    pub detail: Option<String>,
}

const RUN_ROW_COLUMNS: &str = "command, scope, started_at, finished_at, outcome, rows_seen, \
     rows_changed, requests, error, rows_rejected, detail";

fn run_row(r: &Row) -> Result<RunRow> {
    Ok(RunRow {
        command: r.get(0)?,
        scope: r.get(1)?,
        started_at: r.get(2)?,
        finished_at: r.get(3)?,
        outcome: r.get(4)?,
        rows_seen: r.get(5)?,
        rows_changed: r.get(6)?,
        requests: r.get(7)?,
        error: r.get(8)?,
        rows_rejected: r.get(9)?,
        detail: r.get(10)?,
    })
}

/// The pipeline's most recent run, whatever its scope.
pub fn last_run(db: &mut dyn Db, pipeline: &str) -> Result<Option<RunRow>> {
    db.query_opt_map(
        &format!("SELECT {RUN_ROW_COLUMNS} FROM runs WHERE pipeline = ?1 ORDER BY id DESC LIMIT 1"),
        args![pipeline],
        run_row,
    )
}

/// The pipeline's most recent rescan run, finished or not.
pub fn last_rescan(db: &mut dyn Db, pipeline: &str) -> Result<Option<RunRow>> {
    db.query_opt_map(
        &format!(
            "SELECT {RUN_ROW_COLUMNS} FROM runs WHERE pipeline = ?1 AND command = 'rescan' \
             ORDER BY id DESC LIMIT 1"
        ),
        args![pipeline],
        run_row,
    )
}

/// The error of the pipeline's most recent run that had one.
pub fn last_error(db: &mut dyn Db, pipeline: &str) -> Result<Option<String>> {
    db.query_opt_map(
        "SELECT error FROM runs WHERE pipeline = ?1 AND error IS NOT NULL ORDER BY id DESC LIMIT 1",
        args![pipeline],
        |r| r.get(0),
    )
}

/// How many of the pipeline's rejected rows no good copy has resolved yet.
pub fn open_rejections(db: &mut dyn Db, pipeline: &str) -> Result<i64> {
    db.query_value(
        "SELECT COUNT(*) FROM rejected_rows WHERE pipeline = ?1 AND resolved_at IS NULL",
        args![pipeline],
    )
}

/// One finished range `[start, end)` of a track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoveredRange {
    pub scope: String,
    pub start: String,
    pub end: String,
}

/// The pipeline's finished ranges, by scope, earliest first.
pub fn coverage(db: &mut dyn Db, pipeline: &str) -> Result<Vec<CoveredRange>> {
    db.query_map("SELECT scope, range_start, range_end FROM coverage WHERE pipeline = ?1 ORDER BY scope, range_start", args![pipeline], |r| {
        Ok(CoveredRange {
            scope: r.get(0)?,
            start: r.get(1)?,
            end: r.get(2)?,
        })
    })
}

/// One track's checkpoint, without its cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    pub scope: String,
    pub range_start: Option<String>,
    pub range_end: Option<String>,
    pub watermark: Option<String>,
    /// The first of the windows planned and not finished, if any, and how many there are.
    pub window_start: Option<String>,
    pub window_end: Option<String>,
    pub windows_left: i64,
}

/// The pipeline's tracks: live first, then the backfills by scope.
pub fn checkpoints(db: &mut dyn Db, pipeline: &str) -> Result<Vec<CheckpointRow>> {
    db.query_map("SELECT c.scope, c.range_start, c.range_end, c.watermark, w.window_start, w.window_end, \
           (SELECT COUNT(*) FROM track_windows n WHERE n.pipeline = c.pipeline AND n.scope = c.scope \
              AND NOT n.done) \
         FROM checkpoints c LEFT JOIN track_windows w ON w.pipeline = c.pipeline AND w.scope = c.scope \
           AND w.window_start = (SELECT MIN(window_start) FROM track_windows f \
                                 WHERE f.pipeline = c.pipeline AND f.scope = c.scope AND NOT f.done) \
         WHERE c.pipeline = ?1 ORDER BY c.scope = 'live' DESC, c.scope", args![pipeline], |r| {
        Ok(CheckpointRow {
            scope: r.get(0)?,
            range_start: r.get(1)?,
            range_end: r.get(2)?,
            watermark: r.get(3)?,
            window_start: r.get(4)?,
            window_end: r.get(5)?,
            windows_left: r.get(6)?,
        })
    })
}

// ---- metrics ------------------------------------------------------------------------------------

/// How many of a pipeline's runs ended with one outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeCount {
    pub pipeline: String,
    pub outcome: String,
    pub runs: i64,
}

/// Finished (and abandoned) runs by pipeline and outcome, in that order; running ones are left out.
pub fn runs_by_outcome(db: &mut dyn Db) -> Result<Vec<OutcomeCount>> {
    db.query_map(
        "SELECT pipeline, outcome, COUNT(*) FROM runs WHERE outcome != 'running' \
         GROUP BY pipeline, outcome ORDER BY 1, 2",
        &[],
        |r| {
            Ok(OutcomeCount {
                pipeline: r.get(0)?,
                outcome: r.get(1)?,
                runs: r.get(2)?,
            })
        },
    )
}

/// A pipeline's run counters summed over all its runs, running ones included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTotals {
    pub pipeline: String,
    pub rows_seen: i64,
    pub rows_changed: i64,
    pub rows_rejected: i64,
    pub requests: i64,
    /// Of those, what rescans re-read and changed: the changes live syncs had missed.
    pub rescan_rows_seen: i64,
    pub rescan_rows_changed: i64,
}

/// Every pipeline's run counters, by pipeline: one query, so they all come from one snapshot.
pub fn run_totals(db: &mut dyn Db) -> Result<Vec<RunTotals>> {
    // A sum of BIGINTs is NUMERIC in PostgreSQL: cast back, as every count is read as one.
    db.query_map(
        "SELECT pipeline, CAST(SUM(rows_seen) AS BIGINT), CAST(SUM(rows_changed) AS BIGINT), \
         CAST(SUM(rows_rejected) AS BIGINT), CAST(SUM(requests) AS BIGINT), \
         CAST(SUM(CASE WHEN command = 'rescan' THEN rows_seen ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN command = 'rescan' THEN rows_changed ELSE 0 END) AS BIGINT) \
         FROM runs GROUP BY pipeline ORDER BY 1",
        &[],
        |r| {
            Ok(RunTotals {
                pipeline: r.get(0)?,
                rows_seen: r.get(1)?,
                rows_changed: r.get(2)?,
                rows_rejected: r.get(3)?,
                requests: r.get(4)?,
                rescan_rows_seen: r.get(5)?,
                rescan_rows_changed: r.get(6)?,
            })
        },
    )
}

/// A pipeline's live watermark, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveWatermark {
    pub pipeline: String,
    pub watermark: String,
}

/// The live tracks that have a watermark, by pipeline.
pub fn live_watermarks(db: &mut dyn Db) -> Result<Vec<LiveWatermark>> {
    db.query_map("SELECT pipeline, watermark FROM checkpoints WHERE scope = 'live' AND watermark IS NOT NULL ORDER BY 1", &[], |r| {
        Ok(LiveWatermark {
            pipeline: r.get(0)?,
            watermark: r.get(1)?,
        })
    })
}

// ---- health and the status page -----------------------------------------------------------------

/// A finished (or abandoned) run, as health reads the latest live one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedRun {
    pub outcome: String,
    pub finished_at: Option<String>,
}

/// What a pipeline's live runs say about its health.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveRuns {
    /// The most recent live run that is no longer running.
    pub last_finished: Option<FinishedRun>,
    /// When the most recent successful live run finished.
    pub last_ok_finished_at: Option<String>,
    /// Live runs that failed or were abandoned since the last successful one.
    pub failed_in_a_row: i64,
}

/// The pipeline's live runs as health needs them.
pub fn live_runs(db: &mut dyn Db, pipeline: &str) -> Result<LiveRuns> {
    let last_finished = db.query_opt_map(
        "SELECT outcome, finished_at FROM runs WHERE pipeline = ?1 AND scope = 'live' \
         AND outcome != 'running' ORDER BY id DESC LIMIT 1",
        args![pipeline],
        |r| {
            Ok(FinishedRun {
                outcome: r.get(0)?,
                finished_at: r.get(1)?,
            })
        },
    )?;
    let last_ok: Option<(i64, Option<String>)> = db.query_opt_map(
        "SELECT id, finished_at FROM runs WHERE pipeline = ?1 AND scope = 'live' AND outcome = 'ok' \
         ORDER BY id DESC LIMIT 1",
        args![pipeline],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let failed_in_a_row = db.query_value(
        "SELECT COUNT(*) FROM runs WHERE pipeline = ?1 AND scope = 'live' \
         AND outcome IN ('failed', 'abandoned') AND id > ?2",
        args![pipeline, last_ok.as_ref().map_or(0, |(id, _)| *id)],
    )?;
    Ok(LiveRuns {
        last_finished,
        last_ok_finished_at: last_ok.and_then(|(_, finished)| finished),
        failed_in_a_row,
    })
}

/// One run on the status page's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineRun {
    pub pipeline: String,
    pub scope: String,
    pub started_at: String,
    /// `None` while it runs.
    pub finished_at: Option<String>,
    pub outcome: String,
}

/// Every run still going or that finished at or after `since`, by pipeline, oldest first.
pub fn runs_since(db: &mut dyn Db, since: &str) -> Result<Vec<TimelineRun>> {
    db.query_map(
        "SELECT pipeline, scope, started_at, finished_at, outcome FROM runs \
         WHERE finished_at IS NULL OR finished_at >= ?1 ORDER BY pipeline, id",
        args![since],
        |r| {
            Ok(TimelineRun {
                pipeline: r.get(0)?,
                scope: r.get(1)?,
                started_at: r.get(2)?,
                finished_at: r.get(3)?,
                outcome: r.get(4)?,
            })
        },
    )
}

/// One Beijing day of one source, summed over its pipelines, from `daily_summary`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyTotal {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub source: String,
    pub orders: i64,
    pub gmv_fen: i64,
}

/// Orders and GMV per day and source for the days `first..=last` (`YYYY-MM-DD`), by day then source.
pub fn daily_totals(db: &mut dyn Db, first: &str, last: &str) -> Result<Vec<DailyTotal>> {
    db.query_map(
        "SELECT day, source, CAST(COALESCE(SUM(orders), 0) AS BIGINT), \
         CAST(COALESCE(SUM(gmv), 0) AS BIGINT) FROM daily_summary \
         WHERE day BETWEEN ?1 AND ?2 GROUP BY day, source ORDER BY day, source",
        args![first, last],
        |r| {
            Ok(DailyTotal {
                day: r.get(0)?,
                source: r.get(1)?,
                orders: r.get(2)?,
                gmv_fen: r.get(3)?,
            })
        },
    )
}

/// How a pipeline's live runs stand: the failed streak and the last success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRunHealth {
    pub pipeline: String,
    /// Live runs since the last ok one (all of them if none was ok) that ended `failed` or
    /// `abandoned`; `interrupted` ones (a shutdown) neither count nor end the streak.
    pub consecutive_failures: i64,
    /// When the last ok live run finished, as stored (Beijing time).
    pub last_success: Option<String>,
}

/// Every pipeline that has a live run, by pipeline. Backfills and other tracks are left out: a
/// failing backfill does not mean the live data is behind.
pub fn live_run_health(db: &mut dyn Db) -> Result<Vec<LiveRunHealth>> {
    db.query_map(
        "SELECT p.pipeline, \
           (SELECT COUNT(*) FROM runs f WHERE f.pipeline = p.pipeline AND f.scope = 'live' \
              AND f.outcome IN ('failed', 'abandoned') AND f.id > COALESCE(p.last_ok, 0)), \
           (SELECT finished_at FROM runs o WHERE o.id = p.last_ok) \
         FROM (SELECT pipeline, MAX(CASE WHEN outcome = 'ok' THEN id END) AS last_ok \
               FROM runs WHERE scope = 'live' GROUP BY pipeline) p ORDER BY 1",
        &[],
        |r| {
            Ok(LiveRunHealth {
                pipeline: r.get(0)?,
                consecutive_failures: r.get(1)?,
                last_success: r.get(2)?,
            })
        },
    )
}

// ---- rejects ------------------------------------------------------------------------------------

/// One row of `rejected_rows`.
#[derive(Debug, Serialize)]
pub struct Rejection {
    pub pipeline: String,
    pub source: String,
    pub scope: String,
    pub window_start: String,
    pub window_end: String,
    pub cursor: String,
    pub order_id: Option<String>,
    pub reason: String,
    pub raw: String,
    pub first_seen_at: String,
    pub last_seen_at: String,
    pub times_seen: i64,
    pub resolved_at: Option<String>,
}

/// The rejected rows of `pipelines` (every pipeline when empty), open ones only unless `all`,
/// by pipeline, newest sighting first.
pub fn rejections(db: &mut dyn Db, pipelines: &[String], all: bool) -> Result<Vec<Rejection>> {
    let mut sql = String::from(
        "SELECT pipeline, source, scope, window_start, window_end, cursor, order_id, reason, raw, \
         first_seen_at, last_seen_at, times_seen, resolved_at FROM rejected_rows WHERE 1 = 1",
    );
    if !all {
        sql.push_str(" AND resolved_at IS NULL");
    }
    if !pipelines.is_empty() {
        let marks: Vec<String> = (1..=pipelines.len()).map(|i| format!("?{i}")).collect();
        let _ = write!(sql, " AND pipeline IN ({})", marks.join(", "));
    }
    sql.push_str(" ORDER BY pipeline, last_seen_at DESC, id DESC");
    let params: Vec<Param<'_>> = pipelines.iter().map(Param::from).collect();
    db.query_map(&sql, &params, |r| {
        Ok(Rejection {
            pipeline: r.get(0)?,
            source: r.get(1)?,
            scope: r.get(2)?,
            window_start: r.get(3)?,
            window_end: r.get(4)?,
            cursor: r.get(5)?,
            order_id: r.get(6)?,
            reason: r.get(7)?,
            raw: r.get(8)?,
            first_seen_at: r.get(9)?,
            last_seen_at: r.get(10)?,
            times_seen: r.get(11)?,
            resolved_at: r.get(12)?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RejectedRow;
    use crate::model::SourceKind;
    use crate::planner::Window;
    use crate::store::test_support::{on_both_engines, order, t, TestDb};
    use crate::store::{begin_run, commit_page, ensure_track, finish_run, Outcome};
    use crate::store::{PageCommit, Progress};

    on_both_engines!(
        the_reports_read_back_what_page_commits_wrote,
        live_run_health_counts_failures_since_the_last_ok_live_run,
    );

    fn the_reports_read_back_what_page_commits_wrote(db: &mut TestDb, run: i64) {
        ensure_track(
            db,
            "p",
            "backfill a",
            Some((t("2024-01-01"), t("2024-01-09"))),
        )
        .unwrap();
        let day = |d: u32| Window {
            start: t(&format!("2024-01-0{d}")),
            end: t(&format!("2024-01-0{}", d + 1)),
        };
        for (d, rejected) in [(1, "x"), (3, "y")] {
            let page = PageCommit {
                run_id: run,
                pipeline: "p".into(),
                scope: "live".into(),
                source: SourceKind::Veapi,
                orders: vec![order("1", "PAY_SUCC", "2024-01-01 10:00:00", "{}")],
                rejected: vec![RejectedRow {
                    order_id: None,
                    reason: "bad".into(),
                    raw: rejected.into(),
                }],
                asked: (day(d), String::new()),
                requests: 2,
                seen_floor: String::new(),
                progress: Progress::WindowDone { window: day(d) },
            };
            commit_page(db, &page).unwrap();
        }
        finish_run(db, run, Outcome::Failed, Some("boom"), 1).unwrap();
        begin_run(db, "p", "sync", "live").unwrap();

        assert_eq!(pipelines(db).unwrap(), ["p"]);
        let last = last_run(db, "p").unwrap().unwrap();
        assert_eq!((last.outcome.as_str(), last.rows_seen), ("running", 0));
        assert_eq!(last_error(db, "p").unwrap().as_deref(), Some("boom"));
        assert_eq!(open_rejections(db, "p").unwrap(), 2);
        let scopes: Vec<String> = checkpoints(db, "p")
            .unwrap()
            .into_iter()
            .map(|c| c.scope)
            .collect();
        assert_eq!(scopes, ["live", "backfill a"], "live first");
        let covered: Vec<(String, String)> = coverage(db, "p")
            .unwrap()
            .into_iter()
            .map(|r| (r.start, r.end))
            .collect();
        assert_eq!(covered.len(), 2, "two ranges with a gap: {covered:?}");
        assert!(covered[0].0 < covered[1].0);

        let outcomes = runs_by_outcome(db).unwrap();
        assert_eq!(outcomes.len(), 1, "the running run is left out");
        assert_eq!(
            (outcomes[0].outcome.as_str(), outcomes[0].runs),
            ("failed", 1)
        );
        let totals = run_totals(db).unwrap();
        assert_eq!(
            totals,
            [RunTotals {
                pipeline: "p".into(),
                rows_seen: 2,
                rows_changed: 1,
                rows_rejected: 2,
                requests: 5,
                rescan_rows_seen: 0,
                rescan_rows_changed: 0,
            }]
        );
        let live = live_runs(db, "p").unwrap();
        assert_eq!(
            live.last_finished.map(|r| r.outcome).as_deref(),
            Some("failed"),
            "the running run is not finished"
        );
        assert_eq!((live.last_ok_finished_at, live.failed_in_a_row), (None, 1));
        let timeline = runs_since(db, "2000-01-01 00:00:00").unwrap();
        assert_eq!(timeline.len(), 2);
        assert_eq!(timeline[1].finished_at, None);
        assert_eq!(
            runs_since(db, "2999-01-01 00:00:00").unwrap().len(),
            1,
            "a running run is always on the timeline"
        );
        let watermarks = live_watermarks(db).unwrap();
        assert_eq!(watermarks.len(), 1);
        assert_eq!(watermarks[0].watermark, "2024-01-04 00:00:00.000");

        assert_eq!(rejections(db, &[], false).unwrap().len(), 2);
        assert!(rejections(db, &["other".into()], true).unwrap().is_empty());
    }

    fn live_run_health_counts_failures_since_the_last_ok_live_run(db: &mut TestDb, first: i64) {
        finish_run(db, first, Outcome::Failed, Some("before the ok one"), 0).unwrap();
        let live = |db: &mut dyn Db, pipeline: &str, scope: &str, outcome: Outcome| {
            let id = begin_run(db, pipeline, "sync", scope).unwrap();
            finish_run(db, id, outcome, None, 0).unwrap();
            id
        };
        let ok = live(db, "p", "live", Outcome::Ok);
        live(db, "p", "live", Outcome::Failed);
        live(db, "p", "live", Outcome::Interrupted);
        let crashed = live(db, "p", "live", Outcome::Failed);
        db.execute(
            "UPDATE runs SET outcome = 'abandoned' WHERE id = ?1",
            args![crashed],
        )
        .unwrap();
        live(db, "p", "backfill a", Outcome::Failed);
        live(db, "q", "live", Outcome::Failed);
        live(db, "q", "live", Outcome::Failed);
        live(db, "r", "backfill a", Outcome::Ok);
        let ok_finished: String = db
            .query_value("SELECT finished_at FROM runs WHERE id = ?1", args![ok])
            .unwrap();

        assert_eq!(
            live_run_health(db).unwrap(),
            [
                LiveRunHealth {
                    pipeline: "p".into(),
                    // The failed and the abandoned run after the ok one; not the interrupted
                    // one, the failure before the ok one, or the backfill.
                    consecutive_failures: 2,
                    last_success: Some(ok_finished),
                },
                LiveRunHealth {
                    pipeline: "q".into(),
                    consecutive_failures: 2,
                    last_success: None,
                },
            ],
            "r has no live run"
        );
    }
}
