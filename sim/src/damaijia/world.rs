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
use std::ops::Range;

use chrono::{Duration, NaiveDateTime};
use md5::{Digest, Md5};
use rand::seq::index;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::pii::Pii;
use super::query::{OrderBy, Query};
use super::{DamaijiaSimConfig, DmjLine, DmjOrder, Drift};
use crate::time::{to_unix, truncate, BEIJING_OFFSET};
use crate::{names, Mutation};

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

const ORDER_IDS: Range<u64> = 4_800_000_000_000_000_000..5_000_000_000_000_000_000;
const PRODUCT_IDS: Range<u64> = 3_400_000_000_000_000_000..3_700_000_000_000_000_000;
const SKU_IDS: Range<u64> = 1_700_000_000_000_000..1_800_000_000_000_000;
/// Drift-inserted ids stay 19 digits and below `i64::MAX`.
const MIN_ID: u64 = 1_000_000_000_000_000_000;
const MAX_ID: u64 = 9_199_999_999_999_999_999;
/// How far from its anchor a drift-inserted id may be.
const DRIFT_ID_SPREAD: u64 = 1_000_000_000_000_000;
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

const SPECS: [(&str, &str); 8] = [
    ("颜色", "蓝"),
    ("颜色", "米白"),
    ("规格", "500ml"),
    ("规格", "家庭装"),
    ("尺码", "XL"),
    ("口味", "原味"),
    ("随机包装", "随机包装"),
    ("套餐", "套餐一"),
];
const BUYER_WORDS: [&str; 6] = ["", "", "", "尽快发货,谢谢", "请用顺丰", "不要放快递柜"];
const SELLER_WORDS: [&str; 4] = ["", "", "已备注赠品", "VIP客户"];

struct Sku {
    id: u64,
    spec: (&'static str, &'static str),
    /// Unit price, fen.
    price: i64,
}

struct Product {
    id: u64,
    name: String,
    skus: Vec<Sku>,
    cids: [i64; 3],
    pic: u32,
}

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

/// A drift waiting for its page.
struct Pending {
    /// Whole pages still to serve before it applies.
    remaining: u64,
    drift: Drift,
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

/// How a new order stands; its `order_status` follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Unpaid,
    Paid,
    Preparing,
    PartShipped,
    Shipped,
    Done,
    /// Refunded before shipping: closed, every line refunded.
    Refunded,
    /// Not paid in time: closed.
    Cancelled,
}

impl Plan {
    fn status(self) -> i64 {
        match self {
            Plan::Unpaid => status::UNPAID,
            Plan::Paid => status::PAID,
            Plan::Preparing => status::PREPARING,
            Plan::PartShipped => status::PART_SHIPPED,
            Plan::Shipped => status::SHIPPED,
            Plan::Done => status::DONE,
            Plan::Refunded | Plan::Cancelled => status::CLOSED,
        }
    }
}

/// When a new order's events happened.
#[derive(Clone, Copy, Debug)]
struct Times {
    create: NaiveDateTime,
    pay: Option<NaiveDateTime>,
    ship: Option<NaiveDateTime>,
    finish: Option<NaiveDateTime>,
    /// Refund or cancellation of the whole order.
    closed: Option<NaiveDateTime>,
    update: NaiveDateTime,
}

impl Times {
    /// Placed and paid, nothing else yet.
    fn paid(create: NaiveDateTime, pay: NaiveDateTime, update: NaiveDateTime) -> Times {
        Times {
            create,
            pay: Some(pay),
            ship: None,
            finish: None,
            closed: None,
            update,
        }
    }
}

/// The latest an event may be, and the latest an `update_time` may be, for a new order.
struct Caps {
    event: NaiveDateTime,
    update: NaiveDateTime,
}

/// A new order to build.
struct Draft {
    id: u64,
    plan: Plan,
    times: Times,
    lines: usize,
    /// One line of a shipped multi-line order was returned and refunded.
    partial_refund: bool,
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
    fn served_in_scan(&self, q: &Query) -> Vec<u64> {
        let served = self.served.borrow();
        if served.0.as_ref() == Some(&scan_of(q)) {
            served.1.clone()
        } else {
            Vec::new()
        }
    }

    /// Forgets the cached matches: called by everything that changes an order.
    fn changed(&mut self) {
        *self.last_matches.get_mut() = None;
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

/// The Beijing wall-clock time of unix seconds, if representable.
fn from_unix(secs: i64) -> Option<NaiveDateTime> {
    chrono::DateTime::from_timestamp(secs.checked_add(BEIJING_OFFSET)?, 0).map(|t| t.naive_utc())
}

/// 1 line three times in four, up to 4.
fn line_count(rng: &mut ChaCha8Rng) -> usize {
    match rng.random_range(0..100) {
        0..=74 => 1,
        75..=89 => 2,
        90..=96 => 3,
        _ => 4,
    }
}

/// An unused id from the usual range (reserved on return).
fn fresh_id(rng: &mut ChaCha8Rng, taken: &mut HashSet<u64>) -> u64 {
    loop {
        let id = rng.random_range(ORDER_IDS);
        if taken.insert(id) {
            return id;
        }
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

/// The events of a new order in state `plan`, placed at `create`; each lies in `(previous,
/// caps.event]`, and the update time a few seconds after the last (at most `caps.update`).
fn plan_times(
    rng: &mut ChaCha8Rng,
    plan: Plan,
    create: NaiveDateTime,
    partial_refund: bool,
    caps: &Caps,
) -> Times {
    let mut step = |from: NaiveDateTime, lo: i64, hi: i64| {
        (from + Duration::seconds(rng.random_range(lo..=hi)))
            .min(caps.event)
            .max(from)
    };
    let mut t = Times {
        create,
        pay: None,
        ship: None,
        finish: None,
        closed: None,
        update: create,
    };
    let mut line_refund = None;
    match plan {
        Plan::Unpaid => {}
        Plan::Cancelled => t.closed = Some(step(create, EXPIRE_SECS, EXPIRE_SECS)),
        _ => {
            let pay = step(create, 3, 600);
            t.pay = Some(pay);
            match plan {
                Plan::Refunded => t.closed = Some(step(pay, 600, 2 * 86_400)),
                Plan::PartShipped | Plan::Shipped | Plan::Done => {
                    let ship = step(pay, 3_600, 3 * 86_400);
                    t.ship = Some(ship);
                    if plan == Plan::Done {
                        t.finish = Some(step(ship, 3 * 86_400, 12 * 86_400));
                    }
                    if partial_refund {
                        line_refund = Some(step(ship, 86_400, 5 * 86_400));
                    }
                }
                _ => {}
            }
        }
    }
    let last = [t.pay, t.ship, t.finish, t.closed, line_refund]
        .into_iter()
        .flatten()
        .fold(create, NaiveDateTime::max);
    t.update = (last + Duration::seconds(rng.random_range(0..=30)))
        .min(caps.update)
        .max(last);
    t
}

fn draw_product(rng: &mut ChaCha8Rng) -> Product {
    let skus = (0..rng.random_range(1..=3))
        .map(|_| Sku {
            id: rng.random_range(SKU_IDS),
            spec: SPECS[rng.random_range(0..SPECS.len())],
            price: rng.random_range(99..=2_990) * 10,
        })
        .collect();
    Product {
        // Odd: a float holds no odd number above 2^53.
        id: rng.random_range(PRODUCT_IDS) | 1,
        name: names::product(rng),
        skus,
        cids: [
            rng.random_range(20_000..20_100),
            rng.random_range(21_000..22_000),
            if rng.random_bool(0.5) {
                rng.random_range(23_000..24_000)
            } else {
                0
            },
        ],
        pic: rng.random_range(0..1_000_000),
    }
}

/// What every new order of the world shares.
struct Ctx<'a> {
    catalogue: &'a [Product],
    shop_id: &'a str,
    shop_name: &'a str,
    seed: u64,
}

/// The state of line `j` of `lines` in a new order: (status, refund_status, after_sale_status,
/// after_sale_type, shipped).
fn line_state(
    plan: Plan,
    j: usize,
    lines: usize,
    partial_refund: bool,
) -> (i64, i64, i64, i64, bool) {
    if partial_refund && j + 1 == lines {
        return (
            status::CLOSED,
            REFUND_SUCCEEDED,
            AFTER_SALE_DONE,
            RETURN_AND_REFUND,
            true,
        );
    }
    match plan {
        Plan::Refunded => (
            status::CLOSED,
            REFUND_SUCCEEDED,
            AFTER_SALE_DONE,
            REFUND_BEFORE_SHIPPING,
            false,
        ),
        Plan::PartShipped if j == 0 => (status::SHIPPED, 0, 0, 0, true),
        Plan::PartShipped => (status::PREPARING, 0, 0, 0, false),
        Plan::Shipped | Plan::Done => (plan.status(), 0, 0, 0, true),
        _ => (plan.status(), 0, 0, 0, false),
    }
}

/// A new order as `draft` says, its lines drawn from the catalogue.
fn draw_entry(
    rng: &mut ChaCha8Rng,
    ctx: &Ctx<'_>,
    taken: &mut HashSet<u64>,
    serial: u64,
    draft: Draft,
) -> Entry {
    let Draft {
        id,
        plan,
        times,
        lines: count,
        partial_refund,
    } = draft;
    let mut lines = Vec::with_capacity(count);
    let mut extras = Vec::with_capacity(count);
    for j in 0..count {
        let product = &ctx.catalogue[rng.random_range(0..ctx.catalogue.len())];
        let sku = &product.skus[rng.random_range(0..product.skus.len())];
        let item_num = if rng.random_bool(0.8) {
            1
        } else {
            rng.random_range(2..=3)
        };
        let sum = sku.price * item_num;
        let shop_discount = if rng.random_bool(0.2) {
            rng.random_range(1..=sum / 5)
        } else {
            0
        };
        let order_amount = sum - shop_discount;
        let platform_discount = if rng.random_bool(0.1) {
            rng.random_range(1..=order_amount / 10)
        } else {
            0
        };
        let sku_order_id = if count == 1 { id } else { fresh_id(rng, taken) };
        let (line_status, refund_status, after_sale_status, after_sale_type, shipped) =
            line_state(plan, j, count, partial_refund);
        let author = rng.random_bool(0.3).then(|| {
            (
                rng.random_range(100_000_000..100_000_000_000),
                names::author(rng),
            )
        });
        let room_id = if author.is_some() {
            rng.random_range(7_000_000_000_000_000_000..7_400_000_000_000_000_000)
        } else {
            0
        };
        lines.push(DmjLine {
            sku_order_id: sku_order_id.to_string(),
            product_id: product.id.to_string(),
            product_name: product.name.clone(),
            sku_id: sku.id.to_string(),
            item_num,
            pay_amount: order_amount - platform_discount,
            order_status: line_status,
            refund_status,
        });
        extras.push(LineExtra {
            order_amount,
            origin_amount: sku.price,
            spec: sku.spec,
            cids: product.cids,
            pic: product.pic,
            after_sale_status,
            after_sale_type,
            ship_time: if shipped { times.ship } else { None },
            author,
            room_id,
        });
    }

    let pii = Pii::of(serial);
    let cipher = |tag: &str, len: usize| cipher(ctx.seed, serial, tag, len);
    let courier = rng.random_range(0..COURIERS.len());
    let extra = OrderExtra {
        stringly: rng.random_bool(0.25),
        ship_time: times.ship,
        region: rng.random_range(0..REGIONS.len()),
        buyer_words: BUYER_WORDS[rng.random_range(0..BUYER_WORDS.len())],
        seller_words: SELLER_WORDS[rng.random_range(0..SELLER_WORDS.len())],
        seller_remark_stars: if rng.random_bool(0.8) {
            0
        } else {
            rng.random_range(1..=5)
        },
        b_type: [2, 2, 2, 2, 11, 3][rng.random_range(0..6)],
        sub_b_type: [1, 2, 3][rng.random_range(0..3)],
        pay_type: [1, 2, 2, 8][rng.random_range(0..4)],
        channel_payment_no: format!(
            "{}{}",
            times.create.format("%Y%m%d"),
            rng.random_range(10_000_000_000_000_000_000u128..100_000_000_000_000_000_000)
        ),
        doudian_open_id: format!("1@#{}", cipher("open", 51)),
        encrypt_post_tel: format!(
            "${}${}*CgkIARCtHCABKAESPgo8{}$1$$",
            cipher("tel0", 24),
            cipher("tel1", 48),
            cipher("tel2", 45)
        ),
        encrypt_post_receiver: format!(
            "#{}#{}*CgkIARCtHCABKAESPgo8{}#1##",
            cipher("name0", 3),
            cipher("name1", 60),
            cipher("name2", 45)
        ),
        encrypt_detail: format!(
            "#{}#{}*CgkIARCtHCABKAESPgo8{}#1##",
            cipher("addr0", 45),
            cipher("addr1", 90),
            cipher("addr2", 45)
        ),
        courier,
        tracking_no: format!(
            "{}{}",
            COURIERS[courier].2,
            rng.random_range(1_000_000_000_000u64..10_000_000_000_000)
        ),
        cancel_reason: match plan {
            Plan::Refunded => "不想要了",
            Plan::Cancelled => "超时未支付",
            _ => "",
        },
    };
    let order = DmjOrder {
        order_id: id.to_string(),
        shop_id: ctx.shop_id.to_string(),
        shop_name: ctx.shop_name.to_string(),
        order_status: plan.status(),
        create_time: times.create,
        pay_time: times.pay,
        update_time: times.update,
        finish_time: times.finish,
        order_amount: extras.iter().map(|x| x.order_amount).sum(),
        pay_amount: lines.iter().map(|l| l.pay_amount).sum(),
        post_tel: pii.tel,
        post_receiver: pii.receiver,
        address_detail: pii.detail,
        id_card_no: pii.id_card_no,
        id_card_name: pii.id_card_name,
        lines,
    };
    Entry {
        order,
        extra,
        lines: extras,
    }
}

/// `len` pseudo-random bytes for (seed, serial, tag), base64: the stand-in for upstream's
/// ciphertexts. Opaque and deterministic; it carries nothing of the plain value.
fn cipher(seed: u64, serial: u64, tag: &str, len: usize) -> String {
    let mut bytes = Vec::with_capacity(len + 16);
    let mut block = 0u32;
    while bytes.len() < len {
        let mut h = Md5::new();
        h.update(seed.to_le_bytes());
        h.update(serial.to_le_bytes());
        h.update(tag.as_bytes());
        h.update(block.to_le_bytes());
        bytes.extend_from_slice(&h.finalize());
        block += 1;
    }
    bytes.truncate(len);
    base64(&bytes)
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Faults;

    fn world(orders: usize) -> (World, NaiveDateTime) {
        let now = crate::time::parse_wall_clock("2025-06-01 12:00:00").expect("valid");
        let cfg = DamaijiaSimConfig {
            seed: 3,
            access_token: "t".to_string(),
            shop_id: "20358278".to_string(),
            orders,
            days: 30,
            now,
            faults: Faults::default(),
        };
        (World::generate(&cfg), now)
    }

    fn query(order_by: OrderBy, asc: bool, page: u64, size: usize) -> Query {
        Query {
            order_by,
            asc,
            create: (0, i64::MAX),
            update: (i64::MIN, i64::MAX),
            page,
            size,
        }
    }

    /// Reads every page of `q` once, as a client that never rescans: the ids in the order received,
    /// and the `total` of each page. `between` runs before each page after the first.
    fn scan(w: &mut World, q: &Query, now: NaiveDateTime) -> (Vec<String>, Vec<usize>) {
        let mut ids = Vec::new();
        let mut totals = Vec::new();
        let mut q = q.clone();
        loop {
            w.before_page(&q, now);
            let (total, page) = w.serve(&q);
            totals.push(total);
            let n = page.len();
            ids.extend(page.iter().map(|e| e.order.order_id.clone()));
            if n < q.size {
                return (ids, totals);
            }
            q.page += 1;
        }
    }

    #[test]
    fn the_base64_and_the_lossy_shapes_are_right() {
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
        assert_eq!(cipher(1, 2, "x", 3).len(), 4);
        assert_ne!(cipher(1, 2, "x", 30), cipher(1, 3, "x", 30));
    }

    #[test]
    fn orders_keep_their_invariants() {
        let (w, now) = world(2000);
        let truth = w.truth();
        assert_eq!(truth.len(), 2000);
        let mut line_ids = HashSet::new();
        for o in &truth {
            assert!(o
                .pay_time
                .is_none_or(|p| o.create_time <= p && p <= o.update_time));
            assert!(o.finish_time.is_none_or(|f| f <= o.update_time));
            assert!(o.update_time <= now - Duration::minutes(5));
            assert_eq!(
                o.pay_amount,
                o.lines.iter().map(|l| l.pay_amount).sum::<i64>()
            );
            assert!(o.order_amount >= o.pay_amount && o.pay_amount > 0);
            assert!((1..=4).contains(&o.lines.len()));
            assert_eq!(
                o.finish_time.is_some(),
                o.order_status == status::DONE,
                "{o:?}"
            );
            for l in &o.lines {
                assert!(line_ids.insert(l.sku_order_id.clone()), "line id twice");
                let product: u64 = l.product_id.parse().expect("numeric");
                assert!(product > 1 << 53 && product as f64 as u64 != product);
                assert!(l.sku_id.parse::<u64>().expect("numeric") < 1 << 53);
            }
            if o.lines.len() == 1 {
                assert_eq!(o.lines[0].sku_order_id, o.order_id);
            }
            let refunded = o.lines.iter().all(|l| l.refund_status == REFUND_SUCCEEDED);
            if o.order_status == status::CLOSED {
                assert_eq!(refunded, o.pay_time.is_some(), "{o:?}");
            }
        }
    }

    #[test]
    fn a_page_asked_again_after_a_change_sees_the_change() {
        let (mut w, now) = world(200);
        let q = query(OrderBy::UpdateTime, true, 3, 50);
        let ids = |w: &World| {
            let (total, page) = w.page(&q);
            let ids: Vec<String> = page.iter().map(|e| e.order.order_id.clone()).collect();
            (total, ids)
        };
        let (total, before) = ids(&w);
        assert_eq!((total, before.len()), (200, 50));
        assert_eq!(
            ids(&w),
            (200, before.clone()),
            "the same query, the same page"
        );
        w.add_orders(3, now + Duration::hours(1));
        assert_eq!(ids(&w).0, 203, "added orders are counted");
        let moved = w.mutate(20, now + Duration::hours(2));
        assert!(!moved.is_empty());
        assert_ne!(
            ids(&w).1,
            before,
            "updated orders moved to the end of the update order"
        );
    }

    #[test]
    fn search_sorts_by_time_then_id_in_the_asked_direction() {
        let (w, _) = world(300);
        for order_by in [OrderBy::CreateTime, OrderBy::UpdateTime] {
            let key = |id: &u64| {
                let o = w.order(*id).expect("exists");
                let t = match order_by {
                    OrderBy::CreateTime => o.create_time,
                    OrderBy::UpdateTime => o.update_time,
                };
                (t, *id)
            };
            let asc = w.matches(&query(order_by, true, 0, 10));
            assert_eq!(asc.len(), 300);
            assert!(asc.windows(2).all(|p| key(&p[0]) < key(&p[1])));
            let mut desc = w.matches(&query(order_by, false, 0, 10));
            desc.reverse();
            assert_eq!(asc, desc);
        }
    }

    #[test]
    fn an_insert_drift_makes_a_plain_scan_miss_the_new_orders() {
        for asc in [false, true] {
            let (mut w, now) = world(500);
            let q = query(OrderBy::CreateTime, asc, 0, 40);
            w.schedule_drift(3, Drift::Insert(5));
            let (ids, totals) = scan(&mut w, &q, now);
            let inserted = w.drift_log();
            assert_eq!(inserted.len(), 5);
            assert_eq!(totals[..3], [500, 500, 500]);
            assert!(totals[3..].iter().all(|t| *t == 505), "{totals:?}");
            let seen: HashSet<&String> = ids.iter().collect();
            assert!(inserted.iter().all(|id| !seen.contains(id)), "all missed");
            assert_eq!(
                seen.len(),
                500,
                "old orders all seen, the shifted ones twice"
            );
            assert_eq!(ids.len(), 505);
            // A rescan sees everything.
            let (again, _) = scan(&mut w, &q, now);
            assert_eq!(again.iter().collect::<HashSet<_>>().len(), 505);
            for id in &inserted {
                let o = w.order(id.parse().expect("numeric")).expect("exists");
                assert_eq!(o.order_status, status::PAID);
            }
        }
    }

    #[test]
    fn a_touch_drift_makes_a_plain_scan_of_a_past_window_miss_rows() {
        let (mut w, now) = world(500);
        let mut q = query(OrderBy::UpdateTime, true, 0, 50);
        q.update.1 = to_unix(now - Duration::minutes(1));
        let before: HashSet<String> = w.matches(&q).iter().map(|id| id.to_string()).collect();
        w.schedule_drift(2, Drift::Touch(4));
        let real_now = now + Duration::hours(1);
        let (ids, totals) = scan(&mut w, &q, real_now);
        let touched = w.drift_log();
        assert_eq!(touched.len(), 4);
        assert_eq!(totals[..2], [500, 500]);
        assert!(totals[2..].iter().all(|t| *t == 496), "{totals:?}");
        let seen: HashSet<String> = ids.into_iter().collect();
        let after: HashSet<String> = w.matches(&q).iter().map(|id| id.to_string()).collect();
        assert_eq!(after.len(), 496);
        assert_eq!(
            after.difference(&seen).count(),
            4,
            "four rows shifted past the reader"
        );
        assert!(touched
            .iter()
            .all(|id| before.contains(id) && !after.contains(id)));
        for id in &touched {
            let o = w.order(id.parse().expect("numeric")).expect("exists");
            assert_eq!(o.update_time, real_now);
        }
    }

    #[test]
    fn a_lag_drift_keeps_the_total_and_makes_a_plain_scan_miss_a_row() {
        let (mut w, now) = world(500);
        let mut q = query(OrderBy::UpdateTime, true, 0, 50);
        q.update.1 = to_unix(now - Duration::minutes(1));
        w.schedule_drift(2, Drift::Lag(1));
        let (ids, totals) = scan(&mut w, &q, now + Duration::hours(1));
        let moved = w.drift_log();
        assert_eq!(moved.len(), 1);
        assert!(totals.iter().all(|t| *t == 500), "{totals:?}");
        let seen: HashSet<String> = ids.iter().cloned().collect();
        let all: HashSet<String> = w.matches(&q).iter().map(|id| id.to_string()).collect();
        assert_eq!(all.len(), 500, "the moved order is still inside the query");
        assert_eq!(
            all.difference(&seen).count(),
            1,
            "the row at the page boundary shifted past the reader"
        );
        assert_eq!(
            ids.iter().filter(|id| **id == moved[0]).count(),
            2,
            "the moved order was read twice: before and after it moved"
        );
        let o = w.order(moved[0].parse().expect("numeric")).expect("exists");
        assert_eq!(to_unix(o.update_time), q.update.1);
    }

    #[test]
    fn mutate_moves_one_step_and_add_orders_lands_just_before_at() {
        let (mut w, now) = world(400);
        let at = now + Duration::minutes(1);
        let changes = w.mutate(50, at);
        assert_eq!(changes.len(), 50);
        for c in &changes {
            let o = w
                .order(c.order_id.parse().expect("numeric"))
                .expect("exists");
            assert_eq!(o.order_status.to_string(), c.to);
            assert_eq!(o.update_time, at);
            let step = (c.from.as_str(), c.to.as_str());
            assert!(
                matches!(
                    step,
                    ("1", "105")
                        | ("105", "2")
                        | ("105", "4")
                        | ("2", "3")
                        | ("2", "101")
                        | ("2", "4")
                        | ("101", "3")
                        | ("3", "5")
                ),
                "{step:?}"
            );
            if c.to == "4" {
                assert!(o.lines.iter().all(|l| l.refund_status == REFUND_SUCCEEDED));
            }
            if c.to == "5" {
                assert_eq!(o.finish_time, Some(at));
            }
        }
        let again = w.mutate(400, at);
        assert!(
            again
                .iter()
                .all(|c| changes.iter().all(|d| d.order_id != c.order_id)),
            "an order updated at `at` does not move again at `at`"
        );
        let added = w.add_orders(3, at);
        for id in added {
            let o = w.order(id.parse().expect("numeric")).expect("exists");
            assert!(o.create_time >= at - Duration::seconds(5) && o.update_time <= at);
            assert_eq!(o.order_status, status::PAID);
        }
    }
}
