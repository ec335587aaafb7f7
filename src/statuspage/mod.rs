//! The daemon's status page, `GET /`, and `GET /api/status`, the JSON of `ordersync status --json`.
//!
//! Read-only: each request opens its own read-only connection (`store::report::open_read_only`)
//! on a blocking thread and reads everything in one transaction, so the page is one snapshot and
//! never holds the writer up. The facts per pipeline are `status::collect`'s — the same as
//! `ordersync status` — and the page adds the runs of the last 24 hours and the orders and GMV per
//! day of the last 30 (`html` lays it out, `charts` draws the SVG). Unlike `status`, it does not
//! mark a dead process's runs `abandoned` (that is a write): the daemon does that when it starts.

mod charts;
pub mod html;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State as AxumState;
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{Duration, NaiveDateTime};

use crate::config::Config;
use crate::status::{self, PipelineStatus};
use crate::store::report::{self, DailyTotal, TimelineRun};
use crate::store::StoreError;
use crate::timefmt;

#[derive(Clone)]
pub struct State {
    pub db_path: PathBuf,
    pub config: Arc<Config>,
}

/// `/` and `/api/status`; any other method than GET (or HEAD) is refused with 405.
pub fn routes(state: State) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/status", get(api_status))
        .with_state(state)
}

/// Everything the page shows, read from one snapshot of the database.
#[derive(Debug)]
pub struct Snapshot {
    pub now: NaiveDateTime,
    pub pipelines: Vec<PipelineStatus>,
    /// Runs going on or finished within the last 24 hours.
    pub runs: Vec<TimelineRun>,
    /// Orders and GMV per day and source, the last [`html::CHART_DAYS`] days.
    pub daily: Vec<DailyTotal>,
}

/// Reads the snapshot the page is drawn from.
pub fn read(db_path: &Path, config: &Config) -> Result<Snapshot, StoreError> {
    let conn = report::open_read_only(db_path)?;
    let tx = conn.unchecked_transaction()?;
    let now = timefmt::beijing_now();
    let pipelines = status::collect(&tx, config)?;
    let runs = report::runs_since(&tx, &timefmt::fmt_seconds(now - Duration::hours(24)))?;
    let today = now.date();
    let first = today - Duration::days(html::CHART_DAYS - 1);
    let daily = report::daily_totals(
        &tx,
        &first.format("%Y-%m-%d").to_string(),
        &today.format("%Y-%m-%d").to_string(),
    )?;
    tx.finish()?;
    Ok(Snapshot {
        now,
        pipelines,
        runs,
        daily,
    })
}

/// The page's HTML from the database at `db_path`.
pub fn render(db_path: &Path, config: &Config) -> Result<String, StoreError> {
    read(db_path, config).map(|s| html::page(&s))
}

/// `status --json`'s text (and its newline) from the database at `db_path`.
pub fn render_json(db_path: &Path, config: &Config) -> Result<String, String> {
    let conn = report::open_read_only(db_path).map_err(|e| StoreError::from(e).to_string())?;
    let all = status::collect(&conn, config).map_err(|e| e.to_string())?;
    let text = status::to_json(&all).map_err(|e| format!("status as JSON: {e}"))?;
    Ok(text + "\n")
}

/// What every answer of these routes carries: no script, no frame, nothing fetched from elsewhere,
/// nothing cached.
const PAGE_HEADERS: [(HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::CACHE_CONTROL, "no-store"),
    (header::REFERRER_POLICY, "no-referrer"),
];

async fn page(AxumState(state): AxumState<State>) -> Response {
    let result = tokio::task::spawn_blocking(move || {
        render(&state.db_path, &state.config).map_err(|e| e.to_string())
    })
    .await;
    answer(result, "text/html; charset=utf-8")
}

async fn api_status(AxumState(state): AxumState<State>) -> Response {
    let result =
        tokio::task::spawn_blocking(move || render_json(&state.db_path, &state.config)).await;
    answer(result, "application/json")
}

fn answer(
    result: Result<Result<String, String>, tokio::task::JoinError>,
    content_type: &'static str,
) -> Response {
    match result {
        Ok(Ok(body)) => (
            StatusCode::OK,
            PAGE_HEADERS,
            [(header::CONTENT_TYPE, content_type)],
            body,
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "status page: cannot read the database");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                PAGE_HEADERS,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{e}\n"),
            )
                .into_response()
        }
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "internal error\n",
        )
            .into_response(),
    }
}
