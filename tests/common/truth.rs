//! What the database should hold for a veapi world, written out independently of ordersync: the
//! contract's mappings (fen rounding, `flow_point` → status) and the stored-versus-truth checks.

use chrono::NaiveDateTime;
use ordersync_sim::{Simulator, VeOrder};
use rusqlite::Connection;

use super::{scalar, Harness};

/// Round-half-up of a decimal fen string, written independently of `ordersync::money`.
pub fn expected_fen(s: &str) -> i64 {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let base: i64 = int.parse().expect("integer part");
    let up = frac.chars().next().is_some_and(|c| c >= '5');
    base + i64::from(up)
}

/// The contract's mapping of the Douyin affiliate `flow_point`, written out independently.
pub fn flow_point_status(flow_point: &str) -> String {
    match flow_point {
        "PAY_SUCC" => "paid",
        "REFUND" => "refunded",
        "SETTLE" => "settled",
        "CONFIRM" => "completed",
        _ => "unknown",
    }
    .to_string()
}

pub fn fmt(t: Option<NaiveDateTime>) -> Option<String> {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// The `orders` columns we expect for one simulator order.
#[derive(Debug, PartialEq)]
pub struct ExpectedOrder {
    pub order_id: String,
    pub status: String,
    pub status_raw: String,
    pub pay_amount: i64,
    pub commission: i64,
    pub paid_at: Option<String>,
    pub updated_at: Option<String>,
    pub refunded_at: Option<String>,
    pub settled_at: Option<String>,
    pub confirmed_at: Option<String>,
    pub shop_id: String,
    pub shop_name: String,
    pub product_id: String,
    pub product_name: String,
    pub item_num: i64,
}

pub fn expected(o: &VeOrder) -> ExpectedOrder {
    let real = expected_fen(&o.ads_real_commission);
    ExpectedOrder {
        order_id: o.order_id.clone(),
        status: flow_point_status(&o.flow_point),
        status_raw: o.flow_point.clone(),
        pay_amount: o.total_pay_amount,
        commission: if real != 0 {
            real
        } else {
            expected_fen(&o.estimated_commission)
        },
        paid_at: fmt(Some(o.pay_success_time)),
        updated_at: fmt(Some(o.update_time)),
        refunded_at: fmt(o.refund_time),
        settled_at: fmt(o.settle_time),
        confirmed_at: fmt(o.confirm_time),
        shop_id: o.shop_id.clone(),
        shop_name: o.shop_name.clone(),
        product_id: o.product_id.clone(),
        product_name: o.product_name.clone(),
        item_num: o.item_num,
    }
}

pub fn stored_orders(conn: &Connection) -> Vec<ExpectedOrder> {
    stored_orders_of(conn, "veapi")
}

pub fn stored_orders_of(conn: &Connection, source: &str) -> Vec<ExpectedOrder> {
    let mut stmt = conn
        .prepare(
            "SELECT order_id, status, status_raw, pay_amount, commission, paid_at, updated_at, refunded_at, \
             settled_at, confirmed_at, shop_id, shop_name, product_id, product_name, item_num \
             FROM orders WHERE source = ?1 ORDER BY order_id",
        )
        .expect("prepare");
    stmt.query_map([source], |r| {
        Ok(ExpectedOrder {
            order_id: r.get(0)?,
            status: r.get(1)?,
            status_raw: r.get(2)?,
            pay_amount: r.get(3)?,
            commission: r.get(4)?,
            paid_at: r.get(5)?,
            updated_at: r.get(6)?,
            refunded_at: r.get(7)?,
            settled_at: r.get(8)?,
            confirmed_at: r.get(9)?,
            shop_id: r.get(10)?,
            shop_name: r.get(11)?,
            product_id: r.get(12)?,
            product_name: r.get(13)?,
            item_num: r.get(14)?,
        })
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

/// The database holds exactly the simulator's orders, field by field, each with its one line, and
/// the simulator saw no request that broke a rule.
pub fn assert_equals_truth(h: &Harness) {
    assert_orders_equal_truth(h);
    assert_eq!(
        h.sim.violations(),
        Vec::<String>::new(),
        "simulator recorded rule violations"
    );
}

pub fn assert_orders_equal_truth(h: &Harness) {
    let conn = h.db();
    let mut truth: Vec<ExpectedOrder> = h.sim.truth().iter().map(expected).collect();
    truth.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    let stored = stored_orders(&conn);
    assert_eq!(
        stored.len(),
        truth.len(),
        "order count differs from ground truth"
    );
    for (s, t) in stored.iter().zip(&truth) {
        assert_eq!(s, t);
    }
    let lines: i64 = scalar(
        &conn,
        "SELECT COUNT(*) FROM sub_orders WHERE source = 'veapi' AND sub_order_id = order_id",
    );
    assert_eq!(
        lines,
        truth.len() as i64,
        "each veapi order has exactly one line"
    );
    let orphans: i64 = scalar(&conn, "SELECT COUNT(*) FROM sub_orders s LEFT JOIN orders o USING (source, order_id) WHERE o.order_id IS NULL");
    assert_eq!(orphans, 0);
}
