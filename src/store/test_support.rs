//! What the store's unit tests share: a fresh database with a track and a run, a page commit
//! with defaults, and rows built from a few fields.

use chrono::NaiveDateTime;
use rusqlite::Connection;

use super::{
    begin_run, commit_page, ensure_track, open_connection, PageCommit, PageStats, Progress,
};
use crate::model::SourceKind;
use crate::model::{Kind, OrderRow, Status};
use crate::timefmt;

pub(super) fn t(s: &str) -> NaiveDateTime {
    timefmt::parse_user_time(s).unwrap()
}

pub(super) fn order(id: &str, status: &str, updated: &str, raw: &str) -> OrderRow {
    let mut o = OrderRow::new(SourceKind::Veapi, id.into(), Kind::Affiliate, raw.into());
    o.status_raw = status.into();
    o.status = Status::Paid;
    o.updated_at = Some(t(updated));
    o
}

pub(super) fn setup() -> (tempfile::TempDir, Connection, i64) {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = open_connection(&dir.path().join("t.db")).unwrap();
    ensure_track(&mut conn, "p", "live", None).unwrap();
    let run = begin_run(&mut conn, "p", "sync", "live").unwrap();
    (dir, conn, run)
}

pub(super) fn commit(
    conn: &mut Connection,
    run: i64,
    orders: Vec<OrderRow>,
    progress: Progress,
) -> PageStats {
    let window = match &progress {
        Progress::Next { window, .. } | Progress::WindowDone { window } => *window,
    };
    let page = PageCommit {
        run_id: run,
        pipeline: "p".into(),
        scope: "live".into(),
        source: SourceKind::Veapi,
        orders,
        rejected: Vec::new(),
        asked: (window, String::new()),
        requests: 1,
        progress,
        seen_floor: String::new(),
    };
    commit_page(conn, &page).unwrap()
}

pub(super) fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}
