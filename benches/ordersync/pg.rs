//! The bench's throwaway PostgreSQL cluster for its `postgres` rows, started as tests/common/pg.rs
//! starts the tests' one (initdb + pg_ctl on a free loopback port, its socket in its own temp dir,
//! password auth; as root the server runs as the `postgres` system user), stopped when the bench
//! ends, or, if the bench is killed, by a watchdog shell. It also reads the server's CPU time.
//!
//! Settings are PostgreSQL's defaults (fsync and full-page writes on) but one:
//! `synchronous_commit = off`, the durability SQLite's rows run with (WAL, `synchronous = NORMAL`):
//! a commit does not wait for the disk, survives the process, and may be lost with the last moments
//! before a power cut, which the checkpoint written in the same transaction makes safe to re-read.
//! `--pg-synchronous-commit` keeps PostgreSQL's default (`on`): every page waits for a WAL flush.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ordersync::secret::Secret;
use ordersync::store::pg::PgTarget;
use ordersync::store::Location;

/// The role the bench connects as (the cluster's superuser) and its password.
const PG_USER: &str = "ordersync_bench";
pub const PG_PASSWORD: &str = "bench-pg-pass";

pub struct Cluster {
    port: u16,
    dir: PathBuf,
    bindir: PathBuf,
    as_postgres: bool,
}

impl Cluster {
    /// Starts a cluster, or says why not: `Err` when PostgreSQL's programs are not installed.
    pub fn start(synchronous_commit: bool) -> Result<Cluster, String> {
        let bindir = find_bindir().ok_or("PostgreSQL not installed")?;
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::Builder::new()
            .prefix("ordersync-bench-pg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        std::fs::create_dir(dir.join("sock")).expect("socket dir");
        std::fs::write(dir.join("pwfile"), PG_PASSWORD).expect("password file");
        if as_postgres {
            let owned = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown runs");
            assert!(owned.success(), "chown of the cluster's dir to postgres");
        }
        let mut cluster = Cluster {
            port: 0,
            dir,
            bindir,
            as_postgres,
        };
        let init = cluster
            .command("initdb")
            .arg("-D")
            .arg(cluster.dir.join("data"))
            .args(["-U", PG_USER, "-A", "scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"])
            .arg(format!("--pwfile={}", cluster.dir.join("pwfile").display()))
            .output()
            .expect("initdb runs");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        watch_for_exit(&cluster);
        // A port found free may be taken before the server binds it: try a few.
        for _ in 0..5 {
            cluster.port = free_port();
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c synchronous_commit={}",
                cluster.port,
                cluster.dir.join("sock").display(),
                if synchronous_commit { "on" } else { "off" }
            );
            let started = cluster
                .command("pg_ctl")
                .arg("-D")
                .arg(cluster.dir.join("data"))
                .arg("-l")
                .arg(cluster.dir.join("log"))
                .args(["-w", "-t", "60", "-o", &options, "start"])
                .stdin(Stdio::null())
                .output()
                .expect("pg_ctl runs");
            if started.status.success() {
                return Ok(cluster);
            }
        }
        let log = std::fs::read_to_string(cluster.dir.join("log")).unwrap_or_default();
        panic!("the bench's PostgreSQL cluster did not start:\n{log}");
    }

    /// The URL of database `name` (no password in it: the child gets `PGPASSWORD`).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{name}", self.port)
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
            .port(self.port)
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
        let text = std::fs::read_to_string(self.dir.join("data").join("postmaster.pid"))
            .expect("postmaster.pid");
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("postmaster.pid names the postmaster")
    }

    /// One of PostgreSQL's programs, as the `postgres` user when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// The shell command that stops the server at once and removes its files.
    fn stop_script(&self) -> String {
        let run_as = if self.as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        };
        format!(
            "{run_as}'{}' -D '{}' -m immediate -w stop >/dev/null 2>&1; rm -rf '{}'",
            self.bindir.join("pg_ctl").display(),
            self.dir.join("data").display(),
            self.dir.display()
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .args(["-c", &self.stop_script()])
            .stdin(Stdio::null())
            .status();
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

/// The directory holding initdb, pg_ctl and postgres: PATH first, then Debian's versioned dirs,
/// newest first (as tests/common/pg.rs finds it).
fn find_bindir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| Some(e.ok()?.path().join("bin"))).collect())
        .unwrap_or_default();
    let version = |p: &PathBuf| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    };
    debian.sort_by_key(|p| std::cmp::Reverse(version(p)));
    on_path
        .into_iter()
        .filter_map(|d| std::fs::canonicalize(d.join("initdb")).ok())
        .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
        .chain(debian)
        .find(|d| {
            ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|p| d.join(p).is_file())
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A shell that stops the cluster once this process is gone, however it ended (a bench stopped
/// with Ctrl-C runs no `Drop`). It is never waited for: it outlives this process by design.
#[allow(clippy::zombie_processes)]
fn watch_for_exit(cluster: &Cluster) {
    let script = format!(
        "while kill -0 {} 2>/dev/null; do sleep 0.5; done; {}",
        std::process::id(),
        cluster.stop_script()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the cluster's watchdog starts");
}
