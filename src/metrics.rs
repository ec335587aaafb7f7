//! `GET /metrics` (Prometheus text format) and `GET /healthz` for the daemon.
//!
//! Run counters are read from the `runs` table at scrape time, so they survive restarts and always
//! agree with the database; upstream error codes and skipped ticks come from the daemon's memory
//! (since process start). The watermark lag is now minus the live checkpoint's watermark.

use std::fmt::Write as _;
use std::path::PathBuf;

use axum::extract::State as AxumState;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use rusqlite::Connection;
use tokio_util::sync::CancellationToken;

use crate::daemon::Shared;
use crate::server;
use crate::timefmt;

#[derive(Clone)]
pub struct State {
    pub db_path: PathBuf,
    pub live: Shared,
}

/// Serves `/metrics` and `/healthz` until `stop` fires, within [`server::Limits::DAEMON`].
pub async fn serve(listener: tokio::net::TcpListener, state: State, stop: CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state);
    server::serve(listener, app, server::Limits::DAEMON, stop).await;
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

/// The whole exposition, from the database and the daemon's memory.
pub fn render(state: &State) -> Result<String, rusqlite::Error> {
    let conn =
        Connection::open_with_flags(&state.db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mut out = String::new();

    out.push_str("# HELP ordersync_runs_total Runs finished (or abandoned), by outcome.\n# TYPE ordersync_runs_total counter\n");
    let mut stmt = conn.prepare("SELECT pipeline, outcome, COUNT(*) FROM runs WHERE outcome != 'running' GROUP BY pipeline, outcome ORDER BY 1, 2")?;
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (p, o, n) = row?;
        let _ = writeln!(
            out,
            "ordersync_runs_total{{pipeline=\"{}\",outcome=\"{}\"}} {n}",
            label(&p),
            label(&o)
        );
    }
    let sums = [
        (
            "rows_seen",
            "ordersync_rows_seen_total",
            "Orders received from upstream.",
        ),
        (
            "rows_changed",
            "ordersync_rows_changed_total",
            "Orders inserted or updated.",
        ),
        (
            "rows_rejected",
            "ordersync_rows_rejected_total",
            "Rows upstream sent that could not be read, kept in rejected_rows (each time read).",
        ),
        (
            "requests",
            "ordersync_requests_total",
            "HTTP requests sent upstream, retries included.",
        ),
    ];
    for (column, name, help) in sums {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        let mut stmt = conn.prepare(&format!(
            "SELECT pipeline, SUM({column}) FROM runs GROUP BY pipeline ORDER BY 1"
        ))?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (p, n) = row?;
            let _ = writeln!(out, "{name}{{pipeline=\"{}\"}} {n}", label(&p));
        }
    }
    out.push_str("# HELP ordersync_watermark_lag_seconds Seconds between now and the live watermark.\n# TYPE ordersync_watermark_lag_seconds gauge\n");
    let now = timefmt::beijing_now();
    let mut stmt = conn.prepare("SELECT pipeline, watermark FROM checkpoints WHERE scope = 'live' AND watermark IS NOT NULL ORDER BY 1")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (p, w) = row?;
        if let Some(w) = timefmt::parse_user_time(&w) {
            let lag = (now - w).num_milliseconds() as f64 / 1000.0;
            let _ = writeln!(
                out,
                "ordersync_watermark_lag_seconds{{pipeline=\"{}\"}} {lag}",
                label(&p)
            );
        }
    }
    // Each family's HELP and TYPE lines right above its own samples: a sample under another
    // family's TYPE line is read by client parsers as part of that family, or as untyped.
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
    Ok(out)
}
