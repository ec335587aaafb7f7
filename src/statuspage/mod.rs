//! The daemon's status page, `GET /`, and `GET /api/status`, the JSON of `ordersync status --json`.
//!
//! Read-only: each request opens its own read-only connection (`store::report::open_read_only`)
//! on a blocking thread and reads everything in one transaction, so the page is one snapshot and
//! never holds the writer up. The facts per pipeline are `status::collect`'s — the same as
//! `ordersync status` — and the page adds the runs of the last 24 hours and the orders and GMV per
//! day of the last 30 (`html` lays it out, `charts` draws the SVG). Unlike `status`, it does not
//! mark a dead process's runs `abandoned` (that is a write): the daemon does that when it starts.
//!
//! The daily sums are the one costly read: `daily_summary` groups by an expression no index covers,
//! so it scans all of `orders` (about a second per million orders). They are read at most every
//! [`DAILY_REFRESH`] and kept in [`DailyCache`], so that tabs left open on the page, each
//! reloading every 30 s, cost one scan per interval between them.

mod charts;
pub mod html;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State as AxumState;
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{Duration, NaiveDateTime};

use crate::config::Config;
use crate::status::{self, PipelineStatus};
use crate::store::report::{self, DailyTotal, TimelineRun};
use crate::store::sql::{Begin, Db, Tx};
use crate::store::Location;
use crate::store::StoreError;
use crate::timefmt;

#[derive(Clone)]
pub struct State {
    pub db: Location,
    pub config: Arc<Config>,
    pub daily: Arc<DailyCache>,
}

/// How long the daily sums are shown before they are read again.
pub const DAILY_REFRESH: std::time::Duration = std::time::Duration::from_secs(300);

/// The daily sums last read: when (monotonic and Beijing), for which last day, and the rows.
#[derive(Default)]
pub struct DailyCache(Mutex<Option<DailyRead>>);

struct DailyRead {
    at: Instant,
    read_at: NaiveDateTime,
    last_day: String,
    totals: Vec<DailyTotal>,
}

impl DailyCache {
    /// The sums of the days `first..=last`, read again when older than [`DAILY_REFRESH`] or when
    /// the day has changed. The lock is held while reading, so concurrent loads scan once.
    fn get(
        &self,
        db: &mut dyn Db,
        first: &str,
        last: &str,
        now: NaiveDateTime,
    ) -> Result<(NaiveDateTime, Vec<DailyTotal>), StoreError> {
        let mut cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = cached
            .as_ref()
            .is_some_and(|c| c.last_day == last && c.at.elapsed() < DAILY_REFRESH);
        if !fresh {
            *cached = Some(DailyRead {
                at: Instant::now(),
                read_at: now,
                last_day: last.to_string(),
                totals: report::daily_totals(db, first, last)?,
            });
        }
        Ok(cached
            .as_ref()
            .map(|c| (c.read_at, c.totals.clone()))
            .unwrap_or_default())
    }
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
    /// Orders and GMV per day and source, the last [`html::CHART_DAYS`] days, as read at
    /// `daily_read_at` (at most [`DAILY_REFRESH`] ago).
    pub daily: Vec<DailyTotal>,
    pub daily_read_at: NaiveDateTime,
}

/// Reads the snapshot the page is drawn from; the daily sums may come from `daily`.
pub fn read(db: &Location, config: &Config, daily: &DailyCache) -> Result<Snapshot, StoreError> {
    let mut conn = report::open_read_only(db)?;
    let mut tx = Tx::begin(conn.as_mut(), Begin::Read)?;
    let now = timefmt::beijing_now();
    let pipelines = status::collect(&mut *tx, config)?;
    let runs = report::runs_since(&mut *tx, &timefmt::fmt_seconds(now - Duration::hours(24)))?;
    let today = now.date();
    let first = today - Duration::days(html::CHART_DAYS - 1);
    let (daily_read_at, daily) = daily.get(
        &mut *tx,
        &first.format("%Y-%m-%d").to_string(),
        &today.format("%Y-%m-%d").to_string(),
        now,
    )?;
    tx.commit()?;
    Ok(Snapshot {
        now,
        pipelines,
        runs,
        daily,
        daily_read_at,
    })
}

/// The page's HTML from the database at `db`.
pub fn render(db: &Location, config: &Config, daily: &DailyCache) -> Result<String, StoreError> {
    read(db, config, daily).map(|s| html::page(&s))
}

/// `status --json`'s text (and its newline) from the database at `db`.
pub fn render_json(db: &Location, config: &Config) -> Result<String, String> {
    let mut conn = report::open_read_only(db).map_err(|e| e.to_string())?;
    let all = status::collect(conn.as_mut(), config).map_err(|e| e.to_string())?;
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
        render(&state.db, &state.config, &state.daily).map_err(|e| e.to_string())
    })
    .await;
    answer(result, "text/html; charset=utf-8")
}

async fn api_status(AxumState(state): AxumState<State>) -> Response {
    let result = tokio::task::spawn_blocking(move || render_json(&state.db, &state.config)).await;
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
