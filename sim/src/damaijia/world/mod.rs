//! The damaijia world: one shop's orders with their SKU lines, the search over them, and how
//! they change — by [`World::mutate`], [`World::add_orders`] and the page drift scheduled with
//! [`World::schedule_drift`].
//!
//! Invariants: order ids are unique 19-digit numbers; a single-line order's `sku_order_id` is its
//! `order_id` (as in the document's sample), the lines of a multi-line order have fresh ids, and no
//! two lines anywhere share one. Product ids are odd 19-digit numbers above 2^53, so no float holds
//! one; SKU ids are below 2^53. For every order `create ≤ pay ≤ ship ≤ finish ≤ update`, and its
//! `pay_amount` is the sum of its lines'. The `by_create` and `by_update` indexes hold exactly one
//! `(unix seconds, id)` key per order, so a search is a range scan in sort order. Generation depends
//! only on the config's seed, size and `now`; changes draw from a second RNG stream of the same
//! seed, so a call sequence replays identically (a drift `Touch` also reads the real clock).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{Duration, NaiveDateTime};
use rand::seq::index;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::query::Query;
use super::{DamaijiaSimConfig, DmjOrder};
use crate::time::{to_unix, truncate};
use crate::{names, Mutation};

mod draw;
mod drift;
mod search;
#[cfg(test)]
mod tests;

use draw::{
    draw_entry, draw_product, fresh_id, line_count, plan_times, Caps, Ctx, Draft, Plan, Product,
    Times,
};
use drift::Pending;

/// The `order_status` values the document's shop orders take.
pub(crate) mod status {
    pub(crate) const UNPAID: i64 = 1;
    pub(crate) const PAID: i64 = 105;
    pub(crate) const PREPARING: i64 = 2;
    pub(crate) const PART_SHIPPED: i64 = 101;
    pub(crate) const SHIPPED: i64 = 3;
    pub(crate) const CLOSED: i64 = 4;
    pub(crate) const DONE: i64 = 5;

    /// `order_status_desc`.
    pub(crate) fn desc(status: i64) -> &'static str {
        match status {
            UNPAID => "待支付",
            PAID => "已支付",
            PREPARING => "备货中",
            PART_SHIPPED => "部分发货",
            SHIPPED => "已发货",
            CLOSED => "已关闭",
            DONE => "已完成",
            _ => "未知",
        }
    }

    /// Whether an order in this status can still move on.
    pub(crate) fn open(status: i64) -> bool {
        matches!(status, UNPAID | PAID | PREPARING | PART_SHIPPED | SHIPPED)
    }
}

/// `after_sale_info.refund_status` of a refunded line.
pub(crate) const REFUND_SUCCEEDED: i64 = 3;
/// `after_sale_info.after_sale_status` of a finished after-sale.
const AFTER_SALE_DONE: i64 = 12;
/// `after_sale_type`: 0 售后退货退款, 2 售前退款.
const RETURN_AND_REFUND: i64 = 0;
const REFUND_BEFORE_SHIPPING: i64 = 2;

/// Distinguish this world's streams from another simulator's world of the same seed.
const WORLD_STREAM: u64 = 0x6461_6d61_696a_6961;
const CHANGE_STREAM: u64 = 0x6368_616e_6765_7321;
const MAX_DAYS: i64 = 36_500;
const PRODUCTS: usize = 40;
/// An unpaid order is cancelled this long after it was placed (`order_expire_time`).
pub(crate) const EXPIRE_SECS: i64 = 1_800;

/// A position in a sort order: (unix seconds of the sort time, order id).
pub(crate) type Key = (i64, u64);

/// The receiving regions: (province, city, district, street), each `(id, name)`.
pub(crate) type Region = [(&'static str, &'static str); 4];
pub(crate) const REGIONS: [Region; 8] = [
    [
        ("33", "浙江省"),
        ("330100", "杭州市"),
        ("330106", "西湖区"),
        ("330106006", "翠苑街道"),
    ],
    [
        ("11", "北京市"),
        ("110100", "市辖区"),
        ("110108", "海淀区"),
        ("110108013", "中关村街道"),
    ],
    [
        ("44", "广东省"),
        ("440300", "深圳市"),
        ("440305", "南山区"),
        ("440305007", "粤海街道"),
    ],
    [
        ("31", "上海市"),
        ("310100", "市辖区"),
        ("310115", "浦东新区"),
        ("310115005", "陆家嘴街道"),
    ],
    [
        ("51", "四川省"),
        ("510100", "成都市"),
        ("510107", "武侯区"),
        ("510107006", "玉林街道"),
    ],
    [
        ("42", "湖北省"),
        ("420100", "武汉市"),
        ("420111", "洪山区"),
        ("420111005", "关山街道"),
    ],
    [
        ("32", "江苏省"),
        ("320100", "南京市"),
        ("320106", "鼓楼区"),
        ("320106005", "湖南路街道"),
    ],
    [
        ("41", "河南省"),
        ("410100", "郑州市"),
        ("410105", "金水区"),
        ("410105010", "花园路街道"),
    ],
];

/// Couriers: (code, name, tracking number prefix).
pub(crate) const COURIERS: [(&str, &str, &str); 3] = [
    ("shunfeng", "顺丰速运", "SF"),
    ("yuantong", "圆通速递", "YT"),
    ("zhongtong", "中通快递", "ZT"),
];

/// What the API sends about an order that the ground truth does not carry.
pub(crate) struct OrderExtra {
    /// Amounts and times of this order (and its lines) go out as decimal strings.
    pub(crate) stringly: bool,
    pub(crate) ship_time: Option<NaiveDateTime>,
    /// Index into [`REGIONS`].
    pub(crate) region: usize,
    pub(crate) buyer_words: &'static str,
    pub(crate) seller_words: &'static str,
    pub(crate) seller_remark_stars: i64,
    pub(crate) b_type: i64,
    pub(crate) sub_b_type: i64,
    pub(crate) pay_type: i64,
    /// Sent once paid.
    pub(crate) channel_payment_no: String,
    pub(crate) doudian_open_id: String,
    pub(crate) encrypt_post_tel: String,
    pub(crate) encrypt_post_receiver: String,
    pub(crate) encrypt_detail: String,
    /// Index into [`COURIERS`]; the tracking number is sent once shipped.
    pub(crate) courier: usize,
    pub(crate) tracking_no: String,
    pub(crate) cancel_reason: &'static str,
}

/// What the API sends about a line that the ground truth does not carry.
pub(crate) struct LineExtra {
    /// Fen: unit price × `item_num` less the shop's discount; at least the line's `pay_amount`.
    pub(crate) order_amount: i64,
    /// Fen: the unit price.
    pub(crate) origin_amount: i64,
    pub(crate) spec: (&'static str, &'static str),
    pub(crate) cids: [i64; 3],
    pub(crate) pic: u32,
    pub(crate) after_sale_status: i64,
    pub(crate) after_sale_type: i64,
    pub(crate) ship_time: Option<NaiveDateTime>,
    /// The streamer who sold it (id, name), for a live-room sale.
    pub(crate) author: Option<(u64, String)>,
    pub(crate) room_id: u64,
}

/// One order: the ground truth and the rest of its row; `lines[i]` goes with `order.lines[i]`.
pub(crate) struct Entry {
    pub(crate) order: DmjOrder,
    pub(crate) extra: OrderExtra,
    pub(crate) lines: Vec<LineExtra>,
}

pub(crate) struct World {
    seed: u64,
    shop_id: String,
    shop_name: String,
    /// Orders in creation order (generation, then additions).
    entries: Vec<Entry>,
    by_id: HashMap<u64, usize>,
    /// Every order id and line id in use.
    taken: HashSet<u64>,
    by_create: BTreeSet<Key>,
    by_update: BTreeSet<Key>,
    catalogue: Vec<Product>,
    /// Draws every change.
    rng: ChaCha8Rng,
    pending: Vec<Pending>,
    drift_log: Vec<String>,
    /// The last query's matches (its page and size zeroed) while the world has not changed since:
    /// a scan asks the same query page after page, and matching a million orders for each page
    /// made a million-order world take hours.
    last_matches: RefCell<Option<(Query, Vec<u64>)>>,
    /// The orders served whole so far by the scan in progress, in the order served: what a
    /// `Touch` or `Lag` drift moves. A scan is the run of requests that differ only in their
    /// page and in where their update window starts (an offset reader moves the page, a key
    /// reader the start); any other request starts a new one.
    served: RefCell<(Option<Query>, Vec<u64>)>,
}

impl World {
    pub(crate) fn generate(cfg: &DamaijiaSimConfig) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ WORLD_STREAM);
        let now = truncate(cfg.now);
        let latest_create = now - Duration::hours(1);
        let span = (cfg.days.clamp(0, MAX_DAYS) * 86_400 - 3_600).max(0);
        let caps = Caps {
            event: now - Duration::minutes(6),
            update: now - Duration::minutes(5),
        };
        let catalogue = (0..PRODUCTS).map(|_| draw_product(&mut rng)).collect();
        let mut world = World {
            seed: cfg.seed,
            shop_id: cfg.shop_id.clone(),
            shop_name: names::shop_name(cfg.seed as usize).to_string(),
            entries: Vec::with_capacity(cfg.orders),
            by_id: HashMap::with_capacity(cfg.orders),
            taken: HashSet::with_capacity(cfg.orders * 2),
            by_create: BTreeSet::new(),
            by_update: BTreeSet::new(),
            catalogue,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ WORLD_STREAM ^ CHANGE_STREAM),
            pending: Vec::new(),
            drift_log: Vec::new(),
            last_matches: RefCell::new(None),
            served: RefCell::new((None, Vec::new())),
        };
        for _ in 0..cfg.orders {
            let id = fresh_id(&mut rng, &mut world.taken);
            let create = latest_create - Duration::seconds(rng.random_range(0..=span));
            let lines = line_count(&mut rng);
            let plan = match rng.random_range(0..100) {
                0..=2 => Plan::Unpaid,
                3..=10 => Plan::Paid,
                11..=27 => Plan::Preparing,
                28..=52 if lines > 1 && rng.random_bool(0.25) => Plan::PartShipped,
                28..=52 => Plan::Shipped,
                53..=87 => Plan::Done,
                88..=96 => Plan::Refunded,
                _ => Plan::Cancelled,
            };
            let partial_refund =
                matches!(plan, Plan::Shipped | Plan::Done) && lines > 1 && rng.random_bool(0.15);
            let times = plan_times(&mut rng, plan, create, partial_refund, &caps);
            let draft = Draft {
                id,
                plan,
                times,
                lines,
                partial_refund,
            };
            world.build(&mut rng, draft);
        }
        world
    }

    /// Builds the order `draft` describes (drawing its lines and the rest from `rng`) and adds it.
    fn build(&mut self, rng: &mut ChaCha8Rng, draft: Draft) {
        self.changed();
        let serial = self.entries.len() as u64 + 1;
        let entry = draw_entry(
            rng,
            &Ctx {
                catalogue: &self.catalogue,
                shop_id: &self.shop_id,
                shop_name: &self.shop_name,
                seed: self.seed,
            },
            &mut self.taken,
            serial,
            draft,
        );
        let id = self.ids_of(&entry);
        self.by_create
            .insert((to_unix(entry.order.create_time), id));
        self.by_update
            .insert((to_unix(entry.order.update_time), id));
        self.by_id.insert(id, self.entries.len());
        self.entries.push(entry);
    }

    /// The numeric id of an order (always valid: the world made it).
    fn ids_of(&self, entry: &Entry) -> u64 {
        entry.order.order_id.parse().unwrap_or_default()
    }

    fn order(&self, id: u64) -> Option<&DmjOrder> {
        self.by_id.get(&id).map(|&i| &self.entries[i].order)
    }

    /// Every order, sorted by id.
    pub(crate) fn truth(&self) -> Vec<DmjOrder> {
        let mut all: Vec<DmjOrder> = self.entries.iter().map(|e| e.order.clone()).collect();
        all.sort_by(|a, b| a.order_id.cmp(&b.order_id));
        all
    }

    /// Every plain PII value of every order, sorted and deduplicated.
    pub(crate) fn pii_values(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .entries
            .iter()
            .flat_map(|e| {
                let o = &e.order;
                [
                    o.post_tel.clone(),
                    o.post_receiver.clone(),
                    o.address_detail.clone(),
                    o.id_card_no.clone(),
                    o.id_card_name.clone(),
                ]
            })
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// See [`super::DamaijiaSim::mutate`].
    pub(crate) fn mutate(&mut self, n: usize, at: NaiveDateTime) -> Vec<Mutation> {
        self.changed();
        let at = truncate(at);
        let movable: Vec<usize> = (0..self.entries.len())
            .filter(|&i| {
                let o = &self.entries[i].order;
                status::open(o.order_status) && o.update_time < at
            })
            .collect();
        let picks = n.min(movable.len());
        let mut chosen: Vec<usize> = index::sample(&mut self.rng, movable.len(), picks)
            .into_iter()
            .map(|j| movable[j])
            .collect();
        // Apply in index order so the result does not depend on the sampler's output order.
        chosen.sort_unstable();
        chosen
            .into_iter()
            .filter_map(|i| self.advance(i, at))
            .collect()
    }

    /// See [`super::DamaijiaSim::add_orders`].
    pub(crate) fn add_orders(&mut self, n: usize, at: NaiveDateTime) -> Vec<String> {
        self.changed();
        let at = truncate(at);
        let mut rng = self.rng.clone();
        let mut added = Vec::with_capacity(n);
        for _ in 0..n {
            let id = fresh_id(&mut rng, &mut self.taken);
            let create = at - Duration::seconds(rng.random_range(1..=5));
            let pay = create + Duration::seconds(rng.random_range(0..=(at - create).num_seconds()));
            let lines = line_count(&mut rng);
            let draft = Draft {
                id,
                plan: Plan::Paid,
                times: Times::paid(create, pay, pay),
                lines,
                partial_refund: false,
            };
            self.build(&mut rng, draft);
            added.push(id.to_string());
        }
        self.rng = rng;
        added
    }

    /// Moves order `i` one status step at `at` (see [`super::DamaijiaSim::mutate`]); `None` if it
    /// cannot move.
    fn advance(&mut self, i: usize, at: NaiveDateTime) -> Option<Mutation> {
        self.changed();
        let from = self.entries[i].order.order_status;
        let live = |e: &Entry| {
            e.order
                .lines
                .iter()
                .filter(|l| l.order_status != status::CLOSED)
                .count()
        };
        let to = match from {
            status::UNPAID => status::PAID,
            status::PAID if self.rng.random_range(0..100) < 15 => status::CLOSED,
            status::PAID => status::PREPARING,
            status::PREPARING => match self.rng.random_range(0..100) {
                0..=9 => status::CLOSED,
                10..=34 if live(&self.entries[i]) > 1 => status::PART_SHIPPED,
                _ => status::SHIPPED,
            },
            status::PART_SHIPPED => status::SHIPPED,
            status::SHIPPED => status::DONE,
            _ => return None,
        };
        let e = &mut self.entries[i];
        let o = &mut e.order;
        let lines = o.lines.iter_mut().zip(e.lines.iter_mut());
        match to {
            status::PAID => {
                o.pay_time = Some(at);
                lines.for_each(|(l, _)| l.order_status = status::PAID);
            }
            status::CLOSED => {
                e.extra.cancel_reason = "不想要了";
                for (l, x) in lines {
                    l.order_status = status::CLOSED;
                    l.refund_status = REFUND_SUCCEEDED;
                    x.after_sale_status = AFTER_SALE_DONE;
                    x.after_sale_type = REFUND_BEFORE_SHIPPING;
                }
            }
            status::PART_SHIPPED => {
                e.extra.ship_time.get_or_insert(at);
                if let Some((l, x)) = lines
                    .filter(|(l, _)| l.order_status != status::CLOSED)
                    .find(|(l, _)| l.order_status != status::SHIPPED)
                {
                    l.order_status = status::SHIPPED;
                    x.ship_time = Some(at);
                }
            }
            _ => {
                // PREPARING, SHIPPED, DONE: every line still open follows the order.
                if to == status::SHIPPED {
                    e.extra.ship_time.get_or_insert(at);
                }
                if to == status::DONE {
                    o.finish_time = Some(at);
                }
                for (l, x) in lines.filter(|(l, _)| l.order_status != status::CLOSED) {
                    l.order_status = to;
                    if to == status::SHIPPED {
                        x.ship_time.get_or_insert(at);
                    }
                }
            }
        }
        o.order_status = to;
        let change = Mutation {
            order_id: o.order_id.clone(),
            from: from.to_string(),
            to: to.to_string(),
        };
        self.set_update(i, at);
        Some(change)
    }

    /// Sets order `i`'s update time to `at`, keeping the index in step.
    fn set_update(&mut self, i: usize, at: NaiveDateTime) {
        self.changed();
        let id = self.ids_of(&self.entries[i]);
        let o = &mut self.entries[i].order;
        self.by_update.remove(&(to_unix(o.update_time), id));
        o.update_time = at;
        self.by_update.insert((to_unix(at), id));
    }
}
