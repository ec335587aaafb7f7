//! `ordersync run`: every enabled pipeline on its cron schedule, until SIGTERM or SIGINT.
//!
//! One task per pipeline, all sharing one store writer and one HTTP client. A task sleeps until its
//! next cron tick (Beijing time) — of its live `schedule`, or of its `rescan_schedule` — runs that
//! job, and computes the job's next tick only afterwards, so a pipeline never runs twice at once:
//! ticks that pass during a long run are skipped (and logged), not queued, and a job that came due
//! while the other ran waits for it and then runs at once. A failed run just waits for the next
//! tick; it never stops the other pipelines.
//!
//! Shutdown: the first signal cancels the token — no new runs start, runs in progress stop after the
//! page in hand (committed or rolled back) — and the daemon waits up to a deadline shorter than the
//! unit's `TimeoutStopSec`. A second signal stops waiting at once; the page transactions make that
//! safe.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use tokio_util::sync::CancellationToken;

use crate::config::{longest_gap, next_tick, ticks_between, Auth, Config, Pipeline, Schedule};
use crate::engine::{Engine, Mode, RunReport};
use crate::metrics::{self, Shared};
use crate::notify;
use crate::server;
use crate::sources;
use crate::statuspage;
use crate::store::Outcome;
use crate::timefmt;

/// Beijing wall-clock time that advances with tokio's clock, so schedule logic runs unchanged under
/// `tokio::time::pause()` in tests.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_wall: NaiveDateTime,
    base_instant: tokio::time::Instant,
}

impl Clock {
    pub fn starting_at(wall: NaiveDateTime) -> Clock {
        Clock {
            base_wall: wall,
            base_instant: tokio::time::Instant::now(),
        }
    }

    pub fn system() -> Clock {
        Clock::starting_at(timefmt::beijing_now())
    }

    pub fn now(&self) -> NaiveDateTime {
        let elapsed = chrono::Duration::from_std(self.base_instant.elapsed()).unwrap_or_default();
        self.base_wall + elapsed
    }
}

/// Runs `job(i)` on every tick of `schedules[i]` until `cancel` fires, one job at a time. Ticks of
/// a job that pass while it runs are reported to `on_skip(i, n)` and dropped; a job that comes due
/// while another runs waits for it and runs right after (its further ticks in the meantime are
/// skipped the same way). Returns the number of runs.
pub async fn schedule_loop<F, Fut>(
    schedules: &[&Schedule],
    clock: Clock,
    cancel: &CancellationToken,
    mut job: F,
    mut on_skip: impl FnMut(usize, u64),
) -> u64
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = clock.now();
    let mut due: Vec<Option<NaiveDateTime>> =
        schedules.iter().map(|s| next_tick(s, start)).collect();
    let mut runs = 0;
    loop {
        // The earliest due job; on a tie, the first (the live sync).
        let Some((i, tick)) = due
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (i, t)))
            .min_by_key(|&(i, t)| (t, i))
        else {
            return runs;
        };
        let wait = (tick - clock.now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => return runs,
        }
        if cancel.is_cancelled() {
            return runs;
        }
        job(i).await;
        runs += 1;
        let end = clock.now();
        for (j, next) in due.iter_mut().enumerate() {
            let Some(t) = *next else { continue };
            if j != i && t > end {
                continue;
            }
            let skipped = ticks_between(schedules[j], t, end);
            if skipped > 0 {
                on_skip(j, skipped);
            }
            *next = if j == i {
                next_tick(schedules[j], end)
            } else {
                Some(end)
            };
        }
    }
}

fn status_line(r: &RunReport) -> String {
    format!(
        "{} {}: {} seen, {} changed, watermark {}",
        r.pipeline,
        r.outcome.as_str(),
        r.rows_seen,
        r.rows_changed,
        r.watermark
            .map_or_else(|| "none".into(), timefmt::fmt_seconds)
    )
}

/// The daemon. Returns when every pipeline task has stopped after `shutdown` fired, or when the
/// deadline after it passes, or at once on `force`. `config` is the whole checked config: its
/// `[daemon] listen`, and every pipeline (disabled ones too) for the status page.
pub async fn run(
    engine: Engine,
    pipelines: Vec<(Pipeline, Auth)>,
    config: Arc<Config>,
    shutdown: CancellationToken,
    force: CancellationToken,
    deadline: Duration,
) -> anyhow::Result<()> {
    // Every pipeline's budget from the start, so /metrics shows each before its first request.
    for (p, _) in &pipelines {
        engine.budget_for(p);
    }
    // Counters every pipeline has from 0, before the first scrape can come: a series that first
    // appears at 1 is invisible to an alert's increase().
    let zero = || pipelines.iter().map(|(p, _)| (p.name.clone(), 0)).collect();
    let live: Shared = Arc::new(std::sync::Mutex::new(metrics::Live {
        budgets: engine.budgets.clone(),
        skipped_ticks: zero(),
        ticks_run_elsewhere: zero(),
        ..Default::default()
    }));
    if let Some(addr) = config.daemon.listen {
        serve_http(addr, &engine, &config, live.clone(), shutdown.clone()).await?;
    }
    let clock = Clock::system();
    let mut tasks = tokio::task::JoinSet::new();
    for (p, auth) in pipelines {
        let (engine, cancel, live) = (engine.clone(), shutdown.clone(), live.clone());
        tasks.spawn(async move { schedule_pipeline(engine, p, auth, clock, cancel, live).await });
    }
    notify::send("READY=1");
    notify::status("running");
    let ping = async {
        match notify::watchdog_interval() {
            Some(every) => loop {
                tokio::time::sleep(every).await;
                notify::send("WATCHDOG=1");
            },
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = ping => {}
    }
    tracing::info!("shutting down: finishing the pages in hand");
    notify::send("STOPPING=1");
    let drain = async { while tasks.join_next().await.is_some() {} };
    tokio::select! {
        _ = drain => tracing::info!("all pipelines stopped"),
        _ = tokio::time::sleep(deadline) => tracing::warn!("shutdown deadline passed; exiting with runs in progress (their pages roll back)"),
        _ = force.cancelled() => tracing::warn!("second signal: exiting now (pages in flight roll back)"),
    }
    Ok(())
}

/// Binds `addr` now (an address in use is the daemon's error) and serves `/metrics`, `/healthz`,
/// the status page `/` and `/api/status` on a task until `stop`.
async fn serve_http(
    addr: SocketAddr,
    engine: &Engine,
    config: &Arc<Config>,
    live: Shared,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ([daemon] listen): {e}"))?;
    tracing::info!(%addr, "serving the status page /, /api/status, /metrics and /healthz");
    let db = engine.store.location().clone();
    let app = metrics::routes(metrics::State {
        db: db.clone(),
        live,
    })
    .merge(statuspage::routes(statuspage::State {
        db,
        config: config.clone(),
        daily: Arc::default(),
    }));
    tokio::spawn(async move { server::serve(listener, app, server::Limits::DAEMON, stop).await });
    Ok(())
}

/// One pipeline's task: a live run on every tick of its schedule, and a rescan on every tick of its
/// `rescan_schedule` if it has one, never both at once, until `cancel`; what a run saw upstream and
/// the ticks it made the pipeline skip are counted in `live`.
async fn schedule_pipeline(
    engine: Engine,
    p: Pipeline,
    auth: Auth,
    clock: Clock,
    cancel: CancellationToken,
    live: Shared,
) -> u64 {
    tracing::info!(
        pipeline = %p.name,
        schedule = %p.schedule.text,
        rescan_schedule = p.rescan.as_ref().map_or("", |r| r.schedule.text.as_str()),
        "scheduled"
    );
    if let Ok(mut l) = live.lock() {
        if let Some(gap) = longest_gap(&p.schedule, clock.now()) {
            let secs = gap.num_milliseconds() as f64 / 1000.0;
            l.schedule_intervals.insert(p.name.clone(), secs);
        }
    }
    let mut jobs = vec![(Mode::Live, &p.schedule)];
    if let Some(r) = &p.rescan {
        jobs.push((Mode::Rescan { since: r.since }, &r.schedule));
    }
    let modes: Vec<Mode> = jobs.iter().map(|j| j.0).collect();
    let schedules: Vec<&Schedule> = jobs.iter().map(|j| j.1).collect();
    let job = |i: usize| {
        let mode = modes[i];
        let (engine, p, auth, cancel, live) = (
            engine.clone(),
            p.clone(),
            auth.clone(),
            cancel.clone(),
            live.clone(),
        );
        async move {
            let report = engine
                .run_pipeline(&p, &auth, mode, &cancel, &mut |_| {})
                .await;
            if let Ok(mut l) = live.lock() {
                for (code, n) in &report.upstream_errors {
                    let label = sources::metric_label(p.source(), code);
                    *l.upstream_errors
                        .entry((p.name.clone(), label))
                        .or_default() += n;
                }
            }
            if report.ran_elsewhere {
                // Another worker sharing the database runs it: this tick is theirs.
                tracing::info!(pipeline = %p.name, detail = report.error.as_deref().unwrap_or(""), "runs in another process; tick skipped");
                if let Ok(mut l) = live.lock() {
                    *l.ticks_run_elsewhere.entry(p.name.clone()).or_default() += 1;
                }
                return;
            }
            if report.outcome == Outcome::Failed {
                tracing::warn!(pipeline = %p.name, "run failed; next attempt on the next tick");
            }
            notify::status(&status_line(&report));
        }
    };
    let on_skip = |i: usize, n| {
        let which = if i == 0 {
            "schedule"
        } else {
            "rescan_schedule"
        };
        tracing::warn!(pipeline = %p.name, skipped = n, schedule = which, "runs outlasted the schedule; skipped ticks");
        if let Ok(mut l) = live.lock() {
            *l.skipped_ticks.entry(p.name.clone()).or_default() += n;
        }
    };
    schedule_loop(&schedules, clock, &cancel, job, on_skip).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timefmt::parse_user_time;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    fn t(s: &str) -> NaiveDateTime {
        parse_user_time(s).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_run_skips_ticks_and_never_overlaps() {
        let schedule = Schedule::parse("*/10 * * * * *").unwrap(); // every 10 s
        let clock = Clock::starting_at(t("2024-03-01 12:00:00"));
        let cancel = CancellationToken::new();
        let running = Arc::new(AtomicU32::new(0));
        let max_running = Arc::new(AtomicU32::new(0));
        let starts = Arc::new(Mutex::new(Vec::new()));
        let skipped = Arc::new(Mutex::new(0u64));
        let stopper = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(125)).await;
            stopper.cancel();
        });
        let (r, m, s) = (running.clone(), max_running.clone(), starts.clone());
        let sk = skipped.clone();
        let runs = schedule_loop(
            &[&schedule],
            clock,
            &cancel,
            move |_| {
                let (r, m, s) = (r.clone(), m.clone(), s.clone());
                async move {
                    let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    s.lock().unwrap().push(clock.now());
                    // Each run takes 25 s: two of the 10 s ticks pass while it goes.
                    tokio::time::sleep(Duration::from_secs(25)).await;
                    r.fetch_sub(1, Ordering::SeqCst);
                }
            },
            move |_, n| *sk.lock().unwrap() += n,
        )
        .await;
        assert_eq!(max_running.load(Ordering::SeqCst), 1, "runs overlapped");
        let starts = starts.lock().unwrap().clone();
        // Runs start on ticks 12:00:10, :40, 01:10, 01:40 (each 25 s, the ticks in between skipped).
        assert_eq!(
            starts,
            vec![
                t("2024-03-01 12:00:10"),
                t("2024-03-01 12:00:40"),
                t("2024-03-01 12:01:10"),
                t("2024-03-01 12:01:40")
            ]
        );
        assert_eq!(runs, 4);
        assert_eq!(*skipped.lock().unwrap(), 8, "two skipped ticks per run");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rescan_and_the_live_sync_wait_for_each_other_and_never_overlap() {
        let live = Schedule::parse("*/10 * * * * *").unwrap(); // every 10 s, runs 2 s
        let rescan = Schedule::parse("30 * * * * *").unwrap(); // at :30 each minute, runs 25 s
        let clock = Clock::starting_at(t("2024-03-01 12:00:00"));
        let cancel = CancellationToken::new();
        let stopper = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(100)).await;
            stopper.cancel();
        });
        let runs: Arc<Mutex<Vec<(usize, NaiveDateTime, NaiveDateTime)>>> = Arc::default();
        let skipped = Arc::new(Mutex::new([0u64; 2]));
        let (r, sk) = (runs.clone(), skipped.clone());
        schedule_loop(
            &[&live, &rescan],
            clock,
            &cancel,
            move |i| {
                let r = r.clone();
                async move {
                    let start = clock.now();
                    let secs = if i == 0 { 2 } else { 25 };
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                    r.lock().unwrap().push((i, start, clock.now()));
                }
            },
            move |i, n| sk.lock().unwrap()[i] += n,
        )
        .await;
        let runs = runs.lock().unwrap().clone();
        for pair in runs.windows(2) {
            assert!(pair[0].2 <= pair[1].1, "runs overlapped: {pair:?}");
        }
        let starts = |job| -> Vec<NaiveDateTime> {
            runs.iter().filter(|r| r.0 == job).map(|r| r.1).collect()
        };
        // :30 is a tick of both: the live sync (first) goes, then the rescan at :32; the live
        // ticks at :40 and :50 pass while it runs, and the live sync runs the moment it ends (:57).
        assert_eq!(
            starts(1),
            vec![t("2024-03-01 12:00:32"), t("2024-03-01 12:01:32")]
        );
        assert_eq!(
            starts(0),
            vec![
                t("2024-03-01 12:00:10"),
                t("2024-03-01 12:00:20"),
                t("2024-03-01 12:00:30"),
                t("2024-03-01 12:00:57"),
                t("2024-03-01 12:01:00"),
                t("2024-03-01 12:01:10"),
                t("2024-03-01 12:01:20"),
                t("2024-03-01 12:01:30"),
            ]
        );
        // Per rescan: the live :40 ran late (at :57) and :50 was skipped — twice (the second
        // rescan runs to its end past the cancel at 12:01:40; the job ignores the token).
        assert_eq!(*skipped.lock().unwrap(), [2, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_stops_a_waiting_loop_at_once() {
        let schedule = Schedule::parse("0 0 1 1 *").unwrap(); // once a year
        let cancel = CancellationToken::new();
        cancel.cancel();
        let runs = schedule_loop(
            &[&schedule],
            Clock::starting_at(t("2024-03-01")),
            &cancel,
            |_| async {},
            |_, _| {},
        )
        .await;
        assert_eq!(runs, 0);
    }
}
