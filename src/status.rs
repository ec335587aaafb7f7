//! `ordersync status`: what each pipeline has done, from its runs, checkpoints and coverage.
//!
//! Read-only over its own connection, so it works while the daemon writes; the rows come from
//! `store::report`, and this module only assembles and renders them. Shows per pipeline the last
//! run, its health (`health`), the live watermark and its lag behind now, the last error, the last
//! rescan and what it found, backfills and how far they got, and the finished time ranges of each
//! track with any gap between them. `--json` and the daemon's `GET /api/status` are both
//! [`to_json`] of [`collect`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::store::sql::Db;
use chrono::NaiveDateTime;
use serde::Serialize;

use crate::config::Config;
use crate::health::{self, Health};
use crate::store::report::{self, CheckpointRow};
use crate::store::{self, RunInProgress, StoreError};
use crate::timefmt;

pub use crate::store::report::RunRow;

#[derive(Debug, Serialize)]
pub struct PipelineStatus {
    pub pipeline: String,
    pub source: Option<String>,
    pub enabled: Option<bool>,
    pub health: Health,
    pub last_run: Option<RunRow>,
    /// The runs going on now and the worker running each: with several workers on one
    /// PostgreSQL database, which of them holds the pipeline.
    pub running: Vec<RunInProgress>,
    pub watermark: Option<String>,
    pub lag_seconds: Option<i64>,
    pub last_error: Option<String>,
    /// Rows kept in `rejected_rows` that no good copy has resolved yet.
    pub rejected_open: i64,
    pub last_rescan: Option<RescanStatus>,
    pub tracks: Vec<TrackStatus>,
}

/// The last rescan and what it found: the orders it changed are late changes the live syncs had
/// missed (a rescan reads only what no live sync reads again).
#[derive(Debug, Serialize)]
pub struct RescanStatus {
    pub run: RunRow,
    pub missed: i64,
    /// `missed` as a share of the rows the rescan re-read, in percent.
    pub missed_percent: f64,
}

impl RescanStatus {
    fn of(run: RunRow) -> RescanStatus {
        let percent = match run.rows_seen {
            0 => 0.0,
            seen => (run.rows_changed as f64 * 10_000.0 / seen as f64).round() / 100.0,
        };
        RescanStatus {
            missed: run.rows_changed,
            missed_percent: percent,
            run,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct TrackStatus {
    pub scope: String,
    pub range_start: Option<String>,
    pub range_end: Option<String>,
    pub watermark: Option<String>,
    /// The first window planned and not finished (`start .. end`), and how many are left.
    pub in_progress: Option<String>,
    pub windows_left: i64,
    pub finished: bool,
    pub covered: Vec<[String; 2]>,
    pub gaps: Vec<[String; 2]>,
}

pub fn collect(db: &mut dyn Db, config: &Config) -> Result<Vec<PipelineStatus>, StoreError> {
    let now = timefmt::beijing_now();
    pipeline_names(db, config)?
        .into_iter()
        .map(|name| pipeline_status(db, config, name, now))
        .collect()
}

/// The configured pipelines in config order, then those only the database knows.
fn pipeline_names(db: &mut dyn Db, config: &Config) -> Result<Vec<String>, StoreError> {
    let mut names: Vec<String> = config.pipelines.iter().map(|p| p.name.clone()).collect();
    for name in report::pipelines(db)? {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

fn pipeline_status(
    db: &mut dyn Db,
    config: &Config,
    name: String,
    now: NaiveDateTime,
) -> Result<PipelineStatus, StoreError> {
    let p = config.pipeline(&name);
    let last_run = report::last_run(db, &name)?;
    let running = store::in_progress(db, &name)?;
    let last_error = report::last_error(db, &name)?;
    let rejected_open = report::open_rejections(db, &name)?;
    let last_rescan = report::last_rescan(db, &name)?.map(RescanStatus::of);
    let health = health::assess(p, &report::live_runs(db, &name)?, now);
    let tracks = tracks(db, &name)?;
    let live_watermark = tracks
        .iter()
        .find(|t| t.scope == "live")
        .and_then(|t| t.watermark.clone());
    let lag_seconds = live_watermark
        .as_deref()
        .and_then(timefmt::parse_user_time)
        .map(|w| (now - w).num_seconds());
    Ok(PipelineStatus {
        source: p.map(|p| p.source().to_string()),
        enabled: p.map(|p| p.enabled),
        health,
        pipeline: name,
        last_run,
        running,
        watermark: live_watermark,
        lag_seconds,
        last_error,
        rejected_open,
        last_rescan,
        tracks,
    })
}

/// The pipeline's tracks, live first, each with its finished ranges and the gaps between them.
fn tracks(db: &mut dyn Db, pipeline: &str) -> Result<Vec<TrackStatus>, StoreError> {
    let mut coverage: BTreeMap<String, Vec<[String; 2]>> = BTreeMap::new();
    for range in report::coverage(db, pipeline)? {
        coverage
            .entry(range.scope)
            .or_default()
            .push([range.start, range.end]);
    }
    Ok(report::checkpoints(db, pipeline)?
        .into_iter()
        .map(|checkpoint| {
            let covered = coverage.remove(&checkpoint.scope).unwrap_or_default();
            track_status(checkpoint, covered)
        })
        .collect())
}

fn track_status(checkpoint: CheckpointRow, covered: Vec<[String; 2]>) -> TrackStatus {
    let gaps = covered
        .windows(2)
        .map(|w| [w[0][1].clone(), w[1][0].clone()])
        .collect();
    let finished = match (&checkpoint.range_end, &checkpoint.watermark) {
        (Some(end), Some(w)) => w >= end,
        _ => false,
    };
    TrackStatus {
        scope: checkpoint.scope,
        range_start: checkpoint.range_start,
        range_end: checkpoint.range_end,
        watermark: checkpoint.watermark,
        windows_left: checkpoint.windows_left,
        in_progress: checkpoint
            .window_start
            .zip(checkpoint.window_end)
            .map(|(s, e)| format!("{s} .. {e}")),
        finished,
        covered,
        gaps,
    }
}

/// The JSON form, as `status --json` prints it and `GET /api/status` serves it.
pub fn to_json(all: &[PipelineStatus]) -> serde_json::Result<String> {
    serde_json::to_string_pretty(all)
}

/// A lag as an operator reads it: `45s`, `12m`, `3h5m`, `2d4h`.
pub fn human_lag(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// The text form: a short block per pipeline.
pub fn render_text(all: &[PipelineStatus]) -> String {
    let mut out = String::new();
    if all.is_empty() {
        out.push_str("no pipelines configured\n");
    }
    for s in all {
        let _ = writeln!(
            out,
            "{} ({}{})",
            s.pipeline,
            s.source.as_deref().unwrap_or("not in config"),
            if s.enabled == Some(false) {
                ", disabled"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "  health:     {}: {}",
            s.health.state.as_str(),
            s.health.reason
        );
        match &s.last_run {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "  last run:   {} {} {} → {} {}: {} rows seen, {} changed, {} rejected, {} requests",
                    r.command,
                    r.scope,
                    r.started_at,
                    r.finished_at.as_deref().unwrap_or("…"),
                    r.outcome,
                    r.rows_seen,
                    r.rows_changed,
                    r.rows_rejected,
                    r.requests
                );
            }
            None => out.push_str("  last run:   never\n"),
        }
        if let Some(detail) = s.last_run.as_ref().and_then(|r| r.detail.as_deref()) {
            let _ = writeln!(out, "              {detail}");
        }
        for r in &s.running {
            let _ = writeln!(
                out,
                "  running:    {} {} since {} on {}",
                r.command, r.scope, r.started_at, r.worker
            );
        }
        if let Some(r) = &s.last_rescan {
            let _ = writeln!(
                out,
                "  rescan:     {} → {} {}: {} orders changed that live syncs had missed ({}% of {} rows re-read)",
                r.run.started_at,
                r.run.finished_at.as_deref().unwrap_or("…"),
                r.run.outcome,
                r.missed,
                r.missed_percent,
                r.run.rows_seen
            );
        }
        let _ = writeln!(
            out,
            "  watermark:  {}{}",
            s.watermark.as_deref().unwrap_or("none yet"),
            s.lag_seconds
                .map(|l| format!(" (lag {})", human_lag(l)))
                .unwrap_or_default()
        );
        if let Some(e) = &s.last_error {
            let _ = writeln!(out, "  last error: {e}");
        }
        if s.rejected_open > 0 {
            let _ = writeln!(
                out,
                "  rejected:   {} row(s) upstream sent could not be read (`ordersync rejects {}`)",
                s.rejected_open, s.pipeline
            );
        }
        for t in &s.tracks {
            let state = if t.scope == "live" {
                String::new()
            } else if t.finished {
                " finished".to_string()
            } else {
                format!(
                    " in progress, done up to {}",
                    t.watermark.as_deref().unwrap_or("nothing yet")
                )
            };
            let _ = writeln!(out, "  {}:{}", t.scope, state);
            for [a, b] in &t.covered {
                let _ = writeln!(out, "    covered {a} .. {b}");
            }
            for [a, b] in &t.gaps {
                let _ = writeln!(out, "    GAP     {a} .. {b}");
            }
            if let Some(w) = &t.in_progress {
                let left = match t.windows_left {
                    n if n > 1 => format!(" ({n} windows left)"),
                    _ => String::new(),
                };
                let _ = writeln!(out, "    window in progress {w}{left}");
            }
        }
    }
    out
}
