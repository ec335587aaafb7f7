//! Runs: one row in `runs` per sync or backfill, from `begin_run` to `finish_run`.
//!
//! Invariant: at most one run per (pipeline, scope) is `running` in a live process, and a pipeline's
//! `live` and `rescan` runs never run at once (one waits for the other); a run left
//! `running` by a process that no longer exists is `abandoned`, never taken for a live one. A
//! run's counters only grow, and only with the pages that committed (see `commit_page`) plus the
//! failed requests `finish_run` is given.
//!
//! Who runs is known two ways. On SQLite (one host) a run records its process id, and a run whose
//! process is gone is dead. On PostgreSQL, shared by processes on several hosts, a pid says
//! nothing: a run holds a session advisory lock on (pipeline, scope) on the writer's connection
//! from `begin_run` to `finish_run`, and a run whose lock nobody holds is dead. The server drops a
//! session's locks the moment its connection ends — a killed process's at once, a vanished host's
//! when TCP gives up on it — and a process that lost its connection cannot commit on it either.

use std::hash::Hasher;
use std::path::Path;

use super::sql::{args, Begin, Db, Dialect, Tx};
use super::{PageStats, StoreError};
use crate::fnv::Fnv1a;
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

/// The advisory lock a run of (pipeline, scope) holds on PostgreSQL: FNV-1a of the two, a key no
/// other application is likely to use.
fn run_lock(pipeline: &str, scope: &str) -> i64 {
    let mut hash = Fnv1a::default();
    for part in [
        b"ordersync run\0",
        pipeline.as_bytes(),
        b"\0",
        scope.as_bytes(),
    ] {
        hash.write(part);
    }
    hash.finish() as i64
}

/// Takes the run lock if no other session holds it (a session may take its own again).
fn try_lock(db: &mut dyn Db, key: i64) -> Result<bool, StoreError> {
    db.query_value("SELECT pg_try_advisory_lock(?1)", args![key])
}

/// The `pg_locks` rows (as `l`) of the run lock whose key is `?1` (high half) and `?2` (low half):
/// a bigint advisory key is kept there as its two halves, in this database.
macro_rules! run_lock_rows {
    () => {
        "l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND l.classid::bigint = ?1 AND l.objid::bigint = ?2"
    };
}

/// `key` as the two halves `run_lock_rows!` matches.
fn key_halves(key: i64) -> (i64, i64) {
    let key = key as u64;
    ((key >> 32) as i64, (key & 0xffff_ffff) as i64)
}

/// Where a run lock is held on PostgreSQL.
#[derive(Debug, PartialEq, Eq)]
enum Held {
    Here,
    Elsewhere,
    Nowhere,
}

/// Who holds the run lock `key`, read from `pg_locks` without taking it (taking it to look, even
/// for a moment, would turn another worker's `begin_run` away in that moment).
fn lock_held(db: &mut dyn Db, key: i64) -> Result<Held, StoreError> {
    let (high, low) = key_halves(key);
    let here: Option<bool> = db.query_opt_map(
        concat!(
            "SELECT l.pid = pg_backend_pid() FROM pg_locks l WHERE ",
            run_lock_rows!(),
            " LIMIT 1"
        ),
        args![high, low],
        |r| r.get(0),
    )?;
    Ok(match here {
        Some(true) => Held::Here,
        Some(false) => Held::Elsewhere,
        None => Held::Nowhere,
    })
}

fn unlock(db: &mut dyn Db, key: i64) -> Result<(), StoreError> {
    db.query_value::<bool>("SELECT pg_advisory_unlock(?1)", args![key])
        .map(|_| ())
}

/// Whether a run of (pipeline, scope) recorded by `pid` is going on in another process.
fn alive_elsewhere(
    db: &mut dyn Db,
    pipeline: &str,
    scope: &str,
    pid: i64,
) -> Result<bool, StoreError> {
    match db.dialect() {
        Dialect::Sqlite => Ok(pid != i64::from(std::process::id()) && pid_alive(pid)),
        Dialect::Postgres => Ok(lock_held(db, run_lock(pipeline, scope))? == Held::Elsewhere),
    }
}

/// Runs left `running` by a process that no longer exists (killed, crashed) become `abandoned`.
pub fn mark_abandoned_runs(db: &mut dyn Db) -> Result<(), StoreError> {
    let stale = db.query(
        "SELECT id, pid, pipeline, scope FROM runs WHERE outcome = 'running'",
        &[],
    )?;
    let now = timefmt::fmt_seconds(timefmt::beijing_now());
    for row in stale {
        let (id, pid): (i64, i64) = (row.get(0)?, row.get(1)?);
        let (pipeline, scope): (String, String) = (row.get(2)?, row.get(3)?);
        if !alive_elsewhere(db, &pipeline, &scope, pid)? {
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
    let running = db.query(
        "SELECT scope, pid FROM runs WHERE pipeline = ?1 AND outcome = 'running'",
        args![pipeline],
    )?;
    for row in running {
        let (scope, pid): (String, i64) = (row.get(0)?, row.get(1)?);
        if scopes.is_none_or(|s| s.contains(&scope.as_str()))
            && alive_elsewhere(db, pipeline, &scope, pid)?
        {
            return Ok(Some((scope, pid)));
        }
    }
    Ok(None)
}

/// A run going on now, and the worker running it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunInProgress {
    pub scope: String,
    pub command: String,
    pub started_at: String,
    /// `<host> pid <pid>`: on PostgreSQL the holder of the run's lock, as its connection names
    /// itself; on SQLite this host and the run's process.
    pub worker: String,
}

/// The runs of `pipeline` in progress in a live process, whichever worker runs them. A run marked
/// running whose process is gone (its lock free) is not one: the next run marks it abandoned.
pub fn in_progress(db: &mut dyn Db, pipeline: &str) -> Result<Vec<RunInProgress>, StoreError> {
    let running = db.query(
        "SELECT scope, command, started_at, pid FROM runs WHERE pipeline = ?1 AND outcome = 'running' \
         ORDER BY id",
        args![pipeline],
    )?;
    let mut out = Vec::new();
    for row in running {
        let (scope, pid): (String, i64) = (row.get(0)?, row.get(3)?);
        let worker = match db.dialect() {
            Dialect::Sqlite => pid_alive(pid).then(|| format!("{} pid {pid}", super::hostname())),
            Dialect::Postgres => lock_holder(db, run_lock(pipeline, &scope))?,
        };
        if let Some(worker) = worker {
            out.push(RunInProgress {
                command: row.get(1)?,
                started_at: row.get(2)?,
                scope,
                worker,
            });
        }
    }
    Ok(out)
}

/// Who holds a run lock on PostgreSQL, from `pg_locks` (a bigint key is kept as its high and low
/// halves) and the holder's `application_name`; `None` when no session holds it.
fn lock_holder(db: &mut dyn Db, key: i64) -> Result<Option<String>, StoreError> {
    let (high, low) = key_halves(key);
    let holder = db.query_opt_map(
        concat!(
            "SELECT a.application_name, a.pid, host(a.client_addr) FROM pg_locks l \
             JOIN pg_stat_activity a ON a.pid = l.pid WHERE ",
            run_lock_rows!(),
            " LIMIT 1"
        ),
        args![high, low],
        |r| {
            Ok((
                r.get::<Option<String>>(0)?,
                r.get::<i64>(1)?,
                r.get::<Option<String>>(2)?,
            ))
        },
    )?;
    Ok(holder.map(|(name, backend, client)| {
        match name.as_deref().and_then(|n| n.strip_prefix("ordersync ")) {
            Some(worker) => worker.to_string(),
            // Another role's session shows no name to us: the server's own view of it.
            None => format!(
                "server backend {backend} from {}",
                client.as_deref().unwrap_or("a local socket")
            ),
        }
    }))
}

/// On PostgreSQL, refuses to write for a run of (`pipeline`, `scope`) unless this session still
/// holds the run's lock.
/// A connection that dropped and was made again (the writer reconnects after a server restart or
/// a network cut) no longer holds the locks of the runs begun on it, and another worker may
/// already run the same pipeline: the run stops here, and its next run resumes from the last
/// checkpoint. SQLite, one host, has nothing to check.
pub(super) fn check_still_held(
    db: &mut dyn Db,
    pipeline: &str,
    scope: &str,
) -> Result<(), StoreError> {
    if db.dialect() != Dialect::Postgres || lock_held(db, run_lock(pipeline, scope))? == Held::Here
    {
        return Ok(());
    }
    Err(StoreError::RunLost {
        pipeline: pipeline.into(),
        scope: scope.into(),
    })
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
    // On PostgreSQL the run's lock, taken first: held, every run still marked running here is
    // dead; not held, another process runs it. A lock is not undone by a rollback, so every
    // refusal or failure below lets it go again.
    let lock = (tx.dialect() == Dialect::Postgres).then(|| run_lock(pipeline, scope));
    if let Some(key) = lock {
        // A lock this session holds already (a run of it whose finish_run failed) is not taken
        // again: taken twice, one unlock would leave it held, and every other worker would see
        // the pipeline busy for as long as this process lives.
        if lock_held(&mut *tx, key)? != Held::Here && !try_lock(&mut *tx, key)? {
            let pid = tx
                .query_opt_map(
                    "SELECT pid FROM runs WHERE pipeline = ?1 AND scope = ?2 AND outcome = 'running' \
                     ORDER BY id DESC LIMIT 1",
                    args![pipeline, scope],
                    |r| r.get(0),
                )?
                .unwrap_or(0);
            return Err(StoreError::Busy {
                pipeline: pipeline.into(),
                scope: scope.into(),
                pid,
            });
        }
    }
    let began = record_run(&mut *tx, pipeline, command, scope, me, lock.is_some());
    match (began, lock) {
        (Ok(id), _) => {
            tx.commit()?;
            Ok(id)
        }
        (Err(e), Some(key)) => {
            drop(tx);
            // The refusal or failure is what the caller needs; a lock left behind would only
            // make this process's next run of the pipeline take it twice.
            let _ = unlock(db, key);
            Err(e)
        }
        (Err(e), None) => Err(e),
    }
}

/// `begin_run`'s reads and writes, inside its transaction (`locked`: the run's PostgreSQL lock is
/// held, so no run of the same scope still marked running can be alive).
fn record_run(
    tx: &mut dyn Db,
    pipeline: &str,
    command: &str,
    scope: &str,
    me: i64,
    locked: bool,
) -> Result<i64, StoreError> {
    let running = tx.query(
        "SELECT id, pid FROM runs WHERE pipeline = ?1 AND scope = ?2 AND outcome = 'running'",
        args![pipeline, scope],
    )?;
    for row in running {
        let (id, pid): (i64, i64) = (row.get(0)?, row.get(1)?);
        if !locked && pid != me && pid_alive(pid) {
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
    if let Some((rival, pid)) = running_elsewhere(tx, pipeline, Some(rivals(scope)))? {
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
    if db.dialect() == Dialect::Postgres {
        let run = db.query_opt_map(
            "SELECT pipeline, scope FROM runs WHERE id = ?1",
            args![run_id],
            |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
        )?;
        if let Some((pipeline, scope)) = run {
            unlock(db, run_lock(&pipeline, &scope))?;
        }
    }
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
    use crate::store::test_support::{count, on_both_engines, TestDb};

    /// Workers of different releases share one database: a run's lock key must never change.
    #[test]
    fn a_run_lock_key_is_the_same_in_every_release() {
        assert_eq!(run_lock("veapi-main", "live"), -3_443_315_960_915_141_922);
    }

    /// Begins a run as another live process would, and returns the pid it is recorded with. On
    /// SQLite that is a run given pid 1 (always alive); on PostgreSQL, a run begun on a second
    /// connection (kept in `others`), whose session holds the run's lock while it stays open.
    fn begin_elsewhere(
        db: &mut TestDb,
        others: &mut Vec<Box<dyn Db + Send>>,
        pipeline: &str,
        command: &str,
        scope: &str,
    ) -> i64 {
        match db.dialect() {
            Dialect::Sqlite => {
                let id = begin_run(db, pipeline, command, scope).unwrap();
                db.execute("UPDATE runs SET pid = 1 WHERE id = ?1", args![id])
                    .unwrap();
                1
            }
            Dialect::Postgres => {
                let mut other = db.connect_again().unwrap();
                begin_run(&mut *other, pipeline, command, scope).unwrap();
                others.push(other);
                i64::from(std::process::id())
            }
        }
    }

    on_both_engines!(a_running_run_of_another_live_process_blocks_a_second_one);

    fn a_running_run_of_another_live_process_blocks_a_second_one(db: &mut TestDb, run: i64) {
        // Its own process beginning the run again is not refused (the scheduler prevents overlap
        // within a process): its run still marked running is a leftover, abandoned.
        let again = begin_run(db, "p", "sync", "live").unwrap();
        assert_eq!(
            count(db, "SELECT COUNT(*) FROM runs WHERE outcome = 'running'"),
            1
        );
        for id in [again, run] {
            finish_run(db, id, Outcome::Ok, None, 0).unwrap();
        }
        let mut others = Vec::new();
        let pid = begin_elsewhere(db, &mut others, "p", "sync", "live");
        assert!(matches!(
            begin_run(db, "p", "sync", "live"),
            Err(StoreError::Busy { pid: p, .. }) if p == pid
        ));
        assert!(begin_run(db, "p", "backfill", "backfill x").is_ok());
        // The live sync of another process holds back a rescan (which is told whom it waits for).
        assert!(matches!(
            begin_run(db, "p", "rescan", "rescan"),
            Err(StoreError::Busy { ref scope, pid: p, .. }) if scope == "live" && p == pid
        ));
        // Another process's rescan of a pipeline no live sync runs: begun, and it holds back
        // that pipeline's live sync.
        begin_elsewhere(db, &mut others, "other", "rescan", "rescan");
        assert!(matches!(
            begin_run(db, "other", "sync", "live"),
            Err(StoreError::Busy { ref scope, .. }) if scope == "rescan"
        ));
    }
}
