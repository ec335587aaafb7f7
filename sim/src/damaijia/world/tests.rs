//! Tests of the damaijia world: its invariants, its search, and its drifts.

use super::draw::{base64, cipher};
use super::*;
use crate::damaijia::query::OrderBy;
use crate::damaijia::Drift;
use crate::Faults;

fn world(orders: usize) -> (World, NaiveDateTime) {
    let now = crate::time::parse_wall_clock("2025-06-01 12:00:00").expect("valid");
    let cfg = DamaijiaSimConfig {
        seed: 3,
        access_token: "t".to_string(),
        shop_id: "20358278".to_string(),
        orders,
        days: 30,
        now,
        faults: Faults::default(),
    };
    (World::generate(&cfg), now)
}

fn query(order_by: OrderBy, asc: bool, page: u64, size: usize) -> Query {
    Query {
        order_by,
        asc,
        create: (0, i64::MAX),
        update: (i64::MIN, i64::MAX),
        page,
        size,
    }
}

/// Reads every page of `q` once, as a client that never rescans: the ids in the order received,
/// and the `total` of each page. `between` runs before each page after the first.
fn scan(w: &mut World, q: &Query, now: NaiveDateTime) -> (Vec<String>, Vec<usize>) {
    let mut ids = Vec::new();
    let mut totals = Vec::new();
    let mut q = q.clone();
    loop {
        w.before_page(&q, now);
        let (total, page) = w.serve(&q);
        totals.push(total);
        let n = page.len();
        ids.extend(page.iter().map(|e| e.order.order_id.clone()));
        if n < q.size {
            return (ids, totals);
        }
        q.page += 1;
    }
}

#[test]
fn the_base64_and_the_lossy_shapes_are_right() {
    assert_eq!(base64(b"Man"), "TWFu");
    assert_eq!(base64(b"Ma"), "TWE=");
    assert_eq!(base64(b"M"), "TQ==");
    assert_eq!(cipher(1, 2, "x", 3).len(), 4);
    assert_ne!(cipher(1, 2, "x", 30), cipher(1, 3, "x", 30));
}

#[test]
fn orders_keep_their_invariants() {
    let (w, now) = world(2000);
    let truth = w.truth();
    assert_eq!(truth.len(), 2000);
    let mut line_ids = HashSet::new();
    for o in &truth {
        assert!(o
            .pay_time
            .is_none_or(|p| o.create_time <= p && p <= o.update_time));
        assert!(o.finish_time.is_none_or(|f| f <= o.update_time));
        assert!(o.update_time <= now - Duration::minutes(5));
        assert_eq!(
            o.pay_amount,
            o.lines.iter().map(|l| l.pay_amount).sum::<i64>()
        );
        assert!(o.order_amount >= o.pay_amount && o.pay_amount > 0);
        assert!((1..=4).contains(&o.lines.len()));
        assert_eq!(
            o.finish_time.is_some(),
            o.order_status == status::DONE,
            "{o:?}"
        );
        for l in &o.lines {
            assert!(line_ids.insert(l.sku_order_id.clone()), "line id twice");
            let product: u64 = l.product_id.parse().expect("numeric");
            assert!(product > 1 << 53 && product as f64 as u64 != product);
            assert!(l.sku_id.parse::<u64>().expect("numeric") < 1 << 53);
        }
        if o.lines.len() == 1 {
            assert_eq!(o.lines[0].sku_order_id, o.order_id);
        }
        let refunded = o.lines.iter().all(|l| l.refund_status == REFUND_SUCCEEDED);
        if o.order_status == status::CLOSED {
            assert_eq!(refunded, o.pay_time.is_some(), "{o:?}");
        }
    }
}

#[test]
fn a_page_asked_again_after_a_change_sees_the_change() {
    let (mut w, now) = world(200);
    let q = query(OrderBy::UpdateTime, true, 3, 50);
    let ids = |w: &World| {
        let (total, page) = w.page(&q);
        let ids: Vec<String> = page.iter().map(|e| e.order.order_id.clone()).collect();
        (total, ids)
    };
    let (total, before) = ids(&w);
    assert_eq!((total, before.len()), (200, 50));
    assert_eq!(
        ids(&w),
        (200, before.clone()),
        "the same query, the same page"
    );
    w.add_orders(3, now + Duration::hours(1));
    assert_eq!(ids(&w).0, 203, "added orders are counted");
    let moved = w.mutate(20, now + Duration::hours(2));
    assert!(!moved.is_empty());
    assert_ne!(
        ids(&w).1,
        before,
        "updated orders moved to the end of the update order"
    );
}

#[test]
fn search_sorts_by_time_then_id_in_the_asked_direction() {
    let (w, _) = world(300);
    for order_by in [OrderBy::CreateTime, OrderBy::UpdateTime] {
        let key = |id: &u64| {
            let o = w.order(*id).expect("exists");
            let t = match order_by {
                OrderBy::CreateTime => o.create_time,
                OrderBy::UpdateTime => o.update_time,
            };
            (t, *id)
        };
        let asc = w.matches(&query(order_by, true, 0, 10));
        assert_eq!(asc.len(), 300);
        assert!(asc.windows(2).all(|p| key(&p[0]) < key(&p[1])));
        let mut desc = w.matches(&query(order_by, false, 0, 10));
        desc.reverse();
        assert_eq!(asc, desc);
    }
}

#[test]
fn an_insert_drift_makes_a_plain_scan_miss_the_new_orders() {
    for asc in [false, true] {
        let (mut w, now) = world(500);
        let q = query(OrderBy::CreateTime, asc, 0, 40);
        w.schedule_drift(3, Drift::Insert(5));
        let (ids, totals) = scan(&mut w, &q, now);
        let inserted = w.drift_log();
        assert_eq!(inserted.len(), 5);
        assert_eq!(totals[..3], [500, 500, 500]);
        assert!(totals[3..].iter().all(|t| *t == 505), "{totals:?}");
        let seen: HashSet<&String> = ids.iter().collect();
        assert!(inserted.iter().all(|id| !seen.contains(id)), "all missed");
        assert_eq!(
            seen.len(),
            500,
            "old orders all seen, the shifted ones twice"
        );
        assert_eq!(ids.len(), 505);
        // A rescan sees everything.
        let (again, _) = scan(&mut w, &q, now);
        assert_eq!(again.iter().collect::<HashSet<_>>().len(), 505);
        for id in &inserted {
            let o = w.order(id.parse().expect("numeric")).expect("exists");
            assert_eq!(o.order_status, status::PAID);
        }
    }
}

#[test]
fn a_touch_drift_makes_a_plain_scan_of_a_past_window_miss_rows() {
    let (mut w, now) = world(500);
    let mut q = query(OrderBy::UpdateTime, true, 0, 50);
    q.update.1 = to_unix(now - Duration::minutes(1));
    let before: HashSet<String> = w.matches(&q).iter().map(|id| id.to_string()).collect();
    w.schedule_drift(2, Drift::Touch(4));
    let real_now = now + Duration::hours(1);
    let (ids, totals) = scan(&mut w, &q, real_now);
    let touched = w.drift_log();
    assert_eq!(touched.len(), 4);
    assert_eq!(totals[..2], [500, 500]);
    assert!(totals[2..].iter().all(|t| *t == 496), "{totals:?}");
    let seen: HashSet<String> = ids.into_iter().collect();
    let after: HashSet<String> = w.matches(&q).iter().map(|id| id.to_string()).collect();
    assert_eq!(after.len(), 496);
    assert_eq!(
        after.difference(&seen).count(),
        4,
        "four rows shifted past the reader"
    );
    assert!(touched
        .iter()
        .all(|id| before.contains(id) && !after.contains(id)));
    for id in &touched {
        let o = w.order(id.parse().expect("numeric")).expect("exists");
        assert_eq!(o.update_time, real_now);
    }
}

#[test]
fn a_lag_drift_keeps_the_total_and_makes_a_plain_scan_miss_a_row() {
    let (mut w, now) = world(500);
    let mut q = query(OrderBy::UpdateTime, true, 0, 50);
    q.update.1 = to_unix(now - Duration::minutes(1));
    w.schedule_drift(2, Drift::Lag(1));
    let (ids, totals) = scan(&mut w, &q, now + Duration::hours(1));
    let moved = w.drift_log();
    assert_eq!(moved.len(), 1);
    assert!(totals.iter().all(|t| *t == 500), "{totals:?}");
    let seen: HashSet<String> = ids.iter().cloned().collect();
    let all: HashSet<String> = w.matches(&q).iter().map(|id| id.to_string()).collect();
    assert_eq!(all.len(), 500, "the moved order is still inside the query");
    assert_eq!(
        all.difference(&seen).count(),
        1,
        "the row at the page boundary shifted past the reader"
    );
    assert_eq!(
        ids.iter().filter(|id| **id == moved[0]).count(),
        2,
        "the moved order was read twice: before and after it moved"
    );
    let o = w.order(moved[0].parse().expect("numeric")).expect("exists");
    assert_eq!(to_unix(o.update_time), q.update.1);
}

#[test]
fn mutate_moves_one_step_and_add_orders_lands_just_before_at() {
    let (mut w, now) = world(400);
    let at = now + Duration::minutes(1);
    let changes = w.mutate(50, at);
    assert_eq!(changes.len(), 50);
    for c in &changes {
        let o = w
            .order(c.order_id.parse().expect("numeric"))
            .expect("exists");
        assert_eq!(o.order_status.to_string(), c.to);
        assert_eq!(o.update_time, at);
        let step = (c.from.as_str(), c.to.as_str());
        assert!(
            matches!(
                step,
                ("1", "105")
                    | ("105", "2")
                    | ("105", "4")
                    | ("2", "3")
                    | ("2", "101")
                    | ("2", "4")
                    | ("101", "3")
                    | ("3", "5")
            ),
            "{step:?}"
        );
        if c.to == "4" {
            assert!(o.lines.iter().all(|l| l.refund_status == REFUND_SUCCEEDED));
        }
        if c.to == "5" {
            assert_eq!(o.finish_time, Some(at));
        }
    }
    let again = w.mutate(400, at);
    assert!(
        again
            .iter()
            .all(|c| changes.iter().all(|d| d.order_id != c.order_id)),
        "an order updated at `at` does not move again at `at`"
    );
    let added = w.add_orders(3, at);
    for id in added {
        let o = w.order(id.parse().expect("numeric")).expect("exists");
        assert!(o.create_time >= at - Duration::seconds(5) && o.update_time <= at);
        assert_eq!(o.order_status, status::PAID);
    }
}
