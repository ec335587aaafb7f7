//! The command line: parse arguments, load config, open the store, run a command, pick the exit code.
//!
//! Exit codes are the contract's: 0 success, 1 a pipeline failed, 2 the config (or a secret, or the
//! command line) is invalid. Errors reach the user as one sentence on stderr; `main.rs` prints them.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::NaiveDateTime;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::{Auth, Config, ConfigError, Pipeline};
use crate::engine::{Engine, Mode, RunEvent, RunReport};
use crate::http::Http;
use crate::store::{self, Outcome, Store};
use crate::{backup, rejects, status, timefmt};

mod check;
mod copy;
mod late;
use check::check_command;
use copy::copy_command;
use late::{rescan_command, rewind_command};

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
    /// Database file (overrides [database].path)
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
    let db_path = cli
        .db
        .clone()
        .unwrap_or_else(|| config.database_path.clone());
    let ctx = Context {
        config,
        config_path,
        db_path,
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
    db_path: PathBuf,
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
    let mut conn = store::open_connection(&ctx.db_path)?;
    // A killed process's run shows (and is recorded) as `abandoned`, not `running`; best
    // effort, so that a read-only database still has a status.
    let _ = store::mark_abandoned_runs(&mut conn);
    let all = status::collect(&conn, &ctx.config)?;
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
    let conn = store::open_connection(&ctx.db_path)?;
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
    let rows = rejects::collect(&conn, pipelines, all)?;
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
    // Like `status`, no pipeline secrets are needed: nothing is fetched.
    let done = backup::backup(&ctx.db_path, path)?;
    println!(
        "{}: a consistent copy of {} ({} bytes)",
        path.display(),
        ctx.db_path.display(),
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
    let engine = open_engine(&ctx.db_path)?;
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

fn sync_command(ctx: &Context, pipelines: &[String]) -> Result<ExitCode, Failure> {
    let selected = select_with_auth(&ctx.config, pipelines)?;
    let runtime = runtime()?;
    let engine = open_engine(&ctx.db_path)?;
    let expected = selected.len();
    let reports = runtime.block_on(sync_all(&engine, selected));
    // A pipeline whose task ended without a report (it panicked) is a failure too.
    let mut ok = reports.len() == expected;
    for r in &reports {
        print_report(r);
        ok &= r.outcome == Outcome::Ok;
    }
    close_store(&runtime, &engine.store, !ok)?;
    Ok(exit_code(ok))
}

/// `--from`/`--to` of a backfill as a Beijing time, or one sentence naming the option.
fn backfill_time(pipeline: &str, option: &str, text: &str) -> Result<NaiveDateTime, ConfigError> {
    timefmt::parse_user_time(text).ok_or_else(|| {
        ConfigError::new(
            Some(pipeline),
            Some(option),
            format!("must be YYYY-MM-DD or \"YYYY-MM-DD HH:MM:SS\", got {text:?}"),
        )
    })
}

fn backfill_command(
    ctx: &Context,
    pipeline: &str,
    from: &str,
    to: Option<&str>,
) -> Result<ExitCode, Failure> {
    let from = backfill_time(pipeline, "--from", from)?;
    let to = to.map(|t| backfill_time(pipeline, "--to", t)).transpose()?;
    if to.is_some_and(|t| t <= from) {
        return Err(
            ConfigError::new(Some(pipeline), Some("--to"), "must be later than --from").into(),
        );
    }
    let mut selected = select_with_auth(&ctx.config, &[pipeline.to_string()])?;
    let (p, auth) = selected.remove(0);
    if p.source().is_snapshot() {
        return Err(ConfigError::new(
            Some(&p.name),
            None,
            format!(
                "`{}` answers a full snapshot of every order with no time filter, so there is no history to backfill; `ordersync sync {}` fetches everything",
                p.source(), p.name
            ),
        )
        .into());
    }
    let runtime = runtime()?;
    let engine = open_engine(&ctx.db_path)?;
    let report = runtime.block_on(async {
        let cancel = CancellationToken::new();
        cancel_on_signal(cancel.clone());
        let bar = progress_bar(&p.name, None);
        run_with_bar(
            &engine,
            &p,
            &auth,
            Mode::Backfill { from, to },
            &cancel,
            bar,
        )
        .await
    });
    print_report(&report);
    if report.outcome == Outcome::Interrupted {
        eprintln!("ordersync: backfill interrupted; run the same command again to continue where it stopped");
    }
    close_store(&runtime, &engine.store, report.outcome != Outcome::Ok)?;
    Ok(exit_code(report.outcome == Outcome::Ok))
}

fn open_engine(db_path: &std::path::Path) -> Result<Engine, Failure> {
    let store = Store::open(db_path)?;
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

async fn sync_all(engine: &Engine, selected: Vec<(Pipeline, Auth)>) -> Vec<RunReport> {
    let cancel = CancellationToken::new();
    cancel_on_signal(cancel.clone());
    let mut tasks = Vec::new();
    for (p, auth) in selected {
        let (engine, cancel) = (engine.clone(), cancel.clone());
        tasks.push(tokio::spawn(async move {
            engine
                .run_pipeline(&p, &auth, Mode::Live, &cancel, &mut |_| {})
                .await
        }));
    }
    let mut reports = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => reports.push(r),
            Err(e) => tracing::error!(error = %e, "a pipeline task ended abnormally"),
        }
    }
    reports
}

/// A progress bar for one pipeline's run on a TTY (added to `multi` when several run at once);
/// `None` when stderr is not a terminal.
fn progress_bar(
    pipeline: &str,
    multi: Option<&indicatif::MultiProgress>,
) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {prefix} [{bar:30}] {pos}/{len} windows, {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(pipeline.to_string());
        match multi {
            Some(m) => m.add(bar),
            None => bar,
        }
    })
}

/// One run that shows its windows and rows on `bar`, if any: a backfill's or a rescan's.
async fn run_with_bar(
    engine: &Engine,
    p: &Pipeline,
    auth: &Auth,
    mode: Mode,
    cancel: &CancellationToken,
    bar: Option<indicatif::ProgressBar>,
) -> RunReport {
    let mut rows = 0u64;
    let mut on_event = |e: &RunEvent| {
        let Some(bar) = &bar else { return };
        match e {
            RunEvent::Planned { windows } => bar.set_length(*windows as u64),
            RunEvent::Page { window, rows: n } => {
                rows += n;
                bar.set_message(format!(
                    "{rows} rows, at {}",
                    timefmt::fmt_seconds(window.start)
                ));
            }
            RunEvent::WindowDone { .. } => bar.inc(1),
        }
    };
    let report = engine
        .run_pipeline(p, auth, mode, cancel, &mut on_event)
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    report
}

fn print_report(r: &RunReport) {
    if let Some(c) = &r.clamp {
        eprintln!(
            "ordersync: pipeline `{}`: {} is older than upstream keeps (90 days); fetched from {} instead",
            r.pipeline,
            timefmt::fmt_seconds(c.requested),
            timefmt::fmt_seconds(c.effective)
        );
    }
    let rejected = if r.rows_rejected > 0 {
        format!(
            ", {} rejected (`ordersync rejects {}`)",
            r.rows_rejected, r.pipeline
        )
    } else {
        String::new()
    };
    println!(
        "{} [{}]: {}, {} rows seen, {} changed{rejected}, {} requests, {} windows, watermark {}, {:.1}s",
        r.pipeline,
        r.scope,
        r.outcome.as_str(),
        r.rows_seen,
        r.rows_changed,
        r.requests,
        r.windows,
        r.watermark
            .map_or_else(|| "none".to_string(), timefmt::fmt_seconds),
        r.elapsed.as_secs_f64()
    );
    if let Some(e) = &r.error {
        eprintln!("ordersync: {e}");
    }
}
