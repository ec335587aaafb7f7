//! The page commit: whole pages' rows, rejects, run counters and checkpoints, in one transaction.
//!
//! Invariant: a page's orders, sub-orders, history rows, rejected rows, run counters *and* the
//! checkpoint that says the page is done are written in one transaction ([`commit_pages`], which
//! may hold several whole pages, each followed by its checkpoint), so a crash at any instant leaves
//! the database at a page boundary, never inside a page.

use super::sql::{Begin, Db, Dialect, Tx};

use super::rejected::{keep_rejected, resolve_rejected};
use super::runs::count_page;
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
/// transaction, and the cost of a commit is shared by every page in it (the engine hands the writer
/// every page waiting for it). Returns each page's counts, in order.
pub fn commit_pages(db: &mut dyn Db, pages: &[PageCommit]) -> Result<Vec<PageStats>, StoreError> {
    let now = timefmt::fmt_seconds(timefmt::beijing_now());
    let mut tx = Tx::begin(db, Begin::Write)?;
    // A partial order's lines are written before the order row they belong to; the foreign key
    // is checked when the transaction commits (PostgreSQL's is declared so). Only SQLite
    // transactions that hold such orders ask for it: setting any flag pragma expires every
    // prepared statement, so each would be compiled again.
    if tx.dialect() == Dialect::Sqlite && pages.iter().flat_map(|p| &p.orders).any(|o| o.partial) {
        tx.batch("PRAGMA defer_foreign_keys = ON")?;
    }
    pages
        .iter()
        .map(|page| {
            let stats = write_page(&mut *tx, page, &now)?;
            let windows_done =
                save_progress(&mut *tx, &page.pipeline, &page.scope, &page.progress, &now)?;
            count_page(&mut *tx, page.run_id, &stats, page.requests, windows_done)?;
            Ok(stats)
        })
        .collect::<Result<Vec<_>, StoreError>>()
        .and_then(|stats| {
            tx.commit()?;
            Ok(stats)
        })
}

/// One page's rejected rows and orders, inside the caller's transaction.
fn write_page(tx: &mut dyn Db, page: &PageCommit, now: &str) -> Result<PageStats, StoreError> {
    let mut stats = PageStats::default();
    for row in &page.rejected {
        stats.rejected += 1;
        if keep_rejected(tx, page, row, now)? {
            stats
                .newly_rejected
                .push((row.order_id.clone(), row.reason.clone()));
        }
    }
    let stamp = Stamp {
        now,
        seen_floor: &page.seen_floor,
    };
    let mut changed: Vec<&str> = Vec::new();
    for order in &page.orders {
        stats.seen += 1;
        if upsert_order(tx, &page.pipeline, order, stamp)? {
            changed.push(&order.order_id);
        }
    }
    changed.sort_unstable();
    changed.dedup();
    stats.changed = changed.len() as u64;
    resolve_rejected(tx, page, now)?;
    Ok(stats)
}
