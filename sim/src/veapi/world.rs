//! The veapi world: every order the simulator knows, its paging indexes, and how orders change.
//!
//! Invariants: order ids are unique 19-digit numbers above 2^53 + 1; for every order
//! `pay_success_time <= confirm/refund <= settle <= update_time`; the `by_pay` and `by_update`
//! indexes always hold exactly one `(unix seconds, id)` key per order, so paging by keyset is a range
//! scan. Generation depends only on the config's seed, size and `now`; [`World::mutate`] and
//! [`World::add_orders`] draw from a second RNG stream of the same seed, so a call sequence replays
//! identically.

use std::collections::{BTreeSet, HashMap};

use chrono::{Duration, NaiveDateTime};
use rand::seq::index;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::query::{Key, TimeType, Window};
use super::{VeOrder, VeapiSimConfig};
use crate::time::{to_unix, truncate, unix_text};
use crate::{keyset, names, Mutation};

const PAY_SUCC: &str = "PAY_SUCC";
const CONFIRM: &str = "CONFIRM";
const SETTLE: &str = "SETTLE";
const REFUND: &str = "REFUND";

/// Order and product ids are drawn from these 19-digit ranges (all far above 2^53).
const ORDER_IDS: std::ops::Range<u64> = 4_900_000_000_000_000_000..6_999_999_999_999_999_999;
const PRODUCT_IDS: std::ops::Range<u64> = 3_000_000_000_000_000_000..3_799_999_999_999_999_999;
/// Distinguishes the mutation RNG stream from the generation stream of the same seed.
const MUTATION_STREAM: u64 = 0x6d75_7461_7465_2121;
const MAX_DAYS: i64 = 36_500;

const LIVE: &str = "Live";
const PRODUCT_DETAIL: &str = "ProductDetail";
const ACTIVITY: &str = "ActivityMaterial";

pub(crate) struct World {
    /// Orders in creation order (generation, then additions).
    orders: Vec<VeOrder>,
    ids: Vec<u64>,
    by_id: HashMap<u64, usize>,
    by_pay: BTreeSet<Key>,
    by_update: BTreeSet<Key>,
    rng: ChaCha8Rng,
    app_id: String,
}

/// One order as the API sends it: every value a string, in the document's field order.
#[derive(Serialize)]
pub(crate) struct Row {
    order_id: String,
    app_id: String,
    product_id: String,
    product_name: String,
    author_account: String,
    ads_attribution: String,
    product_img: String,
    total_pay_amount: String,
    pay_success_time: String,
    refund_time: String,
    pay_goods_amount: String,
    estimated_commission: String,
    ads_real_commission: String,
    split_rate: String,
    after_sales_status: String,
    flow_point: String,
    settle_time: String,
    confirm_time: String,
    update_time: String,
    estimated_tech_service_fee: String,
    external_info: String,
    media_type_name: String,
    pid: String,
    shop_id: String,
    shop_name: String,
    item_num: String,
    material_id: String,
}

/// The latest an event may be, and the latest an `update_time` may be, for a new order.
struct Caps {
    event: NaiveDateTime,
    update: NaiveDateTime,
}

impl World {
    pub(crate) fn generate(cfg: &VeapiSimConfig) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let now = truncate(cfg.now);
        let latest_pay = now - Duration::hours(1);
        let span = (cfg.days.clamp(0, MAX_DAYS) * 86_400 - 3_600).max(0);
        let caps = Caps {
            event: now - Duration::minutes(6),
            update: now - Duration::minutes(5),
        };
        let mut world = World {
            orders: Vec::with_capacity(cfg.orders),
            ids: Vec::with_capacity(cfg.orders),
            by_id: HashMap::with_capacity(cfg.orders),
            by_pay: BTreeSet::new(),
            by_update: BTreeSet::new(),
            app_id: rng.random_range(5_000_000..6_000_000u32).to_string(),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ MUTATION_STREAM),
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
            let order = draw_order(&mut rng, id, pay, flow, &caps);
            world.insert(id, order);
        }
        world
    }

    fn insert(&mut self, id: u64, order: VeOrder) {
        self.by_pay.insert((to_unix(order.pay_success_time), id));
        self.by_update.insert((to_unix(order.update_time), id));
        self.by_id.insert(id, self.orders.len());
        self.ids.push(id);
        self.orders.push(order);
    }

    /// Every order upstream still has, sorted by id.
    pub(crate) fn truth(&self) -> Vec<VeOrder> {
        let mut all: Vec<VeOrder> = (0..self.orders.len())
            .filter(|&i| self.present(i))
            .map(|i| self.orders[i].clone())
            .collect();
        all.sort_by(|a, b| a.order_id.cmp(&b.order_id));
        all
    }

    /// One page of `w`: up to `size` orders after `w.after`, and the key of the last one if more follow.
    pub(crate) fn page(&self, w: &Window) -> (Vec<&VeOrder>, Option<Key>) {
        let s = w.scope;
        let index = match s.time_type {
            TimeType::Pay => &self.by_pay,
            TimeType::Update => &self.by_update,
        };
        keyset::page(index, s.start, s.end, w.after, w.size, |id| {
            let order = self.by_id.get(&id).map(|&i| &self.orders[i])?;
            matches_type(order, s.order_type).then_some(order)
        })
    }

    /// The orders among `ids` that exist, in the order asked (each once).
    pub(crate) fn by_ids(&self, ids: &[String]) -> Vec<&VeOrder> {
        let mut seen = Vec::new();
        for id in ids {
            let Ok(n) = id.parse::<u64>() else { continue };
            if seen.contains(&n) {
                continue;
            }
            seen.push(n);
        }
        seen.iter()
            .filter_map(|n| self.by_id.get(n).map(|&i| &self.orders[i]))
            .collect()
    }

    /// Whether the order at `i` has not been withdrawn: a withdrawn order keeps its slot in
    /// `orders` (the indexes of the others stay valid) but leaves every index a query reads.
    fn present(&self, i: usize) -> bool {
        self.by_id.contains_key(&self.ids[i])
    }

    /// See [`super::VeapiSim::withdraw`].
    pub(crate) fn withdraw(
        &mut self,
        n: usize,
        updated_between: (NaiveDateTime, NaiveDateTime),
    ) -> Vec<String> {
        let (from, to) = updated_between;
        let eligible: Vec<usize> = (0..self.orders.len())
            .filter(|&i| {
                let t = self.orders[i].update_time;
                self.present(i) && from <= t && t < to
            })
            .collect();
        let mut chosen: Vec<usize> =
            index::sample(&mut self.rng, eligible.len(), n.min(eligible.len()))
                .into_iter()
                .map(|j| eligible[j])
                .collect();
        chosen.sort_unstable();
        chosen
            .into_iter()
            .map(|i| {
                let id = self.ids[i];
                let o = &self.orders[i];
                self.by_pay.remove(&(to_unix(o.pay_success_time), id));
                self.by_update.remove(&(to_unix(o.update_time), id));
                self.by_id.remove(&id);
                o.order_id.clone()
            })
            .collect()
    }

    /// See [`super::VeapiSim::mutate`].
    pub(crate) fn mutate(&mut self, n: usize, at: NaiveDateTime) -> Vec<Mutation> {
        let at = truncate(at);
        let movable: Vec<usize> = (0..self.orders.len())
            .filter(|&i| {
                let o = &self.orders[i];
                (o.flow_point == PAY_SUCC || o.flow_point == CONFIRM)
                    && o.update_time < at
                    && self.present(i)
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
            let to = match self.orders[i].flow_point.as_str() {
                PAY_SUCC if self.rng.random_range(0..100) < 20 => REFUND,
                PAY_SUCC => CONFIRM,
                _ => SETTLE,
            };
            let real = real_commission(&mut self.rng, &self.orders[i].estimated_commission);
            let o = &mut self.orders[i];
            let from = std::mem::replace(&mut o.flow_point, to.to_string());
            match to {
                REFUND => {
                    o.refund_time = Some(at);
                    o.after_sales_status = 2;
                }
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
                let est = hundredths(&self.orders[i].estimated_commission);
                let delta = self.rng.random_range(1..=(est / 10).max(50));
                let revised = if est > delta && self.rng.random_bool(0.5) {
                    est - delta
                } else {
                    est + delta
                };
                let o = &mut self.orders[i];
                o.estimated_commission = decimal(revised);
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
        let o = &mut self.orders[i];
        self.by_update.remove(&(to_unix(o.update_time), id));
        o.update_time = at;
        self.by_update.insert((to_unix(at), id));
    }

    /// See [`super::VeapiSim::add_orders`].
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
            let order = draw_order(&mut self.rng, id, pay, PAY_SUCC, &caps);
            added.push(order.order_id.clone());
            self.insert(id, order);
        }
        added
    }

    /// The JSON row for `o`. Fields the ground truth does not carry are derived from the order id.
    pub(crate) fn row(&self, o: &VeOrder) -> Row {
        let h = fnv(&o.order_id);
        Row {
            order_id: o.order_id.clone(),
            app_id: self.app_id.clone(),
            product_id: o.product_id.clone(),
            product_name: o.product_name.clone(),
            author_account: o.author_account.clone(),
            ads_attribution: ["", "intersect", "directIn"][(h % 3) as usize].to_string(),
            product_img: format!(
                "https://p3-aio.ecombdimg.com/obj/ecom-shop-material/sim_{}_sx_{}_www800-800",
                o.product_id,
                h % 1_000_000
            ),
            total_pay_amount: o.total_pay_amount.to_string(),
            pay_success_time: unix_text(Some(o.pay_success_time)),
            refund_time: unix_text(o.refund_time),
            pay_goods_amount: o.pay_goods_amount.to_string(),
            estimated_commission: o.estimated_commission.clone(),
            ads_real_commission: o.ads_real_commission.clone(),
            split_rate: o.split_rate.to_string(),
            after_sales_status: o.after_sales_status.to_string(),
            flow_point: o.flow_point.clone(),
            settle_time: unix_text(o.settle_time),
            confirm_time: unix_text(o.confirm_time),
            update_time: unix_text(Some(o.update_time)),
            // pay_goods_amount × split_rate/10000 × 0.1, whole fen.
            estimated_tech_service_fee: (o.pay_goods_amount * o.split_rate / 100_000).to_string(),
            external_info: o.external_info.clone(),
            media_type_name: o.media_type_name.clone(),
            pid: o.pid.clone(),
            shop_id: o.shop_id.clone(),
            shop_name: o.shop_name.clone(),
            item_num: o.item_num.to_string(),
            material_id: if o.media_type_name == ACTIVITY {
                (1_000_000 + h % 9_000_000).to_string()
            } else {
                String::new()
            },
        }
    }
}

fn matches_type(o: &VeOrder, order_type: u8) -> bool {
    match order_type {
        1 => o.media_type_name == PRODUCT_DETAIL,
        2 => o.media_type_name == LIVE,
        3 => o.media_type_name == ACTIVITY,
        _ => true,
    }
}

fn fresh_id(rng: &mut ChaCha8Rng, taken: &HashMap<u64, usize>) -> u64 {
    loop {
        let id = rng.random_range(ORDER_IDS);
        if !taken.contains_key(&id) {
            return id;
        }
    }
}

/// A new order in state `flow`, paid at `pay`; later events fall in `(pay, caps.event]`.
fn draw_order(
    rng: &mut ChaCha8Rng,
    id: u64,
    pay: NaiveDateTime,
    flow: &str,
    caps: &Caps,
) -> VeOrder {
    let media = match rng.random_range(0..100) {
        0..=39 => LIVE,
        40..=84 => PRODUCT_DETAIL,
        _ => ACTIVITY,
    };
    let product_id = rng.random_range(PRODUCT_IDS).to_string();
    let product_name = names::product(rng);
    let shop = rng.random_range(0..names::shop_count());
    let author_account = if media == LIVE {
        names::author(rng)
    } else {
        String::new()
    };
    let pid = format!(
        "dy_{}_{}_{}",
        rng.random_range(100_000_000_000_000_000_000u128..999_999_999_999_999_999_999),
        rng.random_range(10_000..100_000),
        rng.random_range(10_000_000..100_000_000)
    );
    let external_info = names::external_info(rng);
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
    let split_rate: i64 = rng.random_range(5..=3_000);
    let estimated_commission = estimated_commission(rng, pay_goods_amount, split_rate);

    let room = |from: NaiveDateTime| (caps.event - from).num_seconds().max(0);
    let mut after_sales_status = 1;
    let (mut refund_time, mut confirm_time, mut settle_time) = (None, None, None);
    let mut ads_real_commission = "0".to_string();
    match flow {
        REFUND => {
            let d = rng.random_range(600..=7 * 86_400).min(room(pay));
            refund_time = Some(pay + Duration::seconds(d));
            after_sales_status = 2;
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
                ads_real_commission = real_commission(rng, &estimated_commission);
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

    VeOrder {
        order_id: id.to_string(),
        product_id,
        product_name,
        shop_id: (141_486_248 + 7_919 * shop as i64).to_string(),
        shop_name: names::shop_name(shop).to_string(),
        author_account,
        media_type_name: media.to_string(),
        pid,
        external_info,
        item_num,
        total_pay_amount,
        pay_goods_amount,
        estimated_commission,
        ads_real_commission,
        split_rate,
        flow_point: flow.to_string(),
        after_sales_status,
        pay_success_time: pay,
        refund_time,
        settle_time,
        confirm_time,
        update_time,
    }
}

/// Commission after the 10% tech fee, in fen, written with 0, 1 or 2 fraction digits; a good share
/// are exact halves (`"12.5"`, `"0.5"`) to exercise round-half-up.
fn estimated_commission(rng: &mut ChaCha8Rng, pay_goods: i64, split_rate: i64) -> String {
    // Hundredths of a fen: pay_goods × rate/10000 × 0.9 × 100.
    let exact = pay_goods * split_rate * 9 / 1_000;
    let hundredths = match rng.random_range(0..100) {
        0..=2 => 50,
        3..=4 => rng.random_range(1..100),
        5..=29 => exact / 100 * 100,
        30..=49 => exact / 100 * 100 + 50,
        50..=74 => exact / 10 * 10,
        _ => exact,
    };
    decimal(hundredths)
}

/// What settles: usually the estimate exactly, sometimes a little less.
fn real_commission(rng: &mut ChaCha8Rng, estimated: &str) -> String {
    let est = hundredths(estimated);
    if rng.random_bool(0.8) || est == 0 {
        return decimal(est.max(1));
    }
    decimal((est - rng.random_range(0..=est / 10)).max(1))
}

/// Hundredths of a fen as decimal text with the fewest fraction digits: 1250 → "12.5", 700 → "7".
fn decimal(hundredths: i64) -> String {
    let (int, frac) = (hundredths / 100, hundredths % 100);
    if frac == 0 {
        int.to_string()
    } else if frac % 10 == 0 {
        format!("{int}.{}", frac / 10)
    } else {
        format!("{int}.{frac:02}")
    }
}

/// Reads back what [`decimal`] wrote (0 for anything else).
fn hundredths(text: &str) -> i64 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let int: i64 = int.parse().unwrap_or(0);
    let frac = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().unwrap_or(0) * 10,
        _ => frac.get(..2).and_then(|f| f.parse().ok()).unwrap_or(0),
    };
    int * 100 + frac
}

/// FNV-1a, for stable per-order derived fields.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_have_the_fewest_fraction_digits_and_read_back() {
        for (h, text) in [
            (1250, "12.5"),
            (700, "7"),
            (325, "3.25"),
            (50, "0.5"),
            (5, "0.05"),
            (0, "0"),
        ] {
            assert_eq!(decimal(h), text);
            assert_eq!(hundredths(text), h);
        }
    }
}
