//! `ordersync status`: what each pipeline has done, read from `runs`, `checkpoints` and `coverage`.
//!
//! Read-only over its own connection, so it works while the daemon writes. Shows per pipeline the
//! last run, the live watermark and its lag behind now, the last error, backfills and how far they
//! got, and the finished time ranges of each track with any gap between them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::config::Config;
use crate::store::StoreError;
use crate::timefmt;

#[derive(Debug, Serialize)]
pub struct PipelineStatus {
    pub pipeline: String,
    pub source: Option<String>,
    pub enabled: Option<bool>,
    pub last_run: Option<RunRow>,
    pub watermark: Option<String>,
    pub lag_seconds: Option<i64>,
    pub last_error: Option<String>,
    /// Rows kept in `rejected_rows` that no good copy has resolved yet.
    pub rejected_open: i64,
    pub tracks: Vec<TrackStatus>,
}

#[derive(Debug, Serialize)]
pub struct RunRow {
    pub command: String,
    pub scope: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: String,
    pub rows_seen: i64,
    pub rows_changed: i64,
    pub rows_rejected: i64,
    pub requests: i64,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TrackStatus {
    pub scope: String,
    pub range_start: Option<String>,
    pub range_end: Option<String>,
    pub watermark: Option<String>,
    pub in_progress: Option<String>,
    pub finished: bool,
    pub covered: Vec<[String; 2]>,
    pub gaps: Vec<[String; 2]>,
}

pub fn collect(conn: &Connection, config: &Config) -> Result<Vec<PipelineStatus>, StoreError> {
    let now = timefmt::beijing_now();
    let mut names: Vec<String> = config.pipelines.iter().map(|p| p.name.clone()).collect();
    let mut stmt = conn.prepare(
        "SELECT DISTINCT pipeline FROM checkpoints UNION SELECT DISTINCT pipeline FROM runs",
    )?;
    for name in stmt.query_map([], |r| r.get::<_, String>(0))? {
        let name = name?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let mut out = Vec::new();
    for name in names {
        let p = config.pipeline(&name);
        let last_run = conn
            .query_row(
                "SELECT command, scope, started_at, finished_at, outcome, rows_seen, rows_changed, requests, error, \
                 rows_rejected FROM runs WHERE pipeline = ?1 ORDER BY id DESC LIMIT 1",
                params![name],
                |r| {
                    Ok(RunRow {
                        command: r.get(0)?,
                        scope: r.get(1)?,
                        started_at: r.get(2)?,
                        finished_at: r.get(3)?,
                        outcome: r.get(4)?,
                        rows_seen: r.get(5)?,
                        rows_changed: r.get(6)?,
                        requests: r.get(7)?,
                        error: r.get(8)?,
                        rows_rejected: r.get(9)?,
                    })
                },
            )
            .optional()?;
        let last_error: Option<String> = conn
            .query_row(
                "SELECT error FROM runs WHERE pipeline = ?1 AND error IS NOT NULL ORDER BY id DESC LIMIT 1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        let rejected_open: i64 = conn.query_row(
            "SELECT COUNT(*) FROM rejected_rows WHERE pipeline = ?1 AND resolved_at IS NULL",
            params![name],
            |r| r.get(0),
        )?;
        let mut coverage: BTreeMap<String, Vec<[String; 2]>> = BTreeMap::new();
        let mut stmt = conn.prepare(
            "SELECT scope, range_start, range_end FROM coverage WHERE pipeline = ?1 ORDER BY scope, range_start",
        )?;
        for row in stmt.query_map(params![name], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))
        })? {
            let (scope, s, e) = row?;
            coverage.entry(scope).or_default().push([s, e]);
        }
        let mut tracks = Vec::new();
        let mut stmt = conn.prepare(
            "SELECT scope, range_start, range_end, watermark, window_start, window_end FROM checkpoints \
             WHERE pipeline = ?1 ORDER BY scope = 'live' DESC, scope",
        )?;
        let rows = stmt.query_map(params![name], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })?;
        let mut live_watermark = None;
        for row in rows {
            let (scope, range_start, range_end, watermark, ws, we) = row?;
            let covered = coverage.remove(&scope).unwrap_or_default();
            let gaps = covered
                .windows(2)
                .map(|w| [w[0][1].clone(), w[1][0].clone()])
                .collect();
            let finished = match (&range_end, &watermark) {
                (Some(end), Some(w)) => w >= end,
                _ => false,
            };
            if scope == "live" {
                live_watermark = watermark.clone();
            }
            tracks.push(TrackStatus {
                scope,
                range_start,
                range_end,
                watermark,
                in_progress: ws.zip(we).map(|(s, e)| format!("{s} .. {e}")),
                finished,
                covered,
                gaps,
            });
        }
        let lag_seconds = live_watermark
            .as_deref()
            .and_then(timefmt::parse_user_time)
            .map(|w| (now - w).num_seconds());
        out.push(PipelineStatus {
            source: p.map(|p| p.source.to_string()),
            enabled: p.map(|p| p.enabled),
            pipeline: name,
            last_run,
            watermark: live_watermark,
            lag_seconds,
            last_error,
            rejected_open,
            tracks,
        });
    }
    Ok(out)
}

fn human_lag(secs: i64) -> String {
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
                let _ = writeln!(out, "    window in progress {w}");
            }
        }
    }
    out
}
