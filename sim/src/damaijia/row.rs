//! One shop order as `order-searchList` sends it: the document's sample row, field for field in its
//! (alphabetical) order, with `sku_order_list` holding the lines.
//!
//! What a client must survive, on purpose: a line's `product_id` is a JSON number that has already
//! lost precision (the float of the 19-digit id printed as an integer, as the document's sample
//! shows `3489373605366769000` beside `product_id_str` `"3489373605366769084"`); for about a quarter
//! of the orders every amount and time — order and line level — is a decimal string instead of a
//! number ([`Num`]); times are unix seconds, `0` for none; PII is sent in plain text next to its
//! opaque `encrypt_*` twin.

use chrono::NaiveDateTime;
use serde::{Serialize, Serializer};

use super::world::{status, Entry, LineExtra, COURIERS, EXPIRE_SECS, REGIONS};
use super::{DmjLine, DmjOrder};
use crate::time::to_unix;

/// An integer the API sends as a JSON number — or, for a "stringly" order, as its decimal text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Num {
    value: i64,
    text: bool,
}

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.text {
            s.collect_str(&self.value)
        } else {
            s.serialize_i64(self.value)
        }
    }
}

/// The JSON number a float parser makes of `id`: its nearest `f64`, printed in the shortest form
/// that reads back to that float, as an integer (what a JavaScript or PHP upstream sends).
pub(crate) fn lossy(id: u64) -> u64 {
    // Rust prints floats without an exponent and with the fewest significant digits that round-trip.
    format!("{}", id as f64).parse().unwrap_or(id)
}

#[derive(Serialize)]
struct Named<'a> {
    id: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct PostAddr<'a> {
    city: Named<'a>,
    detail: &'a str,
    encrypt_detail: &'a str,
    province: Named<'a>,
    street: Named<'a>,
    town: Named<'a>,
}

#[derive(Serialize)]
struct IdInfo<'a> {
    id_card_name: &'a str,
    id_card_no: &'a str,
}

#[derive(Serialize)]
struct Spec<'a> {
    name: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct AfterSale {
    after_sale_status: i64,
    after_sale_type: i64,
    refund_status: i64,
}

#[derive(Serialize)]
struct Inventory {
    count: i64,
    inventory_type: i64,
    inventory_type_desc: &'static str,
    out_warehouse_id: &'static str,
    warehouse_id: &'static str,
}

#[derive(Serialize)]
struct ProductInfo<'a> {
    outer_sku_id: &'static str,
    price: Num,
    product_id: u64,
    sku_id: u64,
    sku_order_id: &'a str,
    sku_specs: [Spec<'a>; 1],
}

#[derive(Serialize)]
struct Logistics<'a> {
    company: &'static str,
    company_name: &'static str,
    delivery_id: String,
    product_info: Vec<ProductInfo<'a>>,
    ship_time: Num,
    tracking_no: &'a str,
}

/// One shop order (`shop_order_list[]`).
#[derive(Serialize)]
pub(crate) struct Row<'a> {
    app_id: i64,
    appointment_ship_time: Num,
    b_type: i64,
    b_type_desc: &'static str,
    biz: i64,
    biz_desc: &'static str,
    buyer_words: &'a str,
    cancel_reason: &'a str,
    channel_payment_no: &'a str,
    create_time: Num,
    doudian_open_id: &'a str,
    encrypt_post_receiver: &'a str,
    encrypt_post_tel: &'a str,
    exp_ship_time: Num,
    finish_time: Num,
    logistics_info: Vec<Logistics<'a>>,
    main_status: i64,
    main_status_desc: &'static str,
    modify_amount: Num,
    modify_post_amount: Num,
    open_id: &'static str,
    order_amount: Num,
    order_expire_time: i64,
    order_id: &'a str,
    order_level: i64,
    order_phase_list: [(); 0],
    order_status: i64,
    order_status_desc: &'static str,
    order_type: i64,
    order_type_desc: &'static str,
    pay_amount: Num,
    pay_time: Num,
    pay_type: i64,
    platform_cost_amount: Num,
    post_addr: PostAddr<'a>,
    post_amount: Num,
    post_insurance_amount: Num,
    post_receiver: &'a str,
    post_tel: &'a str,
    promotion_amount: Num,
    promotion_pay_amount: Num,
    promotion_platform_amount: Num,
    promotion_shop_amount: Num,
    promotion_talent_amount: Num,
    seller_remark_stars: i64,
    seller_words: &'a str,
    serial_number_list: [(); 0],
    ship_time: Num,
    shop_cost_amount: Num,
    /// The shop id as a JSON number (the document's sample: `20358278`).
    shop_id: u64,
    shop_name: &'a str,
    sku_order_list: Vec<LineRow<'a>>,
    sub_b_type: i64,
    sub_b_type_desc: &'static str,
    total_promotion_amount: Num,
    trade_type: i64,
    trade_type_desc: &'static str,
    update_time: Num,
    user_id_info: IdInfo<'a>,
}

/// One SKU line (`sku_order_list[]`).
#[derive(Serialize)]
struct LineRow<'a> {
    after_sale_info: AfterSale,
    app_id: i64,
    author_id: u64,
    author_name: &'a str,
    b_type: i64,
    b_type_desc: &'static str,
    biz: i64,
    biz_desc: &'static str,
    c_biz: i64,
    c_biz_desc: &'static str,
    cancel_reason: &'a str,
    channel_payment_no: &'a str,
    code: String,
    confirm_receipt_time: Num,
    create_time: Num,
    encrypt_post_receiver: &'a str,
    encrypt_post_tel: &'a str,
    exp_ship_time: Num,
    finish_time: Num,
    first_cid: i64,
    fourth_cid: i64,
    goods_type: i64,
    has_tax: bool,
    inventory_list: [Inventory; 1],
    is_comment: i64,
    item_num: i64,
    main_status: i64,
    main_status_desc: &'static str,
    modify_amount: Num,
    order_amount: Num,
    order_expire_time: i64,
    /// The line's id (`sku_order_id`).
    order_id: &'a str,
    order_level: i64,
    order_status: i64,
    order_status_desc: &'static str,
    order_type: i64,
    order_type_desc: &'static str,
    origin_amount: Num,
    out_product_id: &'static str,
    out_sku_id: &'static str,
    parent_order_id: &'a str,
    pay_amount: Num,
    pay_time: Num,
    pay_type: i64,
    platform_cost_amount: Num,
    post_addr: PostAddr<'a>,
    post_amount: Num,
    post_insurance_amount: Num,
    post_receiver: &'a str,
    post_tel: &'a str,
    /// Lossy: see [`lossy`].
    product_id: u64,
    product_id_str: &'a str,
    product_name: &'a str,
    product_pic: String,
    promotion_amount: Num,
    promotion_pay_amount: Num,
    promotion_platform_amount: Num,
    promotion_shop_amount: Num,
    promotion_talent_amount: Num,
    receive_type: i64,
    reduce_stock_type: i64,
    reduce_stock_type_desc: &'static str,
    room_id: u64,
    room_id_str: String,
    second_cid: i64,
    send_pay: i64,
    send_pay_desc: &'static str,
    ship_time: Num,
    shop_cost_amount: Num,
    sku_id: u64,
    spec: [Spec<'a>; 1],
    sub_b_type: i64,
    sub_b_type_desc: &'static str,
    sum_amount: Num,
    theme_type: &'static str,
    theme_type_desc: &'static str,
    third_cid: i64,
    trade_type: i64,
    trade_type_desc: &'static str,
    update_time: Num,
    video_id: &'static str,
}

/// `main_status` and its text for a shop order.
fn main_status(o: &DmjOrder) -> (i64, &'static str) {
    match o.order_status {
        status::CLOSED if o.pay_time.is_some() => (21, "发货前退款完成"),
        s => (s, status::desc(s)),
    }
}

/// `main_status` and its text for a line.
fn line_main_status(l: &DmjLine, x: &LineExtra) -> (i64, &'static str) {
    match l.order_status {
        status::CLOSED if l.refund_status != 0 && x.ship_time.is_some() => (22, "发货后退款完成"),
        status::CLOSED if l.refund_status != 0 => (21, "发货前退款完成"),
        s => (s, status::desc(s)),
    }
}

fn b_type_desc(b_type: i64) -> &'static str {
    match b_type {
        3 => "头条",
        11 => "抖音极速版",
        _ => "抖音",
    }
}

fn app_id(b_type: i64) -> i64 {
    match b_type {
        3 => 13,
        11 => 2329,
        _ => 1128,
    }
}

fn sub_b_type_desc(sub_b_type: i64) -> &'static str {
    match sub_b_type {
        1 => "app内-原生",
        2 => "小程序",
        _ => "H5",
    }
}

/// The row of `e`.
pub(crate) fn render(e: &Entry) -> Row<'_> {
    let (o, x) = (&e.order, &e.extra);
    let text = x.stringly;
    let num = |value: i64| Num { value, text };
    let time = |t: Option<NaiveDateTime>| num(t.map_or(0, to_unix));
    let region = &REGIONS[x.region % REGIONS.len()];
    let addr = || {
        let named = |(id, name): (&'static str, &'static str)| Named { id, name };
        PostAddr {
            city: named(region[1]),
            detail: &o.address_detail,
            encrypt_detail: &x.encrypt_detail,
            province: named(region[0]),
            street: named(region[3]),
            town: named(region[2]),
        }
    };
    let paid = o.pay_time.is_some();
    let channel_payment_no = if paid {
        x.channel_payment_no.as_str()
    } else {
        ""
    };
    let exp_ship_time = o.pay_time.map(|p| p + chrono::Duration::hours(48));
    let (main, main_desc) = main_status(o);
    let discount_shop: i64 = o
        .lines
        .iter()
        .zip(&e.lines)
        .map(|(l, lx)| lx.origin_amount * l.item_num - lx.order_amount)
        .sum();
    let discount_platform = o.order_amount - o.pay_amount;

    let lines = o
        .lines
        .iter()
        .zip(&e.lines)
        .map(|(l, lx)| {
            let (main, main_desc) = line_main_status(l, lx);
            let sum = lx.origin_amount * l.item_num;
            let (author_id, author_name) = lx
                .author
                .as_ref()
                .map_or((0, ""), |(id, name)| (*id, name.as_str()));
            let live = lx.author.is_some();
            let product_id: u64 = l.product_id.parse().unwrap_or_default();
            LineRow {
                after_sale_info: AfterSale {
                    after_sale_status: lx.after_sale_status,
                    after_sale_type: lx.after_sale_type,
                    refund_status: l.refund_status,
                },
                app_id: app_id(x.b_type),
                author_id,
                author_name,
                b_type: x.b_type,
                b_type_desc: b_type_desc(x.b_type),
                biz: 2,
                biz_desc: "小店",
                c_biz: if live { 2 } else { 8 },
                c_biz_desc: if live { "联盟" } else { "小店自卖" },
                cancel_reason: x.cancel_reason,
                channel_payment_no,
                code: format!(
                    "SKU-{}",
                    l.sku_id
                        .get(l.sku_id.len().saturating_sub(6)..)
                        .unwrap_or("")
                ),
                confirm_receipt_time: time(
                    (l.order_status == status::DONE)
                        .then_some(o.finish_time)
                        .flatten(),
                ),
                create_time: time(Some(o.create_time)),
                encrypt_post_receiver: &x.encrypt_post_receiver,
                encrypt_post_tel: &x.encrypt_post_tel,
                exp_ship_time: time(exp_ship_time),
                finish_time: time(
                    (l.order_status == status::DONE)
                        .then_some(o.finish_time)
                        .flatten(),
                ),
                first_cid: lx.cids[0],
                fourth_cid: 0,
                goods_type: 0,
                has_tax: false,
                inventory_list: [Inventory {
                    count: l.item_num,
                    inventory_type: 1,
                    inventory_type_desc: "普通库存",
                    out_warehouse_id: "",
                    warehouse_id: "",
                }],
                is_comment: 0,
                item_num: l.item_num,
                main_status: main,
                main_status_desc: main_desc,
                modify_amount: num(0),
                order_amount: num(lx.order_amount),
                order_expire_time: EXPIRE_SECS,
                order_id: &l.sku_order_id,
                order_level: 3,
                order_status: l.order_status,
                order_status_desc: status::desc(l.order_status),
                order_type: 0,
                order_type_desc: "普通订单",
                origin_amount: num(lx.origin_amount),
                out_product_id: "0",
                out_sku_id: "",
                parent_order_id: &o.order_id,
                pay_amount: num(l.pay_amount),
                pay_time: time(o.pay_time),
                pay_type: x.pay_type,
                platform_cost_amount: num(lx.order_amount - l.pay_amount),
                post_addr: addr(),
                post_amount: num(0),
                post_insurance_amount: num(0),
                post_receiver: &o.post_receiver,
                post_tel: &o.post_tel,
                product_id: lossy(product_id),
                product_id_str: &l.product_id,
                product_name: &l.product_name,
                product_pic: format!(
                    "https://p3-aio.ecombdimg.com/obj/temai/sim{:06}www600-600",
                    lx.pic
                ),
                promotion_amount: num(sum - l.pay_amount),
                promotion_pay_amount: num(0),
                promotion_platform_amount: num(lx.order_amount - l.pay_amount),
                promotion_shop_amount: num(sum - lx.order_amount),
                promotion_talent_amount: num(0),
                receive_type: 1,
                reduce_stock_type: 2,
                reduce_stock_type_desc: "支付库存",
                room_id: lx.room_id,
                room_id_str: lx.room_id.to_string(),
                second_cid: lx.cids[1],
                send_pay: 0,
                send_pay_desc: "-",
                ship_time: time(lx.ship_time),
                shop_cost_amount: num(sum - lx.order_amount),
                sku_id: l.sku_id.parse().unwrap_or_default(),
                spec: [Spec {
                    name: lx.spec.0,
                    value: lx.spec.1,
                }],
                sub_b_type: x.sub_b_type,
                sub_b_type_desc: sub_b_type_desc(x.sub_b_type),
                sum_amount: num(sum),
                theme_type: if live { "1" } else { "0" },
                theme_type_desc: if live { "直播间" } else { "-" },
                third_cid: lx.cids[2],
                trade_type: 0,
                trade_type_desc: "普通",
                update_time: time(Some(o.update_time)),
                video_id: "",
            }
        })
        .collect();

    let logistics_info = match x.ship_time {
        None => Vec::new(),
        Some(ship) => {
            let (company, company_name, _) = COURIERS[x.courier % COURIERS.len()];
            let product_info = o
                .lines
                .iter()
                .zip(&e.lines)
                .filter(|(_, lx)| lx.ship_time.is_some())
                .map(|(l, lx)| ProductInfo {
                    outer_sku_id: "",
                    price: num(lx.origin_amount),
                    product_id: lossy(l.product_id.parse().unwrap_or_default()),
                    sku_id: l.sku_id.parse().unwrap_or_default(),
                    sku_order_id: &l.sku_order_id,
                    sku_specs: [Spec {
                        name: lx.spec.0,
                        value: lx.spec.1,
                    }],
                })
                .collect();
            vec![Logistics {
                company,
                company_name,
                delivery_id: format!("{company}_{}", x.tracking_no),
                product_info,
                ship_time: time(Some(ship)),
                tracking_no: &x.tracking_no,
            }]
        }
    };

    Row {
        app_id: app_id(x.b_type),
        appointment_ship_time: num(0),
        b_type: x.b_type,
        b_type_desc: b_type_desc(x.b_type),
        biz: 2,
        biz_desc: "小店",
        buyer_words: x.buyer_words,
        cancel_reason: x.cancel_reason,
        channel_payment_no,
        create_time: time(Some(o.create_time)),
        doudian_open_id: &x.doudian_open_id,
        encrypt_post_receiver: &x.encrypt_post_receiver,
        encrypt_post_tel: &x.encrypt_post_tel,
        exp_ship_time: time(exp_ship_time),
        finish_time: time(o.finish_time),
        logistics_info,
        main_status: main,
        main_status_desc: main_desc,
        modify_amount: num(0),
        modify_post_amount: num(0),
        open_id: "",
        order_amount: num(o.order_amount),
        order_expire_time: EXPIRE_SECS,
        order_id: &o.order_id,
        order_level: 2,
        order_phase_list: [],
        order_status: o.order_status,
        order_status_desc: status::desc(o.order_status),
        order_type: 0,
        order_type_desc: "普通订单",
        pay_amount: num(o.pay_amount),
        pay_time: time(o.pay_time),
        pay_type: x.pay_type,
        platform_cost_amount: num(discount_platform),
        post_addr: addr(),
        post_amount: num(0),
        post_insurance_amount: num(0),
        post_receiver: &o.post_receiver,
        post_tel: &o.post_tel,
        promotion_amount: num(discount_shop + discount_platform),
        promotion_pay_amount: num(0),
        promotion_platform_amount: num(discount_platform),
        promotion_shop_amount: num(discount_shop),
        promotion_talent_amount: num(0),
        seller_remark_stars: x.seller_remark_stars,
        seller_words: x.seller_words,
        serial_number_list: [],
        ship_time: time(x.ship_time),
        shop_cost_amount: num(discount_shop),
        shop_id: o.shop_id.parse().unwrap_or_default(),
        shop_name: &o.shop_name,
        sku_order_list: lines,
        sub_b_type: x.sub_b_type,
        sub_b_type_desc: sub_b_type_desc(x.sub_b_type),
        total_promotion_amount: num(discount_shop + discount_platform),
        trade_type: 0,
        trade_type_desc: "普通",
        update_time: time(Some(o.update_time)),
        user_id_info: IdInfo {
            id_card_name: &o.id_card_name,
            id_card_no: &o.id_card_no,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documents_product_id_comes_out_as_in_its_sample() {
        assert_eq!(lossy(3_489_373_605_366_769_084), 3_489_373_605_366_769_000);
        for id in [3_400_000_000_000_000_001u64, 3_699_999_999_999_999_999] {
            let l = lossy(id);
            assert_ne!(l, id);
            assert_eq!(l as f64, id as f64, "the same float");
        }
        assert_eq!(
            lossy(1_703_795_743_450_127),
            1_703_795_743_450_127,
            "below 2^53: exact"
        );
    }

    #[test]
    fn numbers_serialise_as_numbers_or_text() {
        let n = Num {
            value: 1_640_158_345,
            text: false,
        };
        let t = Num { text: true, ..n };
        assert_eq!(
            serde_json::to_string(&[n, t]).ok().as_deref(),
            Some(r#"[1640158345,"1640158345"]"#)
        );
        assert_eq!(serde_json::to_string(&[(); 0]).ok().as_deref(), Some("[]"));
    }
}
