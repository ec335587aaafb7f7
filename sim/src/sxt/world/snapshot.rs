//! What a 随心推 snapshot sends: the wire rows, and which stale copies each order shows in this
//! version of the world.

use serde::Serialize;

use super::{Entry, World, COST, GMV, PLAYS, REJECTED, ROI};
use crate::sxt::money::{roi_text, yuan_text};
use crate::sxt::state_desc;
use crate::time::{to_unix, WALL_CLOCK};

/// Distinguish this world's streams from another simulator's world of the same seed.
const COPY_STREAM: u64 = 0x7378_745f_636f_7079;
/// Share of orders (with an earlier state to show) that carry extra rows in a snapshot.
const DUP_PERCENT: u64 = 15;

/// The document's `aim` object; every simulated order is a 商品购买 (shop conversion) order.
#[derive(Clone, Copy, Serialize)]
pub(super) struct Aim {
    can_ocpm: bool,
    default_optimized_price: i64,
    default_optimized_type: i64,
    desc: &'static str,
    estimate_bid_name: &'static str,
    estimate_msg: &'static str,
    pub(super) id: i64,
    instruction_img: &'static str,
    instruction_text: &'static str,
    instruction_title: &'static str,
    name: &'static str,
    selected: bool,
}

pub(super) const AIM: Aim = Aim {
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

impl World {
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
