//! The unidesk world: every SKU sub-order (line) the simulator knows, grouped under main orders, its
//! paging index, and how lines change.
//!
//! Invariants: main-order and sub-order ids are unique odd 19-digit numbers above 2^53 (so no float
//! holds one exactly), drawn from two disjoint ranges; every main order has 1–4 lines; for every line
//! `order_create_time <= order_pay_time <= order_refund_time` where present, a pay time exactly when
//! the status is not 1 (拍下), a refund time, refund fee and zero commission exactly when the status
//! is 3 (退款), and `modified_time` is the latest of the three times; `index` always holds exactly one
//! `(modified unix ms, order id, sub-order id)` key per line, so paging by keyset is a range scan in
//! the API's order. The lines of one main order share their times — and so sit next to each other
//! in that order, where a page boundary can cut through them — except a line refunded later than
//! the rest (about one multi-line paid or received order in five), which moves to its own time,
//! often another day. Generation depends only on the config's seed, size and `now`;
//! [`World::mutate`] and [`World::add_orders`] draw from a second RNG stream of the same seed, so a
//! call sequence replays identically.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;

use chrono::{Duration, NaiveDateTime};
use rand::seq::index;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::query::{Window, PROD_TYPE_UDSMART};
use super::{UdSubOrder, UnideskSimConfig};
use crate::time::{to_unix_millis, truncate, wall_text};
use crate::{keyset, names, Mutation};

/// A line's place in the paging order: (unix ms of its modified time, order id, sub-order id).
pub(crate) type UdKey = (i64, u64, u64);

/// `order_status` values, as the document numbers them.
pub(crate) const PLACED: i64 = 1;
pub(crate) const PAID: i64 = 2;
pub(crate) const REFUNDED: i64 = 3;
pub(crate) const PRESALE: i64 = 4;
pub(crate) const RECEIVED: i64 = 5;

/// Main-order and sub-order ids are drawn (then made odd) from these disjoint 19-digit ranges.
const ORDER_IDS: std::ops::Range<u64> = 3_100_000_000_000_000_000..3_999_999_999_999_999_998;
const SUB_ORDER_IDS: std::ops::Range<u64> = 4_100_000_000_000_000_000..4_999_999_999_999_999_998;
/// Taobao-like 12-digit item ids.
const ITEM_IDS: std::ops::Range<u64> = 600_000_000_000..800_000_000_000;
/// Distinguish this world's streams from another simulator's world of the same seed.
const WORLD_STREAM: u64 = 0x7564_736d_6172_7431;
const MUTATION_STREAM: u64 = 0x6d75_7461_7465_2121;
const MAX_DAYS: i64 = 36_500;
/// Media channels the document names: 1 巨量2.0, 104 腾讯3.0, 105 快手, 108 B站.
const CHANNELS: [i64; 4] = [1, 104, 105, 108];

/// What a main order's lines share besides their times: the shop and the ad that brought it.
struct Ad {
    is_ad_order: i64,
    channel_id: i64,
    click_time: Option<NaiveDateTime>,
    advertiser_id: u64,
    campaign_id: u64,
    adgroup_id: u64,
    creative_id: u64,
}

struct MainOrder {
    id: u64,
    seller_id: u64,
    brand_id: u64,
    seller_nick: String,
    ad: Ad,
    /// Indexes into `World::lines`.
    lines: Vec<usize>,
}

/// One line: the ground truth and the rest of its row.
pub(crate) struct Line {
    truth: UdSubOrder,
    /// Index into `World::orders`.
    order: usize,
    order_id: u64,
    sub_order_id: u64,
    item_id: u64,
    pay_item_id: u64,
    /// What was paid for the line once paid in full: `pay_fee` less shipping and tax.
    net_fee: i64,
    /// The commission rate in tenths of a percent (`"1.5"` is 15).
    commission_tenths: i64,
}

pub(crate) struct World {
    /// Main orders in creation order (generation, then additions).
    orders: Vec<MainOrder>,
    /// Lines in creation order.
    lines: Vec<Line>,
    /// Line index by sub-order id.
    by_sub: HashMap<u64, usize>,
    order_ids: HashSet<u64>,
    index: BTreeSet<UdKey>,
    rng: ChaCha8Rng,
}

/// One page of a window: its lines, the key of the last one if more follow, and the main order a
/// page boundary cut through (its next line starts the following page), if any.
pub(crate) struct Page<'a> {
    pub(crate) lines: Vec<&'a Line>,
    pub(crate) next: Option<UdKey>,
    pub(crate) split: Option<u64>,
}

/// One line as the API sends it, in the document's field order: ids and amounts as JSON numbers
/// (the 19-digit ids exact), times as `YYYY-MM-DD HH:MM:SS` or `""` where the document calls them
/// meaningless.
#[derive(Serialize)]
pub(crate) struct Row<'a> {
    seller_id: u64,
    seller_nick: &'a str,
    brand_id: u64,
    order_id: u64,
    sub_order_id: u64,
    item_id: u64,
    item_name: &'a str,
    pay_item_id: u64,
    pay_item_name: &'a str,
    order_status: i64,
    order_create_time: String,
    pay_fee: i64,
    due_pay_fee: i64,
    order_pay_time: String,
    actual_pay_fee: i64,
    order_refund_time: String,
    order_refund_fee: i64,
    is_ad_order: i64,
    channel_id: i64,
    click_time: String,
    advertiser_id: u64,
    presale_deposit_fee: i64,
    remaining_payment_fee: i64,
    campaign_id: u64,
    adgroup_id: u64,
    creative_id: u64,
    buy_amount: i64,
    shop_name: &'a str,
    commission_rate: String,
    commission_fee: i64,
    item_pic_url: String,
}

/// A new main order's times and status; `late_refund_cap`, when given, lets one line of a
/// multi-line paid or received order be refunded later, no later than the cap.
struct Draft {
    create: NaiveDateTime,
    pay: Option<NaiveDateTime>,
    refund: Option<NaiveDateTime>,
    status: i64,
    late_refund_cap: Option<NaiveDateTime>,
}

impl World {
    pub(crate) fn generate(cfg: &UnideskSimConfig) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ WORLD_STREAM);
        let now = truncate(cfg.now);
        let latest_create = now - Duration::hours(1);
        let span = (cfg.days.clamp(0, MAX_DAYS) * 86_400 - 3_600).max(0);
        // The latest any event may be.
        let cap = now - Duration::minutes(6);
        let mut world = World {
            orders: Vec::with_capacity(cfg.orders),
            lines: Vec::with_capacity(cfg.orders * 2),
            by_sub: HashMap::with_capacity(cfg.orders * 2),
            order_ids: HashSet::with_capacity(cfg.orders),
            index: BTreeSet::new(),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ WORLD_STREAM ^ MUTATION_STREAM),
        };
        for _ in 0..cfg.orders {
            let create = latest_create - Duration::seconds(rng.random_range(0..=span));
            let status = match rng.random_range(0..100) {
                0..=9 => PLACED,
                10..=61 => PAID,
                62..=71 => PRESALE,
                72..=92 => RECEIVED,
                _ => REFUNDED,
            };
            let pay = (status != PLACED).then(|| {
                within(
                    create + Duration::seconds(rng.random_range(5..=1_800)),
                    create,
                    cap,
                )
            });
            let refund = match (status, pay) {
                (REFUNDED, Some(pay)) => Some(within(
                    pay + Duration::seconds(rng.random_range(600..=3 * 86_400)),
                    pay,
                    cap,
                )),
                _ => None,
            };
            let draft = Draft {
                create,
                pay,
                refund,
                status,
                late_refund_cap: Some(cap),
            };
            world.add_main_order(&mut rng, draft);
        }
        world
    }

    /// Draws a main order and its lines from `draft`; returns its id.
    fn add_main_order(&mut self, rng: &mut ChaCha8Rng, d: Draft) -> u64 {
        let id = fresh_id(rng, ORDER_IDS, |id| self.order_ids.contains(&id));
        self.order_ids.insert(id);
        let shop = rng.random_range(0..names::shop_count());
        let seller_id = 2_200_000_000 + 7_919_311 * shop as u64;
        let count = match rng.random_range(0..100) {
            0..=34 => 1,
            35..=64 => 2,
            65..=84 => 3,
            _ => 4,
        };
        let is_ad = rng.random_bool(0.9);
        let ad = Ad {
            is_ad_order: i64::from(is_ad),
            channel_id: CHANNELS[rng.random_range(0..CHANNELS.len())],
            click_time: is_ad
                .then(|| d.create - Duration::seconds(rng.random_range(60..=3 * 86_400))),
            advertiser_id: rng.random_range(1_600_000_000_000_000..1_800_000_000_000_000),
            campaign_id: rng.random_range(1_000_000_000..4_000_000_000),
            adgroup_id: rng.random_range(1_000_000_000..4_000_000_000),
            creative_id: rng.random_range(1_000_000_000..4_000_000_000),
        };
        // One line refunded later than the rest, at its own time.
        let late = match (d.late_refund_cap, d.pay) {
            (Some(cap), Some(pay))
                if count >= 2
                    && (d.status == PAID || d.status == RECEIVED)
                    && rng.random_bool(0.2) =>
            {
                let at = within(
                    pay + Duration::seconds(rng.random_range(3_600..=5 * 86_400)),
                    pay,
                    cap,
                );
                Some((rng.random_range(0..count), at))
            }
            _ => None,
        };
        let order = self.orders.len();
        let mut lines = Vec::with_capacity(count);
        for k in 0..count {
            let sub = fresh_id(rng, SUB_ORDER_IDS, |id| self.by_sub.contains_key(&id));
            let item_id = rng.random_range(ITEM_IDS);
            let item_name = names::product(rng);
            let (pay_item_id, pay_item_name) = if rng.random_bool(0.8) {
                (item_id, item_name.clone())
            } else {
                (rng.random_range(ITEM_IDS), names::product(rng))
            };
            let buy_amount = if rng.random_bool(0.7) {
                1
            } else {
                rng.random_range(2..=5)
            };
            let pay_fee = rng.random_range(100..=30_000) * buy_amount;
            let net_fee = if rng.random_bool(0.8) {
                pay_fee
            } else {
                pay_fee - rng.random_range(1..=(pay_fee / 20).max(1))
            };
            let commission_tenths = rng.random_range(5..=80);
            let (status, refund) = match late {
                Some((line, at)) if line == k => (REFUNDED, Some(at)),
                _ => (d.status, d.refund),
            };
            let refund_share = rng.random_bool(0.8);
            let refund_fee = refund_amount(rng, net_fee, refund_share);
            let mut line = Line {
                truth: UdSubOrder {
                    order_id: id.to_string(),
                    sub_order_id: sub.to_string(),
                    item_id: item_id.to_string(),
                    item_name,
                    pay_item_id: pay_item_id.to_string(),
                    pay_item_name,
                    seller_id: seller_id.to_string(),
                    shop_name: names::shop_name(shop).to_string(),
                    order_status: status,
                    order_create_time: d.create,
                    order_pay_time: d.pay,
                    order_refund_time: None,
                    pay_fee,
                    actual_pay_fee: 0,
                    order_refund_fee: 0,
                    buy_amount,
                    commission_fee: 0,
                    modified_time: d.create,
                },
                order,
                order_id: id,
                sub_order_id: sub,
                item_id,
                pay_item_id,
                net_fee,
                commission_tenths,
            };
            line.set_status(status, refund, refund_fee);
            lines.push(self.lines.len());
            self.by_sub.insert(sub, self.lines.len());
            self.index.insert(line.key());
            self.lines.push(line);
        }
        self.orders.push(MainOrder {
            id,
            seller_id,
            brand_id: 100_000 + 3_571 * shop as u64,
            seller_nick: format!("tb{:08}", seller_id % 100_000_000),
            ad,
            lines,
        });
        id
    }

    /// Every line as it is now, sorted by (order id, sub-order id).
    pub(crate) fn truth(&self) -> Vec<UdSubOrder> {
        let mut all: Vec<UdSubOrder> = self.lines.iter().map(|l| l.truth.clone()).collect();
        all.sort_by(|a, b| (&a.order_id, &a.sub_order_id).cmp(&(&b.order_id, &b.sub_order_id)));
        all
    }

    /// One fixed-size page of `w`.
    pub(crate) fn page(&self, w: &Window, size: usize) -> Page<'_> {
        let first = (w.scope.start, 0, 0);
        let last = (w.scope.end, u64::MAX, u64::MAX);
        let udsmart = w.scope.prod_type == PROD_TYPE_UDSMART;
        let (lines, next) = keyset::page_by(&self.index, first, last, w.after, size, |key| {
            // Every simulated line is a udsmart order; 流量通Pro (2) has none.
            let line = self.by_sub.get(&key.2).map(|&i| &self.lines[i])?;
            udsmart.then_some(line)
        });
        // The boundary cuts through a main order when the key after the page's last is the same order's.
        let split = next.and_then(|k| {
            self.index
                .range((Bound::Excluded(k), Bound::Included(last)))
                .next()
                .filter(|following| following.1 == k.1)
                .map(|_| k.1)
        });
        Page { lines, next, split }
    }

    /// See [`super::UnideskSim::mutate`].
    pub(crate) fn mutate(&mut self, n: usize, at: NaiveDateTime) -> Vec<Mutation> {
        let at = truncate(at);
        let movable_lines = |w: &World, o: usize| -> Vec<usize> {
            w.orders[o]
                .lines
                .iter()
                .copied()
                .filter(|&l| {
                    let t = &w.lines[l].truth;
                    t.order_status == PAID && t.modified_time < at
                })
                .collect()
        };
        let movable: Vec<usize> = (0..self.orders.len())
            .filter(|&o| !movable_lines(self, o).is_empty())
            .collect();
        let picks = n.min(movable.len());
        let mut chosen: Vec<usize> = index::sample(&mut self.rng, movable.len(), picks)
            .into_iter()
            .map(|j| movable[j])
            .collect();
        // Apply in index order so the result does not depend on the sampler's output order.
        chosen.sort_unstable();
        let mut changes = Vec::with_capacity(picks);
        for o in chosen {
            let paid = movable_lines(self, o);
            let to = if self.rng.random_range(0..100) < 25 {
                let l = paid[self.rng.random_range(0..paid.len())];
                let full = self.rng.random_bool(0.8);
                let fee = refund_amount(&mut self.rng, self.lines[l].net_fee, full);
                self.index.remove(&self.lines[l].key());
                self.lines[l].set_status(REFUNDED, Some(at), fee);
                self.index.insert(self.lines[l].key());
                REFUNDED
            } else {
                // Receipt has no time of its own: the lines keep their modified time.
                for l in paid {
                    self.lines[l].set_status(RECEIVED, None, 0);
                }
                RECEIVED
            };
            changes.push(Mutation {
                order_id: self.orders[o].id.to_string(),
                from: PAID.to_string(),
                to: to.to_string(),
            });
        }
        changes
    }

    /// See [`super::UnideskSim::add_orders`].
    pub(crate) fn add_orders(&mut self, n: usize, at: NaiveDateTime) -> Vec<String> {
        let at = truncate(at);
        // Drawn from the mutation stream: borrowed out while the world grows, then put back.
        let mut rng = self.rng.clone();
        let mut added = Vec::with_capacity(n);
        for _ in 0..n {
            let create = at - Duration::seconds(rng.random_range(0..=5));
            let pay = create + Duration::seconds(rng.random_range(0..=(at - create).num_seconds()));
            let draft = Draft {
                create,
                pay: Some(pay),
                refund: None,
                status: PAID,
                late_refund_cap: None,
            };
            added.push(self.add_main_order(&mut rng, draft).to_string());
        }
        self.rng = rng;
        added
    }

    /// The JSON row of `line`.
    pub(crate) fn row<'a>(&'a self, line: &'a Line) -> Row<'a> {
        let (t, o) = (&line.truth, &self.orders[line.order]);
        let presale = t.order_status == PRESALE;
        let due = match t.order_status {
            PLACED => t.pay_fee,
            PRESALE => t.pay_fee - t.actual_pay_fee,
            _ => 0,
        };
        Row {
            seller_id: o.seller_id,
            seller_nick: &o.seller_nick,
            brand_id: o.brand_id,
            order_id: line.order_id,
            sub_order_id: line.sub_order_id,
            item_id: line.item_id,
            item_name: &t.item_name,
            pay_item_id: line.pay_item_id,
            pay_item_name: &t.pay_item_name,
            order_status: t.order_status,
            order_create_time: text(Some(t.order_create_time)),
            pay_fee: t.pay_fee,
            due_pay_fee: due,
            order_pay_time: text(t.order_pay_time),
            actual_pay_fee: t.actual_pay_fee,
            order_refund_time: text(t.order_refund_time),
            order_refund_fee: t.order_refund_fee,
            is_ad_order: o.ad.is_ad_order,
            channel_id: o.ad.channel_id,
            click_time: text(o.ad.click_time),
            advertiser_id: o.ad.advertiser_id,
            presale_deposit_fee: if presale { t.actual_pay_fee } else { 0 },
            remaining_payment_fee: if presale { due } else { 0 },
            campaign_id: o.ad.campaign_id,
            adgroup_id: o.ad.adgroup_id,
            creative_id: o.ad.creative_id,
            buy_amount: t.buy_amount,
            shop_name: &t.shop_name,
            commission_rate: rate_text(line.commission_tenths),
            commission_fee: t.commission_fee,
            item_pic_url: format!(
                "https://img.alicdn.com/imgextra/sim/{}.jpg",
                line.pay_item_id
            ),
        }
    }
}

impl Line {
    fn key(&self) -> UdKey {
        (
            to_unix_millis(self.truth.modified_time),
            self.order_id,
            self.sub_order_id,
        )
    }

    /// Puts the line in `status`, keeping the status-dependent fields consistent: `refund` and
    /// `refund_fee` are used only for [`REFUNDED`]. The caller re-indexes if the modified time moves.
    fn set_status(&mut self, status: i64, refund: Option<NaiveDateTime>, refund_fee: i64) {
        let t = &mut self.truth;
        t.order_status = status;
        t.actual_pay_fee = match status {
            PLACED => 0,
            // The deposit, a fifth of the price.
            PRESALE => (t.pay_fee / 5).max(1),
            _ => self.net_fee,
        };
        let refunded = status == REFUNDED;
        t.order_refund_time = if refunded { refund } else { None };
        t.order_refund_fee = if refunded { refund_fee } else { 0 };
        t.commission_fee = if refunded {
            0
        } else {
            (t.pay_fee * self.commission_tenths + 500) / 1_000
        };
        t.modified_time = [t.order_pay_time, t.order_refund_time]
            .into_iter()
            .flatten()
            .fold(t.order_create_time, NaiveDateTime::max);
    }
}

/// `t`, but no earlier than `low` and no later than `high` (`low` wins if they cross).
fn within(t: NaiveDateTime, low: NaiveDateTime, high: NaiveDateTime) -> NaiveDateTime {
    t.min(high).max(low)
}

/// A fresh odd id from `range`, one that `taken` says is not taken.
fn fresh_id(rng: &mut ChaCha8Rng, range: std::ops::Range<u64>, taken: impl Fn(u64) -> bool) -> u64 {
    loop {
        let id = rng.random_range(range.clone()) | 1;
        if !taken(id) {
            return id;
        }
    }
}

/// What is refunded of a line that paid `net`: all of it, or (when not `full`) a part.
fn refund_amount(rng: &mut ChaCha8Rng, net: i64, full: bool) -> i64 {
    if full || net <= 1 {
        net.max(0)
    } else {
        rng.random_range(1..net)
    }
}

/// A row time: `YYYY-MM-DD HH:MM:SS`, or `""` for none.
fn text(t: Option<NaiveDateTime>) -> String {
    wall_text(t).unwrap_or_default()
}

/// A commission rate in tenths of a percent as the document writes it: `15` → `"1.5"`, `30` → `"3"`.
fn rate_text(tenths: i64) -> String {
    if tenths % 10 == 0 {
        (tenths / 10).to_string()
    } else {
        format!("{}.{}", tenths / 10, tenths % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_the_document_writes_them() {
        assert_eq!(rate_text(15), "1.5");
        assert_eq!(rate_text(30), "3");
        assert_eq!(rate_text(5), "0.5");
        assert_eq!(rate_text(80), "8");
    }

    #[test]
    fn ids_are_odd_so_no_float_holds_them() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..1000 {
            let id = fresh_id(&mut rng, ORDER_IDS, |_| false);
            assert!(ORDER_IDS.contains(&id) && id % 2 == 1);
            assert_ne!(id as f64 as u64, id);
            assert_eq!(id.to_string().len(), 19);
        }
    }
}
