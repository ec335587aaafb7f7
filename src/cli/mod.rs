//! The command line: parse arguments, load config, open the store, run a command, pick the exit code.
//!
//! Exit codes are the contract's: 0 success, 1 a pipeline failed, 2 the config (or a secret, or the
//! command line) is invalid. Errors reach the user as one sentence on stderr; `main.rs` prints them.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::{Auth, Config, ConfigError, Pipeline};
use crate::engine::Engine;
use crate::http::Http;
use crate::store::{self, Location, Store};
use crate::{backup, rejects, status};

mod check;
mod copy;
mod database;
mod late;
mod oneshot;
use check::check_command;
use copy::copy_command;
use late::{rescan_command, rewind_command};
use oneshot::{backfill_command, sync_command};

#[derive(Parser, Debug)]
#[command(
    name = "ordersync",
    version,
    about = "Keeps a SQLite database of orders in step with five Chinese order APIs"
)]
pub struct Cli {
    /// Config file [default: $ORDERSYNC_CONFIG, else ./pipelines.toml]
    #[arg(long, global = true, env = "ORDERSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database file, or postgres://user@host:port/db (overrides [database])
    #[arg(long, global = true)]
    pub db: Option<PathBuf>,
    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Daemon: every enabled pipeline on its cron schedule until SIGTERM/SIGINT
    Run,
    /// One incremental pass of the named pipelines (default: all enabled), then exit
    Sync { pipelines: Vec<String> },
    /// Fetch a historical range; running the same command again continues where it stopped
    Backfill {
        pipeline: String,
        /// YYYY-MM-DD or "YYYY-MM-DD HH:MM:SS", Beijing time
        #[arg(long)]
        from: String,
        /// Defaults to now
        #[arg(long)]
        to: Option<String>,
    },
    /// Re-read the recent past on the rescan track: the late changes live syncs missed
    Rescan {
        /// Default: every enabled pipeline with `rescan` set (with --since: every enabled one)
        pipelines: Vec<String>,
        /// How far back, e.g. 15d [default: the pipeline's `rescan`]
        #[arg(long)]
        since: Option<String>,
    },
    /// Move a pipeline's live watermark back to T (never forward); the next sync reads from there
    Rewind {
        pipeline: String,
        /// YYYY-MM-DD or "YYYY-MM-DD HH:MM:SS", Beijing time; not before the pipeline's start
        #[arg(long)]
        to: String,
    },
    /// Per pipeline: last run, watermark, lag, last error, backfills, finished ranges and gaps
    Status {
        #[arg(long)]
        json: bool,
    },
    /// List the upstream rows kept in rejected_rows because they could not be read
    Rejects {
        pipelines: Vec<String>,
        /// Also rows a good copy of the same order has resolved since
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Validate the config and that every secret resolves; --online also asks upstream once
    Check {
        pipelines: Vec<String>,
        #[arg(long)]
        online: bool,
    },
    /// Write a consistent copy of the database to PATH (mode 0600); safe while the daemon runs
    Backup { path: PathBuf },
    /// Copy the database into an empty PostgreSQL one, resumably, verified per source at the end
    Copy {
        /// postgres://user@host:port/database, with no password in it
        #[arg(long)]
        to: String,
        /// File holding the password [default: $PGPASSWORD]
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Rows per batch, each committed with the copy's progress in one transaction
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        batch_rows: u32,
    },
}

/// An error with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure {
            code: 2,
            error: e.into(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure { code: 1, error: e }
    }
}

pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let user = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
    // Dependencies' own trace output can include request lines; ours is redacted, theirs is not.
    let filter = EnvFilter::try_new(format!(
        "{user},hyper=warn,hyper_util=warn,reqwest=warn,h2=warn,rustls=warn"
    ))
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("pipelines.toml"));
    let config = Config::load(&config_path)?;
    let location = database::location(cli.db.as_deref(), &config)?;
    let ctx = Context {
        config,
        config_path,
        location,
    };
    match cli.command {
        Command::Status { json } => status_command(&ctx, json),
        Command::Rejects {
            pipelines,
            all,
            json,
        } => rejects_command(&ctx, &pipelines, all, json),
        Command::Backup { path } => backup_command(&ctx, &path),
        Command::Copy {
            to,
            password_file,
            batch_rows,
        } => copy_command(&ctx, &to, password_file.as_deref(), batch_rows as usize),
        Command::Check { pipelines, online } => check_command(&ctx, &pipelines, online),
        Command::Run => run_command(&ctx),
        Command::Sync { pipelines } => sync_command(&ctx, &pipelines),
        Command::Backfill { pipeline, from, to } => {
            backfill_command(&ctx, &pipeline, &from, to.as_deref())
        }
        Command::Rescan { pipelines, since } => rescan_command(&ctx, &pipelines, since.as_deref()),
        Command::Rewind { pipeline, to } => rewind_command(&ctx, &pipeline, &to),
    }
}

/// What every command starts from: the checked config and where the database is.
struct Context {
    config: Config,
    config_path: PathBuf,
    location: Location,
}

impl Context {
    /// The SQLite file, for the commands that work on one (`backup`, `copy`); exit 2 otherwise.
    fn sqlite_file(&self, command: &str) -> Result<&std::path::Path, Failure> {
        match &self.location {
            Location::File(path) => Ok(path),
            Location::Postgres(target) => Err(ConfigError::new(
                None,
                None,
                format!(
                    "`ordersync {command}` works on a SQLite file, and the database is PostgreSQL at {}",
                    target.shown()
                ),
            )
            .into()),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?)
}

fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn status_command(ctx: &Context, json: bool) -> Result<ExitCode, Failure> {
    let mut conn = store::open_db(&ctx.location)?;
    // A killed process's run shows (and is recorded) as `abandoned`, not `running`; best
    // effort, so that a read-only database still has a status.
    let _ = store::mark_abandoned_runs(conn.as_mut());
    let all = status::collect(conn.as_mut(), &ctx.config)?;
    if json {
        println!("{}", status::to_json(&all).context("status as JSON")?);
    } else {
        print!("{}", status::render_text(&all));
    }
    Ok(ExitCode::SUCCESS)
}

fn rejects_command(
    ctx: &Context,
    pipelines: &[String],
    all: bool,
    json: bool,
) -> Result<ExitCode, Failure> {
    let mut conn = store::open_db(&ctx.location)?;
    for name in pipelines {
        if ctx.config.pipeline(name).is_none() {
            return Err(ConfigError::new(
                Some(name),
                None,
                format!("is not defined in {}", ctx.config_path.display()),
            )
            .into());
        }
    }
    let rows = rejects::collect(conn.as_mut(), pipelines, all)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).context("rejected rows as JSON")?
        );
    } else {
        print!("{}", rejects::render_text(&rows, all));
    }
    Ok(ExitCode::SUCCESS)
}

fn backup_command(ctx: &Context, path: &std::path::Path) -> Result<ExitCode, Failure> {
    // Like `status`, no pipeline secrets are needed: nothing is fetched. PostgreSQL has its own
    // tools for this (pg_dump).
    let db = ctx.sqlite_file("backup")?;
    let done = backup::backup(db, path)?;
    println!(
        "{}: a consistent copy of {} ({} bytes)",
        path.display(),
        db.display(),
        done.bytes
    );
    Ok(ExitCode::SUCCESS)
}

fn run_command(ctx: &Context) -> Result<ExitCode, Failure> {
    let selected = select_with_auth(&ctx.config, &[])?;
    if selected.is_empty() {
        return Err(ConfigError::new(
            None,
            Some("enabled"),
            "is false for every pipeline: nothing to run",
        )
        .into());
    }
    let runtime = runtime()?;
    let engine = open_engine(&ctx.location)?;
    let store = engine.store.clone();
    let stopped = runtime.block_on(async {
        let (shutdown, force) = (CancellationToken::new(), CancellationToken::new());
        signals(shutdown.clone(), Some(force.clone()));
        crate::daemon::run(
            engine,
            selected,
            Arc::new(ctx.config.clone()),
            shutdown,
            force,
            SHUTDOWN_DEADLINE,
        )
        .await
    });
    close_store(&runtime, &store, stopped.is_err())?;
    stopped?;
    Ok(ExitCode::SUCCESS)
}

fn open_engine(location: &Location) -> Result<Engine, Failure> {
    let store = Store::open_at(location)?;
    let http = Http::new().context("cannot build the HTTP client")?;
    Ok(Engine {
        store,
        http,
        budgets: Default::default(),
    })
}

/// Closes the store before the process exits, copying the WAL into the database file. When the
/// command already failed, a failed close is only logged: a sync that failed on a full disk
/// cannot checkpoint either, and its own error is the one sentence the operator needs.
fn close_store(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
    already_failed: bool,
) -> Result<(), Failure> {
    match runtime.block_on(store.close()) {
        Err(e) if already_failed => {
            tracing::warn!("{e}");
            Ok(())
        }
        closed => Ok(closed?),
    }
}

impl From<backup::BackupError> for Failure {
    fn from(e: backup::BackupError) -> Self {
        Failure {
            code: 1,
            error: e.into(),
        }
    }
}

impl From<store::StoreError> for Failure {
    fn from(e: store::StoreError) -> Self {
        Failure {
            code: 1,
            error: e.into(),
        }
    }
}

/// The selected pipelines (default: every enabled one) with their secrets resolved; any problem is
/// a config error (exit 2). Disabled pipelines are checked by `Config::load` but need no secrets.
fn select_with_auth(
    config: &Config,
    names: &[String],
) -> Result<Vec<(Pipeline, Auth)>, ConfigError> {
    config
        .select(names)?
        .into_iter()
        .map(|p| Ok((p.clone(), p.resolve_auth()?)))
        .collect()
}

/// How long `run` waits for pipelines to finish their page after SIGTERM: inside the unit's
/// `TimeoutStopSec=30`.
const SHUTDOWN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// Cancels `first` on the first SIGINT or SIGTERM, and `second` (if any) on the next one.
fn signals(first: CancellationToken, second: Option<CancellationToken>) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("signal received: finishing the page in hand, then stopping");
        first.cancel();
        if let Some(second) = second {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            second.cancel();
        }
    });
}

fn cancel_on_signal(token: CancellationToken) {
    signals(token, None);
}
