//! Runs: one row in `runs` per sync or backfill, from `begin_run` to `finish_run`.
//!
//! Invariant: at most one run per (pipeline, scope) is `running` in a live process, and a pipeline's
//! `live` and `rescan` runs never run at once (one waits for the other); a run left
//! `running` by a process that no longer exists is `abandoned`, never taken for a live one. A
//! run's counters only grow, and only with the pages that committed (see `commit_page`) plus the
//! failed requests `finish_run` is given.

use std::path::Path;

use super::sql::{args, Begin, Db, Tx};
use super::{PageStats, StoreError};
use crate::timefmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
        }
    }
}

fn pid_alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Runs left `running` by a process that no longer exists (killed, crashed) become `abandoned`.
pub fn mark_abandoned_runs(db: &mut dyn Db) -> Result<(), StoreError> {
    let me = i64::from(std::process::id());
    let stale = db.query("SELECT id, pid FROM runs WHERE outcome = 'running'", &[])?;
    let now = timefmt::fmt_seconds(timefmt::beijing_now());
    for row in stale {
        let (id, pid): (i64, i64) = (row.get(0)?, row.get(1)?);
        if pid == me || !pid_alive(pid) {
            db.execute(
                "UPDATE runs SET outcome = 'abandoned', finished_at = ?2, \
                 error = COALESCE(error, 'process ended without finishing the run') WHERE id = ?1",
                args![id, &now],
            )?;
        }
    }
    Ok(())
}

/// The scopes of one pipeline that never run at the same time as `scope`: a rescan re-reads what
/// the live sync reads by the same time axis, and each would count the other's changes.
fn rivals(scope: &str) -> &'static [&'static str] {
    match scope {
        "live" => &[super::late::RESCAN_SCOPE],
        super::late::RESCAN_SCOPE => &["live"],
        _ => &[],
    }
}

/// A run of `pipeline` in progress in another live process, in one of `scopes` (any scope when
/// `None`): its scope and pid.
pub(super) fn running_elsewhere(
    db: &mut dyn Db,
    pipeline: &str,
    scopes: Option<&[&str]>,
) -> Result<Option<(String, i64)>, StoreError> {
    let me = i64::from(std::process::id());
    let running = db.query(
        "SELECT scope, pid FROM runs WHERE pipeline = ?1 AND outcome = 'running'",
        args![pipeline],
    )?;
    for row in running {
        let (scope, pid): (String, i64) = (row.get(0)?, row.get(1)?);
        if pid != me && scopes.is_none_or(|s| s.contains(&scope.as_str())) && pid_alive(pid) {
            return Ok(Some((scope, pid)));
        }
    }
    Ok(None)
}

/// Records the start of a run; refuses (`Busy`) if the same (pipeline, scope), or a rival scope
/// (`live` for `rescan` and back), runs in another live process. A caller told a rival is busy
/// waits for it; one told its own scope is busy gives up.
pub fn begin_run(
    db: &mut dyn Db,
    pipeline: &str,
    command: &str,
    scope: &str,
) -> Result<i64, StoreError> {
    let me = i64::from(std::process::id());
    let mut tx = Tx::begin(db, Begin::Write)?;
    let running = tx.query(
        "SELECT id, pid FROM runs WHERE pipeline = ?1 AND scope = ?2 AND outcome = 'running'",
        args![pipeline, scope],
    )?;
    for row in running {
        let (id, pid): (i64, i64) = (row.get(0)?, row.get(1)?);
        if pid != me && pid_alive(pid) {
            return Err(StoreError::Busy {
                pipeline: pipeline.into(),
                scope: scope.into(),
                pid,
            });
        }
        tx.execute(
            "UPDATE runs SET outcome = 'abandoned', finished_at = ?2 WHERE id = ?1",
            args![id, &timefmt::fmt_seconds(timefmt::beijing_now())],
        )?;
    }
    if let Some((rival, pid)) = running_elsewhere(&mut *tx, pipeline, Some(rivals(scope)))? {
        return Err(StoreError::Busy {
            pipeline: pipeline.into(),
            scope: rival,
            pid,
        });
    }
    let id: i64 = tx.query_value(
        "INSERT INTO runs (pipeline, command, scope, pid, started_at, outcome) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'running') RETURNING id",
        args![
            pipeline,
            command,
            scope,
            me,
            &timefmt::fmt_millis(timefmt::beijing_now())
        ],
    )?;
    tx.commit()?;
    Ok(id)
}

/// Closes a run. `requests` are those not already counted by a committed page (failed attempts).
pub fn finish_run(
    db: &mut dyn Db,
    run_id: i64,
    outcome: Outcome,
    error: Option<&str>,
    requests: u64,
) -> Result<(), StoreError> {
    db.execute(
        "UPDATE runs SET outcome = ?2, finished_at = ?3, error = ?4, requests = requests + ?5 WHERE id = ?1",
        args![
            run_id,
            outcome.as_str(),
            &timefmt::fmt_millis(timefmt::beijing_now()),
            error,
            requests as i64
        ],
    )?;
    Ok(())
}

/// Adds a committed page's counts to its run, in that page's transaction.
pub(super) fn count_page(
    db: &mut dyn Db,
    run_id: i64,
    stats: &PageStats,
    requests: u32,
    windows_done: i64,
) -> Result<(), StoreError> {
    db.execute(
        "UPDATE runs SET rows_seen = rows_seen + ?2, rows_changed = rows_changed + ?3, \
         requests = requests + ?4, windows_done = windows_done + ?5, rows_rejected = rows_rejected + ?6 \
         WHERE id = ?1",
        args![
            run_id,
            stats.seen as i64,
            stats.changed as i64,
            requests,
            windows_done,
            stats.rejected as i64,
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::setup;

    #[test]
    fn a_running_run_of_a_live_process_blocks_a_second_one() {
        let (_d, mut conn, _run) = setup();
        // Our own pid: treated as stale (the scheduler prevents overlap within a process).
        assert!(begin_run(&mut conn, "p", "sync", "live").is_ok());
        conn.execute("UPDATE runs SET pid = 1 WHERE outcome = 'running'", [])
            .unwrap();
        assert!(matches!(
            begin_run(&mut conn, "p", "sync", "live"),
            Err(StoreError::Busy { pid: 1, .. })
        ));
        assert!(begin_run(&mut conn, "p", "backfill", "backfill x").is_ok());
        // The live sync of another process holds back a rescan (which is told whom it waits for).
        assert!(matches!(
            begin_run(&mut conn, "p", "rescan", "rescan"),
            Err(StoreError::Busy { ref scope, pid: 1, .. }) if scope == "live"
        ));
        assert!(begin_run(&mut conn, "other", "rescan", "rescan").is_ok());
        conn.execute("UPDATE runs SET pid = 1 WHERE scope = 'rescan'", [])
            .unwrap();
        assert!(matches!(
            begin_run(&mut conn, "other", "sync", "live"),
            Err(StoreError::Busy { ref scope, .. }) if scope == "rescan"
        ));
    }
}
