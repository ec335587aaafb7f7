//! `ordersync rescan` and `ordersync rewind`: the commands for late changes — which pipelines a
//! rescan reads and how far back, and moving a live watermark back on an operator's word.

use std::io::IsTerminal;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use super::oneshot::{backfill_time, print_report, progress_bar, run_with_bar};
use super::{cancel_on_signal, close_store, exit_code, open_engine, runtime, Context, Failure};
use crate::config::{Auth, Config, ConfigError, Pipeline};
use crate::engine::Mode;
use crate::store::{self, Outcome};
use crate::timefmt;

/// The pipelines a rescan reads, each with how far back: the named ones (default: every enabled one
/// with `rescan` set, or every enabled one when `--since` is given). A snapshot source, or a
/// pipeline with neither `--since` nor `rescan`, is one sentence naming it (exit 2).
fn rescan_selection(
    config: &Config,
    names: &[String],
    since: Option<&str>,
) -> Result<Vec<(Pipeline, Auth, std::time::Duration)>, ConfigError> {
    let since = since
        .map(|text| {
            timefmt::parse_duration(text)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    ConfigError::new(
                        None,
                        Some("--since"),
                        format!("must be a duration like \"15d\" or \"36h\", got {text:?}"),
                    )
                })
        })
        .transpose()?;
    let chosen: Vec<&Pipeline> = config
        .select(names)?
        .into_iter()
        .filter(|p| {
            !names.is_empty()
                || (!p.source().is_snapshot() && (since.is_some() || p.rescan.is_some()))
        })
        .collect();
    if chosen.is_empty() {
        return Err(ConfigError::new(
            None,
            Some("rescan"),
            "is set for no enabled pipeline: set it (e.g. rescan = \"15d\") or give --since",
        ));
    }
    chosen
        .into_iter()
        .map(|p| {
            if p.source().is_snapshot() {
                return Err(ConfigError::new(
                    Some(&p.name),
                    None,
                    format!(
                        "`{}` answers a full snapshot on every sync, so there is nothing late to rescan",
                        p.source()
                    ),
                ));
            }
            let since = since.or(p.rescan.as_ref().map(|r| r.since)).ok_or_else(|| {
                ConfigError::new(
                    Some(&p.name),
                    Some("rescan"),
                    "is not set: set it (e.g. rescan = \"15d\") or give --since",
                )
            })?;
            Ok((p.clone(), p.resolve_auth()?, since))
        })
        .collect()
}

pub(super) fn rescan_command(
    ctx: &Context,
    names: &[String],
    since: Option<&str>,
) -> Result<ExitCode, Failure> {
    let selected = rescan_selection(&ctx.config, names, since)?;
    let runtime = runtime()?;
    let engine = open_engine(&ctx.location)?;
    let expected = selected.len();
    let reports = runtime.block_on(async {
        let cancel = CancellationToken::new();
        cancel_on_signal(cancel.clone());
        let bars = std::io::stderr()
            .is_terminal()
            .then(indicatif::MultiProgress::new);
        let mut tasks = Vec::new();
        for (p, auth, since) in selected {
            let (engine, cancel) = (engine.clone(), cancel.clone());
            let bar = progress_bar(&p.name, bars.as_ref());
            tasks.push(tokio::spawn(async move {
                run_with_bar(&engine, &p, &auth, Mode::Rescan { since }, &cancel, bar).await
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
    });
    let mut ok = reports.len() == expected;
    for r in &reports {
        print_report(r);
        if r.outcome == Outcome::Ok {
            println!(
                "{}: {} orders changed that live syncs had missed ({} rows re-read)",
                r.pipeline, r.rows_changed, r.rows_seen
            );
        }
        ok &= r.outcome == Outcome::Ok;
    }
    close_store(&runtime, &engine.store, !ok)?;
    Ok(exit_code(ok))
}

/// Who asked for a rewind, as `runs.detail` records it: the login name, else the uid.
fn who_asked() -> String {
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
    match user {
        Some(u) => format!("{u} (pid {})", std::process::id()),
        None => {
            let uid = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
                });
            format!(
                "uid {} (pid {})",
                uid.as_deref().unwrap_or("?"),
                std::process::id()
            )
        }
    }
}

pub(super) fn rewind_command(ctx: &Context, name: &str, to: &str) -> Result<ExitCode, Failure> {
    let p = ctx.config.pipeline(name).ok_or_else(|| {
        ConfigError::new(
            Some(name),
            None,
            format!("is not defined in {}", ctx.config_path.display()),
        )
    })?;
    let to = backfill_time(name, "--to", to)?;
    if to < p.start {
        return Err(ConfigError::new(
            Some(name),
            Some("--to"),
            format!(
                "{} is before the pipeline's start {}; a rewind stays within what the pipeline syncs",
                timefmt::fmt_seconds(to),
                timefmt::fmt_seconds(p.start)
            ),
        )
        .into());
    }
    let mut conn = store::open_db(&ctx.location)?;
    let rewound = store::rewind_live(conn.as_mut(), name, to, &who_asked()).map_err(|e| match e {
        store::StoreError::Busy { scope, pid, .. } => anyhow::anyhow!(
            "pipeline `{name}` has a {scope} run in progress in process {pid}; not rewound: run `ordersync rewind` again once it has ended"
        )
        .into(),
        e => Failure::from(e),
    })?;
    match rewound {
        store::Rewind::Done { from, to, .. } => {
            let lookback = chrono::Duration::from_std(p.lookback).unwrap_or_default();
            println!(
                "{name}: live watermark moved back from {} to {}; the next sync reads again from {} (the watermark less the lookback)",
                timefmt::fmt_seconds(from),
                timefmt::fmt_seconds(to),
                timefmt::fmt_seconds((to - lookback).max(p.start))
            );
            Ok(ExitCode::SUCCESS)
        }
        store::Rewind::NotBack { watermark } => Err(ConfigError::new(
            Some(name),
            Some("--to"),
            format!(
                "{} is not before the live watermark {}: a rewind only moves it back",
                timefmt::fmt_seconds(to),
                timefmt::fmt_seconds(watermark)
            ),
        )
        .into()),
        store::Rewind::NothingYet => Err(anyhow::anyhow!(
            "pipeline `{name}` has no live watermark yet: its first sync reads from its start anyway"
        )
        .into()),
    }
}
