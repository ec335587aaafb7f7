//! Integration tests: the real `ordersync` binary against the simulators over loopback HTTP, into
//! real SQLite files — a module per source (`veapi`, `miaoyouquan`, `unidesk`, `damaijia`, `sxt`)
//! and per concern (`crash`, `soak`, `secrets`, `concurrency`, `budget`, `disk`, `daemon`,
//! `status_page`, `deploy`, `pg_copy` into a real PostgreSQL, `readme_queries` on both engines,
//! …) — and, in `fuzz`, property tests of the library's pure functions that need neither. One
//! binary; shared helpers in `common`.

mod budget;
mod cli;
mod common;
mod concurrency;
mod crash;
mod daemon;
mod damaijia;
mod deploy;
mod disk;
mod files;
mod fuzz;
mod hostile_http;
mod late_changes;
mod metrics_server;
mod miaoyouquan;
mod pg_copy;
mod pg_outage;
mod pg_store;
mod pg_tls;
mod pg_workers;
mod readme_queries;
mod rejected;
mod secrets;
mod soak;
mod status_page;
mod sxt;
mod systemd;
mod unidesk;
mod upstream_changes;
mod veapi;
