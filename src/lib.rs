//! ordersync: keeps a SQLite database of orders in step with five Chinese order APIs.
//!
//! Layout (see ARCHITECTURE.md): `config` checks `pipelines.toml`; `planner` decides the time
//! windows; `sources` build requests and normalise pages (one module per upstream); `http` fetches
//! with retries; `store` commits each page with its checkpoint; `engine` runs a pipeline through
//! all of them; `status` reports (`health` judges each pipeline) and `statuspage` shows the same on
//! the daemon's web page; `cli` ties them to the command line.

pub mod backup;
pub mod budget;
pub mod bytesize;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dbfiles;
pub mod engine;
pub mod fnv;
pub mod health;
pub mod http;
pub mod metrics;
pub mod model;
pub mod money;
pub mod notify;
pub mod planner;
pub mod redact;
pub mod rejects;
pub mod secret;
pub mod server;
pub mod sources;
pub mod status;
pub mod statuspage;
pub mod store;
pub mod timefmt;
