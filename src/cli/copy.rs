//! `ordersync copy --to postgres://user@host:port/db`: the SQLite database into an empty
//! PostgreSQL one (`store::pg::copy` does it), with the password from `PGPASSWORD` or
//! `--password-file`, a progress bar on a TTY, and the verification printed at the end.
//!
//! Exit codes: 0 copied and verified equal; 1 the copy failed, was refused, or the verification
//! found a difference; 2 the command line is wrong (a URL carrying a password or asking for TLS,
//! an unreadable password file).

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use crate::config::{ConfigError, SecretSource};
use crate::secret::Secret;
use crate::store::pg::copy::{copy, CopyError, CopyOptions};
use crate::store::pg::PgTarget;

use super::database::usage_or_failure;
use super::{Context, Failure};

pub(super) fn copy_command(
    ctx: &Context,
    to: &str,
    password_file: Option<&Path>,
    batch_rows: usize,
) -> Result<ExitCode, Failure> {
    let from = ctx.sqlite_file("copy")?;
    let password = password(password_file)?;
    let target = PgTarget::new(to, password).map_err(usage_or_failure)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} copy [{bar:30}] {pos}/{len} rows, {per_sec}, {eta} left",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let started = std::time::Instant::now();
    let done = copy(
        from,
        &target,
        &CopyOptions { batch_rows },
        &mut |copied, total| {
            if let Some(bar) = &bar {
                bar.set_length(total);
                bar.set_position(copied);
            }
        },
    );
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = done.map_err(|e| match e {
        CopyError::Pg(e) => usage_or_failure(e),
        e => Failure::from(anyhow::Error::from(e)),
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{} → {}: {} rows copied{} in {elapsed:.1}s ({:.0} rows/s)",
        from.display(),
        target.shown(),
        report.rows_copied,
        if report.resumed {
            ", continuing an earlier copy"
        } else {
            ""
        },
        report.rows_copied as f64 / elapsed.max(0.001)
    );
    print!("{}", report.verification.render());
    let mismatches = report.verification.mismatches();
    for m in &mismatches {
        eprintln!("ordersync: copy verification: {m}");
    }
    if mismatches.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "ordersync: the copy differs from {} (was the database written during the copy? stop the daemon and copy into a new database)",
            from.display()
        );
        Ok(ExitCode::from(1))
    }
}

/// The password: `--password-file` when given, else `PGPASSWORD`, else none (the server may not
/// ask for one).
fn password(file: Option<&Path>) -> Result<Option<Secret>, ConfigError> {
    if let Some(path) = file {
        return SecretSource::File(path.display().to_string())
            .resolve()
            .map(Some)
            .map_err(|why| ConfigError::new(None, None, format!("--password-file {why}")));
    }
    Ok(super::database::pgpassword())
}
