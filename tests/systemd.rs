//! The systemd units: `systemd-analyze verify` is clean and `security` rates them 1.5 or better.

use std::process::Command;

use crate::common::*;

fn analyze(args: &[&str]) -> Option<std::process::Output> {
    Command::new("systemd-analyze").args(args).output().ok()
}

/// The unit with its binary path pointed at the freshly built binary (verify checks it exists).
fn staged(unit: &str, as_name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(format!("{}/systemd/{unit}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let path = dir.path().join(as_name);
    std::fs::write(
        &path,
        text.replace("/usr/bin/ordersync", env!("CARGO_BIN_EXE_ordersync")),
    )
    .unwrap();
    (dir, path)
}

#[test]
fn units_verify_and_rate_1_5_or_better() {
    if !tool_available("systemd-analyze") {
        return;
    }
    for (unit, name) in [
        ("ordersync.service", "ordersync.service"),
        (
            "ordersync-backfill@.service",
            "ordersync-backfill@veapi-main.service",
        ),
    ] {
        let (_dir, path) = staged(unit, name);
        let p = path.to_str().unwrap();
        let verify = analyze(&["verify", p]).unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
        // Missing /etc files of a machine that has not installed ordersync are not the unit's fault.
        let real: Vec<&str> = said
            .lines()
            .filter(|l| !l.contains("/etc/ordersync"))
            .collect();
        assert!(verify.status.success() || real.is_empty(), "{unit}: {said}");
        assert!(real.is_empty(), "{unit}: {said}");
        let sec = analyze(&["security", "--offline=true", p]).unwrap();
        let out = String::from_utf8_lossy(&sec.stdout);
        let level: f64 = out
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(':').nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: no exposure level in {out}"));
        assert!(level <= 1.5, "{unit}: exposure {level}");
    }
}
