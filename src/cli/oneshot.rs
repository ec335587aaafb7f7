//! `sync` and `backfill`: one-shot runs from the command line — the pipelines run, a progress bar
//! per run on a terminal, and one report line per run.

use std::io::IsTerminal;
use std::process::ExitCode;

use chrono::NaiveDateTime;
use tokio_util::sync::CancellationToken;

use super::{
    cancel_on_signal, close_store, exit_code, open_engine, runtime, select_with_auth, Context,
    Failure,
};
use crate::config::{Auth, ConfigError, Pipeline};
use crate::engine::{Engine, Mode, RunEvent, RunReport};
use crate::store::Outcome;
use crate::timefmt;

pub(super) fn sync_command(ctx: &Context, pipelines: &[String]) -> Result<ExitCode, Failure> {
    let selected = select_with_auth(&ctx.config, pipelines)?;
    let runtime = runtime()?;
    let engine = open_engine(&ctx.location)?;
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
pub(super) fn backfill_time(
    pipeline: &str,
    option: &str,
    text: &str,
) -> Result<NaiveDateTime, ConfigError> {
    timefmt::parse_user_time(text).ok_or_else(|| {
        ConfigError::new(
            Some(pipeline),
            Some(option),
            format!("must be YYYY-MM-DD or \"YYYY-MM-DD HH:MM:SS\", got {text:?}"),
        )
    })
}

pub(super) fn backfill_command(
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
    let engine = open_engine(&ctx.location)?;
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
pub(super) fn progress_bar(
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
pub(super) async fn run_with_bar(
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

pub(super) fn print_report(r: &RunReport) {
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
