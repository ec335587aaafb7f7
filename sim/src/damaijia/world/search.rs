//! Which orders of a damaijia world a query matches, the page it gets, and the scan it belongs to.

use chrono::NaiveDateTime;

use super::{Entry, Key, World};
use crate::damaijia::query::{OrderBy, Query};
use crate::time::to_unix;

impl World {
    /// The ids of every order `q` matches, in its sort order: by the sort time, then by order id,
    /// both ascending or both descending.
    pub(crate) fn matches(&self, q: &Query) -> Vec<u64> {
        self.matching(q).collect()
    }

    fn matching<'a>(&'a self, q: &'a Query) -> Box<dyn Iterator<Item = u64> + 'a> {
        let (index, (lo, hi)) = match q.order_by {
            OrderBy::CreateTime => (&self.by_create, q.create),
            OrderBy::UpdateTime => (&self.by_update, q.update),
        };
        if lo > hi {
            return Box::new(std::iter::empty());
        }
        let inside = |t: NaiveDateTime, (lo, hi): (i64, i64)| (lo..=hi).contains(&to_unix(t));
        let keep = move |key: &&Key| {
            self.order(key.1)
                .is_some_and(|o| inside(o.create_time, q.create) && inside(o.update_time, q.update))
        };
        let keys = index.range((lo, 0)..=(hi, u64::MAX));
        if q.asc {
            Box::new(keys.filter(keep).map(|k| k.1))
        } else {
            Box::new(keys.rev().filter(keep).map(|k| k.1))
        }
    }

    /// The answer to `q`: how many orders match now, and the page's orders.
    pub(crate) fn page(&self, q: &Query) -> (usize, Vec<&Entry>) {
        let key = Query {
            page: 0,
            size: 0,
            ..q.clone()
        };
        let mut cache = self.last_matches.borrow_mut();
        let all: &[u64] = match &mut *cache {
            Some((k, all)) if *k == key => all,
            // A key reader asks the same scan from a later update time page after page: its
            // matches are the tail of the last ones (ascending by update time, then id).
            Some((k, all)) if later_start_of(k, &key) => {
                let from = all.partition_point(|id| {
                    self.order(*id)
                        .is_some_and(|o| to_unix(o.update_time) < key.update.0)
                });
                &all[from..]
            }
            slot => &slot.insert((key, self.matches(q))).1,
        };
        let page = all
            .iter()
            .skip(q.offset())
            .take(q.size)
            .filter_map(|id| self.by_id.get(id).map(|&i| &self.entries[i]))
            .collect();
        (all.len(), page)
    }

    /// As [`World::page`], for a page the client reads whole: its orders count as served to the
    /// scan in progress.
    pub(crate) fn serve(&self, q: &Query) -> (usize, Vec<&Entry>) {
        let (total, page) = self.page(q);
        let scan = scan_of(q);
        let mut served = self.served.borrow_mut();
        if served.0.as_ref() != Some(&scan) {
            *served = (Some(scan), Vec::new());
        }
        served.1.extend(page.iter().map(|e| self.ids_of(e)));
        (total, page)
    }

    /// The orders served so far by the scan `q` belongs to, in the order served.
    pub(super) fn served_in_scan(&self, q: &Query) -> Vec<u64> {
        let served = self.served.borrow();
        if served.0.as_ref() == Some(&scan_of(q)) {
            served.1.clone()
        } else {
            Vec::new()
        }
    }

    /// Forgets the cached matches: called by everything that changes an order.
    pub(super) fn changed(&mut self) {
        *self.last_matches.get_mut() = None;
    }
}

/// Whether `later` is the query `cached` (page and size zeroed) asked from a later update time,
/// ascending by update time: its matches are then a tail of `cached`'s.
fn later_start_of(cached: &Query, later: &Query) -> bool {
    later.order_by == OrderBy::UpdateTime
        && later.asc
        && later.update.0 >= cached.update.0
        && scan_of(cached) == scan_of(later)
}

/// The scan a request belongs to: the request without its page and its update window's start.
fn scan_of(q: &Query) -> Query {
    Query {
        page: 0,
        update: (0, q.update.1),
        ..q.clone()
    }
}
