//! The 随心推 world: every ad order the simulator knows, the snapshot the API answers with (stale
//! duplicate rows included), and how orders change.
//!
//! Invariants: order ids are unique 19-digit Douyin snowflakes (creation unix seconds in the top 32
//! bits, as the document's ids are), never reused even after an order vanishes. An order's `path`
//! is the states it went through, strictly increasing (1 → 3 → 5 → 6, or 1 → 3 → 5 → 7 → 8|9 → 10),
//! so "most advanced" is simply the highest code and the last element is its current state.
//! Indicators are zero before delivery (1, 3, 5, 6), grow while delivering (7) and are final after
//! (8, 9, 10). Every extra row of an order shows a state at or below its current one, with
//! indicators at or below its current ones, and a row in the current state is identical to the
//! real row — so collapsing a snapshot to each order's highest state gives exactly the truth.
//!
//! Which orders carry duplicates in a snapshot is a pure function of the seed, the order id and the
//! world's version (bumped by every change), so identical requests get byte-identical answers
//! until the world changes, and a call sequence replays identically. Generation depends only on the
//! config's seed, size and `now`; [`World::mutate`], [`World::add_orders`] and [`World::vanish`]
//! draw from a second RNG stream of the same seed.

use std::collections::{BTreeSet, HashMap};

use chrono::{Duration, NaiveDateTime};
use rand::seq::index;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::money::{roi_text, yuan_text};
use super::{state_desc, SxtOrder, SxtSimConfig};
use crate::time::{to_unix, truncate};
use crate::Mutation;

mod draw;
mod snapshot;
#[cfg(test)]
mod tests;

use draw::{draw_entry, draw_growth, draw_indicators, draw_state, path_to, snowflake, Spec};
pub(crate) use snapshot::Row;

pub(crate) const UNPAID: i64 = 1;
pub(crate) const CREATING: i64 = 3;
pub(crate) const REVIEWING: i64 = 5;
pub(crate) const REJECTED: i64 = 6;
pub(crate) const DELIVERING: i64 = 7;
pub(crate) const TERMINATED: i64 = 8;
pub(crate) const COMPLETED: i64 = 9;
pub(crate) const ENDED: i64 = 10;

/// The indicator names, in the document's order.
pub(crate) const COST: &str = "消耗(元)";
pub(crate) const PLAYS: &str = "播放次数";
pub(crate) const ROI: &str = "支付ROI";
pub(crate) const GMV: &str = "成交订单金额(元)";

/// Distinguish this world's streams from another simulator's world of the same seed.
const WORLD_STREAM: u64 = 0x7378_745f_776f_726c;
const MUTATION_STREAM: u64 = 0x7378_745f_6d75_7461;
const MAX_DAYS: i64 = 36_500;
/// How many videos the account promotes.
const OBJECTS: usize = 6;
/// The two orders every world of two or more orders starts with: the document's `"38.9"` (344
/// plays, terminated) and `"0.29"` (ended, GMV `"19.99"`). Never vanished.
const ANCHORS: [(i64, Indicators); 2] = [
    (
        TERMINATED,
        Indicators {
            cost_fen: 3890,
            plays: 344,
            gmv_fen: 0,
        },
    ),
    (
        ENDED,
        Indicators {
            cost_fen: 29,
            plays: 5,
            gmv_fen: 1999,
        },
    ),
];

/// An order's performance at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Indicators {
    pub(crate) cost_fen: i64,
    pub(crate) plays: i64,
    pub(crate) gmv_fen: i64,
}

impl Indicators {
    const ZERO: Indicators = Indicators {
        cost_fen: 0,
        plays: 0,
        gmv_fen: 0,
    };

    /// Each figure scaled to `percent` (≤ 100), rounded down: an earlier moment of the same order.
    /// Plays and GMV come only with spend, as in every generated figure: nothing spent, nothing
    /// else; something spent, at least one play.
    fn scaled(self, percent: i64) -> Indicators {
        let cost_fen = self.cost_fen * percent / 100;
        if cost_fen == 0 {
            return Indicators::ZERO;
        }
        Indicators {
            cost_fen,
            plays: (self.plays * percent / 100).max(1),
            gmv_fen: self.gmv_fen * percent / 100,
        }
    }

    fn plus(self, d: Indicators) -> Indicators {
        Indicators {
            cost_fen: self.cost_fen + d.cost_fen,
            plays: self.plays + d.plays,
            gmv_fen: self.gmv_fen + d.gmv_fen,
        }
    }

    /// No figure above `other`'s.
    #[cfg(test)]
    fn at_most(self, other: Indicators) -> bool {
        self.cost_fen <= other.cost_fen
            && self.plays <= other.plays
            && self.gmv_fen <= other.gmv_fen
    }
}

/// A promoted video: the `object_id` of its orders and its cover image.
struct Object {
    id: String,
    /// 32 hex digits, the image key in `item_cover`.
    image: String,
}

/// A stale copy forced by [`World::add_stale_copy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stale {
    state: i64,
    /// Before the real row (else after it).
    first: bool,
}

/// One ad order.
pub(crate) struct Entry {
    id: u64,
    order_id: String,
    /// Index into the world's objects.
    object: usize,
    create_time: NaiveDateTime,
    /// States passed through, strictly increasing; the last is the current one. Never empty.
    path: Vec<i64>,
    current: Indicators,
    /// What a row in state 7 shows once the order has left it (≤ `current`).
    delivering: Indicators,
    /// When the order last changed; [`World::mutate`] only touches orders changed before its `at`.
    changed_at: NaiveDateTime,
    item_cover: String,
    continue_delivery_url: String,
    /// Forced copies, in the order they were asked for.
    stale: Vec<Stale>,
    /// One of the [`ANCHORS`]: never vanished.
    anchor: bool,
    vanished: bool,
}

impl Entry {
    pub(crate) fn state(&self) -> i64 {
        self.path.last().copied().unwrap_or(UNPAID)
    }

    /// The indicators a row of this order in `state` (≤ its current state) shows.
    pub(crate) fn indicators_at(&self, state: i64) -> Indicators {
        match state {
            s if s == self.state() => self.current,
            s if s < DELIVERING => Indicators::ZERO,
            DELIVERING => self.delivering,
            // 8 or 9 of an order now 10: ended orders' figures are final.
            _ => self.current,
        }
    }
}

pub(crate) struct World {
    seed: u64,
    /// Orders in creation order (generation, then additions), vanished ones included.
    entries: Vec<Entry>,
    by_id: HashMap<u64, usize>,
    /// `(create unix seconds, id)` of every order not vanished; a snapshot lists it newest first.
    by_create: BTreeSet<(i64, u64)>,
    objects: Vec<Object>,
    rng: ChaCha8Rng,
    /// Bumped by every change; reshuffles which orders carry duplicates.
    version: u64,
}

impl World {
    pub(crate) fn generate(cfg: &SxtSimConfig) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ WORLD_STREAM);
        let now = truncate(cfg.now);
        let days = cfg.days.clamp(0, MAX_DAYS);
        let latest = now - Duration::minutes(10);
        let span = (days * 86_400 - 600).max(0);
        let objects = (0..OBJECTS)
            .map(|_| {
                // Videos are published before the orders promoting them.
                let published = now - Duration::days(days + rng.random_range(1..=30));
                Object {
                    id: snowflake(&mut rng, published).to_string(),
                    image: format!("{:032x}", rng.random::<u128>()),
                }
            })
            .collect();
        let mut world = World {
            seed: cfg.seed,
            entries: Vec::with_capacity(cfg.orders),
            by_id: HashMap::with_capacity(cfg.orders),
            by_create: BTreeSet::new(),
            objects,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ WORLD_STREAM ^ MUTATION_STREAM),
            version: 0,
        };
        for i in 0..cfg.orders {
            let create_time = latest - Duration::seconds(rng.random_range(0..=span));
            let anchor = ANCHORS.get(i).filter(|_| cfg.orders >= ANCHORS.len());
            let state = match anchor {
                Some((state, _)) => *state,
                None => draw_state(&mut rng),
            };
            let path = path_to(&mut rng, state);
            let current = match anchor {
                Some((_, figures)) => *figures,
                None => draw_indicators(&mut rng, state),
            };
            let delivering = if state > DELIVERING {
                current.scaled(rng.random_range(40..=100))
            } else {
                current
            };
            let spec = Spec {
                create_time,
                path,
                current,
                delivering,
            };
            let mut entry = draw_entry(&mut rng, &world.objects, &world.by_id, spec);
            entry.anchor = anchor.is_some();
            world.insert(entry);
        }
        world
    }

    fn insert(&mut self, entry: Entry) {
        self.by_create
            .insert((to_unix(entry.create_time), entry.id));
        self.by_id.insert(entry.id, self.entries.len());
        self.entries.push(entry);
    }

    /// Every order not vanished, one per id in its current state, sorted by id.
    pub(crate) fn truth(&self) -> Vec<SxtOrder> {
        let mut all: Vec<SxtOrder> = self
            .entries
            .iter()
            .filter(|e| !e.vanished)
            .map(|e| self.order(e))
            .collect();
        all.sort_by(|a, b| a.order_id.cmp(&b.order_id));
        all
    }

    fn order(&self, e: &Entry) -> SxtOrder {
        let state = e.state();
        let c = e.current;
        SxtOrder {
            order_id: e.order_id.clone(),
            object_id: self.objects[e.object].id.clone(),
            state,
            state_desc: state_desc(state).unwrap_or_default().to_string(),
            create_time: e.create_time,
            cost_fen: c.cost_fen,
            plays: c.plays,
            roi: roi_text(c.cost_fen, c.gmv_fen),
            gmv_fen: c.gmv_fen,
            cost_text: yuan_text(c.cost_fen),
            gmv_text: yuan_text(c.gmv_fen),
        }
    }

    /// See [`super::SxtSim::mutate`].
    pub(crate) fn mutate(&mut self, n: usize, at: NaiveDateTime) -> Vec<Mutation> {
        if n == 0 {
            return Vec::new();
        }
        let at = truncate(at);
        let movable: Vec<usize> = (0..self.entries.len())
            .filter(|&i| {
                let e = &self.entries[i];
                !e.vanished && e.changed_at < at && !matches!(e.state(), REJECTED | ENDED)
            })
            .collect();
        let picks = n.min(movable.len());
        let mut chosen: Vec<usize> = index::sample(&mut self.rng, movable.len(), picks)
            .into_iter()
            .map(|j| movable[j])
            .collect();
        // Apply in index order so the result does not depend on the sampler's output order.
        chosen.sort_unstable();
        let mut changes = Vec::new();
        for &i in &chosen {
            let rng = &mut self.rng;
            let e = &mut self.entries[i];
            let from = e.state();
            let to = match from {
                UNPAID => CREATING,
                CREATING => REVIEWING,
                REVIEWING if rng.random_range(0..100) < 80 => DELIVERING,
                REVIEWING => REJECTED,
                DELIVERING if rng.random_range(0..100) < 70 => COMPLETED,
                DELIVERING => TERMINATED,
                _ => ENDED,
            };
            if from == DELIVERING {
                // Remember an earlier moment of the delivery for stale state-7 rows.
                e.delivering = e.current.scaled(rng.random_range(40..=100));
                if to == COMPLETED {
                    e.current = e.current.plus(draw_growth(rng));
                }
            }
            e.path.push(to);
            e.changed_at = at;
            changes.push(Mutation {
                order_id: e.order_id.clone(),
                from: from.to_string(),
                to: to.to_string(),
            });
        }
        // Every other delivering order keeps spending: reported with `from == to`.
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            let grows = !e.vanished
                && e.state() == DELIVERING
                && e.changed_at < at
                && chosen.binary_search(&i).is_err();
            if !grows {
                continue;
            }
            let growth = draw_growth(&mut self.rng);
            let e = &mut self.entries[i];
            e.current = e.current.plus(growth);
            e.changed_at = at;
            changes.push(Mutation {
                order_id: e.order_id.clone(),
                from: DELIVERING.to_string(),
                to: DELIVERING.to_string(),
            });
        }
        if !changes.is_empty() {
            self.version += 1;
        }
        changes
    }

    /// See [`super::SxtSim::add_orders`].
    pub(crate) fn add_orders(&mut self, n: usize, at: NaiveDateTime) -> Vec<String> {
        let at = truncate(at);
        let mut added = Vec::with_capacity(n);
        for _ in 0..n {
            let create_time = at - Duration::seconds(self.rng.random_range(0..=5));
            let state = match self.rng.random_range(0..10) {
                0..=2 => UNPAID,
                3..=4 => CREATING,
                _ => REVIEWING,
            };
            let path = path_to(&mut self.rng, state);
            let spec = Spec {
                create_time,
                path,
                current: Indicators::ZERO,
                delivering: Indicators::ZERO,
            };
            let entry = draw_entry(&mut self.rng, &self.objects, &self.by_id, spec);
            added.push(entry.order_id.clone());
            self.insert(entry);
        }
        if n > 0 {
            self.version += 1;
        }
        added
    }

    /// See [`super::SxtSim::vanish`].
    pub(crate) fn vanish(&mut self, n: usize) -> Vec<String> {
        let candidates: Vec<usize> = (0..self.entries.len())
            .filter(|&i| !self.entries[i].vanished && !self.entries[i].anchor)
            .collect();
        let k = n.min(candidates.len());
        let mut picked: Vec<usize> = index::sample(&mut self.rng, candidates.len(), k)
            .into_iter()
            .map(|j| candidates[j])
            .collect();
        picked.sort_unstable();
        let mut gone = Vec::with_capacity(k);
        for i in picked {
            let e = &mut self.entries[i];
            e.vanished = true;
            self.by_create.remove(&(to_unix(e.create_time), e.id));
            gone.push(e.order_id.clone());
        }
        if k > 0 {
            self.version += 1;
        }
        gone
    }

    /// See [`super::SxtSim::add_stale_copy`]. The world's version is left alone, so every other
    /// order's rows stay as they were.
    pub(crate) fn add_stale_copy(&mut self, order_id: &str, state: i64, first: bool) -> bool {
        let Some(&i) = order_id
            .parse::<u64>()
            .ok()
            .and_then(|id| self.by_id.get(&id))
        else {
            return false;
        };
        let e = &mut self.entries[i];
        let fits = e.order_id == order_id
            && !e.vanished
            && state_desc(state).is_some()
            && state <= e.state();
        if fits {
            e.stale.push(Stale { state, first });
        }
        fits
    }

    #[cfg(test)]
    fn live(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| !e.vanished)
    }
}
