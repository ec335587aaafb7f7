//! The bench's throwaway PostgreSQL cluster for its `postgres` rows: the tests' kind of cluster
//! (`ordersync_testpg::cluster`: initdb + pg_ctl on a free loopback port, password auth, stopped by
//! a watchdog if the bench is killed) with the bench's settings, stopped when the bench ends. It
//! also reads the server's CPU time.
//!
//! Settings are PostgreSQL's defaults (fsync and full-page writes on) but one:
//! `synchronous_commit = off`, the durability SQLite's rows run with (WAL, `synchronous = NORMAL`):
//! a commit does not wait for the disk, survives the process, and may be lost with the last moments
//! before a power cut, which the checkpoint written in the same transaction makes safe to re-read.
//! `--pg-synchronous-commit` keeps PostgreSQL's default (`on`): every page waits for a WAL flush.

use std::time::{Duration, Instant};

use ordersync::secret::Secret;
use ordersync::store::pg::PgTarget;
use ordersync::store::Location;
use ordersync_testpg::cluster::{self, Spec};

/// The role the bench connects as (the cluster's superuser) and its password.
const PG_USER: &str = "ordersync_bench";
pub const PG_PASSWORD: &str = "bench-pg-pass";

pub struct Cluster(cluster::Cluster);

impl Cluster {
    /// Starts a cluster, or says why not: `Err` when PostgreSQL's programs are not installed.
    pub fn start(synchronous_commit: bool) -> Result<Cluster, String> {
        let sync = if synchronous_commit {
            "synchronous_commit=on"
        } else {
            "synchronous_commit=off"
        };
        let spec = Spec {
            user: PG_USER,
            password: PG_PASSWORD,
            settings: &[sync],
            tls: false,
            prefix: "ordersync-bench-pg-",
        };
        cluster::Cluster::start(&spec)
            .map(Cluster)
            .map_err(|missing| format!("{missing} not installed"))
    }

    /// The URL of database `name` (no password in it: the child gets `PGPASSWORD`).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{name}", self.0.port)
    }

    /// Database `name` as ordersync's store opens it.
    pub fn location(&self, name: &str) -> Location {
        let target = PgTarget::new(&self.url(name), Some(Secret::new(PG_PASSWORD)))
            .expect("the bench's URL is valid");
        Location::Postgres(Box::new(target))
    }

    /// A new empty database `name` (dropped first if a row before left one).
    pub fn create_database(&self, name: &str) {
        self.admin(&format!("DROP DATABASE IF EXISTS {name}"));
        self.admin(&format!("CREATE DATABASE {name}"));
    }

    /// Drops database `name`, so a large world's rows do not stay on disk for the rest of the bench.
    pub fn drop_database(&self, name: &str) {
        self.admin(&format!("DROP DATABASE IF EXISTS {name}"));
    }

    fn admin(&self, sql: &str) {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.0.port)
            .user(PG_USER)
            .password(PG_PASSWORD)
            .dbname("postgres")
            .connect(postgres::NoTls)
            .and_then(|mut c| c.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        self.settle();
    }

    /// CPU time (user + sys) of the whole cluster so far: the postmaster, its live children
    /// (backends, WAL writer, checkpointer, background writer, autovacuum), and the children it
    /// has reaped (each connection's backend, once it has ended). Call [`Cluster::settle`] first,
    /// so no backend is between ending and being reaped.
    pub fn cpu(&self) -> Duration {
        let postmaster = self.postmaster_pid();
        let mut ticks = proc_stat(postmaster).map_or(0, |s| s.own + s.reaped);
        for child in children(postmaster) {
            ticks += proc_stat(child).map_or(0, |s| s.own);
        }
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_micros(ticks * 1_000_000 / per_second)
    }

    /// Waits (up to 10 s) until the server's children are back to its own background processes:
    /// the backends of connections that ended are gone and reaped, their CPU in the postmaster's.
    pub fn settle(&self) {
        let postmaster = self.postmaster_pid();
        let deadline = Instant::now() + Duration::from_secs(10);
        while children(postmaster).iter().any(|&pid| is_backend(pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn postmaster_pid(&self) -> i32 {
        self.0
            .postmaster_pid()
            .expect("postmaster.pid names the postmaster")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// CPU clock ticks of one process: its own, and those of its children it has reaped.
struct Ticks {
    own: u64,
    reaped: u64,
}

/// utime + stime and cutime + cstime from `/proc/PID/stat` (fields 14-17, counted after the
/// command name, which may hold spaces and ends at the last `)`).
fn proc_stat(pid: i32) -> Option<Ticks> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<u64> = text
        .get(text.rfind(')')? + 2..)?
        .split_whitespace()
        .skip(11) // state .. cmajflt: fields 3-13
        .take(4)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    (fields.len() == 4).then(|| Ticks {
        own: fields[0] + fields[1],
        reaped: fields[2] + fields[3],
    })
}

/// The processes whose parent is `parent`.
fn children(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|t| {
                    let rest = t.get(t.rfind(')')? + 2..)?;
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// Whether a child of the postmaster serves a client connection (or is a backend that ended and
/// waits to be reaped) rather than being one of the server's own background processes: a
/// backend's title is `postgres: USER DATABASE …`, a background process's `postgres: checkpointer`.
fn is_backend(pid: i32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let title = String::from_utf8_lossy(&cmdline);
    // A zombie has no command line left: it ended and is not reaped yet.
    title.is_empty() || title.starts_with(&format!("postgres: {PG_USER} "))
}
