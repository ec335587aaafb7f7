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
use std::ops::RangeInclusive;

use chrono::{Duration, NaiveDateTime};
use rand::seq::index;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::money::{roi_text, yuan_text};
use super::{state_desc, SxtOrder, SxtSimConfig};
use crate::time::{to_unix, truncate, WALL_CLOCK};
use crate::Mutation;

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
const COPY_STREAM: u64 = 0x7378_745f_636f_7079;
const MAX_DAYS: i64 = 36_500;
/// Share of orders (with an earlier state to show) that carry extra rows in a snapshot.
const DUP_PERCENT: u64 = 15;
/// How many videos the account promotes.
const OBJECTS: usize = 6;
/// Snowflake seconds are clamped here so every id has 19 digits and fits an i64.
const ID_SECS: RangeInclusive<i64> = 1_000_000_000..=2_147_483_647;
/// The generated state mix, in percent.
const STATE_WEIGHTS: [(i64, u32); 8] = [
    (UNPAID, 8),
    (CREATING, 4),
    (REVIEWING, 8),
    (REJECTED, 8),
    (DELIVERING, 17),
    (TERMINATED, 20),
    (COMPLETED, 17),
    (ENDED, 18),
];
/// Amounts a client's decimal parsing must get exactly right, drawn often.
const TRICKY_FEN: [i64; 14] = [
    1, 5, 10, 26, 29, 99, 100, 101, 990, 1999, 3890, 10000, 100000, 123456,
];
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

/// The document's `aim` object; every simulated order is a 商品购买 (shop conversion) order.
#[derive(Clone, Copy, Serialize)]
struct Aim {
    can_ocpm: bool,
    default_optimized_price: i64,
    default_optimized_type: i64,
    desc: &'static str,
    estimate_bid_name: &'static str,
    estimate_msg: &'static str,
    id: i64,
    instruction_img: &'static str,
    instruction_text: &'static str,
    instruction_title: &'static str,
    name: &'static str,
    selected: bool,
}

const AIM: Aim = Aim {
    can_ocpm: true,
    default_optimized_price: 30,
    default_optimized_type: 3,
    desc: "小店转化",
    estimate_bid_name: "下单",
    estimate_msg: "下单",
    id: 96,
    instruction_img: "http://p3-douecp.byteimg.com/tos-cn-i-4l0viae16a/83e351f6384740040fab357bee014659.png~tplv-4l0viae16a-image.image",
    instruction_text: "更多人购买商品。",
    instruction_title: "预计商品购买量提升",
    name: "商品购买",
    selected: false,
};

#[derive(Serialize)]
struct BidControl {
    pricing_target: i64,
}

#[derive(Serialize)]
struct Indicator {
    count: String,
    name: &'static str,
}

/// One row as the API sends it, in the document's (alphabetical) field order.
#[derive(Serialize)]
pub(crate) struct Row<'a> {
    ad_indicators: [Indicator; 4],
    ad_info: AdInfo<'a>,
    without_req_stat_data: bool,
}

#[derive(Serialize)]
struct AdInfo<'a> {
    aim: Aim,
    bid_control: BidControl,
    /// Absent on rows before review ends, as on the document's 审核中 row.
    #[serde(skip_serializing_if = "Option::is_none")]
    buttons: Option<[i64; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    continue_delivery_url: Option<&'a str>,
    create_time: String,
    create_time_int: i64,
    item_cover: &'a str,
    object_id: &'a str,
    object_type: i64,
    order_id: &'a str,
    state: i64,
    state_desc: &'static str,
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

/// What a new order starts as.
struct Spec {
    create_time: NaiveDateTime,
    path: Vec<i64>,
    current: Indicators,
    delivering: Indicators,
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

    /// The answer's rows: every order whose *current* state is in `states`, newest first (by
    /// creation time, then id), each with its extra rows around it. Filtering by the current state
    /// rather than each row's keeps an order's stale rows with it, so a filtered snapshot collapses
    /// to exactly the truth's orders in those states.
    pub(crate) fn snapshot(&self, states: &[i64]) -> Vec<Row<'_>> {
        let mut rows = Vec::new();
        for (_, id) in self.by_create.iter().rev() {
            let Some(e) = self.by_id.get(id).map(|&i| &self.entries[i]) else {
                continue;
            };
            if !states.contains(&e.state()) {
                continue;
            }
            let (before, after) = self.copies(e);
            rows.extend(before.into_iter().map(|s| self.row(e, s)));
            rows.push(self.row(e, e.state()));
            rows.extend(after.into_iter().map(|s| self.row(e, s)));
        }
        rows
    }

    /// The states of `e`'s extra rows in this version's snapshots: those just before its real row
    /// and those just after. An order with forced copies shows exactly those; otherwise about
    /// [`DUP_PERCENT`]% of the orders that have an earlier state show one or two copies, each in an
    /// earlier state of its path or (sometimes, for the second, as in the document's 7, 5, 7) in its
    /// current state.
    pub(crate) fn copies(&self, e: &Entry) -> (Vec<i64>, Vec<i64>) {
        if !e.stale.is_empty() {
            let side = |first: bool| {
                e.stale
                    .iter()
                    .filter(|s| s.first == first)
                    .map(|s| s.state)
                    .collect()
            };
            return (side(true), side(false));
        }
        let (mut before, mut after) = (Vec::new(), Vec::new());
        let earlier = &e.path[..e.path.len().saturating_sub(1)];
        let mut h = mix(mix(self.seed ^ COPY_STREAM, e.id), self.version);
        if earlier.is_empty() || h % 100 >= DUP_PERCENT {
            return (before, after);
        }
        let extra = 1 + (h >> 32) % 2;
        for i in 0..extra {
            h = mix(h, i);
            let state = if i == 1 && h.is_multiple_of(4) {
                e.state()
            } else {
                earlier[((h >> 8) % earlier.len() as u64) as usize]
            };
            if (h >> 40) & 1 == 0 {
                before.push(state);
            } else {
                after.push(state);
            }
        }
        (before, after)
    }

    fn row<'a>(&'a self, e: &'a Entry, state: i64) -> Row<'a> {
        let figures = e.indicators_at(state);
        // Rows before the review is over have no buttons (the document's 审核中 row has none).
        let reviewed = state >= REJECTED;
        Row {
            ad_indicators: [
                Indicator {
                    count: yuan_text(figures.cost_fen),
                    name: COST,
                },
                Indicator {
                    count: figures.plays.to_string(),
                    name: PLAYS,
                },
                Indicator {
                    count: roi_text(figures.cost_fen, figures.gmv_fen),
                    name: ROI,
                },
                Indicator {
                    count: yuan_text(figures.gmv_fen),
                    name: GMV,
                },
            ],
            ad_info: AdInfo {
                aim: AIM,
                bid_control: BidControl { pricing_target: 3 },
                buttons: reviewed.then_some([3]),
                continue_delivery_url: reviewed.then_some(e.continue_delivery_url.as_str()),
                create_time: e.create_time.format(WALL_CLOCK).to_string(),
                create_time_int: to_unix(e.create_time),
                item_cover: &e.item_cover,
                object_id: &self.objects[e.object].id,
                object_type: 0,
                order_id: &e.order_id,
                state,
                state_desc: state_desc(state).unwrap_or_default(),
            },
            without_req_stat_data: false,
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

/// A new order, with its id, video, cover and delivery settings drawn from `rng`.
fn draw_entry(
    rng: &mut ChaCha8Rng,
    objects: &[Object],
    taken: &HashMap<u64, usize>,
    spec: Spec,
) -> Entry {
    let id = loop {
        let id = snowflake(rng, spec.create_time);
        if !taken.contains_key(&id) {
            break id;
        }
    };
    let object = rng.random_range(0..objects.len().max(1));
    let image = objects.get(object).map_or("", |o| o.image.as_str());
    // The cover link is signed; its expiry and signature are fixed per order so that repeated
    // snapshots of an unchanged world are byte-identical.
    let item_cover = format!(
        "http://p6-ecp-sign.byteimg.com/tos-cn-p-0015/{image}~tplv-u9g0rucoa3-item_cover:200:200.jpeg?x-expires={}&x-signature={}",
        to_unix(spec.create_time) + 90 * 86_400,
        signature(rng)
    );
    let duration = [7_200, 21_600, 43_200, 86_400, 172_800][rng.random_range(0..5)];
    let budget = [10_000, 20_000, 50_000, 100_000, 300_000][rng.random_range(0..5)];
    let continue_delivery_url = format!(
        "is_copy_order=1&c_bid=0&c_aim_id={}&c_duration_sec={duration}&c_pricing_target=3&c_delivery_type=1&c_use_balance=0&c_budget_int={budget}",
        AIM.id
    );
    Entry {
        id,
        order_id: id.to_string(),
        object,
        create_time: spec.create_time,
        path: spec.path,
        current: spec.current,
        delivering: spec.delivering,
        changed_at: spec.create_time,
        item_cover,
        continue_delivery_url,
        stale: Vec::new(),
        anchor: false,
        vanished: false,
    }
}

/// A Douyin-style id: the unix seconds of `t` (clamped to [`ID_SECS`]) in the top 32 bits, random
/// low bits. Always 19 digits, always an i64.
fn snowflake(rng: &mut ChaCha8Rng, t: NaiveDateTime) -> u64 {
    let secs = to_unix(t).clamp(*ID_SECS.start(), *ID_SECS.end()) as u64;
    (secs << 32) | u64::from(rng.random::<u32>())
}

/// A URL-encoded base64 signature like the document's (`…%2B…%3D`).
fn signature(rng: &mut ChaCha8Rng) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut sig = String::new();
    for _ in 0..27 {
        match B64[rng.random_range(0..B64.len())] {
            b'+' => sig.push_str("%2B"),
            b'/' => sig.push_str("%2F"),
            c => sig.push(char::from(c)),
        }
    }
    sig.push_str("%3D");
    sig
}

fn draw_state(rng: &mut ChaCha8Rng) -> i64 {
    let mut draw = rng.random_range(0..100);
    for (state, weight) in STATE_WEIGHTS {
        if draw < weight {
            return state;
        }
        draw -= weight;
    }
    ENDED
}

/// The states an order now in `state` went through (an ended order via 8 or 9).
fn path_to(rng: &mut ChaCha8Rng, state: i64) -> Vec<i64> {
    let mut path = vec![UNPAID];
    for step in [CREATING, REVIEWING] {
        if state >= step {
            path.push(step);
        }
    }
    match state {
        REJECTED => path.push(REJECTED),
        DELIVERING => path.push(DELIVERING),
        TERMINATED | COMPLETED => path.extend([DELIVERING, state]),
        ENDED => {
            let via = if rng.random_range(0..100) < 40 {
                TERMINATED
            } else {
                COMPLETED
            };
            path.extend([DELIVERING, via, ENDED]);
        }
        _ => {}
    }
    path
}

/// A positive amount in fen: often one of [`TRICKY_FEN`], else up to `max` with 0, 1 or 2 decimals
/// in yuan (equally often).
fn draw_fen(rng: &mut ChaCha8Rng, max: i64) -> i64 {
    if rng.random_bool(0.3) {
        return TRICKY_FEN[rng.random_range(0..TRICKY_FEN.len())];
    }
    let raw = rng.random_range(1..=max.max(1));
    match rng.random_range(0..3) {
        0 => (raw / 100).max(1) * 100,
        1 => (raw / 10).max(1) * 10,
        _ => raw,
    }
}

/// Plays bought by `cost_fen`: roughly 3–30 per yuan, at least one once anything is spent.
fn plays_for(rng: &mut ChaCha8Rng, cost_fen: i64) -> i64 {
    if cost_fen == 0 {
        0
    } else {
        (cost_fen * rng.random_range(3..=30) / 100).max(1)
    }
}

/// GMV that `cost_fen` brought: none for about half the spend, else often a tricky amount, else
/// an ROI between 0.2 and 8.
fn gmv_for(rng: &mut ChaCha8Rng, cost_fen: i64, p_none: f64) -> i64 {
    if cost_fen == 0 || rng.random_bool(p_none) {
        0
    } else if rng.random_bool(0.3) {
        TRICKY_FEN[rng.random_range(0..TRICKY_FEN.len())]
    } else {
        (cost_fen * rng.random_range(20..=800) / 100).max(1)
    }
}

/// Figures of a whole delivery: cost, plays for it, and GMV for a bit over half of them.
fn draw_delivery(rng: &mut ChaCha8Rng) -> Indicators {
    let cost_fen = draw_fen(rng, 500_000);
    let plays = plays_for(rng, cost_fen);
    let gmv_fen = gmv_for(rng, cost_fen, 0.45);
    Indicators {
        cost_fen,
        plays,
        gmv_fen,
    }
}

/// A generated order's figures in `state`: zero before delivery, part-way while delivering,
/// final after (a terminated order often spent nothing, as in the document).
fn draw_indicators(rng: &mut ChaCha8Rng, state: i64) -> Indicators {
    let zero_percent = match state {
        DELIVERING => 15,
        TERMINATED => 40,
        COMPLETED | ENDED => 5,
        _ => return Indicators::ZERO,
    };
    if rng.random_range(0..100) < zero_percent {
        return Indicators::ZERO;
    }
    let full = draw_delivery(rng);
    if state == DELIVERING {
        full.scaled(rng.random_range(10..=90))
    } else {
        full
    }
}

/// What a delivering order adds between two mutations.
fn draw_growth(rng: &mut ChaCha8Rng) -> Indicators {
    let cost_fen = draw_fen(rng, 5_000);
    let plays = plays_for(rng, cost_fen);
    let gmv_fen = gmv_for(rng, cost_fen, 0.6);
    Indicators {
        cost_fen,
        plays,
        gmv_fen,
    }
}

/// splitmix64's finaliser: a well-mixed 64-bit hash.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn mix(a: u64, b: u64) -> u64 {
    splitmix(a ^ splitmix(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_wall_clock;

    fn world(orders: usize, seed: u64) -> World {
        World::generate(&SxtSimConfig {
            seed,
            orders,
            days: 60,
            now: parse_wall_clock("2025-06-01 12:00:00").expect("time"),
            ..SxtSimConfig::default()
        })
    }

    fn all_states() -> Vec<i64> {
        STATE_WEIGHTS.iter().map(|(s, _)| *s).collect()
    }

    #[test]
    fn weights_make_a_hundred_and_paths_climb() {
        assert_eq!(STATE_WEIGHTS.iter().map(|(_, w)| w).sum::<u32>(), 100);
        let w = world(2000, 3);
        for e in w.live() {
            assert!(e.path.windows(2).all(|p| p[0] < p[1]), "{:?}", e.path);
            assert_eq!(e.path[0], UNPAID);
            let s = e.state();
            if s < DELIVERING {
                assert_eq!(e.current, Indicators::ZERO, "{s}");
            }
            assert!(e.delivering.at_most(e.current));
            for f in [e.current, e.delivering] {
                assert_eq!(f.cost_fen > 0, f.plays > 0, "{f:?}");
                assert!(f.gmv_fen == 0 || f.cost_fen > 0, "{f:?}");
            }
            assert_eq!(e.path.contains(&DELIVERING), s >= DELIVERING);
            assert_eq!(e.order_id.len(), 19);
            assert!(e.order_id.parse::<i64>().is_ok());
        }
    }

    #[test]
    fn anchors_come_first_and_are_never_vanished() {
        let mut w = world(10, 5);
        let texts: Vec<String> = w.truth().iter().map(|o| o.cost_text.clone()).collect();
        assert!(texts.contains(&"38.9".to_string()) && texts.contains(&"0.29".to_string()));
        let gone = w.vanish(100);
        assert_eq!(gone.len(), 8);
        let left: Vec<String> = w.truth().iter().map(|o| o.cost_text.clone()).collect();
        assert_eq!(left.len(), 2);
        assert!(left.contains(&"38.9".to_string()) && left.contains(&"0.29".to_string()));
        assert_eq!(
            world(1, 5).truth().len(),
            1,
            "a one-order world has no anchors"
        );
    }

    #[test]
    fn about_fifteen_percent_carry_copies_that_never_outrank_the_truth() {
        let w = world(4000, 9);
        let able: Vec<&Entry> = w.live().filter(|e| e.path.len() > 1).collect();
        let mut with_copies = 0;
        let (mut before, mut after, mut same) = (0, 0, 0);
        for e in &able {
            let (b, a) = w.copies(e);
            if b.is_empty() && a.is_empty() {
                continue;
            }
            with_copies += 1;
            assert!((1..=2).contains(&(b.len() + a.len())));
            before += b.len();
            after += a.len();
            for s in b.iter().chain(&a) {
                assert!(*s <= e.state() && e.path.contains(s));
                assert!(e.indicators_at(*s).at_most(e.current));
                same += usize::from(*s == e.state());
            }
        }
        let share = with_copies as f64 / able.len() as f64;
        assert!((0.12..0.18).contains(&share), "{share}");
        assert!(
            before > 50 && after > 50 && same > 5,
            "{before} {after} {same}"
        );
        assert_eq!(w.copies(able[0]), w.copies(able[0]), "stable per version");
    }

    #[test]
    fn a_change_reshuffles_the_copies_and_filters_keep_them() {
        let mut w = world(500, 2);
        let pattern =
            |w: &World| -> Vec<(Vec<i64>, Vec<i64>)> { w.live().map(|e| w.copies(e)).collect() };
        let first = pattern(&w);
        let rows = w.snapshot(&all_states()).len();
        let extra: usize = first.iter().map(|(b, a)| b.len() + a.len()).sum();
        assert_eq!(rows, 500 + extra);
        w.add_orders(1, parse_wall_clock("2025-06-01 12:00:00").expect("time"));
        let second = pattern(&w);
        assert_ne!(first[..500], second[..500]);

        let delivering: usize = w
            .live()
            .filter(|e| e.state() == DELIVERING)
            .map(|e| {
                let (b, a) = w.copies(e);
                1 + b.len() + a.len()
            })
            .sum();
        assert_eq!(w.snapshot(&[DELIVERING]).len(), delivering);
    }

    #[test]
    fn forced_copies_replace_the_random_ones_and_never_outrank() {
        let mut w = world(300, 4);
        let e = w
            .live()
            .find(|e| e.state() == COMPLETED)
            .expect("a completed order");
        let id = e.order_id.clone();
        assert!(w.add_stale_copy(&id, DELIVERING, true));
        assert!(w.add_stale_copy(&id, REVIEWING, false));
        assert!(w.add_stale_copy(&id, COMPLETED, false), "its own state");
        assert!(!w.add_stale_copy(&id, ENDED, true), "above the truth");
        assert!(!w.add_stale_copy(&id, 4, true), "not a state");
        assert!(!w.add_stale_copy("1", 1, true), "no such order");
        assert!(!w.add_stale_copy(&format!("+{id}"), 1, true), "not its id");
        let i = w.by_id[&id.parse::<u64>().expect("id")];
        assert_eq!(
            w.copies(&w.entries[i]),
            (vec![DELIVERING], vec![REVIEWING, COMPLETED])
        );
        let e = &w.entries[i];
        assert!(e.indicators_at(DELIVERING).at_most(e.current));
        assert_eq!(e.indicators_at(REVIEWING), Indicators::ZERO);
    }

    #[test]
    fn mutation_moves_one_step_and_grows_deliveries() {
        let mut w = world(400, 6);
        let before: HashMap<String, SxtOrder> = w
            .truth()
            .into_iter()
            .map(|o| (o.order_id.clone(), o))
            .collect();
        let at = parse_wall_clock("2025-06-01 12:05:00").expect("time");
        let changes = w.mutate(30, at);
        assert_eq!(changes.iter().filter(|m| m.from != m.to).count(), 30);
        let after: HashMap<String, SxtOrder> = w
            .truth()
            .into_iter()
            .map(|o| (o.order_id.clone(), o))
            .collect();
        for m in &changes {
            let (old, new) = (&before[&m.order_id], &after[&m.order_id]);
            assert_eq!(
                (old.state.to_string(), new.state.to_string()),
                (m.from.clone(), m.to.clone())
            );
            assert!(
                new.cost_fen >= old.cost_fen
                    && new.plays >= old.plays
                    && new.gmv_fen >= old.gmv_fen
            );
            if m.from == m.to {
                assert!(new.cost_fen > old.cost_fen);
            }
        }
        let again = w.mutate(1000, at);
        assert!(!again.is_empty());
        assert!(
            again
                .iter()
                .all(|m| changes.iter().all(|c| c.order_id != m.order_id)),
            "an order changed at {at} cannot change again at {at}"
        );
    }
}
