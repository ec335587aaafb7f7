//! The page commit: whole pages' rows, rejects, run counters and checkpoints, in one transaction.
//!
//! Invariant: a page's orders, sub-orders, history rows, rejected rows, run counters *and* the
//! checkpoint that says the page is done are written in one transaction ([`commit_pages`] and
//! [`commit_stream`], which may hold several whole pages, each followed by its checkpoint), so a
//! crash at any instant leaves the database at a page boundary, never inside a page.

use std::borrow::Cow;

use super::sql::{Begin, Db, Dialect, Tx};

use super::rejected::{keep_rejected, resolve_rejected};
use super::runs::{check_still_held, count_page};
use super::tracks::{save_progress, Progress};
use super::upsert::{upsert_order, Stamp};
use super::StoreError;
use crate::model::SourceKind;
use crate::model::{OrderRow, RejectedRow};
use crate::planner::Window;
use crate::timefmt;

#[derive(Debug, Clone)]
pub struct PageCommit {
    pub run_id: i64,
    pub pipeline: String,
    pub scope: String,
    pub source: SourceKind,
    pub orders: Vec<OrderRow>,
    /// The page's rows that could not be normalised.
    pub rejected: Vec<RejectedRow>,
    /// The window the page belongs to and the cursor it was asked with (secrets hidden): where a
    /// rejected row came from.
    pub asked: (Window, String),
    /// HTTP requests this page took, retries included.
    pub requests: u32,
    pub progress: Progress,
    /// An order read again unchanged gets `last_seen_at` written only when the stored one is
    /// older than this (`YYYY-MM-DD HH:MM:SS`): see `orders.last_seen_at` in schema.sql.
    pub seen_floor: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageStats {
    /// Rows read: for a source that sends an order line by line (unidesk), lines.
    pub seen: u64,
    /// Orders written: an order two of whose lines on the page changed counts once.
    pub changed: u64,
    pub rejected: u64,
    /// The rejected rows not seen before: `(order id, reason)`.
    pub newly_rejected: Vec<(Option<String>, String)>,
}

/// Writes one page and its checkpoint in one transaction.
pub fn commit_page(db: &mut dyn Db, page: &PageCommit) -> Result<PageStats, StoreError> {
    let mut stats = commit_pages(db, std::slice::from_ref(page))?;
    Ok(stats.pop().unwrap_or_default())
}

/// Writes whole pages and the checkpoint after each, in order, in **one** transaction: whatever
/// commits is described exactly by the checkpoints committed with it, as with one page per
/// transaction, and the cost of a commit is shared by every page in it. Returns each page's
/// counts, in order.
pub fn commit_pages(db: &mut dyn Db, pages: &[PageCommit]) -> Result<Vec<PageStats>, StoreError> {
    let mut pages = Some(pages);
    commit_stream(db, &mut || pages.take().map(Cow::Borrowed))
}

/// Writes the pages `next` hands over, chunk after chunk, in **one** transaction, until it has no
/// more (it decides when to stop: the engine's writer hands over what waits in its queue, up to a
/// cap, so a transaction grows while upstream outruns the writer). Each chunk is written before
/// `next` is asked again, so a chunk's pages can be freed before the transaction commits: memory
/// holds one chunk, however large the transaction. Whatever commits is whole pages, each followed
/// by its checkpoint, as with [`commit_pages`]. Returns each page's counts, in order; nothing is
/// begun when the first call hands over nothing.
pub fn commit_stream<'p>(
    db: &mut dyn Db,
    next: &mut dyn FnMut() -> Option<Cow<'p, [PageCommit]>>,
) -> Result<Vec<PageStats>, StoreError> {
    let Some(mut chunk) = next() else {
        return Ok(Vec::new());
    };
    let now = timefmt::fmt_seconds(timefmt::beijing_now());
    let mut tx = Tx::begin(db, Begin::Write)?;
    // PostgreSQL's foreign key from a line to its order is declared deferred (pg/schema.sql).
    let mut deferred = tx.dialect() != Dialect::Sqlite;
    let mut all = Vec::new();
    // On PostgreSQL, each run's claim is checked once per transaction (`check_still_held`).
    let claims = tx.dialect() == Dialect::Postgres;
    let mut checked_runs: Vec<(String, String)> = Vec::new();
    loop {
        for page in chunk.iter().filter(|_| claims) {
            let run = (page.pipeline.clone(), page.scope.clone());
            if !checked_runs.contains(&run) {
                check_still_held(&mut *tx, &run.0, &run.1)?;
                checked_runs.push(run);
            }
        }
        // A partial order's lines are written before the order row they belong to; the foreign
        // key is checked when the transaction commits. Only transactions that hold such orders
        // ask for it: setting any flag pragma expires every prepared statement, so each would be
        // compiled again.
        if !deferred && chunk.iter().flat_map(|p| &p.orders).any(|o| o.partial) {
            tx.batch("PRAGMA defer_foreign_keys = ON")?;
            deferred = true;
        }
        write_chunk(&mut *tx, &chunk, &now, &mut all)?;
        drop(chunk);
        match next() {
            Some(more) => chunk = more,
            None => break,
        }
    }
    tx.commit()?;
    Ok(all)
}

/// Whole pages: their orders (in key order), then each page's rejected rows, checkpoint and run
/// counters, in page order; each page's counts go to `stats`.
fn write_chunk(
    tx: &mut dyn Db,
    pages: &[PageCommit],
    now: &str,
    stats: &mut Vec<PageStats>,
) -> Result<(), StoreError> {
    let changed = upsert_in_key_order(tx, pages, now)?;
    for (page, changed) in pages.iter().zip(changed) {
        let page_stats = write_rejected(tx, page, changed, now)?;
        let windows_done = save_progress(tx, &page.pipeline, &page.scope, &page.progress, now)?;
        count_page(tx, page.run_id, &page_stats, page.requests, windows_done)?;
        stats.push(page_stats);
    }
    Ok(())
}

/// Upserts every order of `pages` sorted by `(source, order_id)`, and returns, per page, the ids
/// of its orders that were written. The three indexes a new order goes into (the orders key, its
/// lines' key, its history rows' key) are all keyed by `(source, order_id)`, and ids are random:
/// in upstream order each insert lands on a different index page, which the 4 MB page cache has
/// often dropped since the last time; in key order each index is walked once, front to back. The
/// sort is stable, so copies of one order are upserted in the order they came (a later page's
/// copy is judged against an earlier page's, as before); different orders never read each other's
/// rows, and nothing else in the transaction reads what the upserts write, so the outcome is the
/// one page-by-page upserts give.
fn upsert_in_key_order<'p>(
    tx: &mut dyn Db,
    pages: &'p [PageCommit],
    now: &str,
) -> Result<Vec<Vec<&'p str>>, StoreError> {
    let mut order: Vec<(usize, &PageCommit, &OrderRow)> = pages
        .iter()
        .enumerate()
        .flat_map(|(i, page)| page.orders.iter().map(move |o| (i, page, o)))
        .collect();
    order.sort_by(|a, b| {
        (a.2.source.as_str(), &a.2.order_id).cmp(&(b.2.source.as_str(), &b.2.order_id))
    });
    let mut changed: Vec<Vec<&str>> = vec![Vec::new(); pages.len()];
    for (i, page, o) in order {
        let stamp = Stamp {
            now,
            seen_floor: &page.seen_floor,
        };
        if upsert_order(tx, &page.pipeline, o, stamp)? {
            changed[i].push(&o.order_id);
        }
    }
    Ok(changed)
}

/// One page's rejected rows, and its counts (its orders are already upserted: `changed` are the
/// ids of those written), inside the caller's transaction.
fn write_rejected(
    tx: &mut dyn Db,
    page: &PageCommit,
    mut changed: Vec<&str>,
    now: &str,
) -> Result<PageStats, StoreError> {
    let mut stats = PageStats::default();
    for row in &page.rejected {
        stats.rejected += 1;
        if keep_rejected(tx, page, row, now)? {
            stats
                .newly_rejected
                .push((row.order_id.clone(), row.reason.clone()));
        }
    }
    stats.seen = page.orders.len() as u64;
    changed.sort_unstable();
    changed.dedup();
    stats.changed = changed.len() as u64;
    resolve_rejected(tx, page, now)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde_json::json;

    use super::{commit_stream, PageCommit};
    use crate::planner::Window;
    use crate::store::sql::{Begin, Tx};
    use crate::store::test_support::{
        count, in_transaction, on_both_engines, order, raw_json, refuse_order, t, text, TestDb,
    };
    use crate::store::Progress;

    fn page(run: i64, orders: Vec<crate::model::OrderRow>, cursor: &str) -> PageCommit {
        let window = Window {
            start: t("2024-01-01"),
            end: t("2024-01-02"),
        };
        let next = Progress::Next {
            window,
            cursor: cursor.into(),
        };
        crate::store::test_support::page(run, orders, next)
    }

    on_both_engines!(
        chunks_of_one_stream_commit_together_in_page_order,
        a_chunk_that_fails_takes_the_chunks_before_it_back_with_it,
        nothing_handed_over_begins_nothing,
    );

    fn chunks_of_one_stream_commit_together_in_page_order(db: &mut TestDb, run: i64) {
        let mut chunks = vec![
            vec![page(
                run,
                vec![
                    order("9", "PAY_SUCC", "2024-01-01 10:00:00", r#"{"v":"a"}"#),
                    order("1", "PAY_SUCC", "2024-01-01 10:00:00", r#"{"v":"b"}"#),
                ],
                "c1",
            )],
            // A newer copy of order 9 in a later chunk, an older one of order 1 after it.
            vec![
                page(
                    run,
                    vec![order("9", "REFUND", "2024-01-01 11:00:00", r#"{"v":"c"}"#)],
                    "c2",
                ),
                page(
                    run,
                    vec![order("1", "CONFIRM", "2024-01-01 09:00:00", r#"{"v":"d"}"#)],
                    "c3",
                ),
            ],
        ]
        .into_iter();
        let stats = commit_stream(db, &mut || chunks.next().map(Cow::Owned)).unwrap();
        let changed: Vec<u64> = stats.iter().map(|s| s.changed).collect();
        assert_eq!(changed, [2, 1, 0], "counts per page, in page order");
        assert_eq!(raw_json(db, "9"), json!({"v": "c"}));
        assert_eq!(raw_json(db, "1"), json!({"v": "b"}));
        assert_eq!(count(db, "SELECT COUNT(*) FROM order_status_history"), 3);
        assert_eq!(
            text(db, "SELECT cursor FROM track_windows"),
            "c3",
            "the checkpoint of the last page"
        );
        assert_eq!(count(db, "SELECT rows_seen FROM runs"), 4);
    }

    fn a_chunk_that_fails_takes_the_chunks_before_it_back_with_it(db: &mut TestDb, run: i64) {
        let good = page(
            run,
            vec![order("1", "PAY_SUCC", "2024-01-01 10:00:00", "{}")],
            "c1",
        );
        // The database refuses the second chunk's order.
        refuse_order(db, "boom");
        let bad = page(
            run,
            vec![order("boom", "PAY_SUCC", "2024-01-01 10:00:00", "{}")],
            "c2",
        );
        let mut chunks = vec![vec![good], vec![bad]].into_iter();
        let outcome = commit_stream(db, &mut || chunks.next().map(Cow::Owned));
        let refused = outcome.unwrap_err().to_string();
        assert!(refused.contains("refused"), "{refused}");
        assert!(!in_transaction(db), "rolled back, not left open");
        assert_eq!(count(db, "SELECT COUNT(*) FROM orders"), 0);
        assert_eq!(count(db, "SELECT rows_seen FROM runs"), 0);
    }

    fn nothing_handed_over_begins_nothing(db: &mut TestDb, _run: i64) {
        {
            // The probe sees a transaction when there is one.
            let mut tx = Tx::begin(db, Begin::Write).unwrap();
            assert!(in_transaction(&mut *tx));
        }
        let stats = commit_stream(db, &mut || None).unwrap();
        assert!(stats.is_empty());
        assert!(!in_transaction(db));
    }
}
