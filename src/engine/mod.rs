//! The run loop shared by every source: plan windows, page through each, commit page by page.
//!
//! One call of [`run_pipeline`] is one run of one pipeline on one track (`live`, one backfill
//! range, or `rescan`). It resumes the window in progress from its saved cursor, then walks the
//! windows the planner gives, and for each page: build the request (source), fetch with retries
//! (http), parse and normalise (source), and commit rows + checkpoint together (store). A fatal
//! upstream answer, exhausted retries or a store error ends the run as `failed` with the checkpoint
//! where the last committed page left it; a shutdown ends it as `interrupted` between pages.

mod flow;
mod plan;

pub use plan::{backfill_range, plan_run, rescan_range, settled_until, RunPlan};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, NaiveDateTime};
use tokio_util::sync::CancellationToken;

use crate::budget::{Budgets, RequestBudget};
use crate::config::{Auth, Pipeline};
use crate::http::{Http, RetryPolicy};
use crate::model::RejectedRow;
use crate::planner::{Clamp, Window};
use crate::redact::Redactor;
use crate::sources::{self, Axis};
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
    /// The recent past again, by update time, on the `rescan` track: `[now − since, live
    /// watermark − lookback)`, the part no live sync will read again (see [`rescan_range`]).
    Rescan { since: std::time::Duration },
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
            Mode::Rescan { .. } => store::RESCAN_SCOPE.to_string(),
        }
    }

    fn command(&self) -> &'static str {
        match self {
            Mode::Live => "sync",
            Mode::Backfill { .. } => "backfill",
            Mode::Rescan { .. } => "rescan",
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
    /// The run did not start: the pipeline's own track was running in another process (another
    /// worker sharing the database). `error` says where.
    pub ran_elsewhere: bool,
    /// Failed attempts by upstream code (retried ones included).
    pub upstream_errors: std::collections::BTreeMap<String, u64>,
    pub elapsed: std::time::Duration,
}

/// The shared parts a run needs.
#[derive(Clone)]
pub struct Engine {
    pub store: Store,
    pub http: Http,
    /// One request budget per pipeline, shared by all its runs in this process.
    pub budgets: Budgets,
}

/// How often a run waiting for its pipeline's rival track in another process looks again.
const RIVAL_POLL: std::time::Duration = std::time::Duration::from_millis(500);

fn chrono_of(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

impl Engine {
    /// The request budget `p`'s runs share in this process: its `max_rps`, and as many requests
    /// in flight as it reads windows at once (`concurrency`), fewer while upstream says slow down.
    pub fn budget_for(&self, p: &Pipeline) -> Arc<RequestBudget> {
        self.budgets.get(&p.name, p.max_rps, p.concurrency)
    }

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
        let mut report = RunReport::new(p, mode);
        let run_id = match self.begin(p, mode, cancel).await {
            Ok(Began::Run(id)) => id,
            Ok(Began::Elsewhere(e)) => {
                report.error = Some(e);
                report.ran_elsewhere = true;
                report.elapsed = started.elapsed();
                return report;
            }
            Err(stop) => {
                match stop {
                    Stop::Cancelled(_) => report.outcome = Outcome::Interrupted,
                    Stop::Failed(e, _) => report.error = Some(e),
                }
                report.elapsed = started.elapsed();
                return report;
            }
        };
        let (outcome, error, loose_requests) = match self
            .walk(
                &Run::new(p, auth, mode, run_id, cancel, self.budget_for(p)),
                &mut report,
                on_event,
            )
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
        report.log();
        report
    }

    /// Records the start of the run and returns its id, or `Elsewhere` when its own track runs in
    /// another process (the daemon skips that tick; `sync` fails, as before). While the pipeline's rival track (its live
    /// sync for a rescan, and back) runs in another process, waits for it to end, or for `cancel`.
    async fn begin(
        &self,
        p: &Pipeline,
        mode: Mode,
        cancel: &CancellationToken,
    ) -> Result<Began, Stop> {
        let own_scope = mode.scope();
        let mut said = false;
        loop {
            let (name, scope, cmd) = (p.name.clone(), own_scope.clone(), mode.command());
            match self
                .store
                .call(move |c| store::begin_run(c, &name, cmd, &scope))
                .await
            {
                Ok(id) => return Ok(Began::Run(id)),
                Err(store::StoreError::Busy { scope, pid, .. }) if scope != own_scope => {
                    if !std::mem::replace(&mut said, true) {
                        tracing::info!(pipeline = %p.name, waiting_for = %scope, pid, "waiting for the pipeline's {scope} run in another process to end");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(RIVAL_POLL) => {}
                        _ = cancel.cancelled() => return Err(Stop::Cancelled(0)),
                    }
                }
                // Every error names its pipeline (`Busy` already does).
                Err(e @ store::StoreError::Busy { .. }) => {
                    return Ok(Began::Elsewhere(e.to_string()))
                }
                Err(e) => return Err(Stop::Failed(format!("pipeline `{}`: {e}", p.name), 0)),
            }
        }
    }

    /// Loads (or, for a rescan, starts or resumes a pass of) the run's track: where it stands and
    /// the range it covers (`None` for the live track).
    async fn track(
        &self,
        p: &Pipeline,
        mode: Mode,
        settled: NaiveDateTime,
        now: NaiveDateTime,
    ) -> Result<(Track, Option<(NaiveDateTime, NaiveDateTime)>), store::StoreError> {
        let name = p.name.clone();
        if let Mode::Rescan { since } = mode {
            let live = self
                .store
                .call({
                    let name = name.clone();
                    move |c| store::watermark(c, &name, "live")
                })
                .await?;
            let (from, to) = rescan_range(p, since, live, settled, now);
            if from >= to {
                tracing::info!(pipeline = %p.name, "nothing to rescan: no live sync has finished past {} + lookback yet", timefmt::fmt_seconds(from));
            }
            let (track, range) = self
                .store
                .call(move |c| store::begin_rescan_pass(c, &name, from, to))
                .await?;
            return Ok((track, Some(range)));
        }
        let range = backfill_range(mode, settled);
        let scope = mode.scope();
        let track = self
            .store
            .call(move |c| store::ensure_track(c, &name, &scope, range))
            .await?;
        Ok((track, range))
    }

    /// Plans the run from its track, then reads each window page by page.
    async fn walk(
        &self,
        run: &Run<'_>,
        report: &mut RunReport,
        on_event: &mut (dyn FnMut(&RunEvent) + Send),
    ) -> Result<(), Stop> {
        let p = run.p;
        let now = timefmt::beijing_now();
        let settled = settled_until(p, now);
        let (track, range) = self
            .track(p, run.mode, settled, now)
            .await
            .map_err(|e| Stop::Failed(format!("pipeline `{}`: {e}", p.name), 0))?;
        report.watermark = track.watermark;
        let plan = plan_run(p, range, &track, settled, now);
        if let Some(c) = plan.clamp {
            tracing::warn!(
                pipeline = %p.name,
                requested = %timefmt::fmt_seconds(c.requested),
                effective = %timefmt::fmt_seconds(c.effective),
                "start is older than upstream keeps; clamped"
            );
            report.clamp = Some(c);
        }
        // Windows read at once may finish in any order: the plan is recorded first, so that the
        // watermark never passes a window that has not committed a page yet. One at a time,
        // they finish in order and each is recorded with its first committed page, as before.
        if p.concurrency > 1 && plan.windows.len() > 1 {
            let (name, scope, planned) = (p.name.clone(), run.mode.scope(), plan.windows.clone());
            self.store
                .call(move |c| store::register_windows(c, &name, &scope, &planned))
                .await
                .map_err(|e| Stop::Failed(format!("pipeline `{}`: {e}", p.name), 0))?;
        }
        on_event(&RunEvent::Planned {
            windows: plan.windows.len(),
        });
        let mut upstream_errors = BTreeMap::new();
        let read = self
            .read_windows(run, plan.windows, report, &mut upstream_errors, on_event)
            .await;
        for (code, n) in upstream_errors {
            *report.upstream_errors.entry(code).or_default() += n;
        }
        // Windows read at once finish in any order; the track's watermark says how far all are.
        let (name, scope) = (p.name.clone(), run.mode.scope());
        if let Ok(w) = self
            .store
            .call(move |c| store::watermark(c, &name, &scope))
            .await
        {
            report.watermark = w.or(report.watermark);
        }
        read
    }
}

impl RunReport {
    /// A run of `p` in `mode` that has done nothing yet (and failed, until it says otherwise).
    fn new(p: &Pipeline, mode: Mode) -> RunReport {
        RunReport {
            pipeline: p.name.clone(),
            scope: mode.scope(),
            outcome: Outcome::Failed,
            rows_seen: 0,
            rows_changed: 0,
            rows_rejected: 0,
            requests: 0,
            windows: 0,
            watermark: None,
            clamp: None,
            error: None,
            ran_elsewhere: false,
            upstream_errors: Default::default(),
            elapsed: Default::default(),
        }
    }

    /// The one line a finished run logs.
    fn log(&self) {
        tracing::info!(
            pipeline = %self.pipeline,
            scope = %self.scope,
            outcome = self.outcome.as_str(),
            rows_seen = self.rows_seen,
            rows_changed = self.rows_changed,
            rows_rejected = self.rows_rejected,
            requests = self.requests,
            windows = self.windows,
            duration_ms = self.elapsed.as_millis() as u64,
            watermark = self.watermark.map(timefmt::fmt_seconds).unwrap_or_default(),
            error = self.error.as_deref().unwrap_or(""),
            "run finished"
        );
    }

    /// Counts a committed page; logs each row rejected for the first time.
    fn add_page(&mut self, p: &Pipeline, stats: &store::PageStats, requests: u32) {
        self.rows_seen += stats.seen;
        self.rows_changed += stats.changed;
        self.rows_rejected += stats.rejected;
        self.requests += u64::from(requests);
        for (order_id, reason) in &stats.newly_rejected {
            tracing::warn!(
                pipeline = %p.name,
                order_id = order_id.as_deref().unwrap_or("unknown"),
                reason = %reason,
                "row rejected: kept in rejected_rows (`ordersync rejects`); the run goes on"
            );
        }
    }
}

/// One run's settings, fixed when it starts: what every page of it is asked and committed with.
struct Run<'a> {
    p: &'a Pipeline,
    auth: &'a Auth,
    mode: Mode,
    run_id: i64,
    cancel: &'a CancellationToken,
    redactor: Redactor,
    policy: RetryPolicy,
    budget: Arc<RequestBudget>,
    axis: Axis,
    /// See [`PageCommit::seen_floor`]: a live sync stamps an order seen at most once a Beijing
    /// day; a backfill or rescan stamps every order it reads.
    seen_floor: String,
}

impl<'a> Run<'a> {
    fn new(
        p: &'a Pipeline,
        auth: &'a Auth,
        mode: Mode,
        run_id: i64,
        cancel: &'a CancellationToken,
        budget: Arc<RequestBudget>,
    ) -> Run<'a> {
        Run {
            p,
            auth,
            mode,
            run_id,
            cancel,
            budget,
            redactor: Redactor::new(auth.values()),
            policy: RetryPolicy {
                max_retries: p.max_retries,
                initial: p.retry_initial,
                max_interval: std::time::Duration::from_secs(60),
                timeout: p.timeout,
                max_body: p.max_body,
            },
            axis: match mode {
                Mode::Live => Axis::Live,
                Mode::Backfill { .. } => Axis::Backfill,
                Mode::Rescan { .. } => Axis::Rescan,
            },
            seen_floor: {
                let now = timefmt::beijing_now();
                match mode {
                    Mode::Live => timefmt::fmt_seconds(now.date().and_time(chrono::NaiveTime::MIN)),
                    _ => timefmt::fmt_seconds(now),
                }
            },
        }
    }
}

impl Run<'_> {
    /// A page of `window` asked with `cursor`, whose next cursor is `next`, as the store commits
    /// it: rows, rejected rows and the checkpoint that says exactly this page is done.
    fn page_commit(
        &self,
        window: Window,
        cursor: &str,
        page: sources::Page,
        requests: u32,
        next: Option<&str>,
    ) -> PageCommit {
        PageCommit {
            run_id: self.run_id,
            pipeline: self.p.name.clone(),
            scope: self.mode.scope(),
            source: self.p.source(),
            orders: page.orders,
            // A reason quotes what upstream sent; it may echo a secret.
            rejected: page
                .rejected
                .into_iter()
                .map(|r| RejectedRow {
                    reason: self.redactor.scrub(&r.reason),
                    ..r
                })
                .collect(),
            asked: (window, self.redactor.scrub(cursor)),
            requests,
            progress: progress_to_save(self.p, window, next, &self.redactor),
            seen_floor: self.seen_floor.clone(),
        }
    }
}

/// What the checkpoint says after a page of `window` whose next cursor is `next`. A cursor that
/// echoes a secret is not written to the database: the window's first cursor is, and a resumed
/// run reads the window again from its start.
fn progress_to_save(
    p: &Pipeline,
    window: Window,
    next: Option<&str>,
    redactor: &Redactor,
) -> Progress {
    match next {
        Some(next) if redactor.reveals(next) => {
            tracing::warn!(pipeline = %p.name, "upstream's cursor holds a secret; it is not saved, so a resumed run starts this window again");
            Progress::Next {
                window,
                cursor: sources::first_cursor(p.source()).to_string(),
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

/// What `begin` found: the run's id, or its own track running in another process (another
/// worker sharing the database), in words.
enum Began {
    Run(i64),
    Elsewhere(String),
}
