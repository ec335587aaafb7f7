//! Drawing a new 随心推 order: its id, state path, indicators, cover and delivery settings.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use chrono::NaiveDateTime;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::snapshot::AIM;
use super::{
    Entry, Indicators, Object, COMPLETED, CREATING, DELIVERING, ENDED, REJECTED, REVIEWING,
    TERMINATED, UNPAID,
};
use crate::time::to_unix;

/// Snowflake seconds are clamped here so every id has 19 digits and fits an i64.
const ID_SECS: RangeInclusive<i64> = 1_000_000_000..=2_147_483_647;
/// The generated state mix, in percent.
pub(super) const STATE_WEIGHTS: [(i64, u32); 8] = [
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

/// What a new order starts as.
pub(super) struct Spec {
    pub(super) create_time: NaiveDateTime,
    pub(super) path: Vec<i64>,
    pub(super) current: Indicators,
    pub(super) delivering: Indicators,
}

/// A new order, with its id, video, cover and delivery settings drawn from `rng`.
pub(super) fn draw_entry(
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
pub(super) fn snowflake(rng: &mut ChaCha8Rng, t: NaiveDateTime) -> u64 {
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

pub(super) fn draw_state(rng: &mut ChaCha8Rng) -> i64 {
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
pub(super) fn path_to(rng: &mut ChaCha8Rng, state: i64) -> Vec<i64> {
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
pub(super) fn draw_indicators(rng: &mut ChaCha8Rng, state: i64) -> Indicators {
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
pub(super) fn draw_growth(rng: &mut ChaCha8Rng) -> Indicators {
    let cost_fen = draw_fen(rng, 5_000);
    let plays = plays_for(rng, cost_fen);
    let gmv_fen = gmv_for(rng, cost_fen, 0.6);
    Indicators {
        cost_fen,
        plays,
        gmv_fen,
    }
}
