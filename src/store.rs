//! The SQLite store: schema migrations, the single writer, and the page commit.
//!
//! Invariant: a page's orders, sub-orders, history rows, run counters *and* the checkpoint that says
//! the page is done are written in one transaction ([`commit_page`]), so a crash at any instant
//! leaves the database either before or after the page, never between. Upserts never let an older
//! copy of an order (by upstream update time) overwrite a newer one, and an identical copy is not
//! rewritten, so re-reading overlapping windows is harmless.
//!
//! All writes go through one thread that owns the connection ([`Store`]); async callers send it
//! closures and await the answer. Read-only callers (`status`) may open their own connection.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use chrono::NaiveDateTime;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use md5::{Digest, Md5};

use crate::dbfiles;
use crate::model::{OrderRow, RejectedRow, Status, SubOrderRow};
use crate::planner::Window;
use crate::sources::SourceKind;
use crate::timefmt;

const SCHEMA: &str = include_str!("../schema.sql");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `problem` already says what SQLite or the OS refused (see `dbfiles::explain`): the path is
    /// named once, and no error chain repeats it.
    #[error("cannot open database {path}: {problem}")]
    Open { path: String, problem: String },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database schema version {found} is newer than this ordersync understands ({known}); upgrade ordersync")]
    TooNew { found: i64, known: i64 },
    #[error("database migration {version} failed: {problem}")]
    Migration { version: i64, problem: String },
    #[error("pipeline `{pipeline}` ({scope}) is already running in process {pid}")]
    Busy {
        pipeline: String,
        scope: String,
        pid: i64,
    },
    #[error("database writer has stopped")]
    WriterGone,
    #[error("database {path}: its write-ahead log could not be copied into the database file at exit ({reason}); the commits are safe in its -wal file, and the next ordersync command to open it copies them in")]
    Checkpoint { path: String, reason: String },
}

/// Opens (creating if needed) and migrates the database, with the pragmas every connection uses.
/// Every way into the database comes through here, so its files are owner-only (`dbfiles`).
pub fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    dbfiles::prepare(path).map_err(|problem| StoreError::Open {
        path: path.display().to_string(),
        problem,
    })?;
    let open_err = |e: rusqlite::Error| StoreError::Open {
        path: path.display().to_string(),
        problem: dbfiles::explain(path, dbfiles::Cause::Sqlite(&e)),
    };
    let conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(open_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_err)?;
    // Every page commit rewrites the same hot index pages into the WAL; checkpointing every
    // 30,000 pages (~120 MB) of WAL instead of every 1,000 copies each of them back far less
    // often. The size limit sits above that, so the WAL file is reused in place after a
    // checkpoint: cutting it back (64 MB, before) made every cycle truncate it and then allocate
    // its blocks again, which cost 15-25% of a sync's CPU (see README "Performance"). It only
    // bites when a long reader kept the WAL from restarting and it grew past the limit.
    // 4 MB of page cache: past ~50k orders the random-keyed indexes outgrow any cache worth
    // having in a small daemon anyway (their pages come from the OS cache); 8 MB cost 4 MB of
    // peak RSS for no CPU measurably saved.
    conn.pragma_update(None, "cache_size", -4000)
        .map_err(open_err)?;
    conn.pragma_update(None, "wal_autocheckpoint", 30000)
        .map_err(open_err)?;
    conn.pragma_update(None, "journal_size_limit", 128 * 1024 * 1024)
        .map_err(open_err)?;
    let mut conn = conn;
    migrate(&mut conn)?;
    Ok(conn)
}

/// The `-- migration: N` sections of `schema.sql`, in order.
fn migrations() -> Vec<(i64, &'static str)> {
    let mut out = Vec::new();
    let marker = "-- migration: ";
    let mut rest = SCHEMA;
    while let Some(pos) = rest.find(marker) {
        let after = &rest[pos + marker.len()..];
        let line_end = after.find('\n').unwrap_or(after.len());
        let version: i64 = after[..line_end].trim().parse().unwrap_or(0);
        let body_end = after.find(marker).unwrap_or(after.len());
        out.push((version, &after[line_end..body_end]));
        rest = &after[body_end..];
    }
    out
}

pub fn schema_version() -> i64 {
    migrations().last().map_or(0, |(v, _)| *v)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = schema_version();
    if current > known {
        return Err(StoreError::TooNew {
            found: current,
            known,
        });
    }
    if current == known {
        return Ok(());
    }
    // A migration may rebuild a table others refer to (SQLite's documented way: copy, drop,
    // rename), which foreign-key enforcement would refuse half-way; the check runs at the end.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    for (version, sql) in migrations() {
        if version <= current {
            continue;
        }
        // Immediate: another process opening the same new database waits here instead of
        // applying the same migration twice; it then sees the version this one set.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now_at: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now_at >= version {
            continue;
        }
        tx.execute_batch(sql)?;
        let broken: i64 =
            tx.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if broken > 0 {
            return Err(StoreError::Migration {
                version,
                problem: format!("{broken} rows would break a foreign key"),
            });
        }
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "database migrated");
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// What the writer thread is asked to do.
enum Message {
    Job(Job),
    /// Checkpoint the WAL into the database file, close the connection, stop.
    Close(tokio::sync::oneshot::Sender<Result<(), StoreError>>),
}

/// The single writer: a thread owning the connection, fed closures over a channel.
///
/// # Lifecycle
/// [`Store::open`] starts the thread; [`Store::close`] must be awaited before the process exits
/// after writing: a process that just exits leaves its commits in the `-wal` file (checkpoints
/// come only every 30,000 pages), so the `.db` file alone, which is what operators copy, would be
/// stale or malformed.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Message>,
    path: PathBuf,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = open_connection(path)?;
        mark_abandoned_runs(&mut conn)?;
        let (tx, rx) = mpsc::channel::<Message>();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("ordersync-store".into())
            .spawn(move || {
                let mut conn = conn;
                for message in rx {
                    match message {
                        Message::Job(job) => job(&mut conn),
                        Message::Close(done) => {
                            let _ = done.send(checkpoint_and_close(conn, &shown));
                            return;
                        }
                    }
                }
            })
            .map_err(|_| StoreError::WriterGone)?;
        Ok(Store {
            jobs: tx,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the writer thread and returns its result.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.jobs
            .send(Message::Job(job))
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Waits for the jobs already sent, copies the whole WAL into the database file and closes
    /// the connection, so that the `.db` file alone holds every commit. Every clone is closed with
    /// it: later calls fail with [`StoreError::WriterGone`].
    pub async fn close(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Message::Close(tx))
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }
}

/// `wal_checkpoint(TRUNCATE)`, then close. Another process reading the database can keep the
/// checkpoint from finishing; that is a warning (nothing is lost, and its connection checkpoints
/// when it is the last to close), and the wait for it is short so that a stopping daemon stays
/// within its unit's stop timeout.
fn checkpoint_and_close(conn: Connection, path: &str) -> Result<(), StoreError> {
    let failed = |e: rusqlite::Error| StoreError::Checkpoint {
        path: path.to_string(),
        reason: dbfiles::sqlite_reason(&e, Path::new(path)),
    };
    conn.busy_timeout(Duration::from_secs(2)).map_err(failed)?;
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .map_err(failed)?;
    if busy != 0 {
        tracing::warn!(
            "database {path}: another process is reading it, so its write-ahead log could not be \
             copied into the database file at exit; the file alone is complete once that process closes it"
        );
    }
    conn.close().map_err(|(_, e)| failed(e))
}

fn pid_alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Runs left `running` by a process that no longer exists (killed, crashed) become `abandoned`.
pub fn mark_abandoned_runs(conn: &mut Connection) -> Result<(), StoreError> {
    let me = i64::from(std::process::id());
    let stale: Vec<(i64, i64)> = conn
        .prepare("SELECT id, pid FROM runs WHERE outcome = 'running'")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let now = timefmt::fmt_seconds(timefmt::beijing_now());
    for (id, pid) in stale {
        if pid == me || !pid_alive(pid) {
            conn.execute(
                "UPDATE runs SET outcome = 'abandoned', finished_at = ?2, \
                 error = COALESCE(error, 'process ended without finishing the run') WHERE id = ?1",
                params![id, now],
            )?;
        }
    }
    Ok(())
}

// ---- tracks (checkpoints) -----------------------------------------------------------------------

/// The resumable state of one (pipeline, scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub watermark: Option<NaiveDateTime>,
    /// The window in progress and the cursor of its next page.
    pub in_progress: Option<(Window, String)>,
}

fn parse_time_col(text: Option<String>) -> Option<NaiveDateTime> {
    text.as_deref().and_then(timefmt::parse_user_time)
}

/// Loads the track, creating it (empty) when it does not exist yet. A backfill "up to now" run again
/// later extends its range to the new now.
pub fn ensure_track(
    conn: &Connection,
    pipeline: &str,
    scope: &str,
    range: Option<(NaiveDateTime, NaiveDateTime)>,
) -> Result<Track, StoreError> {
    conn.execute(
        "INSERT INTO checkpoints (pipeline, scope, range_start, range_end, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (pipeline, scope) DO UPDATE SET \
         range_end = CASE WHEN excluded.range_end > range_end THEN excluded.range_end ELSE range_end END",
        params![
            pipeline,
            scope,
            range.map(|r| timefmt::fmt_millis(r.0)),
            range.map(|r| timefmt::fmt_millis(r.1)),
            timefmt::fmt_seconds(timefmt::beijing_now()),
        ],
    )?;
    let row = conn.query_row(
        "SELECT watermark, window_start, window_end, cursor FROM checkpoints WHERE pipeline = ?1 AND scope = ?2",
        params![pipeline, scope],
        |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        },
    )?;
    let in_progress = match (parse_time_col(row.1), parse_time_col(row.2), row.3) {
        (Some(start), Some(end), Some(cursor)) => Some((Window { start, end }, cursor)),
        _ => None,
    };
    Ok(Track {
        watermark: parse_time_col(row.0),
        in_progress,
    })
}

// ---- runs -------------------------------------------------------------------------------------

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

/// Records the start of a run; refuses if the same (pipeline, scope) runs in another live process.
pub fn begin_run(
    conn: &mut Connection,
    pipeline: &str,
    command: &str,
    scope: &str,
) -> Result<i64, StoreError> {
    let me = i64::from(std::process::id());
    // Immediate: this transaction reads, then writes. A deferred one would be refused at once
    // (not retried within busy_timeout) when another process took the write lock in between.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let running: Vec<(i64, i64)> = tx
        .prepare(
            "SELECT id, pid FROM runs WHERE pipeline = ?1 AND scope = ?2 AND outcome = 'running'",
        )?
        .query_map(params![pipeline, scope], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, pid) in running {
        if pid != me && pid_alive(pid) {
            return Err(StoreError::Busy {
                pipeline: pipeline.into(),
                scope: scope.into(),
                pid,
            });
        }
        tx.execute(
            "UPDATE runs SET outcome = 'abandoned', finished_at = ?2 WHERE id = ?1",
            params![id, timefmt::fmt_seconds(timefmt::beijing_now())],
        )?;
    }
    tx.execute(
        "INSERT INTO runs (pipeline, command, scope, pid, started_at, outcome) VALUES (?1, ?2, ?3, ?4, ?5, 'running')",
        params![pipeline, command, scope, me, timefmt::fmt_millis(timefmt::beijing_now())],
    )?;
    let id = tx.last_insert_rowid();
    tx.commit()?;
    Ok(id)
}

/// Closes a run. `requests` are those not already counted by a committed page (failed attempts).
pub fn finish_run(
    conn: &Connection,
    run_id: i64,
    outcome: Outcome,
    error: Option<&str>,
    requests: u64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE runs SET outcome = ?2, finished_at = ?3, error = ?4, requests = requests + ?5 WHERE id = ?1",
        params![
            run_id,
            outcome.as_str(),
            timefmt::fmt_millis(timefmt::beijing_now()),
            error,
            requests as i64
        ],
    )?;
    Ok(())
}

// ---- the page commit ---------------------------------------------------------------------------

/// What the checkpoint says once this page is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// More pages in this window; the next one is asked with `cursor`.
    Next { window: Window, cursor: String },
    /// This was the window's last page: it is finished.
    WindowDone { window: Window },
}

#[derive(Debug, Clone)]
pub struct PageCommit {
    pub run_id: i64,
    pub pipeline: String,
    pub scope: String,
    pub source: SourceKind,
    pub orders: Vec<OrderRow>,
    /// The page's rows that could not be normalised.
    pub rejected: Vec<RejectedRow>,
    /// The window the page belongs to and the cursor it was asked with (secrets hidden): where a
    /// rejected row came from.
    pub asked: (Window, String),
    /// HTTP requests this page took, retries included.
    pub requests: u32,
    pub progress: Progress,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageStats {
    pub seen: u64,
    pub changed: u64,
    pub rejected: u64,
    /// The rejected rows not seen before: `(order id, reason)`.
    pub newly_rejected: Vec<(Option<String>, String)>,
}

/// Writes one page and its checkpoint in one transaction.
pub fn commit_page(conn: &mut Connection, page: &PageCommit) -> Result<PageStats, StoreError> {
    let now = timefmt::fmt_seconds(timefmt::beijing_now());
    // Immediate: this transaction reads, then writes. A deferred one would be refused at once
    // (not retried within busy_timeout) when another process took the write lock in between.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // A partial order's lines are written before the order row they belong to; the foreign key
    // is checked when the page commits. Only pages that hold such orders ask for it: setting any
    // flag pragma expires every prepared statement, so each would be compiled again on this page.
    if page.orders.iter().any(|o| o.partial) {
        tx.execute_batch("PRAGMA defer_foreign_keys = ON")?;
    }
    let mut stats = PageStats::default();
    for row in &page.rejected {
        stats.rejected += 1;
        if keep_rejected(&tx, page, row, &now)? {
            stats
                .newly_rejected
                .push((row.order_id.clone(), row.reason.clone()));
        }
    }
    for order in &page.orders {
        stats.seen += 1;
        if upsert_order(&tx, &page.pipeline, order, &now)? {
            stats.changed += 1;
        }
    }
    resolve_rejected(&tx, page, &now)?;
    let windows_done = match &page.progress {
        Progress::Next { window, cursor } => {
            tx.prepare_cached(
                "UPDATE checkpoints SET window_start = ?3, window_end = ?4, cursor = ?5, updated_at = ?6 \
                 WHERE pipeline = ?1 AND scope = ?2",
            )?
            .execute(params![
                    page.pipeline,
                    page.scope,
                    timefmt::fmt_millis(window.start),
                    timefmt::fmt_millis(window.end),
                    cursor,
                    now
                ])?;
            0
        }
        Progress::WindowDone { window } => {
            let end = timefmt::fmt_millis(window.end);
            tx.prepare_cached(
                "UPDATE checkpoints SET watermark = CASE WHEN watermark IS NULL OR watermark < ?3 THEN ?3 ELSE watermark END, \
                 window_start = NULL, window_end = NULL, cursor = NULL, updated_at = ?4 \
                 WHERE pipeline = ?1 AND scope = ?2",
            )?
            .execute(params![page.pipeline, page.scope, end, now])?;
            add_coverage(&tx, &page.pipeline, &page.scope, window)?;
            1
        }
    };
    tx.prepare_cached(
        "UPDATE runs SET rows_seen = rows_seen + ?2, rows_changed = rows_changed + ?3, \
         requests = requests + ?4, windows_done = windows_done + ?5, rows_rejected = rows_rejected + ?6 \
         WHERE id = ?1",
    )?
    .execute(params![
        page.run_id,
        stats.seen as i64,
        stats.changed as i64,
        i64::from(page.requests),
        windows_done,
        stats.rejected as i64,
    ])?;
    tx.commit()?;
    Ok(stats)
}

/// Keeps one rejected row; the same row (same source and text) read again is seen again, not
/// added. Returns whether it is new.
fn keep_rejected(
    tx: &Transaction<'_>,
    page: &PageCommit,
    row: &RejectedRow,
    now: &str,
) -> Result<bool, StoreError> {
    let mut hash = Md5::new();
    hash.update(page.source.as_str().as_bytes());
    hash.update([0]);
    hash.update(row.raw.as_bytes());
    let fingerprint: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let (window, cursor) = &page.asked;
    let times_seen: i64 = tx
        .prepare_cached(
            "INSERT INTO rejected_rows (pipeline, source, scope, window_start, window_end, cursor, order_id, \
             reason, raw, fingerprint, first_seen_at, last_seen_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11) \
             ON CONFLICT (pipeline, fingerprint) DO UPDATE SET scope = excluded.scope, \
             window_start = excluded.window_start, window_end = excluded.window_end, cursor = excluded.cursor, \
             reason = excluded.reason, last_seen_at = excluded.last_seen_at, times_seen = times_seen + 1, \
             resolved_at = NULL \
             RETURNING times_seen",
        )?
        .query_row(
            params![
                page.pipeline,
                page.source.as_str(),
                page.scope,
                timefmt::fmt_millis(window.start),
                timefmt::fmt_millis(window.end),
                cursor,
                row.order_id,
                row.reason,
                row.raw,
                fingerprint,
                now,
            ],
            |r| r.get(0),
        )?;
    Ok(times_seen == 1)
}

/// A good copy of an order that was rejected before resolves those rejections. Orders that arrive
/// line by line (`partial`) are left alone: a good line says nothing of a bad one.
fn resolve_rejected(tx: &Transaction<'_>, page: &PageCommit, now: &str) -> Result<(), StoreError> {
    let open: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM rejected_rows WHERE pipeline = ?1 AND resolved_at IS NULL)",
        )?
        .query_row(params![page.pipeline], |r| r.get(0))?;
    if !open {
        return Ok(());
    }
    let mut resolve = tx.prepare_cached(
        "UPDATE rejected_rows SET resolved_at = ?4 \
         WHERE pipeline = ?1 AND source = ?2 AND order_id = ?3 AND resolved_at IS NULL",
    )?;
    for o in page.orders.iter().filter(|o| !o.partial) {
        resolve.execute(params![page.pipeline, o.source.as_str(), o.order_id, now])?;
    }
    Ok(())
}

/// Merges `[start, end)` into the pipeline's finished ranges of this scope.
fn add_coverage(
    tx: &Transaction<'_>,
    pipeline: &str,
    scope: &str,
    w: &Window,
) -> Result<(), StoreError> {
    let (mut start, mut end) = (timefmt::fmt_millis(w.start), timefmt::fmt_millis(w.end));
    let touching: Vec<(String, String)> = tx
        .prepare_cached(
            "SELECT range_start, range_end FROM coverage WHERE pipeline = ?1 AND scope = ?2 \
             AND range_start <= ?4 AND range_end >= ?3",
        )?
        .query_map(params![pipeline, scope, start, end], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    for (s, e) in touching {
        tx.prepare_cached(
            "DELETE FROM coverage WHERE pipeline = ?1 AND scope = ?2 AND range_start = ?3",
        )?
        .execute(params![pipeline, scope, s])?;
        start = start.min(s);
        end = end.max(e);
    }
    tx.prepare_cached(
        "INSERT INTO coverage (pipeline, scope, range_start, range_end) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![pipeline, scope, start, end])?;
    Ok(())
}

fn opt_time(t: Option<NaiveDateTime>) -> Option<String> {
    t.map(timefmt::fmt_seconds)
}

/// Inserts or updates one order and its lines. Returns whether anything was written.
fn upsert_order(
    tx: &Transaction<'_>,
    pipeline: &str,
    o: &OrderRow,
    now: &str,
) -> Result<bool, StoreError> {
    if o.partial {
        return upsert_partial(tx, pipeline, o, now);
    }
    let source = o.source.as_str();
    let stored: Option<(Option<String>, String, String, Option<String>)> = tx
        .prepare_cached(
            "SELECT updated_at, raw, pipeline, status_raw FROM orders WHERE source = ?1 AND order_id = ?2",
        )?
        .query_row(params![source, o.order_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let updated_at = opt_time(o.updated_at);
    let status_changed = match &stored {
        None => true,
        Some((stored_updated, stored_raw, stored_pipeline, stored_status)) => {
            // Never regress: an older copy (overlapping window, lookback) loses to the stored one,
            // and so does a copy that lost its update time (it cannot be shown to be newer).
            match (&updated_at, stored_updated) {
                (Some(new), Some(old)) if new < old => return Ok(false),
                (None, Some(_)) => return Ok(false),
                _ => {}
            }
            if stored_raw == &o.raw && stored_pipeline == pipeline {
                return Ok(false);
            }
            stored_status.as_deref() != Some(o.status_raw.as_str())
        }
    };
    tx.prepare_cached(
        "INSERT INTO orders (source, order_id, pipeline, kind, status, status_raw, pay_amount, refund_amount, \
         commission, created_at, paid_at, updated_at, refunded_at, settled_at, confirmed_at, shop_id, shop_name, \
         product_id, product_name, item_num, ad_cost, ad_plays, ad_gmv, ad_roi, raw, first_seen_at, synced_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, \
         ?22, ?23, ?24, ?25, ?26, ?26) \
         ON CONFLICT (source, order_id) DO UPDATE SET pipeline = excluded.pipeline, kind = excluded.kind, \
         status = excluded.status, status_raw = excluded.status_raw, pay_amount = excluded.pay_amount, \
         refund_amount = excluded.refund_amount, commission = excluded.commission, created_at = excluded.created_at, \
         paid_at = excluded.paid_at, updated_at = excluded.updated_at, refunded_at = excluded.refunded_at, \
         settled_at = excluded.settled_at, confirmed_at = excluded.confirmed_at, shop_id = excluded.shop_id, \
         shop_name = excluded.shop_name, product_id = excluded.product_id, product_name = excluded.product_name, \
         item_num = excluded.item_num, ad_cost = excluded.ad_cost, ad_plays = excluded.ad_plays, \
         ad_gmv = excluded.ad_gmv, ad_roi = excluded.ad_roi, raw = excluded.raw, synced_at = excluded.synced_at",
    )?
    .execute(params![
        source,
        o.order_id,
        pipeline,
        o.kind.as_str(),
        o.status.as_str(),
        o.status_raw,
        o.pay_amount,
        o.refund_amount,
        o.commission,
        opt_time(o.created_at),
        opt_time(o.paid_at),
        updated_at,
        opt_time(o.refunded_at),
        opt_time(o.settled_at),
        opt_time(o.confirmed_at),
        o.shop_id,
        o.shop_name,
        o.product_id,
        o.product_name,
        o.item_num,
        o.ad_cost,
        o.ad_plays,
        o.ad_gmv,
        o.ad_roi,
        o.raw,
        now,
    ])?;
    for s in &o.sub_orders {
        write_line(tx, source, &o.order_id, s)?;
    }
    if status_changed {
        tx.prepare_cached(
            "INSERT INTO order_status_history (source, order_id, status, status_raw, observed_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![source, o.order_id, o.status.as_str(), o.status_raw, now])?;
    }
    Ok(true)
}

/// Inserts or updates one line. A line whose row is unchanged is not rewritten; one that is the
/// order itself (empty `raw`, stored NULL) is written whenever its order changed.
fn write_line(
    tx: &Transaction<'_>,
    source: &str,
    order_id: &str,
    s: &SubOrderRow,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO sub_orders (source, order_id, sub_order_id, sku_id, product_id, product_name, item_num, \
         pay_amount, status, status_raw, raw, refund_amount, commission, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
         ON CONFLICT (source, order_id, sub_order_id) DO UPDATE SET sku_id = excluded.sku_id, \
         product_id = excluded.product_id, product_name = excluded.product_name, item_num = excluded.item_num, \
         pay_amount = excluded.pay_amount, status = excluded.status, status_raw = excluded.status_raw, \
         raw = excluded.raw, refund_amount = excluded.refund_amount, commission = excluded.commission, \
         updated_at = excluded.updated_at \
         WHERE excluded.raw IS NULL OR sub_orders.raw IS NOT excluded.raw",
    )?
    .execute(params![
        source,
        order_id,
        s.sub_order_id,
        s.sku_id,
        s.product_id,
        s.product_name,
        s.item_num,
        s.pay_amount,
        s.status.as_str(),
        s.status_raw,
        (!s.raw.is_empty()).then_some(s.raw.as_str()),
        s.refund_amount,
        s.commission,
        opt_time(s.updated_at),
    ])?;
    Ok(())
}

fn min_time(a: Option<NaiveDateTime>, b: Option<NaiveDateTime>) -> Option<NaiveDateTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn sum(values: impl Iterator<Item = Option<i64>>) -> Option<i64> {
    values.fold(None, |acc, v| match (acc, v) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    })
}

/// One stored line, as the order's totals are derived from it.
struct StoredLine {
    pay_amount: Option<i64>,
    refund_amount: Option<i64>,
    commission: Option<i64>,
    item_num: Option<i64>,
    status: Status,
    status_raw: Option<String>,
    updated_at: Option<String>,
    raw: String,
}

/// An order that arrives line by line: each line is upserted on its own (an older copy of a line
/// never wins), then the order row is derived from *all* its stored lines — money summed, the most
/// advanced status, the latest update — so lines split across pages, windows or a crash add up.
fn upsert_partial(
    tx: &Transaction<'_>,
    pipeline: &str,
    o: &OrderRow,
    now: &str,
) -> Result<bool, StoreError> {
    let source = o.source.as_str();
    let mut lines_changed = false;
    for s in &o.sub_orders {
        let stored: Option<(Option<String>, String)> = tx
            .prepare_cached(
                "SELECT updated_at, raw FROM sub_orders WHERE source = ?1 AND order_id = ?2 AND sub_order_id = ?3",
            )?
            .query_row(params![source, o.order_id, s.sub_order_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let updated = opt_time(s.updated_at);
        if let Some((old_updated, old_raw)) = &stored {
            if let (Some(new), Some(old)) = (&updated, old_updated) {
                if new < old {
                    continue;
                }
            }
            if old_raw == &s.raw {
                continue;
            }
        }
        write_line(tx, source, &o.order_id, s)?;
        lines_changed = true;
    }
    let stored_order: Option<(Option<String>, Option<String>, Option<String>)> = tx
        .prepare_cached("SELECT created_at, paid_at, refunded_at FROM orders WHERE source = ?1 AND order_id = ?2")?
        .query_row(params![source, o.order_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    if !lines_changed && stored_order.is_some() {
        return Ok(false);
    }
    let lines: Vec<StoredLine> = tx
        .prepare_cached(
            "SELECT pay_amount, refund_amount, commission, item_num, status, status_raw, updated_at, raw \
             FROM sub_orders WHERE source = ?1 AND order_id = ?2 ORDER BY sub_order_id",
        )?
        .query_map(params![source, o.order_id], |r| {
            Ok(StoredLine {
                pay_amount: r.get(0)?,
                refund_amount: r.get(1)?,
                commission: r.get(2)?,
                item_num: r.get(3)?,
                status: Status::parse(&r.get::<_, String>(4)?),
                status_raw: r.get(5)?,
                updated_at: r.get(6)?,
                raw: r.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut order = o.clone();
    order.partial = false;
    order.sub_orders.clear();
    order.pay_amount = sum(lines.iter().map(|l| l.pay_amount));
    order.refund_amount = sum(lines.iter().map(|l| l.refund_amount));
    order.commission = sum(lines.iter().map(|l| l.commission));
    order.item_num = sum(lines.iter().map(|l| l.item_num));
    order.updated_at = lines
        .iter()
        .filter_map(|l| l.updated_at.as_deref())
        .max()
        .and_then(timefmt::parse_user_time);
    // The most advanced line decides (the first of equals); refunded only when every line is.
    if let Some(line) = lines.iter().rev().max_by_key(|l| l.status.progress()) {
        order.status = line.status;
        order.status_raw = line.status_raw.clone().unwrap_or_default();
    }
    let raws: Vec<&str> = lines.iter().map(|l| l.raw.as_str()).collect();
    order.raw = format!("{{\"sub_orders\":[{}]}}", raws.join(","));
    if let Some((created, paid, refunded)) = stored_order {
        order.created_at = min_time(order.created_at, parse_time_col(created));
        order.paid_at = min_time(order.paid_at, parse_time_col(paid));
        order.refunded_at = order.refunded_at.max(parse_time_col(refunded));
    }
    upsert_order(tx, pipeline, &order, now)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, Status};

    fn t(s: &str) -> NaiveDateTime {
        timefmt::parse_user_time(s).unwrap()
    }

    fn order(id: &str, status: &str, updated: &str, raw: &str) -> OrderRow {
        let mut o = OrderRow::new(SourceKind::Veapi, id.into(), Kind::Affiliate, raw.into());
        o.status_raw = status.into();
        o.status = Status::Paid;
        o.updated_at = Some(t(updated));
        o
    }

    #[test]
    fn a_version_2_database_migrates_to_rowid_tables_keeping_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        {
            // A database as version 2 left it, with one single-line and one two-line order.
            let conn = Connection::open(&path).unwrap();
            for (version, sql) in migrations().into_iter().filter(|(v, _)| *v <= 2) {
                conn.execute_batch(sql).unwrap();
                conn.pragma_update(None, "user_version", version).unwrap();
            }
            conn.execute_batch(
                "INSERT INTO orders (source, order_id, pipeline, kind, status, raw, first_seen_at, synced_at, pay_amount) \
                 VALUES ('veapi', '1', 'p', 'affiliate', 'paid', '{\"a\":1}', 'x', 'x', 100), \
                        ('unidesk', '2', 'u', 'sale', 'paid', '{\"sub_orders\":[]}', 'x', 'x', 30); \
                 INSERT INTO sub_orders (source, order_id, sub_order_id, status, raw, pay_amount) \
                 VALUES ('veapi', '1', '1', 'paid', '{\"a\":1}', 100), \
                        ('unidesk', '2', '21', 'paid', '{\"l\":1}', 10), ('unidesk', '2', '22', 'paid', '{\"l\":2}', 20);",
            )
            .unwrap();
        }
        let conn = open_connection(&path).unwrap();
        assert_eq!(count(&conn, "PRAGMA user_version"), schema_version());
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM orders"), 2);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM sub_orders"), 3);
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM sub_orders WHERE raw IS NULL"),
            1,
            "only the line that repeated its order's row lost its copy"
        );
        assert_eq!(count(&conn, "SELECT SUM(pay_amount) FROM order_lines"), 130);
        assert_eq!(count(&conn, "SELECT SUM(gmv) FROM daily_summary"), 130);
        let rowid: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE sql LIKE '%WITHOUT ROWID%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rowid, 0);
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM pragma_foreign_key_check"),
            0
        );
        let fk_on: i64 = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk_on, 1, "foreign keys are enforced again after migrating");
    }

    fn setup() -> (tempfile::TempDir, Connection, i64) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("t.db")).unwrap();
        ensure_track(&conn, "p", "live", None).unwrap();
        let run = begin_run(&mut conn, "p", "sync", "live").unwrap();
        (dir, conn, run)
    }

    fn commit(
        conn: &mut Connection,
        run: i64,
        orders: Vec<OrderRow>,
        progress: Progress,
    ) -> PageStats {
        let window = match &progress {
            Progress::Next { window, .. } | Progress::WindowDone { window } => *window,
        };
        let page = PageCommit {
            run_id: run,
            pipeline: "p".into(),
            scope: "live".into(),
            source: SourceKind::Veapi,
            orders,
            rejected: Vec::new(),
            asked: (window, String::new()),
            requests: 1,
            progress,
        };
        commit_page(conn, &page).unwrap()
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn older_copy_never_overwrites_newer_and_same_copy_is_not_rewritten() {
        let (_d, mut conn, run) = setup();
        let w = Window {
            start: t("2024-01-01"),
            end: t("2024-01-02"),
        };
        let next = Progress::Next {
            window: w,
            cursor: "c1".into(),
        };
        let newer = order("1", "REFUND", "2024-01-01 12:00:00", "{\"v\":2}");
        let older = order("1", "PAY_SUCC", "2024-01-01 10:00:00", "{\"v\":1}");
        assert_eq!(
            commit(&mut conn, run, vec![newer.clone()], next.clone()).changed,
            1
        );
        assert_eq!(commit(&mut conn, run, vec![older], next.clone()).changed, 0);
        assert_eq!(commit(&mut conn, run, vec![newer], next).changed, 0);
        let (status, raw): (String, String) = conn
            .query_row(
                "SELECT status_raw, raw FROM orders WHERE order_id = '1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((status.as_str(), raw.as_str()), ("REFUND", "{\"v\":2}"));
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM order_status_history"), 1);
    }

    #[test]
    fn a_rejected_row_is_kept_once_counted_each_time_and_resolved_by_a_good_copy() {
        let (_d, mut conn, run) = setup();
        let w = Window {
            start: t("2024-01-01"),
            end: t("2024-01-02"),
        };
        let bad = RejectedRow {
            order_id: Some("7".into()),
            reason: "`total_pay_amount`: not a number".into(),
            raw: r#"{"order_id":"7","total_pay_amount":"x"}"#.into(),
        };
        let page = |orders: Vec<OrderRow>, rejected: Vec<RejectedRow>| PageCommit {
            run_id: run,
            pipeline: "p".into(),
            scope: "live".into(),
            source: SourceKind::Veapi,
            orders,
            rejected,
            asked: (w, "c0".into()),
            requests: 1,
            progress: Progress::Next {
                window: w,
                cursor: "c1".into(),
            },
        };
        let first = commit_page(&mut conn, &page(vec![], vec![bad.clone()])).unwrap();
        assert_eq!(first.rejected, 1);
        assert_eq!(
            first.newly_rejected,
            vec![(Some("7".into()), bad.reason.clone())]
        );
        let again = commit_page(
            &mut conn,
            &page(
                vec![order("8", "PAY_SUCC", "2024-01-01 10:00:00", "{}")],
                vec![bad.clone()],
            ),
        )
        .unwrap();
        assert_eq!((again.rejected, again.newly_rejected.len()), (1, 0));
        let (kept, seen, cursor): (i64, i64, String) = conn
            .query_row(
                "SELECT COUNT(*), MAX(times_seen), MAX(cursor) FROM rejected_rows",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((kept, seen, cursor.as_str()), (1, 2, "c0"));
        assert_eq!(count(&conn, "SELECT rows_rejected FROM runs"), 2);
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM rejected_rows WHERE resolved_at IS NULL"
            ),
            1,
            "another order's good copy resolves nothing"
        );
        commit_page(
            &mut conn,
            &page(
                vec![order("7", "PAY_SUCC", "2024-01-01 10:00:00", "{}")],
                vec![],
            ),
        )
        .unwrap();
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM rejected_rows WHERE resolved_at IS NULL"
            ),
            0,
            "a good copy of the same order resolves it"
        );
    }

    #[test]
    fn status_change_adds_exactly_one_history_row() {
        let (_d, mut conn, run) = setup();
        let w = Window {
            start: t("2024-01-01"),
            end: t("2024-01-02"),
        };
        let p = || Progress::Next {
            window: w,
            cursor: "c".into(),
        };
        commit(
            &mut conn,
            run,
            vec![order("1", "PAY_SUCC", "2024-01-01 10:00:00", "a")],
            p(),
        );
        // Same status, new content (commission changed): updated, no history row.
        commit(
            &mut conn,
            run,
            vec![order("1", "PAY_SUCC", "2024-01-01 10:05:00", "b")],
            p(),
        );
        commit(
            &mut conn,
            run,
            vec![order("1", "CONFIRM", "2024-01-01 11:00:00", "c")],
            p(),
        );
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM order_status_history WHERE order_id = '1'"
            ),
            2
        );
        assert_eq!(count(&conn, "SELECT rows_changed FROM runs"), 3);
    }

    #[test]
    fn window_done_moves_watermark_and_merges_coverage() {
        let (_d, mut conn, run) = setup();
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
            &mut conn,
            run,
            vec![],
            Progress::Next {
                window: a,
                cursor: "x".into(),
            },
        );
        let track = ensure_track(&conn, "p", "live", None).unwrap();
        assert_eq!(track.in_progress, Some((a, "x".to_string())));
        assert_eq!(track.watermark, None);
        commit(&mut conn, run, vec![], Progress::WindowDone { window: a });
        commit(&mut conn, run, vec![], Progress::WindowDone { window: b });
        commit(&mut conn, run, vec![], Progress::WindowDone { window: far });
        let track = ensure_track(&conn, "p", "live", None).unwrap();
        assert_eq!(track.in_progress, None);
        assert_eq!(track.watermark, Some(t("2024-02-02")));
        let ranges: Vec<(String, String)> = conn
            .prepare("SELECT range_start, range_end FROM coverage ORDER BY range_start")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ranges.len(), 2, "{ranges:?}");
        assert_eq!(ranges[0].0, "2024-01-01 00:00:00.000");
        assert_eq!(ranges[0].1, "2024-01-03 00:00:00.000");
    }

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
    }

    #[tokio::test]
    async fn close_checkpoints_the_wal_into_the_database_file_and_stops_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let store = Store::open(&path).unwrap();
        // Another connection stays open, so what empties the WAL is the checkpoint, not SQLite's
        // own one when the last connection closes.
        let reader = Connection::open(&path).unwrap();
        assert!(count(&reader, "SELECT COUNT(*) FROM sqlite_schema") > 0);
        store
            .call(|conn| ensure_track(conn, "p", "live", None).map(|_| ()))
            .await
            .unwrap();
        let wal = crate::dbfiles::with_suffix(&path, "-wal");
        assert!(std::fs::metadata(&wal).unwrap().len() > 0);
        store.close().await.unwrap();
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
        assert_eq!(
            count(
                &reader,
                "SELECT COUNT(*) FROM checkpoints WHERE pipeline = 'p'"
            ),
            1
        );
        assert!(matches!(
            store.call(|_| Ok(())).await,
            Err(StoreError::WriterGone)
        ));
    }

    #[test]
    fn migrations_are_idempotent_and_versioned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        drop(open_connection(&path).unwrap());
        let conn = open_connection(&path).unwrap();
        assert_eq!(count(&conn, "PRAGMA user_version"), schema_version());
        assert!(schema_version() >= 1);
        conn.pragma_update(None, "user_version", 999).unwrap();
        drop(conn);
        assert!(matches!(
            open_connection(&path),
            Err(StoreError::TooNew { found: 999, .. })
        ));
    }

    fn line(
        order: &str,
        sub: &str,
        code: &str,
        pay: i64,
        refund: Option<i64>,
        updated: &str,
    ) -> OrderRow {
        let status = if code == "3" {
            Status::Refunded
        } else {
            Status::Paid
        };
        let raw = format!("{{\"sub\":\"{sub}\",\"s\":{code},\"pay\":{pay},\"u\":\"{updated}\"}}");
        let mut o = OrderRow::new(SourceKind::Unidesk, order.into(), Kind::Sale, raw.clone());
        o.partial = true;
        o.status = status;
        o.status_raw = code.into();
        o.updated_at = Some(t(updated));
        o.sub_orders.push(crate::model::SubOrderRow {
            sub_order_id: sub.into(),
            sku_id: None,
            product_id: None,
            product_name: None,
            item_num: Some(1),
            pay_amount: Some(pay),
            status,
            status_raw: code.into(),
            raw,
            refund_amount: refund,
            commission: Some(pay / 10),
            updated_at: Some(t(updated)),
        });
        o
    }

    #[test]
    fn lines_split_across_pages_add_up_and_never_regress() {
        let (_d, mut conn, run) = setup();
        let w = Window {
            start: t("2024-01-01"),
            end: t("2024-01-02"),
        };
        let p = || Progress::Next {
            window: w,
            cursor: "c".into(),
        };
        let a = line(
            "9007199254740993001",
            "1",
            "2",
            100,
            None,
            "2024-01-01 10:00:00",
        );
        let b = line(
            "9007199254740993001",
            "2",
            "2",
            250,
            None,
            "2024-01-01 10:00:00",
        );
        commit(&mut conn, run, vec![a.clone()], p());
        commit(&mut conn, run, vec![b], p());
        let pay: i64 = count(&conn, "SELECT pay_amount FROM orders");
        assert_eq!(pay, 350);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM sub_orders"), 2);
        // The same line again changes nothing.
        assert_eq!(commit(&mut conn, run, vec![a.clone()], p()).changed, 0);
        // One line refunded later: the order stays paid (its other line is), refund is that line's.
        let b_refunded = line(
            "9007199254740993001",
            "2",
            "3",
            250,
            Some(250),
            "2024-01-01 12:00:00",
        );
        commit(&mut conn, run, vec![b_refunded], p());
        let (status, refund, updated): (String, i64, String) = conn
            .query_row(
                "SELECT status, refund_amount, updated_at FROM orders",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (status.as_str(), refund, updated.as_str()),
            ("paid", 250, "2024-01-01 12:00:00")
        );
        // An older copy of the refunded line does not bring it back.
        let b_old = line(
            "9007199254740993001",
            "2",
            "2",
            250,
            None,
            "2024-01-01 10:00:00",
        );
        assert_eq!(commit(&mut conn, run, vec![b_old], p()).changed, 0);
        assert_eq!(count(&conn, "SELECT refund_amount FROM orders"), 250);
        // Both refunded: the order is refunded, one history row for that change.
        let a_refunded = line(
            "9007199254740993001",
            "1",
            "3",
            100,
            Some(100),
            "2024-01-01 13:00:00",
        );
        commit(&mut conn, run, vec![a_refunded], p());
        let status: String = conn
            .query_row("SELECT status FROM orders", [], |r| r.get(0))
            .unwrap();
        assert_eq!(status, "refunded");
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM order_status_history"), 2);
        let raw: String = conn
            .query_row("SELECT raw FROM orders", [], |r| r.get(0))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(v["sub_orders"].as_array().map(Vec::len), Some(2));
    }
}
