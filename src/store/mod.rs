//! The SQLite store: the single writer, the connection every command opens, and the modules that
//! own the tables.
//!
//! Invariant: a page's orders, sub-orders, history rows, run counters *and* the checkpoint that says
//! the page is done are written in one transaction ([`commit_page`]), so a crash at any instant
//! leaves the database either before or after the page, never between. Upserts never let an older
//! copy of an order (by upstream update time) overwrite a newer one, and an identical copy is not
//! rewritten, so re-reading overlapping windows is harmless.
//!
//! All writes go through one thread that owns the connection ([`Store`]); async callers send it
//! closures and await the answer. Read-only callers (`status`) may open their own connection.
//!
//! One job per module: `migrate` (schema versions), `runs`, `tracks` (checkpoints and coverage),
//! `commit` (the page transaction), `upsert` and `partial` (order rows), `rejected` (rows that
//! could not be read), and `report`, the read side of the reports. Callers use the re-exports
//! below (and `store::report::*`), not the module paths. `pg` is PostgreSQL: its schema, connecting
//! to it, and `ordersync copy` into it.

mod commit;
mod late;
mod migrate;
mod partial;
pub mod pg;
mod rejected;
pub mod report;
mod runs;
pub mod sql;
#[cfg(test)]
mod test_support;
mod tracks;
mod upsert;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

use crate::dbfiles;
use sql::Db;

pub use commit::{commit_page, commit_pages, commit_stream, PageCommit, PageStats};
pub use late::{begin_rescan_pass, rewind_live, Rewind, RESCAN_SCOPE};
pub use migrate::schema_version;
pub use runs::{begin_run, finish_run, in_progress, mark_abandoned_runs, Outcome, RunInProgress};
pub use tracks::{ensure_track, register_windows, watermark, Progress, Track};

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
    #[error("the database connection holding this {scope} run was lost, and with it the run's claim on the pipeline; the run stops here and the next one resumes from its last checkpoint")]
    RunLost { pipeline: String, scope: String },
    /// Its own sentence, told once: `transparent`, not `{0}` with the same error as its source,
    /// which printed the sentence twice.
    #[error(transparent)]
    Postgres(#[from] pg::PgError),
    #[error("database: column {column} of a row read back: {problem}")]
    Value { column: usize, problem: String },
    #[error("database writer has stopped")]
    WriterGone,
    #[error("database {path}: its write-ahead log could not be copied into the database file at exit ({reason}); the commits are safe in its -wal file, and the next ordersync command to open it copies them in")]
    Checkpoint { path: String, reason: String },
}

/// This host's name, as a worker names itself (empty when it cannot be read).
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
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
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    use_wal(&conn).map_err(open_err)?;
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
    migrate::migrate(&mut conn)?;
    Ok(conn)
}

/// How long a connection waits for another process that holds the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// `journal_mode = WAL`, waiting for other processes as long as any statement would. SQLite answers
/// this pragma SQLITE_BUSY at once, without calling the busy handler, while another connection is
/// switching the same new file to WAL: processes starting together on a new database (the daemon,
/// a backfill unit, an operator's `status`) then failed with "database is locked".
fn use_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            done => return done,
        }
    }
}

type Job = Box<dyn FnOnce(&mut dyn Db) + Send>;

/// The database the writer thread holds.
enum Backend {
    Sqlite(Connection),
    Postgres(Box<pg::PgDb>),
}

impl Backend {
    /// The database at `location`, opened (created and migrated as needed).
    fn open(location: &Location) -> Result<Backend, StoreError> {
        Ok(match location {
            Location::File(path) => Backend::Sqlite(open_connection(path)?),
            Location::Postgres(target) => Backend::Postgres(Box::new(pg::PgDb::connect(target)?)),
        })
    }

    fn db(&mut self) -> &mut dyn Db {
        match self {
            Backend::Sqlite(conn) => conn,
            Backend::Postgres(db) => db.as_mut(),
        }
    }

    /// A PostgreSQL connection that has ended is made again, so a daemon outlives a server
    /// restart or a network cut: the runs begun on the old one have lost their locks and stop at
    /// their next commit (`runs::check_still_held`); new runs begin on the new one. If the server
    /// cannot be reached yet, the ended connection stays, and the job fails with its error.
    fn revive(&mut self, at: &Location) {
        if let (Backend::Postgres(db), Location::Postgres(target)) = (&mut *self, at) {
            if db.is_closed() {
                match pg::PgDb::connect(target) {
                    Ok(fresh) => {
                        tracing::warn!(database = %target.shown(), "the PostgreSQL connection had ended; connected again");
                        **db = fresh;
                    }
                    Err(e) => {
                        tracing::warn!(database = %target.shown(), error = %e, "the PostgreSQL connection has ended and cannot be made again yet")
                    }
                }
            }
        }
    }

    fn close(self, shown: &str) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(conn) => checkpoint_and_close(conn, shown),
            // Every commit is on the server already; the connection ends with the client.
            Backend::Postgres(_) => Ok(()),
        }
    }
}

/// Where the database is: a SQLite file, or a PostgreSQL database.
#[derive(Debug, Clone)]
pub enum Location {
    File(PathBuf),
    Postgres(Box<pg::PgTarget>),
}

impl Location {
    /// The location as it may be shown (a URL without its password).
    pub fn shown(&self) -> String {
        match self {
            Location::File(path) => path.display().to_string(),
            Location::Postgres(target) => target.shown(),
        }
    }
}

/// Opens (creating and migrating if needed) the database at `location`: what every command that
/// writes or reads the store without the writer thread calls.
pub fn open_db(location: &Location) -> Result<Box<dyn Db + Send>, StoreError> {
    Ok(match Backend::open(location)? {
        Backend::Sqlite(conn) => Box::new(conn),
        Backend::Postgres(db) => db,
    })
}

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
    location: Location,
}

impl Store {
    /// The SQLite file at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_at(&Location::File(path.to_path_buf()))
    }

    /// The database at `location`. A PostgreSQL client runs a small runtime of its own, so the
    /// connection is made on the writer thread, never inside the caller's tokio task.
    pub fn open_at(location: &Location) -> Result<Store, StoreError> {
        let (tx, rx) = mpsc::channel::<Message>();
        let (opened_tx, opened_rx) = mpsc::channel::<Result<(), StoreError>>();
        let shown = location.shown();
        let at = location.clone();
        std::thread::Builder::new()
            .name("ordersync-store".into())
            .spawn(move || {
                let opened = Backend::open(&at);
                let mut backend = match opened.and_then(|mut b| {
                    mark_abandoned_runs(b.db())?;
                    Ok(b)
                }) {
                    Ok(backend) => {
                        let _ = opened_tx.send(Ok(()));
                        backend
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                for message in rx {
                    match message {
                        Message::Job(job) => {
                            backend.revive(&at);
                            job(backend.db())
                        }
                        Message::Close(done) => {
                            let _ = done.send(backend.close(&shown));
                            return;
                        }
                    }
                }
            })
            .map_err(|_| StoreError::WriterGone)?;
        opened_rx.recv().map_err(|_| StoreError::WriterGone)??;
        Ok(Store {
            jobs: tx,
            location: location.clone(),
        })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Runs `f` on the writer thread and returns its result.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Db) -> Result<R, StoreError> + Send + 'static,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{count, on_both_engines, TestDb};

    on_both_engines!(a_closed_store_has_committed_its_jobs_and_refuses_more);

    fn a_closed_store_has_committed_its_jobs_and_refuses_more(db: &mut TestDb, _run: i64) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = Store::open_at(db.location()).unwrap();
        runtime.block_on(async {
            store
                .call(|conn| ensure_track(conn, "q", "live", None).map(|_| ()))
                .await
                .unwrap();
            store.close().await.unwrap();
            assert!(matches!(
                store.call(|_| Ok(())).await,
                Err(StoreError::WriterGone)
            ));
        });
        assert_eq!(
            count(db, "SELECT COUNT(*) FROM checkpoints WHERE pipeline = 'q'"),
            1
        );
    }

    #[tokio::test]
    async fn close_checkpoints_the_wal_into_the_database_file_and_stops_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let store = Store::open(&path).unwrap();
        // Another connection stays open, so what empties the WAL is the checkpoint, not SQLite's
        // own one when the last connection closes.
        let mut reader = Connection::open(&path).unwrap();
        assert!(count(&mut reader, "SELECT COUNT(*) FROM sqlite_schema") > 0);
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
                &mut reader,
                "SELECT COUNT(*) FROM checkpoints WHERE pipeline = 'p'"
            ),
            1
        );
        assert!(matches!(
            store.call(|_| Ok(())).await,
            Err(StoreError::WriterGone)
        ));
    }
}
