//! `GET /metrics` (Prometheus text format) and `GET /healthz` for the daemon.
//!
//! Run counters, the failed streak and the last success are read from the `runs` table (through
//! `store::report`) at scrape time, so they survive restarts and always agree with the database;
//! upstream error codes, skipped ticks, schedule intervals and the request budgets' in-flight
//! requests and waits come from the daemon's memory (since process start). The watermark lag is
//! now minus the live checkpoint's watermark.
//!
//! Names follow Prometheus's conventions, which `deploy/prometheus` and `deploy/grafana` rely on:
//! counters end in `_total`, times are in seconds (`_seconds`, timestamps as Unix seconds), and
//! every label comes from a closed set: `pipeline` from the config, `outcome` from the `runs`
//! table's CHECK, `code` from [`crate::sources::metric_label`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use crate::store::sql::Db;
use crate::store::{Location, StoreError};
use axum::extract::State as AxumState;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::budget::Budgets;
use crate::store::report::{self, RunTotals};
use crate::timefmt;

/// What the daemon knows that the database does not: upstream error codes and skipped ticks seen
/// since start, and the schedule of each pipeline it runs.
#[derive(Debug, Default)]
pub struct Live {
    /// By pipeline and metric label: codes from a closed set per source
    /// ([`crate::sources::metric_label`]), so the number of series stays bounded whatever upstream sends.
    pub upstream_errors: BTreeMap<(String, &'static str), u64>,
    /// Every scheduled pipeline has an entry from the start, 0 until a tick is skipped: a counter
    /// series that first appears at 1 is invisible to `increase()`, so an alert would miss it.
    pub skipped_ticks: BTreeMap<String, u64>,
    /// Ticks that found the pipeline running in another process (another worker sharing the
    /// database), so this one did not run it.
    pub ticks_run_elsewhere: BTreeMap<String, u64>,
    /// Each scheduled pipeline's longest gap between two ticks, in seconds: the alert rules' yardstick
    /// for "no success within twice the schedule".
    pub schedule_intervals: BTreeMap<String, f64>,
    /// The engine's request budgets, read for their counters at scrape time.
    pub budgets: Budgets,
}

pub type Shared = Arc<Mutex<Live>>;

#[derive(Clone)]
pub struct State {
    pub db: Location,
    pub live: Shared,
}

/// `/metrics` and `/healthz`; the daemon serves them beside the status page (`statuspage`).
pub fn routes(state: State) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state)
}

async fn metrics(AxumState(state): AxumState<State>) -> impl IntoResponse {
    let result = tokio::task::spawn_blocking(move || render(&state)).await;
    match result {
        Ok(Ok(body)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            body,
        ),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            format!("database: {e}\n"),
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "internal error\n".into(),
        ),
    }
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole exposition, from the database and the daemon's memory. Each family's HELP and TYPE
/// lines sit right above its own samples: a sample under another family's TYPE line is read by
/// client parsers as part of that family, or as untyped.
pub fn render(state: &State) -> Result<String, StoreError> {
    let mut db = report::open_read_only(&state.db)?;
    let mut out = String::new();
    render_runs(db.as_mut(), &mut out)?;
    render_watermark_lag(db.as_mut(), &mut out)?;
    render_live_run_health(db.as_mut(), &mut out)?;
    render_live(state, &mut out);
    render_budgets(state, &mut out);
    Ok(out)
}

/// A counter family summed from `runs`: its name, its help, and its value in a pipeline's totals.
struct RunCounter {
    name: &'static str,
    help: &'static str,
    value: fn(&RunTotals) -> i64,
}

const RUN_COUNTERS: [RunCounter; 6] = [
    RunCounter {
        name: "ordersync_rows_seen_total",
        help: "Orders received from upstream.",
        value: |t| t.rows_seen,
    },
    RunCounter {
        name: "ordersync_rows_changed_total",
        help: "Orders inserted or updated.",
        value: |t| t.rows_changed,
    },
    RunCounter {
        name: "ordersync_rows_rejected_total",
        help: "Rows upstream sent that could not be read, kept in rejected_rows (each time read).",
        value: |t| t.rows_rejected,
    },
    RunCounter {
        name: "ordersync_requests_total",
        help: "HTTP requests sent upstream, retries included.",
        value: |t| t.requests,
    },
    RunCounter {
        name: "ordersync_rescan_rows_seen_total",
        help: "Orders re-read by rescans (of ordersync_rows_seen_total).",
        value: |t| t.rescan_rows_seen,
    },
    RunCounter {
        name: "ordersync_rescan_rows_changed_total",
        help: "Orders a rescan changed: late changes the live syncs had missed.",
        value: |t| t.rescan_rows_changed,
    },
];

/// The run counters from `runs`: runs by outcome, and the row and request counters summed.
fn render_runs(db: &mut dyn Db, out: &mut String) -> Result<(), StoreError> {
    out.push_str("# HELP ordersync_runs_total Runs finished (or abandoned), by outcome.\n# TYPE ordersync_runs_total counter\n");
    for row in report::runs_by_outcome(db)? {
        let _ = writeln!(
            out,
            "ordersync_runs_total{{pipeline=\"{}\",outcome=\"{}\"}} {}",
            label(&row.pipeline),
            label(&row.outcome),
            row.runs
        );
    }
    let totals = report::run_totals(db)?;
    for RunCounter { name, help, value } in RUN_COUNTERS {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for t in &totals {
            let _ = writeln!(
                out,
                "{name}{{pipeline=\"{}\"}} {}",
                label(&t.pipeline),
                value(t)
            );
        }
    }
    Ok(())
}

/// Now minus each live watermark, in seconds.
fn render_watermark_lag(db: &mut dyn Db, out: &mut String) -> Result<(), StoreError> {
    out.push_str("# HELP ordersync_watermark_lag_seconds Seconds between now and the live watermark.\n# TYPE ordersync_watermark_lag_seconds gauge\n");
    let now = timefmt::beijing_now();
    for row in report::live_watermarks(db)? {
        if let Some(w) = timefmt::parse_user_time(&row.watermark) {
            let lag = (now - w).num_milliseconds() as f64 / 1000.0;
            let _ = writeln!(
                out,
                "ordersync_watermark_lag_seconds{{pipeline=\"{}\"}} {lag}",
                label(&row.pipeline)
            );
        }
    }
    Ok(())
}

/// The failed streak and the time of the last success of each pipeline's live runs.
fn render_live_run_health(db: &mut dyn Db, out: &mut String) -> Result<(), StoreError> {
    let health = report::live_run_health(db)?;
    out.push_str("# HELP ordersync_consecutive_failed_runs Live runs that failed (or were abandoned) since the last ok one.\n# TYPE ordersync_consecutive_failed_runs gauge\n");
    for h in &health {
        let _ = writeln!(
            out,
            "ordersync_consecutive_failed_runs{{pipeline=\"{}\"}} {}",
            label(&h.pipeline),
            h.consecutive_failures
        );
    }
    out.push_str("# HELP ordersync_last_success_timestamp_seconds When the last ok live run finished, in Unix seconds.\n# TYPE ordersync_last_success_timestamp_seconds gauge\n");
    for h in &health {
        let Some(finished) = h.last_success.as_deref().and_then(timefmt::parse_user_time) else {
            continue;
        };
        let millis = finished.and_utc().timestamp_subsec_millis();
        let _ = writeln!(
            out,
            "ordersync_last_success_timestamp_seconds{{pipeline=\"{}\"}} {}.{millis:03}",
            label(&h.pipeline),
            timefmt::to_unix_seconds(finished)
        );
    }
    Ok(())
}

/// What only the daemon's memory knows, since it started: upstream errors, skipped ticks and
/// schedules.
fn render_live(state: &State, out: &mut String) {
    let live = state.live.lock().ok();
    out.push_str("# HELP ordersync_upstream_errors_total Failed upstream attempts since start, by upstream code.\n# TYPE ordersync_upstream_errors_total counter\n");
    for ((p, code), n) in live.iter().flat_map(|l| &l.upstream_errors) {
        let _ = writeln!(
            out,
            "ordersync_upstream_errors_total{{pipeline=\"{}\",code=\"{}\"}} {n}",
            label(p),
            label(code)
        );
    }
    out.push_str("# HELP ordersync_skipped_ticks_total Schedule ticks skipped because a run was still going.\n# TYPE ordersync_skipped_ticks_total counter\n");
    for (p, n) in live.iter().flat_map(|l| &l.skipped_ticks) {
        let _ = writeln!(
            out,
            "ordersync_skipped_ticks_total{{pipeline=\"{}\"}} {n}",
            label(p)
        );
    }
    out.push_str("# HELP ordersync_ticks_run_elsewhere_total Schedule ticks that found the pipeline running in another process sharing the database, so this one skipped them.\n# TYPE ordersync_ticks_run_elsewhere_total counter\n");
    for (p, n) in live.iter().flat_map(|l| &l.ticks_run_elsewhere) {
        let _ = writeln!(
            out,
            "ordersync_ticks_run_elsewhere_total{{pipeline=\"{}\"}} {n}",
            label(p)
        );
    }
    out.push_str("# HELP ordersync_schedule_interval_seconds Longest gap between two ticks of the pipeline's schedule.\n# TYPE ordersync_schedule_interval_seconds gauge\n");
    for (p, secs) in live.iter().flat_map(|l| &l.schedule_intervals) {
        let _ = writeln!(
            out,
            "ordersync_schedule_interval_seconds{{pipeline=\"{}\"}} {secs}",
            label(p)
        );
    }
}

/// Each pipeline's request budget (`crate::budget`), since start: requests in flight now, and the
/// requests that waited for the rate, a slot or a `Retry-After` pause, with the time they waited.
fn render_budgets(state: &State, out: &mut String) {
    let budgets = match state.live.lock() {
        Ok(l) => l.budgets.stats(),
        Err(_) => Vec::new(),
    };
    out.push_str("# HELP ordersync_requests_in_flight Requests sent upstream and not yet answered.\n# TYPE ordersync_requests_in_flight gauge\n");
    for (p, b) in &budgets {
        let _ = writeln!(
            out,
            "ordersync_requests_in_flight{{pipeline=\"{}\"}} {}",
            label(p),
            b.in_flight
        );
    }
    out.push_str("# HELP ordersync_budget_waits_total Requests that waited for the pipeline's request budget (max_rps, in-flight limit, Retry-After).\n# TYPE ordersync_budget_waits_total counter\n");
    for (p, b) in &budgets {
        let _ = writeln!(
            out,
            "ordersync_budget_waits_total{{pipeline=\"{}\"}} {}",
            label(p),
            b.waits
        );
    }
    out.push_str("# HELP ordersync_budget_wait_seconds_total Seconds requests waited for the pipeline's request budget.\n# TYPE ordersync_budget_wait_seconds_total counter\n");
    for (p, b) in &budgets {
        let _ = writeln!(
            out,
            "ordersync_budget_wait_seconds_total{{pipeline=\"{}\"}} {}",
            label(p),
            b.waited.as_secs_f64()
        );
    }
}
