//! Rejected rows: the rows of a page that could not be normalised, kept in `rejected_rows`.
//!
//! Invariant: one row per (pipeline, fingerprint of source and text): the same bad row read again
//! is seen again (`times_seen`, `last_seen_at`, where it came from), never added twice. A row is
//! open until a good copy of the same order is stored; an order that arrives line by line never
//! resolves one, since a good line says nothing of a bad one. Both happen inside the page's
//! transaction (`commit_page`).

use super::sql::{args, Db};
use super::{PageCommit, StoreError};
use crate::model::RejectedRow;
use crate::timefmt;
use md5::{Digest, Md5};

/// Keeps one rejected row; the same row (same source and text) read again is seen again, not
/// added. Returns whether it is new.
pub(super) fn keep_rejected(
    db: &mut dyn Db,
    page: &PageCommit,
    row: &RejectedRow,
    now: &str,
) -> Result<bool, StoreError> {
    let mut hash = Md5::new();
    hash.update(page.source.as_str().as_bytes());
    hash.update([0]);
    hash.update(row.raw.as_bytes());
    let fingerprint: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let (window, cursor) = &page.asked;
    let times_seen: i64 = db.query_value(
            "INSERT INTO rejected_rows (pipeline, source, scope, window_start, window_end, cursor, order_id, \
             reason, raw, fingerprint, first_seen_at, last_seen_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11) \
             ON CONFLICT (pipeline, fingerprint) DO UPDATE SET scope = excluded.scope, \
             window_start = excluded.window_start, window_end = excluded.window_end, cursor = excluded.cursor, \
             reason = excluded.reason, last_seen_at = excluded.last_seen_at, \
             times_seen = rejected_rows.times_seen + 1, resolved_at = NULL \
             RETURNING times_seen",
            args![
                &page.pipeline,
                page.source.as_str(),
                &page.scope,
                &timefmt::fmt_millis(window.start),
                &timefmt::fmt_millis(window.end),
                cursor,
                &row.order_id,
                &row.reason,
                &row.raw,
                &fingerprint,
                now,
            ],
        )?;
    Ok(times_seen == 1)
}

/// A good copy of an order that was rejected before resolves those rejections. Orders that arrive
/// line by line (`partial`) are left alone: a good line says nothing of a bad one.
pub(super) fn resolve_rejected(
    db: &mut dyn Db,
    page: &PageCommit,
    now: &str,
) -> Result<(), StoreError> {
    let open = db
        .query_opt(
            "SELECT 1 FROM rejected_rows WHERE pipeline = ?1 AND resolved_at IS NULL LIMIT 1",
            args![&page.pipeline],
        )?
        .is_some();
    if !open {
        return Ok(());
    }
    for o in page.orders.iter().filter(|o| !o.partial) {
        db.execute(
            "UPDATE rejected_rows SET resolved_at = ?4 \
             WHERE pipeline = ?1 AND source = ?2 AND order_id = ?3 AND resolved_at IS NULL",
            args![&page.pipeline, o.source.as_str(), &o.order_id, now],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::model::SourceKind;
    use crate::model::{OrderRow, RejectedRow};
    use crate::planner::Window;
    use crate::store::test_support::{count, on_both_engines, order, t, TestDb};
    use crate::store::{commit_page, PageCommit, Progress};

    on_both_engines!(a_rejected_row_is_kept_once_counted_each_time_and_resolved_by_a_good_copy);

    fn a_rejected_row_is_kept_once_counted_each_time_and_resolved_by_a_good_copy(
        db: &mut TestDb,
        run: i64,
    ) {
        let w = Window {
            start: t("2024-01-01"),
            end: t("2024-01-02"),
        };
        let bad = RejectedRow {
            order_id: Some("7".into()),
            reason: "`total_pay_amount`: not a number".into(),
            raw: r#"{"order_id":"7","total_pay_amount":"x"}"#.into(),
        };
        let page = |orders: Vec<OrderRow>, rejected: Vec<RejectedRow>| PageCommit {
            run_id: run,
            pipeline: "p".into(),
            scope: "live".into(),
            source: SourceKind::Veapi,
            orders,
            rejected,
            asked: (w, "c0".into()),
            requests: 1,
            seen_floor: String::new(),
            progress: Progress::Next {
                window: w,
                cursor: "c1".into(),
            },
        };
        let first = commit_page(db, &page(vec![], vec![bad.clone()])).unwrap();
        assert_eq!(first.rejected, 1);
        assert_eq!(
            first.newly_rejected,
            vec![(Some("7".into()), bad.reason.clone())]
        );
        let again = commit_page(
            db,
            &page(
                vec![order("8", "PAY_SUCC", "2024-01-01 10:00:00", "{}")],
                vec![bad.clone()],
            ),
        )
        .unwrap();
        assert_eq!((again.rejected, again.newly_rejected.len()), (1, 0));
        let (kept, seen, cursor): (i64, i64, String) = db
            .query_opt_map(
                "SELECT COUNT(*), MAX(times_seen), MAX(cursor) FROM rejected_rows",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
            .unwrap();
        assert_eq!((kept, seen, cursor.as_str()), (1, 2, "c0"));
        assert_eq!(count(db, "SELECT rows_rejected FROM runs"), 2);
        assert_eq!(
            count(
                db,
                "SELECT COUNT(*) FROM rejected_rows WHERE resolved_at IS NULL"
            ),
            1,
            "another order's good copy resolves nothing"
        );
        commit_page(
            db,
            &page(
                vec![order("7", "PAY_SUCC", "2024-01-01 10:00:00", "{}")],
                vec![],
            ),
        )
        .unwrap();
        assert_eq!(
            count(
                db,
                "SELECT COUNT(*) FROM rejected_rows WHERE resolved_at IS NULL"
            ),
            0,
            "a good copy of the same order resolves it"
        );
    }
}
