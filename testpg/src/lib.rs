//! A throwaway PostgreSQL cluster for ordersync's tests — the library's unit tests (the store's
//! behaviours on both engines) and the integration tests alike, hence a crate of its own: started
//! once per test process ([`cluster`]: a free loopback port, password auth for one test role, TLS
//! with certificates of its own when `openssl` is there), a fresh database per test, and stopped
//! when the process exits — or, if the process is killed, by the cluster's watchdog. The bench
//! starts its own, with its own settings, from the same [`cluster::Cluster`].
//!
//! Without PostgreSQL's programs (initdb, pg_ctl, postgres on PATH or in /usr/lib/postgresql/*/bin)
//! the tests that need one are skipped ([`tool_missing`]), unless `ORDERSYNC_REQUIRE_TOOLS` is set.

mod certs;
pub mod cluster;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub use certs::PgTls;
use cluster::{Cluster, Spec};

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

/// The cluster's TLS authorities, or `None` (the test skipped, as `tools` does) without PostgreSQL
/// or `openssl`.
pub fn pg_tls() -> Option<PgTls> {
    let cluster = CLUSTER.get_or_init(start_cluster).as_ref()?;
    if cluster.tls.is_none() {
        tool_missing("openssl (to make the test cluster's certificates)");
    }
    cluster.tls.clone()
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

static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
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

/// The tests' cluster: durability off (a test's database is thrown away), TLS served.
fn start_cluster() -> Option<Cluster> {
    let spec = Spec {
        user: PG_USER,
        password: PG_PASSWORD,
        settings: &[
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
        ],
        tls: true,
        prefix: "ordersync-pg-",
    };
    match Cluster::start(&spec) {
        Ok(cluster) => {
            register_stop_at_exit(&cluster);
            Some(cluster)
        }
        Err(missing) => {
            tool_missing(&missing);
            None
        }
    }
}

static STOP_SCRIPT: OnceLock<String> = OnceLock::new();

/// Stops the cluster when the test process exits normally, before the watchdog would notice.
fn register_stop_at_exit(cluster: &Cluster) {
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
