//! What the database should hold for a simulator's world, written out independently of ordersync:
//! the contracts' mappings (fen rounding, `flow_point`, damaijia and sxt states → status), each
//! source's expected row, and the veapi stored-versus-truth checks.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use ordersync_sim::damaijia::DmjOrder;
use ordersync_sim::sxt::SxtOrder;
use ordersync_sim::{MyqOrder, Simulator, VeOrder};
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

/// What a miaoyouquan order should be stored as (the same columns as veapi's, commission in fen).
pub fn expected_myq(o: &MyqOrder) -> ExpectedOrder {
    ExpectedOrder {
        order_id: o.order_id.clone(),
        status: flow_point_status(&o.flow_point),
        status_raw: o.flow_point.clone(),
        pay_amount: o.total_pay_amount,
        commission: if o.ads_real_commission != 0 {
            o.ads_real_commission
        } else {
            o.ads_estimated_commission
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

/// damaijia: status, status_raw, pay_amount, refund_amount, created_at, paid_at, updated_at,
/// confirmed_at, shop_id, shop_name, item_num.
pub type DmjStored = (
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
);

/// damaijia line: product_id, sku_id, item_num, pay_amount, status_raw, refund_amount.
pub type DmjLineStored = (String, String, i64, i64, String, Option<i64>);

/// The damaijia contract's `order_status` → status, written out independently.
pub fn dmj_status(code: i64) -> &'static str {
    match code {
        1 => "pending",
        105 | 2 => "paid",
        101 | 3 => "shipped",
        4 => "closed",
        5 => "completed",
        _ => "unknown",
    }
}

/// What a damaijia shop order should be stored as: refunds the sum of its refunded lines, items
/// the sum of its lines'.
pub fn expected_dmj(o: &DmjOrder) -> DmjStored {
    let refunded: Vec<i64> = o
        .lines
        .iter()
        .filter(|l| l.refund_status == 3)
        .map(|l| l.pay_amount)
        .collect();
    (
        dmj_status(o.order_status).to_string(),
        o.order_status.to_string(),
        o.pay_amount,
        (!refunded.is_empty()).then(|| refunded.iter().sum()),
        fmt(Some(o.create_time)),
        fmt(o.pay_time),
        fmt(Some(o.update_time)),
        fmt(o.finish_time),
        o.shop_id.clone(),
        o.shop_name.clone(),
        o.lines.iter().map(|l| l.item_num).sum(),
    )
}

/// sxt: kind, status, status_raw, ad_cost (fen), ad_plays, ad_gmv (fen), ad_roi, created_at, lines.
pub type SxtStored = (
    String,
    String,
    String,
    i64,
    i64,
    i64,
    String,
    Option<String>,
    i64,
);

/// What an sxt ad order should be stored as: its state as status, money in fen, no lines.
pub fn expected_sxt(o: &SxtOrder) -> SxtStored {
    let status = match o.state {
        1 => "ad_unpaid",
        3 => "ad_creating",
        5 => "ad_reviewing",
        6 => "ad_rejected",
        7 => "ad_delivering",
        8 => "ad_terminated",
        9 => "ad_completed",
        10 => "ad_ended",
        _ => "unknown",
    };
    (
        "ad".into(),
        status.into(),
        o.state.to_string(),
        o.cost_fen,
        o.plays,
        o.gmv_fen,
        o.roi.clone(),
        fmt(Some(o.create_time)),
        0,
    )
}

/// `query` over `conn`, each row mapped by `f` into a key and a value, collected.
pub fn query_map<K: Ord + std::hash::Hash, V, C: FromIterator<(K, V)>>(
    conn: &Connection,
    sql: &str,
    f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<(K, V)>,
) -> C {
    conn.prepare(sql)
        .and_then(|mut s| s.query_map([], f)?.collect::<Result<C, _>>())
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The damaijia orders stored, by order id, as [`expected_dmj`] describes them.
pub fn stored_dmj(conn: &Connection) -> BTreeMap<String, DmjStored> {
    query_map(
        conn,
        "SELECT order_id, status, status_raw, pay_amount, refund_amount, created_at, paid_at, updated_at, \
         confirmed_at, shop_id, shop_name, item_num FROM orders WHERE source = 'damaijia'",
        |r| {
            Ok((
                r.get(0)?,
                (
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                    r.get(11)?,
                ),
            ))
        },
    )
}

/// Every SKU line the damaijia orders of `truth` should have stored, by (order, line).
pub fn expected_dmj_lines(truth: &[DmjOrder]) -> BTreeMap<(String, String), DmjLineStored> {
    truth
        .iter()
        .flat_map(|o| {
            o.lines.iter().map(|l| {
                (
                    (o.order_id.clone(), l.sku_order_id.clone()),
                    (
                        l.product_id.clone(),
                        l.sku_id.clone(),
                        l.item_num,
                        l.pay_amount,
                        l.order_status.to_string(),
                        (l.refund_status == 3).then_some(l.pay_amount),
                    ),
                )
            })
        })
        .collect()
}

/// The damaijia SKU lines stored, by (order, line).
pub fn stored_dmj_lines(conn: &Connection) -> BTreeMap<(String, String), DmjLineStored> {
    query_map(
        conn,
        "SELECT order_id, sub_order_id, product_id, sku_id, item_num, pay_amount, status_raw, refund_amount \
         FROM sub_orders WHERE source = 'damaijia'",
        |r| {
            Ok((
                (r.get(0)?, r.get(1)?),
                (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?),
            ))
        },
    )
}

/// The sxt ad orders stored, by order id, as [`expected_sxt`] describes them.
pub fn stored_sxt(conn: &Connection) -> BTreeMap<String, SxtStored> {
    query_map(
        conn,
        "SELECT order_id, kind, status, status_raw, ad_cost, ad_plays, ad_gmv, ad_roi, created_at, \
         (SELECT COUNT(*) FROM sub_orders s WHERE s.source = o.source AND s.order_id = o.order_id) \
         FROM orders o WHERE source = 'sxt'",
        |r| {
            Ok((
                r.get(0)?,
                (
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ),
            ))
        },
    )
}
