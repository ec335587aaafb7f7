//! Shared test helpers, one file per concern: the veapi [`Harness`] (`harness`), what a world
//! should look like once stored (`truth`), reading the database (`db`), the JSON fixtures
//! (`fixture`), the binary as a child process (`process`) and as a running daemon (`daemon`),
//! the daemon's HTTP side and metrics (`metrics`), the seeds of the randomised tests (`seeds`),
//! rows staged for states a real run cannot reach quickly (`staged`), the external programs some
//! tests drive (`tools`), a throwaway PostgreSQL cluster (`pg`), and the README's SQL on both
//! engines (`readme_sql`). Test modules `use crate::common::*`; the five-source harness,
//! `all_sources`, is imported by name by the tests that use it. No test module imports another.

#![allow(dead_code)]

pub mod all_sources;
mod daemon;
mod db;
mod fixture;
mod harness;
mod metrics;
mod pg;
mod process;
mod readme_sql;
mod seeds;
mod staged;
mod tools;
mod truth;

pub use daemon::*;
pub use db::*;
pub use fixture::*;
pub use harness::*;
pub use metrics::*;
pub use pg::*;
pub use process::*;
pub use readme_sql::*;
pub use seeds::*;
pub use staged::*;
pub use tools::*;
pub use truth::*;
