//! Shared test helpers, one file per concern: the veapi [`Harness`] (`harness`), what a world
//! should look like once stored (`truth`), reading the database (`db`), the JSON fixtures
//! (`fixture`), the binary as a child process (`process`) and as a running daemon (`daemon`),
//! the daemon's HTTP side and metrics (`metrics`), the seeds of the randomised tests (`seeds`),
//! rows staged for states a real run cannot reach quickly (`staged`), the external programs some
//! tests drive (`tools`), a host that vanished (`blackhole`), the README's SQL on both engines
//! (`readme_sql`), and, re-exported, a throwaway PostgreSQL cluster (crate `ordersync-testpg`,
//! `testpg/`, shared with the library's unit tests). Test modules `use crate::common::*`; the
//! five-source harness, `all_sources`, is imported by name by the tests that use it. No test
//! module imports another.

#![allow(dead_code)]

pub mod all_sources;
mod blackhole;
mod daemon;
mod db;
mod fixture;
mod harness;
mod metrics;
mod process;
mod readme_sql;
mod seeds;
mod staged;
mod tools;
mod truth;

pub use blackhole::*;
pub use daemon::*;
pub use db::*;
pub use fixture::*;
pub use harness::*;
pub use metrics::*;
pub use ordersync_testpg::*;
pub use process::*;
pub use readme_sql::*;
pub use seeds::*;
pub use staged::*;
pub use tools::*;
pub use truth::*;
