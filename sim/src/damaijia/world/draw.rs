//! Drawing a damaijia world's new orders: the catalogue, each order's plan and times, its lines
//! and the rest of its row.

use std::collections::HashSet;
use std::ops::Range;

use chrono::{Duration, NaiveDateTime};
use md5::{Digest, Md5};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::{
    status, Entry, LineExtra, OrderExtra, AFTER_SALE_DONE, COURIERS, EXPIRE_SECS,
    REFUND_BEFORE_SHIPPING, REFUND_SUCCEEDED, REGIONS, RETURN_AND_REFUND,
};
use crate::damaijia::pii::Pii;
use crate::damaijia::{DmjLine, DmjOrder};
use crate::names;

const ORDER_IDS: Range<u64> = 4_800_000_000_000_000_000..5_000_000_000_000_000_000;
const PRODUCT_IDS: Range<u64> = 3_400_000_000_000_000_000..3_700_000_000_000_000_000;
const SKU_IDS: Range<u64> = 1_700_000_000_000_000..1_800_000_000_000_000;

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

pub(super) struct Product {
    id: u64,
    name: String,
    skus: Vec<Sku>,
    cids: [i64; 3],
    pic: u32,
}

/// How a new order stands; its `order_status` follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Plan {
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
pub(super) struct Times {
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
    pub(super) fn paid(create: NaiveDateTime, pay: NaiveDateTime, update: NaiveDateTime) -> Times {
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
pub(super) struct Caps {
    pub(super) event: NaiveDateTime,
    pub(super) update: NaiveDateTime,
}

/// A new order to build.
pub(super) struct Draft {
    pub(super) id: u64,
    pub(super) plan: Plan,
    pub(super) times: Times,
    pub(super) lines: usize,
    /// One line of a shipped multi-line order was returned and refunded.
    pub(super) partial_refund: bool,
}

/// 1 line three times in four, up to 4.
pub(super) fn line_count(rng: &mut ChaCha8Rng) -> usize {
    match rng.random_range(0..100) {
        0..=74 => 1,
        75..=89 => 2,
        90..=96 => 3,
        _ => 4,
    }
}

/// An unused id from the usual range (reserved on return).
pub(super) fn fresh_id(rng: &mut ChaCha8Rng, taken: &mut HashSet<u64>) -> u64 {
    loop {
        let id = rng.random_range(ORDER_IDS);
        if taken.insert(id) {
            return id;
        }
    }
}

/// The events of a new order in state `plan`, placed at `create`; each lies in `(previous,
/// caps.event]`, and the update time a few seconds after the last (at most `caps.update`).
pub(super) fn plan_times(
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

pub(super) fn draw_product(rng: &mut ChaCha8Rng) -> Product {
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
pub(super) struct Ctx<'a> {
    pub(super) catalogue: &'a [Product],
    pub(super) shop_id: &'a str,
    pub(super) shop_name: &'a str,
    pub(super) seed: u64,
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
pub(super) fn draw_entry(
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
pub(super) fn cipher(seed: u64, serial: u64, tag: &str, len: usize) -> String {
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
pub(super) fn base64(bytes: &[u8]) -> String {
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
