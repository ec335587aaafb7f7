//! External programs a test drives (chromium, systemd-analyze, PostgreSQL's): without one the test is skipped
//! with a line saying so, unless `ORDERSYNC_REQUIRE_TOOLS` is set (`.ci/run` sets it after
//! installing them), where a missing program fails the test instead of passing it unseen.

use std::process::Command;

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

/// Says `what` is missing: `SKIPPED: <what> is not installed (.ci/run installs it)`, or a panic
/// with that sentence when `ORDERSYNC_REQUIRE_TOOLS` is set.
pub fn tool_missing(what: &str) {
    let why = format!("{what} is not installed (.ci/run installs it)");
    if std::env::var_os("ORDERSYNC_REQUIRE_TOOLS").is_some() {
        panic!("{why}, and ORDERSYNC_REQUIRE_TOOLS is set");
    }
    eprintln!("SKIPPED: {why}");
}
