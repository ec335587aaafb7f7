//! The run loop shared by every source: plan windows, page through each, commit page by page.
//!
//! One call of [`run_pipeline`] is one run of one pipeline on one track (`live`, or one backfill
//! range). It resumes the window in progress from its saved cursor, then walks the windows the
//! planner gives, and for each page: build the request (source), fetch with retries (http), parse
//! and normalise (source), and commit rows + checkpoint together (store). A fatal upstream answer,
//! exhausted retries or a store error ends the run as `failed` with the checkpoint where the last
//! committed page left it; a shutdown ends it as `interrupted` between pages.

use std::time::Instant;

use chrono::{Duration, NaiveDateTime, Timelike};
use tokio_util::sync::CancellationToken;

use crate::config::{Auth, Pipeline};
use crate::http::{FetchError, Http, RetryPolicy};
use crate::model::RejectedRow;
use crate::planner::{self, Clamp, Window};
use crate::redact::Redactor;
use crate::sources::{self, Axis, PageQuery};
use crate::store::{self, Outcome, PageCommit, Progress, Store, Track};
use crate::timefmt;

/// What a run fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The live track: from the watermark (less the lookback) to now − settle_lag.
    Live,
    /// A historical range, by payment time. `to: None` means "up to now" and resumes as such.
    Backfill {
        from: NaiveDateTime,
        to: Option<NaiveDateTime>,
    },
}

impl Mode {
    /// The checkpoint scope: `live`, or one per backfill range so each resumes on its own.
    pub fn scope(&self) -> String {
        match self {
            Mode::Live => "live".to_string(),
            Mode::Backfill { from, to } => format!(
                "backfill {}..{}",
                timefmt::fmt_seconds(*from),
                to.map_or_else(|| "now".to_string(), timefmt::fmt_seconds)
            ),
        }
    }

    fn command(&self) -> &'static str {
        match self {
            Mode::Live => "sync",
            Mode::Backfill { .. } => "backfill",
        }
    }
}

/// Progress as a run goes, for a progress bar or a log.
#[derive(Debug, Clone)]
pub enum RunEvent {
    Planned { windows: usize },
    Page { window: Window, rows: u64 },
    WindowDone { window: Window },
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub pipeline: String,
    pub scope: String,
    pub outcome: Outcome,
    pub rows_seen: u64,
    pub rows_changed: u64,
    /// Rows kept in `rejected_rows` instead (each time one was read).
    pub rows_rejected: u64,
    pub requests: u64,
    pub windows: u64,
    pub watermark: Option<NaiveDateTime>,
    pub clamp: Option<Clamp>,
    pub error: Option<String>,
    /// Failed attempts by upstream code (retried ones included).
    pub upstream_errors: std::collections::BTreeMap<String, u64>,
    pub elapsed: std::time::Duration,
}

/// The shared parts a run needs.
#[derive(Clone)]
pub struct Engine {
    pub store: Store,
    pub http: Http,
}

fn chrono_of(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

impl Engine {
    /// Runs one pipeline once. Never panics on upstream data; every failure is in the report.
    pub async fn run_pipeline(
        &self,
        p: &Pipeline,
        auth: &Auth,
        mode: Mode,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(&RunEvent) + Send),
    ) -> RunReport {
        let started = Instant::now();
        let scope = mode.scope();
        let mut report = RunReport {
            pipeline: p.name.clone(),
            scope: scope.clone(),
            outcome: Outcome::Failed,
            rows_seen: 0,
            rows_changed: 0,
            rows_rejected: 0,
            requests: 0,
            windows: 0,
            watermark: None,
            clamp: None,
            error: None,
            upstream_errors: Default::default(),
            elapsed: Default::default(),
        };
        let (name, scope2, cmd) = (p.name.clone(), scope.clone(), mode.command());
        let run_id = match self
            .store
            .call(move |c| store::begin_run(c, &name, cmd, &scope2))
            .await
        {
            Ok(id) => id,
            Err(e) => {
                // Every error names its pipeline (`Busy` already does).
                report.error = Some(match e {
                    store::StoreError::Busy { .. } => e.to_string(),
                    e => format!("pipeline `{}`: {e}", p.name),
                });
                report.elapsed = started.elapsed();
                return report;
            }
        };
        let (outcome, error, loose_requests) = match self
            .walk(p, auth, mode, run_id, cancel, &mut report, on_event)
            .await
        {
            Ok(()) => (Outcome::Ok, None, 0),
            Err(Stop::Cancelled(n)) => (Outcome::Interrupted, None, n),
            Err(Stop::Failed(msg, n)) => (Outcome::Failed, Some(msg), n),
        };
        report.requests += loose_requests;
        report.outcome = outcome;
        report.error = error.clone();
        if let Err(e) = self
            .store
            .call(move |c| store::finish_run(c, run_id, outcome, error.as_deref(), loose_requests))
            .await
        {
            report.outcome = Outcome::Failed;
            report.error.get_or_insert_with(|| e.to_string());
        }
        report.elapsed = started.elapsed();
        tracing::info!(
            pipeline = %report.pipeline,
            scope = %report.scope,
            outcome = report.outcome.as_str(),
            rows_seen = report.rows_seen,
            rows_changed = report.rows_changed,
            rows_rejected = report.rows_rejected,
            requests = report.requests,
            windows = report.windows,
            duration_ms = report.elapsed.as_millis() as u64,
            watermark = report.watermark.map(timefmt::fmt_seconds).unwrap_or_default(),
            error = report.error.as_deref().unwrap_or(""),
            "run finished"
        );
        report
    }

    #[allow(clippy::too_many_arguments)] // private: the run's state, threaded through once
    async fn walk(
        &self,
        p: &Pipeline,
        auth: &Auth,
        mode: Mode,
        run_id: i64,
        cancel: &CancellationToken,
        report: &mut RunReport,
        on_event: &mut (dyn FnMut(&RunEvent) + Send),
    ) -> Result<(), Stop> {
        let now = timefmt::beijing_now();
        // A snapshot has no time filter to settle: it is complete as of the moment it is taken.
        let settle_lag = if p.source.is_snapshot() {
            Duration::zero()
        } else {
            chrono_of(p.settle_lag)
        };
        let settled_until = now - settle_lag;
        // On a whole second: an upstream with inclusive whole-second bounds (veapi) is asked up to
        // the second before a window's end, so a window ending mid-second would be marked finished
        // for part of a second nobody asked for.
        let settled_until = settled_until.with_nanosecond(0).unwrap_or(settled_until);
        let range = match mode {
            Mode::Live => None,
            Mode::Backfill { from, to } => {
                Some((from, to.unwrap_or(settled_until).min(settled_until)))
            }
        };
        let (name, scope) = (p.name.clone(), mode.scope());
        let track: Track = self
            .store
            .call(move |c| store::ensure_track(c, &name, &scope, range))
            .await
            .map_err(|e| Stop::Failed(format!("pipeline `{}`: {e}", p.name), 0))?;
        report.watermark = track.watermark;

        let mut todo: Vec<(Window, String)> = Vec::new();
        let resume_end = track.in_progress.as_ref().map(|(w, _)| w.end);
        if let Some((w, cursor)) = track.in_progress {
            todo.push((w, sources::resume_cursor(p.source, &cursor)));
        }
        let span = match mode {
            Mode::Live => {
                let from = match resume_end {
                    Some(end) => Some(end),
                    None => planner::live_range(
                        p.start,
                        track.watermark,
                        chrono_of(p.lookback),
                        Duration::zero(),
                        settled_until,
                    )
                    .map(|r| r.0),
                };
                from.map(|f| (f, settled_until))
            }
            Mode::Backfill { from, .. } => {
                let end = range.map_or(settled_until, |r| r.1);
                let start = resume_end.or(track.watermark).unwrap_or(from).max(from);
                Some((start, end))
            }
        };
        let rules = p.source.window_rules();
        let plan = match span {
            Some((from, to)) => planner::plan(&rules, from, to, now),
            None => Default::default(),
        };
        if let Some(c) = plan.clamped {
            tracing::warn!(
                pipeline = %p.name,
                requested = %timefmt::fmt_seconds(c.requested),
                effective = %timefmt::fmt_seconds(c.effective),
                "start is older than upstream keeps; clamped"
            );
            report.clamp = Some(c);
        }
        let first = sources::first_cursor(p.source);
        todo.extend(plan.windows.into_iter().map(|w| (w, first.to_string())));
        on_event(&RunEvent::Planned {
            windows: todo.len(),
        });

        let redactor = Redactor::new(auth.values());
        let policy = RetryPolicy {
            max_retries: p.max_retries,
            initial: p.retry_initial,
            max_interval: std::time::Duration::from_secs(60),
            timeout: p.timeout,
            max_body: p.max_body,
        };
        let axis = match mode {
            Mode::Live => Axis::Live,
            Mode::Backfill { .. } => Axis::Backfill,
        };
        for (window, mut cursor) in todo {
            loop {
                if cancel.is_cancelled() {
                    return Err(Stop::Cancelled(0));
                }
                let query = PageQuery {
                    endpoint: &p.endpoint,
                    auth,
                    options: &p.options,
                    window,
                    cursor: &cursor,
                    page_size: p.page_size,
                    axis,
                    start: p.start,
                };
                let kind = p.source;
                let fetched = self
                    .http
                    .fetch(
                        || sources::build_request(kind, &query),
                        &policy,
                        &redactor,
                        cancel,
                        &mut report.upstream_errors,
                        |status, body| sources::parse_page(kind, &query, status, body),
                    )
                    .await
                    .map_err(|(e, n)| match e {
                        FetchError::Cancelled => Stop::Cancelled(u64::from(n)),
                        other => {
                            Stop::Failed(format!("pipeline `{}`: {other}", p.name), u64::from(n))
                        }
                    })?;
                let page = fetched.value;
                let next = match page.next_cursor {
                    Some(next) if next == cursor => {
                        return Err(Stop::Failed(
                            format!("pipeline `{}`: upstream returned the same cursor again; stopping instead of looping", p.name),
                            u64::from(fetched.requests),
                        ))
                    }
                    next => next,
                };
                let progress = progress_to_save(p, window, next.as_deref(), first, &redactor);
                let commit = PageCommit {
                    run_id,
                    pipeline: p.name.clone(),
                    scope: mode.scope(),
                    source: p.source,
                    orders: page.orders,
                    // A reason quotes what upstream sent; it may echo a secret.
                    rejected: page
                        .rejected
                        .into_iter()
                        .map(|r| RejectedRow {
                            reason: redactor.scrub(&r.reason),
                            ..r
                        })
                        .collect(),
                    asked: (window, redactor.scrub(&cursor)),
                    requests: fetched.requests,
                    progress,
                };
                let stats = self
                    .store
                    .call(move |c| store::commit_page(c, &commit))
                    .await
                    .map_err(|e| Stop::Failed(format!("pipeline `{}`: {e}", p.name), 0))?;
                report.rows_seen += stats.seen;
                report.rows_changed += stats.changed;
                report.rows_rejected += stats.rejected;
                report.requests += u64::from(fetched.requests);
                for (order_id, reason) in &stats.newly_rejected {
                    tracing::warn!(
                        pipeline = %p.name,
                        order_id = order_id.as_deref().unwrap_or("unknown"),
                        reason = %reason,
                        "row rejected: kept in rejected_rows (`ordersync rejects`); the run goes on"
                    );
                }
                on_event(&RunEvent::Page {
                    window,
                    rows: stats.seen,
                });
                match next {
                    Some(next) => cursor = next,
                    None => {
                        report.windows += 1;
                        report.watermark =
                            Some(report.watermark.map_or(window.end, |w| w.max(window.end)));
                        on_event(&RunEvent::WindowDone { window });
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

/// What the checkpoint says after a page of `window` whose next cursor is `next`. A cursor that
/// echoes a secret is not written to the database: the window's `first` cursor is, and a resumed
/// run reads the window again from its start.
fn progress_to_save(
    p: &Pipeline,
    window: Window,
    next: Option<&str>,
    first: &str,
    redactor: &Redactor,
) -> Progress {
    match next {
        Some(next) if redactor.reveals(next) => {
            tracing::warn!(pipeline = %p.name, "upstream's cursor holds a secret; it is not saved, so a resumed run starts this window again");
            Progress::Next {
                window,
                cursor: first.to_string(),
            }
        }
        Some(next) => Progress::Next {
            window,
            cursor: next.to_string(),
        },
        None => Progress::WindowDone { window },
    }
}

/// How a run stopped early, with the requests made since the last committed page.
enum Stop {
    Cancelled(u64),
    Failed(String, u64),
}
