//! One throwaway PostgreSQL cluster: initdb into a temp dir, the server on a free `127.0.0.1` port
//! with its unix socket in that dir, password (SCRAM) auth for one superuser, and a watchdog shell
//! that stops it and removes its files once the process that started it is gone, however it
//! ended. initdb refuses to run as root: as root (CI), the server runs as the `postgres` system
//! user, which owns the temp dir. The tests' shared cluster and the bench's are both this one,
//! with their own settings.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::certs::{make_certificates, PgTls};

/// What a cluster is started with.
pub struct Spec<'a> {
    /// The superuser clients connect as, and its password.
    pub user: &'a str,
    pub password: &'a str,
    /// Server settings (`name=value`) beyond the port, the socket dir and the loopback address.
    pub settings: &'a [&'a str],
    /// Serve TLS, with certificates made by `openssl` (without it the cluster speaks plaintext
    /// only, and [`Cluster::tls`] is `None`).
    pub tls: bool,
    /// How its temp dir's name begins.
    pub prefix: &'a str,
}

pub struct Cluster {
    pub port: u16,
    /// The certificate authorities, when the cluster serves TLS.
    pub tls: Option<PgTls>,
    dir: PathBuf,
    bindir: PathBuf,
    as_postgres: bool,
}

impl Cluster {
    /// Starts a cluster; `Err` when PostgreSQL's programs (initdb, pg_ctl, postgres, on PATH or
    /// in /usr/lib/postgresql/*/bin) are not installed. Panics when they are and it cannot start.
    pub fn start(spec: &Spec<'_>) -> Result<Cluster, String> {
        let bindir =
            find_bindir().ok_or_else(|| "PostgreSQL (initdb, pg_ctl, postgres)".to_string())?;
        // SAFETY: geteuid only reads the process's effective user id.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::Builder::new()
            .prefix(spec.prefix)
            .tempdir()
            .expect("temp dir")
            .keep();
        std::fs::create_dir(dir.join("sock")).expect("socket dir");
        std::fs::write(dir.join("pwfile"), spec.password).expect("password file");
        let tls = if spec.tls {
            std::fs::create_dir(dir.join("tls")).expect("certificates dir");
            make_certificates(&dir.join("tls"))
        } else {
            None
        };
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
            tls,
            dir,
            bindir,
            as_postgres,
        };
        let init = cluster
            .command("initdb")
            .arg("-D")
            .arg(cluster.data_dir())
            .args(["-U", spec.user, "-A", "scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"])
            .arg(format!("--pwfile={}", cluster.dir.join("pwfile").display()))
            .output()
            .expect("initdb runs");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        cluster.watch_for_exit();
        let mut settings: Vec<String> = spec.settings.iter().map(|s| s.to_string()).collect();
        if cluster.tls.is_some() {
            let tls = cluster.dir.join("tls");
            settings.push("ssl=on".into());
            settings.push(format!(
                "ssl_cert_file={}",
                tls.join("server.crt").display()
            ));
            settings.push(format!("ssl_key_file={}", tls.join("server.key").display()));
        }
        // A port found free may be taken before the server binds it: try a few.
        for _ in 0..5 {
            cluster.port = free_port();
            let mut options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1",
                cluster.port,
                cluster.dir.join("sock").display()
            );
            for setting in &settings {
                options.push_str(&format!(" -c {setting}"));
            }
            let started = cluster
                .command("pg_ctl")
                .arg("-D")
                .arg(cluster.data_dir())
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
        panic!("the throwaway PostgreSQL cluster did not start:\n{log}");
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's main process, from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Stops the server at once and removes its files.
    pub fn stop(&self) {
        let _ = Command::new("sh")
            .args(["-c", &self.stop_script()])
            .stdin(Stdio::null())
            .status();
    }

    /// The shell command that stops the server at once and removes its files.
    pub fn stop_script(&self) -> String {
        let run_as = if self.as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        };
        format!(
            "{run_as}'{}' -D '{}' -m immediate -w stop >/dev/null 2>&1; rm -rf '{}'",
            self.bindir.join("pg_ctl").display(),
            self.data_dir().display(),
            self.dir.display()
        )
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

    /// A shell that stops the cluster once this process is gone, however it ended (a SIGKILLed
    /// test run or a bench stopped with Ctrl-C runs no exit handler). It is never waited for: it
    /// outlives this process by design.
    #[allow(clippy::zombie_processes)]
    fn watch_for_exit(&self) {
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 0.2; done; {}",
            std::process::id(),
            self.stop_script()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the cluster's watchdog starts");
    }
}

/// The directory holding initdb, pg_ctl and postgres: PATH first, then Debian's versioned dirs,
/// newest first.
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
