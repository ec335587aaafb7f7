//! How a damaijia world's orders change under page drift: drifts scheduled, then applied when
//! their page comes.

use std::collections::HashSet;

use chrono::{Duration, NaiveDateTime};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::draw::{fresh_id, line_count, Draft, Plan, Times};
use super::{status, World};
use crate::damaijia::query::Query;
use crate::damaijia::Drift;
use crate::time::{from_unix, to_unix, truncate};

/// Drift-inserted ids stay 19 digits and below `i64::MAX`.
const MIN_ID: u64 = 1_000_000_000_000_000_000;
const MAX_ID: u64 = 9_199_999_999_999_999_999;
/// How far from its anchor a drift-inserted id may be.
const DRIFT_ID_SPREAD: u64 = 1_000_000_000_000_000;

/// A drift waiting for its page.
pub(super) struct Pending {
    /// Whole pages still to serve before it applies.
    remaining: u64,
    drift: Drift,
}

impl World {
    /// Applies `drift` once `after_pages` more whole pages have been served.
    pub(crate) fn schedule_drift(&mut self, after_pages: u64, drift: Drift) {
        self.pending.push(Pending {
            remaining: after_pages,
            drift,
        });
    }

    /// Every order id inserted or touched by a drift so far.
    pub(crate) fn drift_log(&self) -> Vec<String> {
        self.drift_log.clone()
    }

    /// Called before serving a whole page of `q` (one the client will read): applies the drifts
    /// that are due to `q`, and counts the page for the others. `now` is the real Beijing now.
    pub(crate) fn before_page(&mut self, q: &Query, now: NaiveDateTime) {
        let mut due = Vec::new();
        self.pending.retain_mut(|p| {
            if p.remaining == 0 {
                due.push(p.drift);
                false
            } else {
                p.remaining -= 1;
                true
            }
        });
        for drift in due {
            let ids = match drift {
                Drift::Insert(n) => self.insert_before(q, n),
                Drift::Touch(n) => self.touch_served(q, n, now),
                Drift::Lag(n) => self.lag_served(q, n, now),
            };
            self.drift_log.extend(ids);
        }
    }

    /// `Drift::Insert`: `n` new paid orders that `q` matches and that sort before every match read
    /// so far. They copy the create and update times of `q`'s first match (so they satisfy every
    /// bound of `q` and tie with it on the sort time) and take ids that break the tie in their
    /// favour: larger than its id when descending, smaller when ascending. With no match, they sit
    /// at the query's earliest create time (and the earliest update time after it).
    fn insert_before(&mut self, q: &Query, n: usize) -> Vec<String> {
        self.changed();
        let first = self.matches(q).first().copied();
        let (create, update) = match first.and_then(|id| self.order(id)) {
            Some(o) => (o.create_time, o.update_time),
            None => {
                let Some(create) = from_unix(q.create.0.max(0)) else {
                    return Vec::new();
                };
                let update = from_unix(q.update.0).map_or(create, |u| u.max(create));
                if to_unix(update) > q.update.1 || to_unix(create) > q.create.1 {
                    return Vec::new();
                }
                (create, update)
            }
        };
        let mut rng = self.rng.clone();
        let mut added = Vec::with_capacity(n);
        for _ in 0..n {
            let id = match first {
                Some(anchor) => id_before(&mut rng, &mut self.taken, anchor, q.asc),
                None => Some(fresh_id(&mut rng, &mut self.taken)),
            };
            let Some(id) = id else { break };
            let room = (update - create).num_seconds().max(0);
            let pay = create + Duration::seconds(rng.random_range(3..=60).min(room));
            let lines = line_count(&mut rng);
            let draft = Draft {
                id,
                plan: Plan::Paid,
                times: Times::paid(create, pay, update),
                lines,
                partial_refund: false,
            };
            self.build(&mut rng, draft);
            added.push(id.to_string());
        }
        self.rng = rng;
        added
    }

    /// `Drift::Touch`: `n` orders the scan of `q` has already served move on one status step — those that can, first, in read order; the rest
    /// are only touched — and get `update_time = now`.
    fn touch_served(&mut self, q: &Query, n: usize, now: NaiveDateTime) -> Vec<String> {
        self.changed();
        let served = self.served_in_scan(q);
        let open = |id: &&u64| {
            self.order(**id)
                .is_some_and(|o| status::open(o.order_status))
        };
        let mut picked: Vec<u64> = served.iter().filter(open).take(n).copied().collect();
        let rest: Vec<u64> = served
            .iter()
            .filter(|id| !open(id))
            .take(n - picked.len())
            .copied()
            .collect();
        picked.extend(rest);
        let now = truncate(now);
        let mut touched = Vec::with_capacity(picked.len());
        for id in picked {
            let Some(&i) = self.by_id.get(&id) else {
                continue;
            };
            // Never back in time, whatever `now` the world was generated against.
            let at = now.max(self.entries[i].order.update_time);
            if self.advance(i, at).is_none() {
                self.set_update(i, at);
            }
            touched.push(id.to_string());
        }
        touched
    }

    /// `Drift::Lag`: `n` orders the scan of `q` has already served move on one status step (those that can, first) with an `update_time` that lags behind the change: the
    /// last second `q` allows (or `now`, if `q` has no upper update bound), never earlier than
    /// the order's own. They stay inside the query and sort after every other match: `total` does
    /// not change, and every row after their old places shifts back.
    fn lag_served(&mut self, q: &Query, n: usize, now: NaiveDateTime) -> Vec<String> {
        self.changed();
        let served = self.served_in_scan(q);
        let open = |id: &&u64| {
            self.order(**id)
                .is_some_and(|o| status::open(o.order_status))
        };
        let picked: Vec<u64> = served.iter().filter(open).take(n).copied().collect();
        let last = from_unix(q.update.1).map_or(truncate(now), |t| t.min(truncate(now)));
        let mut moved = Vec::with_capacity(picked.len());
        for id in picked {
            let Some(&i) = self.by_id.get(&id) else {
                continue;
            };
            let at = last.max(self.entries[i].order.update_time);
            if self.advance(i, at).is_some() {
                moved.push(id.to_string());
            }
        }
        moved
    }
}

/// An unused id that sorts before `anchor` in the requested direction (larger when descending,
/// smaller when ascending), reserved on return; `None` if none can be found near it.
fn id_before(
    rng: &mut ChaCha8Rng,
    taken: &mut HashSet<u64>,
    anchor: u64,
    asc: bool,
) -> Option<u64> {
    for _ in 0..1_000 {
        let step = rng.random_range(1..=DRIFT_ID_SPREAD);
        let id = if asc {
            anchor.checked_sub(step)
        } else {
            anchor.checked_add(step)
        };
        if let Some(id) = id.filter(|id| (MIN_ID..=MAX_ID).contains(id)) {
            if taken.insert(id) {
                return Some(id);
            }
        }
    }
    None
}
