//! The miaoyouquan world: every order the simulator knows, its paging indexes, and how orders change.
//!
//! Invariants: order ids are unique 19-digit numbers above 2^53 + 1; for every order
//! `pay_success_time <= confirm/refund <= settle <= update_time`; the `by_pay` and `by_update`
//! indexes always hold exactly one `(unix seconds, id)` key per order, so paging by keyset is a range
//! scan. Shop ids are decimal text; about a third of the shops have odd 19-digit ids above 2^53, which
//! a float cannot hold. Generation depends only on the config's seed, size and `now`;
//! [`World::mutate`] and [`World::add_orders`] draw from a second RNG stream of the same seed, so a
//! call sequence replays identically. Every order is a distribution order (`query_order_type` 0);
//! a query for price-comparison orders (1) finds none.

use std::collections::{BTreeSet, HashMap};

use chrono::{Duration, NaiveDateTime};
use rand::seq::index;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::query::{Key, Scope, TimeType, Window};
use super::{MiaoyouquanSimConfig, MyqOrder};
use crate::time::{to_unix, truncate, wall_text};
use crate::{keyset, names, Mutation};

const PAY_SUCC: &str = "PAY_SUCC";
const CONFIRM: &str = "CONFIRM";
const SETTLE: &str = "SETTLE";
const REFUND: &str = "REFUND";

const LIVE: &str = "Live";
const PRODUCT_DETAIL: &str = "ProductDetail";
const ACTIVITY: &str = "ActivityMaterial";
/// The values `distribution_type` may take.
pub(crate) const DISTRIBUTION_TYPES: [&str; 3] = [LIVE, PRODUCT_DETAIL, ACTIVITY];

/// Order and product ids are drawn from these 19-digit ranges (all far above 2^53).
const ORDER_IDS: std::ops::Range<u64> = 4_900_000_000_000_000_000..6_999_999_999_999_999_999;
const PRODUCT_IDS: std::ops::Range<u64> = 3_000_000_000_000_000_000..3_799_999_999_999_999_999;
/// Big shop ids start here: odd, so no shop id above 2^53 is a float's exact value.
const BIG_SHOP_BASE: u64 = 7_296_482_153_913_318_417;
/// Distinguish this world's streams from another simulator's world of the same seed.
const WORLD_STREAM: u64 = 0x6d69_616f_796f_7571;
const MUTATION_STREAM: u64 = 0x6d75_7461_7465_2121;
const MAX_DAYS: i64 = 36_500;
/// How many PIDs the account promotes with.
const PIDS: usize = 4;

/// What the API sends about an order that the ground truth does not carry.
struct Extra {
    /// The same number as the order's `shop_id` text.
    shop_id: u64,
    /// Ten-thousandths.
    promotion_rate: i64,
    external_info: String,
    author_account: String,
    author_buyin_id: Option<String>,
    author_short_id: String,
    ads_fans_type: Option<&'static str>,
    media_type: Option<&'static str>,
    material_id: Option<String>,
    ads_activity_id: i64,
    product_activity_id: &'static str,
    distributor_right_type: &'static str,
    has_subsidy_tag: bool,
    has_supermarket_tag: bool,
    img: u32,
}

/// One order: the ground truth and the rest of its row.
pub(crate) struct Entry {
    order: MyqOrder,
    extra: Extra,
}

pub(crate) struct World {
    /// Orders in creation order (generation, then additions).
    entries: Vec<Entry>,
    ids: Vec<u64>,
    by_id: HashMap<u64, usize>,
    by_pay: BTreeSet<Key>,
    by_update: BTreeSet<Key>,
    pids: Vec<String>,
    rng: ChaCha8Rng,
}

/// One order as the API sends it, in the document's (alphabetical) field order: amounts and ids
/// other than `order_id`/`product_id` as JSON numbers, times as wall-clock text or `null`.
#[derive(Serialize)]
pub(crate) struct Row<'a> {
    ads_activity_id: i64,
    ads_estimated_commission: i64,
    ads_estimated_tech_service_fee: i64,
    ads_fans_type: Option<&'static str>,
    ads_promotion_rate: i64,
    ads_real_commission: i64,
    author_account: &'a str,
    author_buyin_id: Option<&'a str>,
    author_short_id: &'a str,
    confirm_time: Option<String>,
    distributor_right_type: &'static str,
    flow_point: &'a str,
    item_num: i64,
    material_id: Option<&'a str>,
    media_type: Option<&'static str>,
    order_id: &'a str,
    pay_goods_amount: i64,
    pay_success_time: Option<String>,
    pid_info: PidInfo<'a>,
    product_activity_id: &'static str,
    product_id: &'a str,
    product_img: String,
    product_name: &'a str,
    product_tags: ProductTags,
    refund_time: Option<String>,
    settle_time: Option<String>,
    settled_goods_amount: i64,
    /// Serialised as an exact integer, however large.
    shop_id: u64,
    shop_name: &'a str,
    total_pay_amount: i64,
    update_time: Option<String>,
}

#[derive(Serialize)]
struct PidInfo<'a> {
    external_info: &'a str,
    media_type_name: &'static str,
    pid: &'a str,
}

#[derive(Serialize)]
struct ProductTags {
    has_subsidy_tag: bool,
    has_supermarket_tag: bool,
}

/// The latest an event may be, and the latest an `update_time` may be, for a new order.
struct Caps {
    event: NaiveDateTime,
    update: NaiveDateTime,
}

impl World {
    pub(crate) fn generate(cfg: &MiaoyouquanSimConfig) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ WORLD_STREAM);
        let now = truncate(cfg.now);
        let latest_pay = now - Duration::hours(1);
        let span = (cfg.days.clamp(0, MAX_DAYS) * 86_400 - 3_600).max(0);
        let caps = Caps {
            event: now - Duration::minutes(6),
            update: now - Duration::minutes(5),
        };
        let pids = (0..PIDS)
            .map(|_| {
                format!(
                    "dy_{}_{}_{}",
                    rng.random_range(100_000_000_000_000_000_000u128..999_999_999_999_999_999_999),
                    rng.random_range(10_000..100_000),
                    rng.random_range(1_000_000_000u64..2_000_000_000)
                )
            })
            .collect();
        let mut world = World {
            entries: Vec::with_capacity(cfg.orders),
            ids: Vec::with_capacity(cfg.orders),
            by_id: HashMap::with_capacity(cfg.orders),
            by_pay: BTreeSet::new(),
            by_update: BTreeSet::new(),
            pids,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ WORLD_STREAM ^ MUTATION_STREAM),
        };
        for _ in 0..cfg.orders {
            let id = fresh_id(&mut rng, &world.by_id);
            let pay = latest_pay - Duration::seconds(rng.random_range(0..=span));
            let flow = match rng.random_range(0..100) {
                0..=49 => PAY_SUCC,
                50..=69 => CONFIRM,
                70..=84 => SETTLE,
                _ => REFUND,
            };
            let entry = draw_order(&mut rng, &world.pids, id, pay, flow, &caps);
            world.insert(id, entry);
        }
        world
    }

    fn insert(&mut self, id: u64, entry: Entry) {
        self.by_pay
            .insert((to_unix(entry.order.pay_success_time), id));
        self.by_update
            .insert((to_unix(entry.order.update_time), id));
        self.by_id.insert(id, self.entries.len());
        self.ids.push(id);
        self.entries.push(entry);
    }

    /// Every order, sorted by id.
    pub(crate) fn truth(&self) -> Vec<MyqOrder> {
        let mut all: Vec<MyqOrder> = self.entries.iter().map(|e| e.order.clone()).collect();
        all.sort_by(|a, b| a.order_id.cmp(&b.order_id));
        all
    }

    /// One page of `w`: up to `size` matching orders after `w.after`, and the key of the last one if
    /// more follow.
    pub(crate) fn page(&self, w: &Window) -> (Vec<&Entry>, Option<Key>) {
        let s = &w.scope;
        let index = match s.time_type {
            TimeType::Pay => &self.by_pay,
            TimeType::Update => &self.by_update,
        };
        keyset::page(index, s.start, s.end, w.after, w.size, |id| {
            let entry = self.by_id.get(&id).map(|&i| &self.entries[i])?;
            matches(&entry.order, s).then_some(entry)
        })
    }

    /// The orders among `ids` that exist, in the order asked (each once).
    pub(crate) fn by_ids(&self, ids: &[String]) -> Vec<&Entry> {
        let mut seen = Vec::new();
        for id in ids {
            let Ok(n) = id.parse::<u64>() else { continue };
            if !seen.contains(&n) {
                seen.push(n);
            }
        }
        seen.iter()
            .filter_map(|n| self.by_id.get(n).map(|&i| &self.entries[i]))
            .collect()
    }

    /// See [`super::MiaoyouquanSim::mutate`].
    pub(crate) fn mutate(&mut self, n: usize, at: NaiveDateTime) -> Vec<Mutation> {
        let at = truncate(at);
        let movable: Vec<usize> = (0..self.entries.len())
            .filter(|&i| {
                let o = &self.entries[i].order;
                (o.flow_point == PAY_SUCC || o.flow_point == CONFIRM) && o.update_time < at
            })
            .collect();
        let picks = n.min(movable.len());
        let mut chosen: Vec<usize> = index::sample(&mut self.rng, movable.len(), picks)
            .into_iter()
            .map(|j| movable[j])
            .collect();
        // Apply in index order so the result does not depend on the sampler's output order.
        chosen.sort_unstable();
        let mut changes = Vec::with_capacity(picks);
        for &i in &chosen {
            let to = match self.entries[i].order.flow_point.as_str() {
                PAY_SUCC if self.rng.random_range(0..100) < 20 => REFUND,
                PAY_SUCC => CONFIRM,
                _ => SETTLE,
            };
            let real = real_commission(
                &mut self.rng,
                self.entries[i].order.ads_estimated_commission,
            );
            let o = &mut self.entries[i].order;
            let from = std::mem::replace(&mut o.flow_point, to.to_string());
            match to {
                REFUND => o.refund_time = Some(at),
                CONFIRM => o.confirm_time = Some(at),
                _ => {
                    o.settle_time = Some(at);
                    o.ads_real_commission = real;
                }
            }
            changes.push(Mutation {
                order_id: o.order_id.clone(),
                from,
                to: to.to_string(),
            });
            self.touch(i, at);
        }

        // A few commission revisions without a status change.
        if n > 0 {
            let revisable: Vec<usize> = movable
                .iter()
                .copied()
                .filter(|i| chosen.binary_search(i).is_err())
                .collect();
            let k = n.div_ceil(8).min(revisable.len());
            let mut picked: Vec<usize> = index::sample(&mut self.rng, revisable.len(), k)
                .into_iter()
                .map(|j| revisable[j])
                .collect();
            picked.sort_unstable();
            for i in picked {
                let est = self.entries[i].order.ads_estimated_commission;
                let delta = self.rng.random_range(1..=(est / 10).max(5));
                let revised = if est > delta && self.rng.random_bool(0.5) {
                    est - delta
                } else {
                    est + delta
                };
                let o = &mut self.entries[i].order;
                o.ads_estimated_commission = revised;
                changes.push(Mutation {
                    order_id: o.order_id.clone(),
                    from: o.flow_point.clone(),
                    to: o.flow_point.clone(),
                });
                self.touch(i, at);
            }
        }
        changes
    }

    /// Sets order `i`'s update time to `at`, keeping the index in step.
    fn touch(&mut self, i: usize, at: NaiveDateTime) {
        let id = self.ids[i];
        let o = &mut self.entries[i].order;
        self.by_update.remove(&(to_unix(o.update_time), id));
        o.update_time = at;
        self.by_update.insert((to_unix(at), id));
    }

    /// See [`super::MiaoyouquanSim::add_orders`].
    pub(crate) fn add_orders(&mut self, n: usize, at: NaiveDateTime) -> Vec<String> {
        let at = truncate(at);
        let caps = Caps {
            event: at,
            update: at,
        };
        let mut added = Vec::with_capacity(n);
        for _ in 0..n {
            let id = fresh_id(&mut self.rng, &self.by_id);
            let pay = at - Duration::seconds(self.rng.random_range(0..=5));
            let entry = draw_order(&mut self.rng, &self.pids, id, pay, PAY_SUCC, &caps);
            added.push(entry.order.order_id.clone());
            self.insert(id, entry);
        }
        added
    }
}

impl Entry {
    /// The JSON row of this order.
    pub(crate) fn row(&self) -> Row<'_> {
        let (o, extra) = (&self.order, &self.extra);
        let settled = o.flow_point == SETTLE;
        Row {
            ads_activity_id: extra.ads_activity_id,
            ads_estimated_commission: o.ads_estimated_commission,
            // pay_goods_amount × rate/10000 × 0.1, rounded to whole fen.
            ads_estimated_tech_service_fee: tech_fee(o.pay_goods_amount, extra.promotion_rate),
            ads_fans_type: extra.ads_fans_type,
            ads_promotion_rate: extra.promotion_rate,
            ads_real_commission: o.ads_real_commission,
            author_account: &extra.author_account,
            author_buyin_id: extra.author_buyin_id.as_deref(),
            author_short_id: &extra.author_short_id,
            confirm_time: wall_text(o.confirm_time),
            distributor_right_type: extra.distributor_right_type,
            flow_point: &o.flow_point,
            item_num: o.item_num,
            material_id: extra.material_id.as_deref(),
            media_type: extra.media_type,
            order_id: &o.order_id,
            pay_goods_amount: o.pay_goods_amount,
            pay_success_time: wall_text(Some(o.pay_success_time)),
            pid_info: PidInfo {
                external_info: &extra.external_info,
                media_type_name: media_type_name(&o.distribution_type),
                pid: &o.pid,
            },
            product_activity_id: extra.product_activity_id,
            product_id: &o.product_id,
            product_img: format!(
                "https://p3-aio.ecombdimg.com/obj/ecom-shop-material/sim_{}_sx_{}_www1080-1080",
                o.product_id, extra.img
            ),
            product_name: &o.product_name,
            product_tags: ProductTags {
                has_subsidy_tag: extra.has_subsidy_tag,
                has_supermarket_tag: extra.has_supermarket_tag,
            },
            refund_time: wall_text(o.refund_time),
            settle_time: wall_text(o.settle_time),
            settled_goods_amount: if settled { o.pay_goods_amount } else { 0 },
            shop_id: extra.shop_id,
            shop_name: &o.shop_name,
            total_pay_amount: o.total_pay_amount,
            update_time: wall_text(Some(o.update_time)),
        }
    }
}

/// `pid_info.media_type_name` as the document spells it for each distribution type.
fn media_type_name(distribution_type: &str) -> &'static str {
    match distribution_type {
        LIVE => "live",
        ACTIVITY => "Activity",
        _ => "ProductDetail",
    }
}

fn matches(o: &MyqOrder, s: &Scope) -> bool {
    s.query_order_type == 0
        && s.distribution_type.is_none_or(|d| o.distribution_type == d)
        && s.pid.as_deref().is_none_or(|p| o.pid == p)
}

fn fresh_id(rng: &mut ChaCha8Rng, taken: &HashMap<u64, usize>) -> u64 {
    loop {
        let id = rng.random_range(ORDER_IDS);
        if !taken.contains_key(&id) {
            return id;
        }
    }
}

/// Shop `i`'s id: every third one above 2^53 (odd, so a float cannot hold it), the rest 7 digits.
fn shop_id(i: usize) -> u64 {
    let i = i as u64;
    if i % 3 == 2 {
        BIG_SHOP_BASE + 7_918 * i
    } else {
        6_800_000 + 12_170 * i
    }
}

/// A new order in state `flow`, paid at `pay`; later events fall in `(pay, caps.event]`.
fn draw_order(
    rng: &mut ChaCha8Rng,
    pids: &[String],
    id: u64,
    pay: NaiveDateTime,
    flow: &str,
    caps: &Caps,
) -> Entry {
    let distribution = match rng.random_range(0..100) {
        0..=39 => LIVE,
        40..=84 => PRODUCT_DETAIL,
        _ => ACTIVITY,
    };
    let product_id = rng.random_range(PRODUCT_IDS).to_string();
    let product_name = names::product(rng);
    let shop = rng.random_range(0..names::shop_count());
    let pid = pids
        .get(rng.random_range(0..pids.len().max(1)))
        .cloned()
        .unwrap_or_default();
    let item_num = if rng.random_bool(0.7) {
        1
    } else {
        rng.random_range(2..=5)
    };
    let total_pay_amount: i64 = rng.random_range(100..=50_000);
    let pay_goods_amount = if rng.random_bool(0.7) {
        total_pay_amount
    } else {
        total_pay_amount + rng.random_range(1..=(total_pay_amount / 10).max(1))
    };
    let promotion_rate: i64 = rng.random_range(50..=3_000);
    let ads_estimated_commission = commission(pay_goods_amount, promotion_rate);

    let room = |from: NaiveDateTime| (caps.event - from).num_seconds().max(0);
    let (mut refund_time, mut confirm_time, mut settle_time) = (None, None, None);
    let mut ads_real_commission = 0;
    match flow {
        REFUND => {
            let d = rng.random_range(600..=7 * 86_400).min(room(pay));
            refund_time = Some(pay + Duration::seconds(d));
        }
        CONFIRM | SETTLE => {
            // Strictly after payment when there is room, and leaving room for a settlement.
            let after_pay = room(pay);
            let d = rng
                .random_range(3_600..=15 * 86_400)
                .min(after_pay * 3 / 5)
                .max(after_pay.min(1));
            let confirm = pay + Duration::seconds(d);
            confirm_time = Some(confirm);
            if flow == SETTLE {
                let d = rng.random_range(86_400..=20 * 86_400).min(room(confirm));
                settle_time = Some(confirm + Duration::seconds(d));
                ads_real_commission = real_commission(rng, ads_estimated_commission);
            }
        }
        _ => {}
    }
    let latest = [refund_time, confirm_time, settle_time]
        .into_iter()
        .flatten()
        .fold(pay, NaiveDateTime::max);
    let update_time = (latest + Duration::seconds(rng.random_range(0..=30)))
        .min(caps.update)
        .max(latest);

    let live = distribution == LIVE;
    let activity = distribution == ACTIVITY;
    let extra = Extra {
        shop_id: shop_id(shop),
        promotion_rate,
        external_info: names::external_info(rng),
        author_account: if live {
            names::author(rng)
        } else {
            String::new()
        },
        author_buyin_id: live.then(|| {
            rng.random_range(1_000_000_000_000_000u64..7_000_000_000_000_000)
                .to_string()
        }),
        author_short_id: if live {
            rng.random_range(10_000_000u64..99_999_999_999).to_string()
        } else {
            "0".to_string()
        },
        ads_fans_type: live.then(|| {
            if rng.random_bool(0.3) {
                "新粉"
            } else {
                "老粉"
            }
        }),
        media_type: match distribution {
            LIVE => Some("live"),
            PRODUCT_DETAIL => Some(["shop_list", "video", "others"][rng.random_range(0..3)]),
            _ => None,
        },
        material_id: activity.then(|| rng.random_range(1_000_000u64..10_000_000).to_string()),
        ads_activity_id: if activity {
            rng.random_range(1_000..=1_001)
        } else {
            0
        },
        product_activity_id: if activity { "1" } else { "0" },
        distributor_right_type: if rng.random_bool(0.1) {
            "ColonelExclusiveCoupon"
        } else {
            ""
        },
        has_subsidy_tag: rng.random_bool(0.1),
        has_supermarket_tag: rng.random_bool(0.05),
        img: rng.random_range(0..1_000_000),
    };
    Entry {
        order: MyqOrder {
            order_id: id.to_string(),
            product_id,
            product_name,
            shop_id: shop_id(shop).to_string(),
            shop_name: names::shop_name(shop).to_string(),
            item_num,
            total_pay_amount,
            pay_goods_amount,
            ads_estimated_commission,
            ads_real_commission,
            flow_point: flow.to_string(),
            pay_success_time: pay,
            update_time,
            refund_time,
            settle_time,
            confirm_time,
            distribution_type: distribution.to_string(),
            pid,
        },
        extra,
    }
}

/// The estimated commission after the 10% tech fee: pay_goods × rate/10000 × 0.9, whole fen
/// (rounded down), at least 1.
fn commission(pay_goods: i64, rate: i64) -> i64 {
    (pay_goods * rate * 9 / 100_000).max(1)
}

/// The tech service fee: pay_goods × rate/10000 × 0.1, rounded to whole fen.
fn tech_fee(pay_goods: i64, rate: i64) -> i64 {
    (pay_goods * rate + 50_000) / 100_000
}

/// What settles: usually the estimate exactly, sometimes a little less; at least 1 fen.
fn real_commission(rng: &mut ChaCha8Rng, estimated: i64) -> i64 {
    if rng.random_bool(0.8) || estimated <= 1 {
        return estimated.max(1);
    }
    (estimated - rng.random_range(0..=estimated / 10)).max(1)
}

#[cfg(test)]
mod tests;
