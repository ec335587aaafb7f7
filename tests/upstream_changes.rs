//! Upstream changes its mind: an older copy of an order, one without an update time, an order
//! that vanishes, or a backfill of copies older than the stored rows never regresses what is stored.

use chrono::{Duration, NaiveDate};
use ordersync::model::OrderRow;
use ordersync::planner::Window;
use ordersync::sources::veapi;
use ordersync::store::{self, PageCommit, Progress};
use ordersync_sim::Faults;
use rusqlite::Connection;
use serde_json::json;

use crate::common::*;

/// The fixture's row with some fields replaced, normalised by the real veapi source.
fn veapi_row(order_id: &str, flow_point: &str, update_time: &str, commission: &str) -> OrderRow {
    let mut row = fixture("tests/fixtures/veapi/sample_page.json")["data"][0].clone();
    row["order_id"] = json!(order_id);
    row["flow_point"] = json!(flow_point);
    row["update_time"] = json!(update_time);
    row["estimated_commission"] = json!(commission);
    veapi::normalise(&row).expect("a well-formed row")
}

fn store_state(conn: &Connection) -> (Vec<String>, Vec<String>, Vec<String>) {
    (
        orders_snapshot(conn),
        table_text(conn, "SELECT * FROM sub_orders ORDER BY order_id"),
        table_text(
            conn,
            "SELECT source, order_id, status, status_raw FROM order_status_history ORDER BY id",
        ),
    )
}

#[test]
fn an_older_or_vanished_upstream_copy_never_regresses_the_stored_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = store::open_connection(&dir.path().join("m.db")).expect("open");
    store::ensure_track(&mut conn, "p", "live", None).expect("track");
    let run = store::begin_run(&mut conn, "p", "sync", "live").expect("run");
    let window = Window {
        start: NaiveDate::from_ymd_opt(2024, 4, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("date"),
        end: NaiveDate::from_ymd_opt(2024, 4, 10)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("date"),
    };
    let commit = |conn: &mut Connection, orders: Vec<OrderRow>| {
        let page = PageCommit {
            run_id: run,
            pipeline: "p".into(),
            scope: "live".into(),
            source: ordersync::sources::SourceKind::Veapi,
            orders,
            rejected: Vec::new(),
            asked: (window, String::new()),
            requests: 1,
            seen_floor: String::new(),
            progress: Progress::Next {
                window,
                cursor: "c".into(),
            },
        };
        store::commit_page(conn, &page).expect("commit").changed
    };
    let id = "6928535482621498461";
    let paid = veapi_row(id, "PAY_SUCC", "1712311307", "1");
    let refunded = veapi_row(id, "REFUND", "1712400000", "1");
    let settled = veapi_row(id, "SETTLE", "1712500000", "2.5");
    assert_eq!(commit(&mut conn, vec![paid.clone()]), 1);
    assert_eq!(commit(&mut conn, vec![refunded.clone()]), 1);
    let newest = store_state(&conn);

    // Upstream goes back to an older update time: nothing changes, no history row.
    assert_eq!(commit(&mut conn, vec![paid.clone()]), 0);
    assert_eq!(
        store_state(&conn),
        newest,
        "an older copy regressed the row"
    );
    // Upstream loses the update time ("0" is veapi's "no time"): it cannot be shown newer.
    let timeless = veapi_row(id, "PAY_SUCC", "0", "1");
    assert_eq!(timeless.updated_at, None);
    assert_eq!(commit(&mut conn, vec![timeless]), 0);
    assert_eq!(
        store_state(&conn),
        newest,
        "a copy without an update time regressed the row"
    );
    // The order disappears from upstream: later pages without it leave it as it was.
    assert_eq!(
        commit(
            &mut conn,
            vec![veapi_row(
                "6928535482621498999",
                "PAY_SUCC",
                "1712311307",
                "1"
            )]
        ),
        1
    );
    let (orders, _, _) = store_state(&conn);
    assert!(
        orders.contains(&newest.0[0]),
        "the vanished order's row changed"
    );
    assert_eq!(commit(&mut conn, vec![]), 0);

    // Old and new copies in one page, either way round: the newest wins, one history row each.
    assert_eq!(
        commit(
            &mut conn,
            vec![settled.clone(), refunded.clone(), paid.clone()]
        ),
        1
    );
    let settled_state = store_state(&conn);
    assert_eq!(commit(&mut conn, vec![paid, refunded, settled]), 0);
    assert_eq!(store_state(&conn), settled_state);
    let history: Vec<String> = rows(
        &conn,
        &format!("SELECT status_raw FROM order_status_history WHERE order_id = '{id}' ORDER BY id"),
    );
    assert_eq!(history, vec!["PAY_SUCC", "REFUND", "SETTLE"]);
    let commission: i64 = scalar(
        &conn,
        &format!("SELECT commission FROM orders WHERE order_id = '{id}'"),
    );
    assert_eq!(commission, 3, "2.5 fen rounds half up");
}

#[test]
fn stored_rows_newer_than_upstream_survive_a_full_backfill() {
    // From the database's side, upstream "goes back in time" when it sends a copy older than the
    // stored one: here the stored rows are made newer than anything upstream has.
    let h = Harness::veapi(600, 60, Faults::default());
    assert_ok(&h.run(&["sync"]));
    let conn = h.db();
    let tampered = conn
        .execute(
            "UPDATE orders SET updated_at = '2099-01-01 00:00:00', status = 'settled', status_raw = 'SETTLE', \
             raw = '{\"newer\":true}' WHERE order_id IN (SELECT order_id FROM orders ORDER BY order_id LIMIT 7)",
            [],
        )
        .expect("update");
    assert_eq!(tampered, 7);
    let before = orders_snapshot(&conn);
    let from = (h.now - Duration::days(61)).format("%Y-%m-%d").to_string();
    let out = h.run(&["backfill", "ve", "--from", &from]);
    assert_ok(&out);
    assert_eq!(
        orders_snapshot(&conn),
        before,
        "a backfill of older copies changed stored rows"
    );
    let (seen, changed): (i64, i64) = conn
        .query_row(
            "SELECT rows_seen, rows_changed FROM runs ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("last run");
    assert_eq!((seen, changed), (600, 0));
}
