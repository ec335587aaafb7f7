//! External programs a test drives (chromium, systemd-analyze, PostgreSQL's): without one the test is skipped
//! with a line saying so, unless `ORDERSYNC_REQUIRE_TOOLS` is set (`.ci/run` sets it after
//! installing them), where a missing program fails the test instead of passing it unseen.

use std::process::Command;

/// The skip-or-fail policy lives with the PostgreSQL cluster, which the library's unit tests use too.
pub use ordersync_testpg::tool_missing;

/// Whether `program --version` runs. When it does not: prints `SKIPPED: <program> is not
/// installed (.ci/run installs it)` and returns false, or panics with that sentence when
/// `ORDERSYNC_REQUIRE_TOOLS` is set.
pub fn tool_available(program: &str) -> bool {
    let runs = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        return true;
    }
    tool_missing(program);
    false
}
