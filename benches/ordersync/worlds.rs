//! The simulated upstreams the bench's parts sync from, started on the bench's runtime.

use chrono::NaiveDateTime;
use ordersync_sim::{Faults, VeapiSim, VeapiSimConfig};

/// A veapi simulator of `orders` orders over `days` days before `now`, seeded `seed`, answering
/// with the key `bench`.
pub fn veapi(
    rt: &tokio::runtime::Runtime,
    seed: u64,
    orders: usize,
    days: i64,
    now: NaiveDateTime,
    faults: Faults,
) -> VeapiSim {
    rt.block_on(VeapiSim::start(VeapiSimConfig {
        seed,
        vekey: "bench".into(),
        orders,
        days,
        now,
        faults,
    }))
    .expect("the veapi simulator starts")
}
