//! Where a command's database is: `--db` (a file, or a `postgres://` URL), else the config's
//! `[database]` (`path`, or `url` with `password`).
//!
//! A PostgreSQL password comes from `[database] password`, else from `PGPASSWORD` (as libpq
//! reads it); a URL carrying one is refused (exit 2), since it would show in `ps` and in shell
//! history.

use std::path::Path;

use crate::config::{Config, ConfigError, SecretSource};
use crate::secret::Secret;
use crate::store::pg::{PgError, PgTarget};
use crate::store::Location;

use super::Failure;

pub(super) fn location(db: Option<&Path>, config: &Config) -> Result<Location, Failure> {
    let configured_password = config
        .database_url
        .as_ref()
        .and_then(|d| d.password.as_ref());
    match db {
        Some(path) => match path.to_str().filter(|s| is_postgres_url(s)) {
            Some(url) => postgres(url, configured_password),
            None => Ok(Location::File(path.to_path_buf())),
        },
        None => match &config.database_url {
            Some(d) => postgres(&d.url, d.password.as_ref()),
            None => Ok(Location::File(config.database_path.clone())),
        },
    }
}

/// `PGPASSWORD`, PostgreSQL's own variable, when no other password is given (none when unset or
/// empty: the server may not ask for one).
pub(super) fn pgpassword() -> Option<Secret> {
    std::env::var("PGPASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
        .map(Secret::new)
}

fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

fn postgres(url: &str, password: Option<&SecretSource>) -> Result<Location, Failure> {
    let password = match password {
        Some(source) => Some(
            source
                .resolve()
                .map_err(|why| ConfigError::new(None, Some("database.password"), why))?,
        ),
        None => pgpassword(),
    };
    PgTarget::new(url, password)
        .map(|target| Location::Postgres(Box::new(target)))
        .map_err(usage_or_failure)
}

/// A PostgreSQL error as the exit code it deserves: 2 for a URL that cannot be used, 1 for the
/// server's answer.
pub(super) fn usage_or_failure(e: PgError) -> Failure {
    Failure {
        code: if e.is_usage() { 2 } else { 1 },
        error: e.into(),
    }
}
