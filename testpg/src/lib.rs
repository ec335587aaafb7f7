//! A throwaway PostgreSQL cluster for ordersync's tests — the library's unit tests (the store's
//! behaviours on both engines) and the integration tests alike, hence a crate of its own: started
//! once per test process on a free loopback port (its unix socket in its own temp dir too),
//! password auth for one test role, a fresh database per test, and stopped when the process exits
//! — or, if the process is killed, by a watchdog shell that waits for it to go. initdb refuses to
//! run as root: as root (CI), the server runs as the `postgres` system user, which owns the temp dir.
//!
//! Without PostgreSQL's programs (initdb, pg_ctl, postgres on PATH or in /usr/lib/postgresql/*/bin)
//! the tests that need one are skipped ([`tool_missing`]), unless `ORDERSYNC_REQUIRE_TOOLS` is set.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Says `what` is missing: `SKIPPED: <what> is not installed (.ci/run installs it)`, or a panic
/// with that sentence when `ORDERSYNC_REQUIRE_TOOLS` is set (`.ci/run` sets it after installing
/// them), where a missing program fails the test instead of passing it unseen.
pub fn tool_missing(what: &str) {
    let why = format!("{what} is not installed (.ci/run installs it)");
    if std::env::var_os("ORDERSYNC_REQUIRE_TOOLS").is_some() {
        panic!("{why}, and ORDERSYNC_REQUIRE_TOOLS is set");
    }
    eprintln!("SKIPPED: {why}");
}

/// The role the tests connect as (the cluster's superuser) and its password.
pub const PG_USER: &str = "ordersync_test";
pub const PG_PASSWORD: &str = "SeCrEt-pg-pass-0e0e";

pub struct PgCluster {
    pub port: u16,
    /// The CA that signed the server's certificate (for 127.0.0.1), and one that did not, when
    /// `openssl` was there to make them: the server then speaks TLS to clients that ask.
    tls: Option<PgTls>,
    dir: PathBuf,
    bindir: PathBuf,
    as_postgres: bool,
}

/// Certificate authorities for the TLS tests, as PEM files.
#[derive(Clone)]
pub struct PgTls {
    /// Signed the server's certificate, which names 127.0.0.1 (and not `localhost`).
    pub ca: PathBuf,
    /// Signed nothing the server shows.
    pub other_ca: PathBuf,
}

/// The cluster's TLS authorities, or `None` (the test skipped, as `tools` does) without PostgreSQL
/// or `openssl`.
pub fn pg_tls() -> Option<PgTls> {
    let cluster = CLUSTER.get_or_init(start_cluster).as_ref()?;
    if cluster.tls.is_none() {
        tool_missing("openssl (to make the test cluster's certificates)");
    }
    cluster.tls.clone()
}

/// Makes a CA and a server certificate for 127.0.0.1 signed by it, and a second CA, in `dir`.
fn make_certificates(dir: &Path) -> Option<PgTls> {
    let openssl = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = |name: &str| {
        let (key, crt, subject) = (
            format!("{name}.key"),
            format!("{name}.crt"),
            format!("/CN=ordersync test {name}"),
        );
        let mut args = vec!["req", "-x509", "-days", "3", "-subj", &subject];
        args.extend(ec);
        args.extend([
            "-keyout",
            &key,
            "-out",
            &crt,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&args)
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .ok()?;
    let mut request = vec!["req", "-subj", "/CN=127.0.0.1", "-keyout", "server.key"];
    request.extend(ec);
    request.extend(["-out", "server.csr"]);
    let made = ca("ca")
        && ca("other_ca")
        && openssl(&request)
        && openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ]);
    // The server refuses a key others may read.
    let private = std::fs::set_permissions(
        dir.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .is_ok();
    (made && private).then(|| PgTls {
        ca: dir.join("ca.crt"),
        other_ca: dir.join("other_ca.crt"),
    })
}

/// A database of its own for one test.
pub struct PgDb {
    pub name: String,
    pub port: u16,
}

impl PgDb {
    /// Its URL, with no password in it.
    pub fn url(&self) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{}", self.port, self.name)
    }

    pub fn client(&self) -> postgres::Client {
        pg_client(self.port, &self.name)
    }
}

static CLUSTER: OnceLock<Option<PgCluster>> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(1);

/// A new empty database on this process's cluster (started on first use), or `None` when
/// PostgreSQL is not installed and `ORDERSYNC_REQUIRE_TOOLS` is not set (the test is skipped).
pub fn pg_database() -> Option<PgDb> {
    let cluster = CLUSTER.get_or_init(start_cluster).as_ref()?;
    let name = format!("t_{}", NEXT_DB.fetch_add(1, Ordering::SeqCst));
    pg_client(cluster.port, "postgres")
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create the test database");
    Some(PgDb {
        name,
        port: cluster.port,
    })
}

pub fn pg_client(port: u16, db: &str) -> postgres::Client {
    postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user(PG_USER)
        .password(PG_PASSWORD)
        .dbname(db)
        .connect(postgres::NoTls)
        .expect("connect to the test cluster")
}

/// The directory holding initdb, pg_ctl and postgres: PATH first, then Debian's versioned dirs.
fn find_bindir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    debian.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    debian.reverse();
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

fn start_cluster() -> Option<PgCluster> {
    let Some(bindir) = find_bindir() else {
        tool_missing("PostgreSQL (initdb, pg_ctl, postgres)");
        return None;
    };
    let as_postgres = unsafe { libc::geteuid() } == 0;
    let dir = tempfile::Builder::new()
        .prefix("ordersync-pg-")
        .tempdir()
        .expect("temp dir")
        .keep();
    std::fs::create_dir(dir.join("sock")).expect("socket dir");
    std::fs::write(dir.join("pwfile"), PG_PASSWORD).expect("password file");
    std::fs::create_dir(dir.join("tls")).expect("certificates dir");
    let tls = make_certificates(&dir.join("tls"));
    if as_postgres {
        let owned = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("chown runs");
        assert!(owned.success(), "chown of the cluster's dir to postgres");
    }
    let mut cluster = PgCluster {
        port: 0,
        tls,
        dir,
        bindir,
        as_postgres,
    };
    let init = cluster
        .command("initdb")
        .arg("-D")
        .arg(cluster.dir.join("data"))
        .args([
            "-U",
            PG_USER,
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        ])
        .arg(format!("--pwfile={}", cluster.dir.join("pwfile").display()))
        .output()
        .expect("initdb runs");
    assert!(
        init.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    // A port found free may be taken before the server binds it: try a few.
    for _ in 0..5 {
        cluster.port = free_port();
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            cluster.port,
            cluster.dir.join("sock").display()
        );
        if cluster.tls.is_some() {
            let tls = cluster.dir.join("tls");
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                tls.join("server.crt").display(),
                tls.join("server.key").display()
            ));
        }
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
            watch_for_exit(&cluster);
            register_stop_at_exit(&cluster);
            return Some(cluster);
        }
    }
    let log = std::fs::read_to_string(cluster.dir.join("log")).unwrap_or_default();
    panic!("the test PostgreSQL cluster did not start:\n{log}");
}

impl PgCluster {
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
        let pg_ctl = self.bindir.join("pg_ctl");
        let run_as = if self.as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        };
        format!(
            "{run_as}'{}' -D '{}' -m immediate -w stop >/dev/null 2>&1; rm -rf '{}'",
            pg_ctl.display(),
            self.dir.join("data").display(),
            self.dir.display()
        )
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A shell that stops the cluster once this process is gone, however it ended (a SIGKILLed test
/// run runs no exit handler). It is never waited for: it outlives this process by design.
#[allow(clippy::zombie_processes)]
fn watch_for_exit(cluster: &PgCluster) {
    let script = format!(
        "while kill -0 {} 2>/dev/null; do sleep 0.2; done; {}",
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

static STOP_SCRIPT: OnceLock<String> = OnceLock::new();

/// Stops the cluster when the test process exits normally, before the watchdog would notice.
fn register_stop_at_exit(cluster: &PgCluster) {
    extern "C" fn stop() {
        if let Some(script) = STOP_SCRIPT.get() {
            let _ = Command::new("sh")
                .args(["-c", script])
                .stdin(Stdio::null())
                .status();
        }
    }
    if STOP_SCRIPT.set(cluster.stop_script()).is_ok() {
        // SAFETY: `stop` is a plain extern "C" fn that lives as long as the process.
        unsafe {
            libc::atexit(stop);
        }
    }
}
