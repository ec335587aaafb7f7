//! The operator's files under `deploy/`: the alert rules pass `promtool check rules` and their own
//! unit tests (`promtool test rules`), the Grafana dashboard is an importable dashboard whose
//! queries are valid PromQL, and rules and dashboard use only metric names the real daemon serves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ordersync_sim::Faults;
use serde_json::Value;

use crate::common::*;

const RULES: &str = "deploy/prometheus/ordersync-rules.yml";
const RULE_TESTS: &str = "deploy/prometheus/ordersync-rules.test.yml";
const DASHBOARD: &str = "deploy/grafana/ordersync.json";

/// Names the rules and dashboard may use before the daemon serves them (none now). The drift test
/// fails once the daemon serves one, so an entry is removed then rather than left to excuse a
/// later drift.
const NOT_YET_SERVED: &[&str] = &[];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Whether `promtool` is here. Without it the test is skipped, unless CI said it installed the
/// tools (`ORDERSYNC_REQUIRE_TOOLS`): then a missing promtool fails it.
fn promtool_present() -> bool {
    let present = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        assert!(
            std::env::var_os("ORDERSYNC_REQUIRE_TOOLS").is_none(),
            "promtool is not installed, and ORDERSYNC_REQUIRE_TOOLS says it must be"
        );
        eprintln!("SKIPPED: promtool is not installed (.ci/run installs it)");
    }
    present
}

fn promtool(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs")
}

/// The metric names in a PromQL expression or a rules file: every word starting `ordersync_`.
fn ordersync_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("ordersync_"))
        .map(str::to_string)
        .collect()
}

/// The alert names a rules file defines.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn alert_rules_pass_promtool_and_their_tests_show_each_alert_firing_and_not() {
    // Without promtool, the coverage of the test file is still checked.
    let rules = read(RULES);
    let tests = read(RULE_TESTS);
    let alerts = alert_names(&rules);
    assert!(alerts.len() >= 7, "{alerts:?}");
    for alert in &alerts {
        // Each `alertname:` line is followed by its `exp_alerts:`, empty (`[]`) or not.
        let expectations: Vec<bool> = tests
            .lines()
            .zip(tests.lines().skip(1))
            .filter(|(l, _)| l.trim() == format!("alertname: {alert}"))
            .map(|(_, next)| next.trim() == "exp_alerts: []")
            .collect();
        assert!(
            expectations.contains(&false),
            "{RULE_TESTS} never expects {alert} to fire"
        );
        assert!(
            expectations.contains(&true),
            "{RULE_TESTS} never expects {alert} to stay quiet"
        );
    }

    if !promtool_present() {
        return;
    }
    let dir = repo("deploy/prometheus");
    let check = promtool(&["check", "rules", "ordersync-rules.yml"], &dir);
    assert!(check.status.success(), "{}", text(&check));
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        said.contains(&format!("SUCCESS: {} rules found", alerts.len())),
        "{said}"
    );
    let test = promtool(&["test", "rules", "ordersync-rules.test.yml"], &dir);
    assert!(test.status.success(), "{}", text(&test));
}

/// The dashboard's panels and their queries, as (panel title, expression).
fn dashboard_queries(dash: &Value) -> Vec<(String, String)> {
    let panels = dash["panels"].as_array().expect("panels");
    panels
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap_or("").to_string()))
        })
        .collect()
}

#[test]
fn the_dashboard_imports_with_a_datasource_input_and_a_pipeline_variable() {
    let dash: Value = serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    assert!(dash["title"].is_string() && dash["uid"].is_string());
    assert!(dash["id"].is_null(), "an exported dashboard carries no id");
    // Import asks for the Prometheus data source, and every panel and query uses that choice.
    let inputs = dash["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS"
            && i["type"] == "datasource"
            && i["pluginId"] == "prometheus"),
        "{inputs:?}"
    );
    let uses_input = |ds: &Value| ds["type"] == "prometheus" && ds["uid"] == "${DS_PROMETHEUS}";
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    let mut ids = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().expect("a panel has a title");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "{title}: id twice"
        );
        assert!(uses_input(&p["datasource"]), "{title}: {}", p["datasource"]);
        for key in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert!(uses_input(&t["datasource"]), "{title}: {}", t["datasource"]);
        }
    }
    // Every query is narrowed by the pipeline variable, which lists the pipelines from Prometheus.
    for (title, expr) in dashboard_queries(&dash) {
        assert!(
            expr.contains("pipeline=~\"$pipeline\""),
            "{title}: {expr} ignores $pipeline"
        );
    }
    let vars = dash["templating"]["list"].as_array().expect("templating");
    let pipeline = vars
        .iter()
        .find(|v| v["name"] == "pipeline")
        .expect("a pipeline variable");
    assert!(uses_input(&pipeline["datasource"]));
    assert_eq!(pipeline["type"], "query");
    let query = pipeline["query"]["query"].as_str().expect("its query");
    assert!(query.starts_with("label_values("), "{query}");
    assert!(query.ends_with(", pipeline)"), "{query}");
    // What each panel is for (the issue's list), by the metric it reads.
    let names: BTreeSet<String> = dashboard_queries(&dash)
        .iter()
        .flat_map(|(_, e)| ordersync_names(e))
        .collect();
    for wanted in [
        "ordersync_watermark_lag_seconds",
        "ordersync_runs_total",
        "ordersync_rows_seen_total",
        "ordersync_rows_changed_total",
        "ordersync_requests_total",
        "ordersync_upstream_errors_total",
        "ordersync_rows_rejected_total",
        "ordersync_skipped_ticks_total",
        "ordersync_rescan_rows_changed_total",
    ] {
        assert!(names.contains(wanted), "no panel shows {wanted}");
    }
}

#[test]
fn the_dashboard_queries_are_valid_promql() {
    if !promtool_present() {
        return;
    }
    // promtool parses PromQL in recording rules: one rule per query, Grafana's variables filled in.
    let dash: Value = serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in dashboard_queries(&dash).iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$pipeline", ".*");
        let quoted = serde_json::to_string(&expr).expect("a string");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("dashboard.yml"), rules).expect("write");
    let check = promtool(&["check", "rules", "dashboard.yml"], dir.path());
    assert!(check.status.success(), "{}", text(&check));
}

/// The metric families a running daemon serves, from its `# TYPE` lines (served with or without
/// samples).
fn served_families() -> BTreeSet<String> {
    let h = Harness::veapi(20, 5, Faults::default());
    let port = free_port();
    let config = format!(
        r#"[database]
path = "{db}"
[daemon]
listen = "127.0.0.1:{port}"
[[pipeline]]
name = "ve"
source = "veapi"
endpoint = "{endpoint}"
start = "{start}"
[pipeline.auth]
vekey = {{ env = "TEST_VEKEY" }}
"#,
        db = h.db_path().display(),
        endpoint = h.sim.endpoint(),
        start = (h.now - chrono::Duration::days(6)).format("%Y-%m-%d"),
    );
    std::fs::write(h.config_path(), config).expect("write config");
    let mut daemon = Reaper(
        h.command(&["run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("daemon starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Some((200, body)) = http_get(port, "/metrics") {
            break body;
        }
        assert!(
            daemon.0.try_wait().expect("try_wait").is_none(),
            "daemon exited"
        );
        assert!(Instant::now() < deadline, "/metrics never answered");
        std::thread::sleep(Duration::from_millis(20));
    };
    sigterm(&daemon.0);
    assert_eq!(wait_exit(&mut daemon.0, Duration::from_secs(25)), Some(0));
    parse_metrics(&body); // panics on a malformed exposition
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn rules_and_dashboard_use_only_metrics_the_daemon_serves() {
    let served = served_families();
    assert!(served.contains("ordersync_runs_total"), "{served:?}");
    for pending in NOT_YET_SERVED {
        assert!(
            !served.contains(*pending),
            "the daemon serves {pending} now: remove it from NOT_YET_SERVED"
        );
    }
    let known = |name: &String| served.contains(name) || NOT_YET_SERVED.contains(&name.as_str());

    let in_rules = ordersync_names(&read(RULES));
    let unknown: Vec<&String> = in_rules.iter().filter(|n| !known(n)).collect();
    assert!(
        unknown.is_empty(),
        "{RULES} uses {unknown:?}; served: {served:?}"
    );

    let dash: Value = serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    let mut in_dashboard = BTreeSet::new();
    for (title, expr) in dashboard_queries(&dash) {
        let names = ordersync_names(&expr);
        assert!(
            !names.is_empty(),
            "{title}: {expr} reads no ordersync metric"
        );
        for name in names {
            assert!(
                known(&name),
                "{DASHBOARD} panel {title:?} uses {name}, not served"
            );
            in_dashboard.insert(name);
        }
    }
    let variables = dash["templating"].to_string();
    for name in ordersync_names(&variables) {
        assert!(known(&name), "{DASHBOARD} variable uses {name}, not served");
    }
    // The alerts' own gauges are in the rules, so a rename there cannot pass unnoticed.
    for name in [
        "ordersync_consecutive_failed_runs",
        "ordersync_last_success_timestamp_seconds",
        "ordersync_schedule_interval_seconds",
        "ordersync_watermark_lag_seconds",
        "ordersync_rows_rejected_total",
        "ordersync_skipped_ticks_total",
    ] {
        assert!(in_rules.contains(name), "no rule reads {name}");
    }
    assert!(in_dashboard.len() >= 9, "{in_dashboard:?}");
}
