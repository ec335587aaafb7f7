//! Loopback simulators of ordersync's upstream order APIs, for tests, the demo and the benchmark.
//!
//! Each simulator is an HTTP server bound to `127.0.0.1` *before* its `start` returns, answering
//! like the real API from a world of orders generated deterministically from a seed and a "now".
//! It enforces the API's documented rules (a request that breaks one is refused the way upstream
//! would refuse it and recorded as a violation), can change orders between syncs, injects faults
//! on request ([`Faults`]), and exposes its ground truth so a test can compare a database with it.
//! All times are `chrono::NaiveDateTime` holding Beijing wall-clock time (UTC+8, no DST).

pub mod faults;
mod http;
mod time;
pub mod veapi;

pub use faults::Faults;
pub use veapi::{Mutation, VeOrder, VeapiSim, VeapiSimConfig};

/// Now, as Beijing wall-clock time (UTC + 8 h), truncated to whole seconds.
pub fn beijing_now() -> chrono::NaiveDateTime {
    time::truncate(chrono::Utc::now().naive_utc() + chrono::Duration::seconds(time::BEIJING_OFFSET))
}
