//! PostgreSQL as a database for ordersync: where one is (a `postgres://` URL and a password kept as
//! a [`Secret`]), connecting to it, and its versioned schema (`migrate`, `schema.sql` beside this
//! file). `copy` moves a SQLite database into one (`ordersync copy`), and `verify` checks it.
//!
//! Invariant: the password never reaches a log line or an error. A URL carrying one is refused
//! before anything else (it would show in `ps` and in shell history); the URL is only ever shown
//! through the project's [`Redactor`], and every message the server or the client library sends
//! back is scrubbed of the password. TLS is the URL's to ask for, with libpq's `sslmode` and
//! `sslrootcert` (`tls`); without `sslmode` connections are plaintext.
//!
//! The client is the synchronous `postgres` crate, which runs a small runtime of its own: call it
//! from a plain thread, never from inside a tokio task.

pub mod copy;
mod db;
mod migrate;
mod tables;
mod tls;
pub mod verify;

use std::str::FromStr;
use std::time::Duration;

use url::Url;

use crate::redact::Redactor;
use crate::secret::Secret;

pub use db::PgDb;
pub use migrate::{migrate, schema_version};
use tls::{Tls, TlsMode};

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL itself is unusable: a mistake on the command line or in the config.
    #[error("{0}")]
    Url(String),
    #[error("cannot connect to PostgreSQL at {url}: {problem}")]
    Connect { url: String, problem: String },
    #[error("PostgreSQL at {url}: {problem}")]
    Sql { url: String, problem: String },
    #[error("PostgreSQL database {url} has schema version {found}, newer than this ordersync understands ({known}); upgrade ordersync")]
    TooNew { url: String, found: i64, known: i64 },
}

impl PgError {
    /// Whether the error is the user's input (exit 2) rather than the database's answer (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, PgError::Url(_))
    }
}

/// A PostgreSQL database to connect to: its URL (holding no password) and the password apart.
#[derive(Debug, Clone)]
pub struct PgTarget {
    url: Url,
    config: postgres::Config,
    /// `None`: plaintext (`sslmode` absent, `disable` or `allow`).
    tls: Option<Tls>,
    password: Option<Secret>,
    redactor: Redactor,
}

/// How long after a worker's host vanishes the server drops its connection, and with it the locks
/// of the runs it had in progress: 10 s idle + 3 keepalives 5 s apart.
pub const DEAD_PEER: Duration = Duration::from_secs(25);

/// How long a connection attempt may take before it is an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl PgTarget {
    /// Checks `url` (`postgres://user@host:port/db`, no password in it, no TLS asked for) and
    /// keeps `password` beside it.
    pub fn new(url: &str, password: Option<Secret>) -> Result<PgTarget, PgError> {
        let redactor = Redactor::new(password.iter());
        let parsed = Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "postgres" | "postgresql"))
            .ok_or_else(|| {
                PgError::Url(
                    "the PostgreSQL URL must look like postgres://user@host:port/database".into(),
                )
            })?;
        let password_in_query = parsed
            .query_pairs()
            .any(|(k, _)| k.eq_ignore_ascii_case("password"));
        if parsed.password().is_some() || password_in_query {
            return Err(PgError::Url(format!(
                "the PostgreSQL URL {} carries a password, which would show in `ps` and in shell history; give it in the PGPASSWORD environment variable or with --password-file instead",
                redactor.url(&parsed)
            )));
        }
        // The TLS settings are ours to read (the client library knows no verify-* modes); the
        // rest of the query goes to it as it came.
        let query = |key: &str| {
            parsed
                .query_pairs()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.into_owned())
        };
        if let Some(key) = ["sslcert", "sslkey", "sslpassword"]
            .into_iter()
            .find(|k| query(k).is_some())
        {
            return Err(PgError::Url(format!(
                "the PostgreSQL URL {} names {key}: client certificates are not supported; authenticate with a password",
                redactor.url(&parsed)
            )));
        }
        let mode = TlsMode::parse(query("sslmode").as_deref()).map_err(|why| {
            PgError::Url(format!(
                "the PostgreSQL URL {}: {why}",
                redactor.url(&parsed)
            ))
        })?;
        let tls = Tls::new(
            mode,
            tls::root_file(query("sslrootcert").as_deref()).as_deref(),
        )
        .map_err(|why| {
            PgError::Url(format!(
                "the PostgreSQL URL {}: {why}",
                redactor.url(&parsed)
            ))
        })?;
        let mut for_client = parsed.clone();
        let rest: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(k, _)| {
                !["sslmode", "sslrootcert"]
                    .iter()
                    .any(|ours| k.eq_ignore_ascii_case(ours))
            })
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if rest.is_empty() {
            for_client.set_query(None);
        } else {
            for_client.query_pairs_mut().clear().extend_pairs(rest);
        }
        if parsed.path().trim_start_matches('/').is_empty() {
            return Err(PgError::Url(format!(
                "the PostgreSQL URL {} names no database; add /DATABASE after the port",
                redactor.url(&parsed)
            )));
        }
        let mut config = postgres::Config::from_str(for_client.as_str()).map_err(|e| {
            PgError::Url(format!(
                "the PostgreSQL URL {} cannot be read: {}",
                redactor.url(&parsed),
                redactor.scrub(&e.to_string())
            ))
        })?;
        if let Some(p) = &password {
            config.password(p.expose());
        }
        config.ssl_mode(mode.ssl_mode());
        config.connect_timeout(CONNECT_TIMEOUT);
        // Who holds a connection, for an operator reading pg_stat_activity (and its run locks in
        // pg_locks): ordersync, its host and its process.
        config.application_name(&format!(
            "ordersync {} pid {}",
            super::hostname(),
            std::process::id()
        ));
        // A run's lock lives as long as its connection. A killed process's goes at once; for a
        // host that vanished (power, network) the server gives up on the connection, and so
        // frees its locks, after DEAD_PEER: keepalives after 10 s idle, every 5 s, 3 unanswered
        // (and unacknowledged data after as long). The client keeps the same watch on the server.
        config.options(&format!(
            "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 \
             -c tcp_user_timeout={}",
            DEAD_PEER.as_millis()
        ));
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        Ok(PgTarget {
            url: parsed,
            config,
            tls,
            password,
            redactor,
        })
    }

    /// The URL as it may be shown: no password, sensitive query values hidden.
    pub fn shown(&self) -> String {
        self.redactor.url(&self.url)
    }

    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// A new connection, over TLS if the URL's `sslmode` asks for it.
    pub fn connect(&self) -> Result<postgres::Client, PgError> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(postgres::NoTls),
        }
        .map_err(|e| PgError::Connect {
            url: self.shown(),
            problem: self.describe(&e),
        })
    }

    /// A connection with the schema migrated to this binary's version.
    pub fn connect_migrated(&self) -> Result<postgres::Client, PgError> {
        let mut client = self.connect()?;
        migrate(&mut client, self)?;
        Ok(client)
    }

    /// The one sentence an error from the client library or the server comes down to, scrubbed of
    /// the password.
    pub fn describe(&self, e: &postgres::Error) -> String {
        let text = match e.as_db_error() {
            Some(db) => match db.detail() {
                Some(detail) => format!("{} ({detail})", db.message()),
                None => db.message().to_string(),
            },
            None => {
                // The library's own text, with its cause (the OS's "connection refused").
                let mut text = e.to_string();
                let mut cause = std::error::Error::source(e);
                while let Some(c) = cause {
                    let more = c.to_string();
                    if !text.contains(&more) {
                        text = format!("{text}: {more}");
                    }
                    cause = c.source();
                }
                text
            }
        };
        self.redactor.scrub(&text)
    }

    /// `e` as a [`PgError::Sql`], with `doing` saying what was being done.
    pub fn sql_error(&self, doing: &str, e: &postgres::Error) -> PgError {
        PgError::Sql {
            url: self.shown(),
            problem: format!("{doing}: {}", self.describe(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_refused_without_showing_it() {
        for url in [
            "postgres://u:SeCrEt-pw@127.0.0.1:5432/db",
            "postgres://u@127.0.0.1:5432/db?password=SeCrEt-pw",
        ] {
            let e = PgTarget::new(url, None).unwrap_err();
            assert!(e.is_usage());
            let text = e.to_string();
            assert!(text.contains("carries a password"), "{text}");
            assert!(!text.contains("SeCrEt"), "{text}");
        }
    }

    #[test]
    fn tls_settings_are_read_and_a_bad_one_is_the_users_mistake() {
        for mode in ["disable", "allow", "prefer", "require"] {
            PgTarget::new(&format!("postgres://u@h:5432/db?sslmode={mode}"), None).unwrap();
        }
        // The client library is given the rest of the query, without the settings it cannot read.
        let t = PgTarget::new(
            "postgres://u@h:5432/db?sslmode=require&target_session_attrs=read-write",
            None,
        )
        .unwrap();
        assert_eq!(
            t.config.get_target_session_attrs(),
            postgres::config::TargetSessionAttrs::ReadWrite
        );
        for (url, says) in [
            (
                "postgres://u@h:5432/db?sslmode=verify",
                "sslmode=verify is not one of",
            ),
            (
                "postgres://u@h:5432/db?sslmode=verify-full&sslrootcert=/nonexistent/root.crt",
                "/nonexistent/root.crt",
            ),
            (
                "postgres://u@h:5432/db?sslcert=/c.pem",
                "client certificates",
            ),
        ] {
            let e = PgTarget::new(url, None).unwrap_err();
            assert!(e.is_usage(), "{e}");
            assert!(e.to_string().contains(says), "{e}");
        }
        assert!(PgTarget::new("postgres://u@h:5432", None).is_err());
        assert!(PgTarget::new("mysql://u@h/db", None).is_err());
    }

    #[test]
    fn the_password_is_kept_apart_from_the_shown_url() {
        let t = PgTarget::new("postgres://u@h:5432/db", Some(Secret::new("SeCrEt-pw"))).unwrap();
        assert!(t.has_password());
        assert_eq!(t.shown(), "postgres://u@h:5432/db");
        assert!(!format!("{t:?}").contains("SeCrEt"));
    }
}
