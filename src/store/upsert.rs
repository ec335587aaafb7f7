//! Order upserts: one order row and its lines, never regressing and never rewriting a copy.
//!
//! Invariant: an older copy of an order (by upstream update time), or one that lost its update
//! time, never overwrites the stored one, and an identical copy (same `raw`, same pipeline) is not
//! rewritten, so re-reading overlapping windows is harmless. Every stored change of `status_raw`,
//! the first sighting included, adds exactly one `order_status_history` row. An order read again
//! unchanged has only its `last_seen_at` written, and only when that is older than the page's
//! [`Stamp::seen_floor`].

use super::sql::{args, Db};
use chrono::NaiveDateTime;

use super::partial::upsert_partial;
use super::StoreError;
use crate::model::{OrderRow, SubOrderRow};
use crate::timefmt;

pub(super) fn opt_time(t: Option<NaiveDateTime>) -> Option<String> {
    t.map(timefmt::fmt_seconds)
}

/// The times a page's writes carry: `now` for what it writes, and the floor under which an
/// unchanged order's `last_seen_at` is written again (a live sync's: the start of the Beijing day,
/// so re-reading its lookback every few minutes writes nothing; a rescan's or backfill's: its own
/// start, so every order it read says so).
#[derive(Debug, Clone, Copy)]
pub(super) struct Stamp<'a> {
    pub now: &'a str,
    pub seen_floor: &'a str,
}

/// Inserts or updates one order and its lines. Returns whether anything but `last_seen_at` was
/// written.
pub(super) fn upsert_order(
    db: &mut dyn Db,
    pipeline: &str,
    o: &OrderRow,
    stamp: Stamp<'_>,
) -> Result<bool, StoreError> {
    if o.partial {
        return upsert_partial(db, pipeline, o, stamp);
    }
    let updated_at = opt_time(o.updated_at);
    let stored = load_stored(db, o)?;
    let Verdict::Write { status_changed } =
        judge(stored.as_ref(), o, updated_at.as_deref(), pipeline)
    else {
        if let Some(stored) = &stored {
            mark_seen(db, o, stored.last_seen_at.as_deref(), stamp)?;
        }
        return Ok(false);
    };
    write_order(db, pipeline, o, updated_at.as_deref(), stamp.now)?;
    for s in &o.sub_orders {
        write_line(db, o.source.as_str(), &o.order_id, s)?;
    }
    if status_changed {
        add_history(db, o, stamp.now)?;
    }
    Ok(true)
}

/// Writes `last_seen_at` of an order read again unchanged, when the stored one is below the floor.
pub(super) fn mark_seen(
    db: &mut dyn Db,
    o: &OrderRow,
    last_seen_at: Option<&str>,
    stamp: Stamp<'_>,
) -> Result<(), StoreError> {
    if last_seen_at.is_some_and(|seen| seen >= stamp.seen_floor) {
        return Ok(());
    }
    db.execute(
        "UPDATE orders SET last_seen_at = ?3 WHERE source = ?1 AND order_id = ?2",
        args![o.source.as_str(), &o.order_id, stamp.now],
    )?;
    Ok(())
}

/// What of a stored order decides whether a new copy replaces it.
struct StoredOrder {
    updated_at: Option<String>,
    /// Whether the stored `raw` is the new copy's: compared by the database, as JSON on an
    /// engine that keeps it as JSON (PostgreSQL's `jsonb` keeps no key order or whitespace), and
    /// without copying a row's text out to compare it.
    same_raw: bool,
    pipeline: String,
    status_raw: Option<String>,
    last_seen_at: Option<String>,
}

fn load_stored(db: &mut dyn Db, o: &OrderRow) -> Result<Option<StoredOrder>, StoreError> {
    db.query_opt_map(
        "SELECT updated_at, raw = ?3, pipeline, status_raw, last_seen_at FROM orders \
         WHERE source = ?1 AND order_id = ?2",
        args![o.source.as_str(), &o.order_id, &o.raw],
        |r| {
            Ok(StoredOrder {
                updated_at: r.get(0)?,
                same_raw: r.get(1)?,
                pipeline: r.get(2)?,
                status_raw: r.get(3)?,
                last_seen_at: r.get(4)?,
            })
        },
    )
}

/// Whether a copy of an order is written.
enum Verdict {
    /// Older than the stored copy, or the same: the stored one stays.
    Keep,
    Write {
        status_changed: bool,
    },
}

/// Whether `o` replaces the stored copy; `updated_at` is its update time as the column holds it.
fn judge(
    stored: Option<&StoredOrder>,
    o: &OrderRow,
    updated_at: Option<&str>,
    pipeline: &str,
) -> Verdict {
    let Some(stored) = stored else {
        return Verdict::Write {
            status_changed: true,
        };
    };
    // Never regress: an older copy (overlapping window, lookback) loses to the stored one,
    // and so does a copy that lost its update time (it cannot be shown to be newer).
    match (updated_at, stored.updated_at.as_deref()) {
        (Some(new), Some(old)) if new < old => return Verdict::Keep,
        (None, Some(_)) => return Verdict::Keep,
        _ => {}
    }
    if stored.same_raw && stored.pipeline == pipeline {
        return Verdict::Keep;
    }
    Verdict::Write {
        status_changed: stored.status_raw.as_deref() != Some(o.status_raw.as_str()),
    }
}

/// Inserts the order row, or replaces every column of the stored one but `first_seen_at`.
fn write_order(
    db: &mut dyn Db,
    pipeline: &str,
    o: &OrderRow,
    updated_at: Option<&str>,
    now: &str,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO orders (source, order_id, pipeline, kind, status, status_raw, pay_amount, refund_amount, \
         commission, created_at, paid_at, updated_at, refunded_at, settled_at, confirmed_at, shop_id, shop_name, \
         product_id, product_name, item_num, ad_cost, ad_plays, ad_gmv, ad_roi, raw, first_seen_at, synced_at, \
         last_seen_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, \
         ?22, ?23, ?24, ?25, ?26, ?26, ?26) \
         ON CONFLICT (source, order_id) DO UPDATE SET pipeline = excluded.pipeline, kind = excluded.kind, \
         status = excluded.status, status_raw = excluded.status_raw, pay_amount = excluded.pay_amount, \
         refund_amount = excluded.refund_amount, commission = excluded.commission, created_at = excluded.created_at, \
         paid_at = excluded.paid_at, updated_at = excluded.updated_at, refunded_at = excluded.refunded_at, \
         settled_at = excluded.settled_at, confirmed_at = excluded.confirmed_at, shop_id = excluded.shop_id, \
         shop_name = excluded.shop_name, product_id = excluded.product_id, product_name = excluded.product_name, \
         item_num = excluded.item_num, ad_cost = excluded.ad_cost, ad_plays = excluded.ad_plays, \
         ad_gmv = excluded.ad_gmv, ad_roi = excluded.ad_roi, raw = excluded.raw, synced_at = excluded.synced_at, \
         last_seen_at = excluded.last_seen_at",
        args![
            o.source.as_str(),
            &o.order_id,
            pipeline,
            o.kind.as_str(),
            o.status.as_str(),
            &o.status_raw,
            o.pay_amount,
            o.refund_amount,
            o.commission,
            &opt_time(o.created_at),
            &opt_time(o.paid_at),
            updated_at,
            &opt_time(o.refunded_at),
            &opt_time(o.settled_at),
            &opt_time(o.confirmed_at),
            &o.shop_id,
            &o.shop_name,
            &o.product_id,
            &o.product_name,
            o.item_num,
            o.ad_cost,
            o.ad_plays,
            o.ad_gmv,
            &o.ad_roi,
            &o.raw,
            now,
        ],
    )?;
    Ok(())
}

/// One `order_status_history` row: the order's status as of `now`.
fn add_history(db: &mut dyn Db, o: &OrderRow, now: &str) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO order_status_history (source, order_id, status, status_raw, observed_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        args![o.source.as_str(), &o.order_id, o.status.as_str(), &o.status_raw, now],
    )?;
    Ok(())
}

/// Inserts or updates one line. A line whose row is unchanged is not rewritten; one that is the
/// order itself (empty `raw`, stored NULL) is written whenever its order changed.
pub(super) fn write_line(
    db: &mut dyn Db,
    source: &str,
    order_id: &str,
    s: &SubOrderRow,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO sub_orders (source, order_id, sub_order_id, sku_id, product_id, product_name, item_num, \
         pay_amount, status, status_raw, raw, refund_amount, commission, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
         ON CONFLICT (source, order_id, sub_order_id) DO UPDATE SET sku_id = excluded.sku_id, \
         product_id = excluded.product_id, product_name = excluded.product_name, item_num = excluded.item_num, \
         pay_amount = excluded.pay_amount, status = excluded.status, status_raw = excluded.status_raw, \
         raw = excluded.raw, refund_amount = excluded.refund_amount, commission = excluded.commission, \
         updated_at = excluded.updated_at \
         WHERE excluded.raw IS NULL OR sub_orders.raw IS DISTINCT FROM excluded.raw",
        args![
            source,
            order_id,
            &s.sub_order_id,
            &s.sku_id,
            &s.product_id,
            &s.product_name,
            s.item_num,
            s.pay_amount,
            s.status.as_str(),
            &s.status_raw,
            (!s.raw.is_empty()).then_some(s.raw.as_str()),
            s.refund_amount,
            s.commission,
            &opt_time(s.updated_at),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::planner::Window;
    use crate::store::sql::{Begin, Db, Dialect, Tx};
    use crate::store::test_support::{commit, count, on_both_engines, order, t, text, TestDb};
    use crate::store::upsert::{upsert_order, Stamp};
    use crate::store::Progress;

    on_both_engines!(
        older_copy_never_overwrites_newer_and_same_copy_is_not_rewritten,
        an_unchanged_copy_writes_last_seen_at_only_below_the_floor,
        status_change_adds_exactly_one_history_row,
    );

    fn older_copy_never_overwrites_newer_and_same_copy_is_not_rewritten(db: &mut TestDb, run: i64) {
        let w = Window {
            start: t("2024-01-01"),
            end: t("2024-01-02"),
        };
        let next = Progress::Next {
            window: w,
            cursor: "c1".into(),
        };
        let newer = order("1", "REFUND", "2024-01-01 12:00:00", "{\"v\":2}");
        let older = order("1", "PAY_SUCC", "2024-01-01 10:00:00", "{\"v\":1}");
        assert_eq!(
            commit(db, run, vec![newer.clone()], next.clone()).changed,
            1
        );
        assert_eq!(commit(db, run, vec![older], next.clone()).changed, 0);
        assert_eq!(commit(db, run, vec![newer], next).changed, 0);
        assert_eq!(
            text(db, "SELECT status_raw FROM orders WHERE order_id = '1'"),
            "REFUND"
        );
        // SQLite keeps the upstream text as it came; PostgreSQL keeps its value as `jsonb`, which
        // reads back in jsonb's own spelling (README "PostgreSQL").
        let raw = text(db, "SELECT raw FROM orders WHERE order_id = '1'");
        let expected = match db.dialect() {
            Dialect::Sqlite => r#"{"v":2}"#,
            Dialect::Postgres => r#"{"v": 2}"#,
        };
        assert_eq!(raw, expected);
        assert_eq!(count(db, "SELECT COUNT(*) FROM order_status_history"), 1);
    }

    fn an_unchanged_copy_writes_last_seen_at_only_below_the_floor(db: &mut TestDb, _run: i64) {
        let o = order("1", "PAY_SUCC", "2024-01-01 10:00:00", "{}");
        let seen = |db: &mut dyn Db| -> (String, String) {
            db.query_opt_map("SELECT last_seen_at, synced_at FROM orders", &[], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
            .unwrap()
        };
        let write = |db: &mut dyn Db, now: &str, floor: &str| {
            let mut tx = Tx::begin(db, Begin::Write).unwrap();
            let changed = upsert_order(
                &mut *tx,
                "p",
                &o,
                Stamp {
                    now,
                    seen_floor: floor,
                },
            )
            .unwrap();
            tx.commit().unwrap();
            changed
        };
        assert!(write(db, "2024-02-01 08:00:00", "2024-02-01 00:00:00"));
        // The same day, a live sync reads it again: nothing is written.
        assert!(!write(db, "2024-02-01 09:00:00", "2024-02-01 00:00:00"));
        assert_eq!(seen(db).0, "2024-02-01 08:00:00");
        // A rescan starting later stamps it, and only that column.
        assert!(!write(db, "2024-02-01 10:00:00", "2024-02-01 10:00:00"));
        assert_eq!(
            seen(db),
            ("2024-02-01 10:00:00".into(), "2024-02-01 08:00:00".into())
        );
        assert_eq!(count(db, "SELECT COUNT(*) FROM order_status_history"), 1);
    }

    fn status_change_adds_exactly_one_history_row(db: &mut TestDb, run: i64) {
        let w = Window {
            start: t("2024-01-01"),
            end: t("2024-01-02"),
        };
        let p = || Progress::Next {
            window: w,
            cursor: "c".into(),
        };
        commit(
            db,
            run,
            vec![order(
                "1",
                "PAY_SUCC",
                "2024-01-01 10:00:00",
                r#"{"v":"a"}"#,
            )],
            p(),
        );
        // Same status, new content (commission changed): updated, no history row.
        commit(
            db,
            run,
            vec![order(
                "1",
                "PAY_SUCC",
                "2024-01-01 10:05:00",
                r#"{"v":"b"}"#,
            )],
            p(),
        );
        commit(
            db,
            run,
            vec![order("1", "CONFIRM", "2024-01-01 11:00:00", r#"{"v":"c"}"#)],
            p(),
        );
        assert_eq!(
            count(
                db,
                "SELECT COUNT(*) FROM order_status_history WHERE order_id = '1'"
            ),
            2
        );
        assert_eq!(count(db, "SELECT rows_changed FROM runs"), 3);
    }
}
