//! Orders that arrive line by line (`OrderRow::partial`, unidesk's SKU sub-orders): each line is
//! stored on its own and the order row is derived from all of them.
//!
//! Invariant: an older copy of a line (by the line's own update time) never wins and an identical
//! one is not rewritten, and the order row is always derived from *all* its stored lines — money summed, the most advanced status, the latest update — so lines split across
//! pages, windows or a crash add up; the earliest created/paid time and the latest refund time
//! ever stored are kept.

use chrono::NaiveDateTime;

use super::sql::{args, Db};
use super::tracks::parse_time_col;
use super::upsert::{mark_seen, opt_time, upsert_order, write_line, Stamp};
use super::StoreError;
use crate::model::{OrderRow, Status};
use crate::timefmt;

fn min_time(a: Option<NaiveDateTime>, b: Option<NaiveDateTime>) -> Option<NaiveDateTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn sum(values: impl Iterator<Item = Option<i64>>) -> Option<i64> {
    values.fold(None, |acc, v| match (acc, v) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    })
}

/// One stored line, as the order's totals are derived from it.
struct StoredLine {
    pay_amount: Option<i64>,
    refund_amount: Option<i64>,
    commission: Option<i64>,
    item_num: Option<i64>,
    status: Status,
    status_raw: Option<String>,
    updated_at: Option<String>,
    raw: String,
}

/// An order that arrives line by line: each line is upserted on its own (an older copy of a line
/// never wins), then the order row is derived from *all* its stored lines — money summed, the most
/// advanced status, the latest update — so lines split across pages, windows or a crash add up.
pub(super) fn upsert_partial(
    db: &mut dyn Db,
    pipeline: &str,
    o: &OrderRow,
    stamp: Stamp<'_>,
) -> Result<bool, StoreError> {
    let lines_changed = upsert_lines(db, o)?;
    let stored = load_stored_times(db, o)?;
    if let (false, Some(stored)) = (lines_changed, &stored) {
        mark_seen(db, o, stored.last_seen_at.as_deref(), stamp)?;
        return Ok(false);
    }
    let lines = load_lines(db, o)?;
    upsert_order(db, pipeline, &derive_order(o, &lines, stored), stamp)?;
    Ok(true)
}

/// Writes each line of `o` that is not stored yet, or whose copy differs from the stored one and
/// is not older. Returns whether any line was written.
fn upsert_lines(db: &mut dyn Db, o: &OrderRow) -> Result<bool, StoreError> {
    let source = o.source.as_str();
    let mut lines_changed = false;
    for s in &o.sub_orders {
        // The line's text is compared by the database (see `upsert::StoredOrder::same_raw`).
        let stored: Option<(Option<String>, Option<bool>)> = db.query_opt_map(
            "SELECT updated_at, raw = ?4 FROM sub_orders WHERE source = ?1 AND order_id = ?2 AND sub_order_id = ?3",
            args![source, &o.order_id, &s.sub_order_id, &s.raw],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let updated = opt_time(s.updated_at);
        if let Some((old_updated, same_raw)) = &stored {
            if let (Some(new), Some(old)) = (&updated, old_updated) {
                if new < old {
                    continue;
                }
            }
            if *same_raw == Some(true) {
                continue;
            }
        }
        write_line(db, source, &o.order_id, s)?;
        lines_changed = true;
    }
    Ok(lines_changed)
}

/// The times of the stored order row that a new derivation keeps when its lines no longer say
/// them: the earliest creation and payment, the latest refund.
struct StoredTimes {
    created_at: Option<NaiveDateTime>,
    paid_at: Option<NaiveDateTime>,
    refunded_at: Option<NaiveDateTime>,
    last_seen_at: Option<String>,
}

fn load_stored_times(db: &mut dyn Db, o: &OrderRow) -> Result<Option<StoredTimes>, StoreError> {
    db.query_opt_map(
        "SELECT created_at, paid_at, refunded_at, last_seen_at FROM orders WHERE source = ?1 AND order_id = ?2",
        args![o.source.as_str(), &o.order_id],
        |r| {
            Ok(StoredTimes {
                created_at: parse_time_col(r.get(0)?),
                paid_at: parse_time_col(r.get(1)?),
                refunded_at: parse_time_col(r.get(2)?),
                last_seen_at: r.get(3)?,
            })
        },
    )
}

/// Every stored line of the order, by line id.
fn load_lines(db: &mut dyn Db, o: &OrderRow) -> Result<Vec<StoredLine>, StoreError> {
    db.query_map(
        "SELECT pay_amount, refund_amount, commission, item_num, status, status_raw, updated_at, raw \
         FROM sub_orders WHERE source = ?1 AND order_id = ?2 ORDER BY sub_order_id",
        args![o.source.as_str(), &o.order_id],
        |r| {
            Ok(StoredLine {
                pay_amount: r.get(0)?,
                refund_amount: r.get(1)?,
                commission: r.get(2)?,
                item_num: r.get(3)?,
                status: Status::parse(&r.get::<String>(4)?),
                status_raw: r.get(5)?,
                updated_at: r.get(6)?,
                raw: r.get(7)?,
            })
        },
    )
}

/// The order row of `o` as its stored `lines` add up, keeping the `stored` row's times.
fn derive_order(o: &OrderRow, lines: &[StoredLine], stored: Option<StoredTimes>) -> OrderRow {
    let mut order = o.clone();
    order.partial = false;
    order.sub_orders.clear();
    order.pay_amount = sum(lines.iter().map(|l| l.pay_amount));
    order.refund_amount = sum(lines.iter().map(|l| l.refund_amount));
    order.commission = sum(lines.iter().map(|l| l.commission));
    order.item_num = sum(lines.iter().map(|l| l.item_num));
    order.updated_at = lines
        .iter()
        .filter_map(|l| l.updated_at.as_deref())
        .max()
        .and_then(timefmt::parse_user_time);
    // The most advanced line decides (the first of equals); refunded only when every line is.
    if let Some(line) = lines.iter().rev().max_by_key(|l| l.status.progress()) {
        order.status = line.status;
        order.status_raw = line.status_raw.clone().unwrap_or_default();
    }
    let raws: Vec<&str> = lines.iter().map(|l| l.raw.as_str()).collect();
    order.raw = format!("{{\"sub_orders\":[{}]}}", raws.join(","));
    if let Some(stored) = stored {
        order.created_at = min_time(order.created_at, stored.created_at);
        order.paid_at = min_time(order.paid_at, stored.paid_at);
        order.refunded_at = order.refunded_at.max(stored.refunded_at);
    }
    order
}

#[cfg(test)]
mod tests {
    use crate::model::SourceKind;
    use crate::model::{Kind, OrderRow, Status};
    use crate::planner::Window;
    use crate::store::test_support::{commit, count, on_both_engines, t, text, TestDb};
    use crate::store::Progress;

    fn line(
        order: &str,
        sub: &str,
        code: &str,
        pay: i64,
        refund: Option<i64>,
        updated: &str,
    ) -> OrderRow {
        let status = if code == "3" {
            Status::Refunded
        } else {
            Status::Paid
        };
        let raw = format!("{{\"sub\":\"{sub}\",\"s\":{code},\"pay\":{pay},\"u\":\"{updated}\"}}");
        let mut o = OrderRow::new(SourceKind::Unidesk, order.into(), Kind::Sale, raw.clone());
        o.partial = true;
        o.status = status;
        o.status_raw = code.into();
        o.updated_at = Some(t(updated));
        o.sub_orders.push(crate::model::SubOrderRow {
            sub_order_id: sub.into(),
            sku_id: None,
            product_id: None,
            product_name: None,
            item_num: Some(1),
            pay_amount: Some(pay),
            status,
            status_raw: code.into(),
            raw,
            refund_amount: refund,
            commission: Some(pay / 10),
            updated_at: Some(t(updated)),
        });
        o
    }

    on_both_engines!(lines_split_across_pages_add_up_and_never_regress);

    fn lines_split_across_pages_add_up_and_never_regress(db: &mut TestDb, run: i64) {
        let w = Window {
            start: t("2024-01-01"),
            end: t("2024-01-02"),
        };
        let p = || Progress::Next {
            window: w,
            cursor: "c".into(),
        };
        let a = line(
            "9007199254740993001",
            "1",
            "2",
            100,
            None,
            "2024-01-01 10:00:00",
        );
        let b = line(
            "9007199254740993001",
            "2",
            "2",
            250,
            None,
            "2024-01-01 10:00:00",
        );
        commit(db, run, vec![a.clone()], p());
        commit(db, run, vec![b], p());
        assert_eq!(count(db, "SELECT pay_amount FROM orders"), 350);
        assert_eq!(count(db, "SELECT COUNT(*) FROM sub_orders"), 2);
        // The same line again changes nothing.
        assert_eq!(commit(db, run, vec![a.clone()], p()).changed, 0);
        // One line refunded later: the order stays paid (its other line is), refund is that line's.
        let b_refunded = line(
            "9007199254740993001",
            "2",
            "3",
            250,
            Some(250),
            "2024-01-01 12:00:00",
        );
        commit(db, run, vec![b_refunded], p());
        let (status, refund, updated): (String, i64, String) = db
            .query_opt_map(
                "SELECT status, refund_amount, updated_at FROM orders",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            (status.as_str(), refund, updated.as_str()),
            ("paid", 250, "2024-01-01 12:00:00")
        );
        // An older copy of the refunded line does not bring it back.
        let b_old = line(
            "9007199254740993001",
            "2",
            "2",
            250,
            None,
            "2024-01-01 10:00:00",
        );
        assert_eq!(commit(db, run, vec![b_old], p()).changed, 0);
        assert_eq!(count(db, "SELECT refund_amount FROM orders"), 250);
        // Both refunded: the order is refunded, one history row for that change.
        let a_refunded = line(
            "9007199254740993001",
            "1",
            "3",
            100,
            Some(100),
            "2024-01-01 13:00:00",
        );
        commit(db, run, vec![a_refunded], p());
        assert_eq!(text(db, "SELECT status FROM orders"), "refunded");
        assert_eq!(count(db, "SELECT COUNT(*) FROM order_status_history"), 2);
        let v: serde_json::Value =
            serde_json::from_str(&text(db, "SELECT raw FROM orders")).unwrap();
        assert_eq!(v["sub_orders"].as_array().map(Vec::len), Some(2));
    }
}
