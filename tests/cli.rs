//! The command line's promises: config errors are one sentence naming pipeline and key with exit 2
//! (also for the values the config fuzzer found), `check` passes a valid config, `status` shows
//! coverage.

use ordersync_sim::Faults;

use crate::common::*;

#[test]
fn check_accepts_a_valid_config() {
    let h = Harness::veapi(10, 5, Faults::default());
    let out = h.run(&["check"]);
    assert_ok(&out);
    let online = h.run(&["check", "--online"]);
    assert_ok(&online);
}

#[test]
fn a_misspelt_key_exits_2_naming_key_and_pipeline() {
    let h = Harness::veapi(10, 5, Faults::default());
    h.write_config("page_sise = 20");
    for cmd in [&["check"][..], &["sync"], &["status"]] {
        let out = h.run(cmd);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("`ve`") && stderr.contains("`page_sise`"),
            "{stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr}");
        assert!(!stderr.contains("panicked"));
    }
}

#[test]
fn bad_values_and_missing_secrets_exit_2() {
    let h = Harness::veapi(10, 5, Faults::default());
    h.write_config("page_size = 80");
    let out = h.run(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("page_size"));

    h.write_config("");
    let mut cmd = h.command(&["check"]);
    cmd.env_remove("TEST_VEKEY");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("auth.vekey") && stderr.contains("TEST_VEKEY"),
        "{stderr}"
    );

    let out = h.run(&["backfill", "ve", "--from", "last tuesday"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = h.run(&["sync", "no-such-pipeline"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn status_shows_watermark_coverage_and_json() {
    let h = Harness::veapi(200, 30, Faults::default());
    let before = h.run(&["status"]);
    assert_ok(&before);
    assert!(String::from_utf8_lossy(&before.stdout).contains("never"));
    assert_ok(&h.run(&["sync"]));
    let out = h.run(&["status", "--json"]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    let p = &v[0];
    assert_eq!(p["pipeline"], "ve");
    assert_eq!(p["last_run"]["outcome"], "ok");
    assert_eq!(p["last_run"]["rows_seen"], 200);
    assert!(p["lag_seconds"].as_i64().unwrap() < 120);
    let live = &p["tracks"][0];
    assert_eq!(live["scope"], "live");
    assert_eq!(
        live["covered"].as_array().unwrap().len(),
        1,
        "one contiguous finished range"
    );
    assert_eq!(live["gaps"].as_array().unwrap().len(), 0);
}

/// `settle_lag = "100000000d"` used to pass `check` and make `sync` panic (date overflow in a
/// pipeline task) and still exit 0; a multi-line string value made a multi-line error.
#[test]
fn config_fuzz_regressions_huge_durations_and_multi_line_values() {
    let h = Harness::veapi(10, 5, Faults::default());
    for (extra, key) in [
        ("settle_lag = \"100000000d\"", "settle_lag"),
        ("lookback = \"99999999d\"", "lookback"),
        ("time_type = \"\"\"\nx\ny\"\"\"", "time_type"),
        ("\"page\\nsize\" = 1", "page\\nsize"),
    ] {
        h.write_config(extra);
        for args in [&["check"][..], &["sync"]] {
            let out = h.run(args);
            assert_eq!(out.status.code(), Some(2), "{extra}: {}", text(&out));
            assert_no_panic(&out);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
            assert!(stderr.contains("`ve`") && stderr.contains(key), "{stderr}");
        }
    }
    h.write_config("settle_lag = \"36500d\"\nlookback = \"36500d\"");
    assert_ok(&h.run(&["check"]));
    assert_ok(&h.run(&["sync"]));
}
