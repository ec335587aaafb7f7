//! Integration tests: the real `ordersync` binary against the simulators over loopback HTTP, into
//! real SQLite files. One binary, a module per area.

mod cli;
mod common;
mod concurrency;
mod crash;
mod daemon;
mod damaijia;
mod disk;
mod files;
mod fuzz;
mod hostile_http;
mod metrics_server;
mod miaoyouquan;
mod rejected;
mod secrets;
mod soak;
mod sxt;
mod systemd;
mod unidesk;
mod upstream_changes;
mod veapi;
