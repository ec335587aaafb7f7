//! The simulators over real HTTP, one module per upstream: each enforces its API's rules, records
//! violations, injects faults and exposes a deterministic ground truth. One test binary; the HTTP
//! client and reply type they share are in `common`.

mod common;
mod damaijia;
mod miaoyouquan;
mod serving;
mod sxt;
mod unidesk;
mod veapi;
