//! Loopback simulators of ordersync's upstream order APIs, for tests, the demo and the benchmark.
//!
//! Each simulator is an HTTP server bound to `127.0.0.1` *before* its `start` returns, answering
//! like the real API from a world of orders generated deterministically from a seed and a "now".
//! It enforces the API's documented rules (a request that breaks one is refused the way upstream
//! would refuse it and recorded as a violation), can change orders between syncs, injects faults
//! on request ([`Faults`]), answers like a hostile upstream on cue ([`Hostile`]), and exposes its
//! ground truth so a test can compare a database with it.
//! All times are `chrono::NaiveDateTime` holding Beijing wall-clock time (UTC+8, no DST).

pub mod damaijia;
pub mod faults;
pub mod hostile;
mod http;
mod keyset;
pub mod ledger;
pub mod miaoyouquan;
mod names;
pub mod poison;
pub mod sxt;
mod time;
pub mod unidesk;
pub mod veapi;

pub use faults::Faults;
pub use hostile::Hostile;
pub use ledger::Simulator;
pub use miaoyouquan::{MiaoyouquanSim, MiaoyouquanSimConfig, MyqOrder};
pub use poison::Poison;
pub use unidesk::{UdSubOrder, UnideskSim, UnideskSimConfig};
pub use veapi::{VeOrder, VeapiSim, VeapiSimConfig};

/// A change made by a simulator's `mutate`: `from` → `to` flow point. A commission revision without
/// a status change is reported with `from == to`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mutation {
    pub order_id: String,
    pub from: String,
    pub to: String,
}

/// Now, as Beijing wall-clock time (UTC + 8 h), truncated to whole seconds.
pub fn beijing_now() -> chrono::NaiveDateTime {
    time::truncate(chrono::Utc::now().naive_utc() + chrono::Duration::seconds(time::BEIJING_OFFSET))
}
