//! `Config::parse`: TOML-ish text and mutations of the shipped `pipelines.toml` never panic; an
//! error is one line, and a config that parses is usable.

use std::path::Path;

use chrono::{Duration, NaiveDate};
use ordersync::config::Config;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

use super::fuzz;

const KEYS: &[&str] = &[
    "name",
    "source",
    "endpoint",
    "start",
    "schedule",
    "lookback",
    "settle_lag",
    "timeout",
    "max_retries",
    "max_rps",
    "retry_initial",
    "page_size",
    "enabled",
    "auth",
    "time_type",
    "order_type",
    "distribution_type",
    "pid",
    "query_order_type",
    "prod_type",
    "pii",
    "select_status",
    "vekey",
    "apkey",
    "dou_key",
    "app_key",
    "app_secret",
    "session",
    "access_token",
    "shop_id",
    "user_id",
    "dy_uid",
    "path",
    "listen",
    "bogus",
    "\"a\\nb\"",
    "\"\"",
    "'x y'",
    "a.b",
    "\"page_size\"",
];

const VALUE_STRINGS: &[&str] = &[
    "ve",
    "Ve",
    "a b",
    "",
    "x\ny",
    "veapi",
    "miaoyouquan",
    "unidesk",
    "damaijia",
    "sxt",
    "nope",
    "30s",
    "2h",
    "1h30m",
    "500ms",
    "0s",
    "-1s",
    "1.5h",
    "1d",
    "36500d",
    "36501d",
    "100000000d",
    "99999999999d",
    "18446744073709551615ms",
    "*/10 * * * *",
    "0 9 * * 1",
    "* * *",
    "0 0 0 0 0",
    "*/0 * * * *",
    "0 9 * * 5-7",
    "0 9 * * 7-5",
    "0 9 * * 8",
    "@daily",
    "0 0 31 2 *",
    "*/5 * * * * *",
    "2024-01-01",
    "2024-02-29",
    "2024-02-30",
    "2024-01-01 25:00:00",
    "0001-01-01",
    "9999-12-31",
    "2024-1-1",
    "http://127.0.0.1:1/x",
    "https://a",
    "ftp://x",
    "not a url",
    "http://[::1]:99999/",
    "127.0.0.1:9464",
    "[::1]:0",
    "localhost:80",
    "update",
    "pay",
    "mask",
    "keep",
    "drop",
    "Live",
    "${CREDENTIALS_DIRECTORY}/k",
];

fn toml_value() -> BoxedStrategy<String> {
    let quoted = |s: String| toml::Value::String(s).to_string();
    prop_oneof![
        5 => prop::sample::select(VALUE_STRINGS).prop_map(move |s| quoted(s.to_string())),
        1 => "\\PC{0,16}".prop_map(quoted),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        2 => (-5i64..300).prop_map(|n| n.to_string()),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        1 => any::<f64>().prop_map(|f| format!("{f:?}")),
        2 => prop::sample::select(vec![
            "{ env = \"X_NOT_SET\" }", "{ file = \"/nonexistent/k\" }", "{ env = 1 }", "{ a = 1, b = 2 }",
            "{ env = \"A\", file = \"B\" }", "[1, \"a\"]", "[]", "2024-01-01", "2024-01-01T00:00:00",
            "\"\"\"a\nb\"\"\"", "'''x\n'''", "inf", "nan", "{ }", "[[1]]",
        ])
        .prop_map(str::to_string),
    ]
    .boxed()
}

fn toml_line() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(vec![
            "[database]", "[daemon]", "[defaults]", "[[pipeline]]", "[pipeline.auth]", "[pipeline]",
            "[[database]]", "[x]", "[[pipeline.auth]]", "[defaults.auth]",
        ])
        .prop_map(str::to_string),
        8 => (prop::sample::select(KEYS), toml_value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => "\\PC{0,30}",
        1 => Just(String::new()),
    ]
}

/// A config that parsed is usable: nothing in it can make a run's arithmetic fail.
fn check_config(c: &Config) -> Result<(), TestCaseError> {
    let reference = NaiveDate::from_ymd_opt(2024, 2, 29)
        .and_then(|d| d.and_hms_opt(12, 0, 0))
        .expect("date");
    for p in &c.pipelines {
        prop_assert!(
            !p.name.is_empty()
                && p.name.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'-'
                    || b == b'_')
        );
        prop_assert!((1..=p.source().max_page_size()).contains(&p.page_size));
        prop_assert!(!p.timeout.is_zero());
        prop_assert!(p.max_rps.is_none_or(|r| r.is_finite() && r > 0.0));
        for (key, d) in [
            ("lookback", p.lookback),
            ("settle_lag", p.settle_lag),
            ("timeout", p.timeout),
            ("retry_initial", p.retry_initial),
        ] {
            let usable = Duration::from_std(d)
                .ok()
                .and_then(|d| reference.checked_sub_signed(d));
            prop_assert!(
                usable.is_some(),
                "pipeline {} accepts {key} = {d:?}, which no time can go back",
                p.name
            );
        }
        let _ = ordersync::config::next_tick(&p.schedule, reference);
    }
    Ok(())
}

fn check_config_result(
    result: Result<Config, ordersync::config::ConfigError>,
) -> Result<(), TestCaseError> {
    match result {
        Ok(c) => check_config(&c),
        Err(e) => {
            let text = e.to_string();
            prop_assert!(!text.trim().is_empty(), "empty error");
            prop_assert!(
                !text.contains('\n') && !text.contains('\r'),
                "error is not one line: {:?}",
                text
            );
            Ok(())
        }
    }
}

#[derive(Debug, Clone)]
enum LineEdit {
    Delete(Index),
    Duplicate(Index),
    Swap(Index, Index),
    ReplaceValue(Index, String),
    Insert(Index, String),
    TruncateAt(Index),
}

#[test]
fn fuzz_config_never_panics_and_errors_are_one_line() {
    let path = Path::new("pipelines.toml");
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines.toml"))
            .expect("pipelines.toml");
    assert!(
        Config::parse(&shipped, path).is_ok(),
        "the shipped example parses"
    );
    let mut total = fuzz(
        "fuzz config TOML-ish text",
        2000,
        prop_oneof![
            4 => prop::collection::vec(toml_line(), 0..24).prop_map(|lines| lines.join("\n")),
            1 => any::<String>(),
        ],
        |text| check_config_result(Config::parse(&text, path)),
    );
    let edit = prop_oneof![
        2 => any::<Index>().prop_map(LineEdit::Delete),
        1 => any::<Index>().prop_map(LineEdit::Duplicate),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| LineEdit::Swap(a, b)),
        4 => (any::<Index>(), toml_value()).prop_map(|(i, v)| LineEdit::ReplaceValue(i, v)),
        2 => (any::<Index>(), toml_line()).prop_map(|(i, l)| LineEdit::Insert(i, l)),
        1 => any::<Index>().prop_map(LineEdit::TruncateAt),
    ];
    total += fuzz(
        "fuzz config mutated pipelines.toml",
        2000,
        prop::collection::vec(edit, 1..6),
        |edits| {
            let mut lines: Vec<String> = shipped.lines().map(str::to_string).collect();
            for e in &edits {
                let n = lines.len();
                match e {
                    LineEdit::Delete(i) if n > 0 => {
                        lines.remove(i.index(n));
                    }
                    LineEdit::Duplicate(i) if n > 0 => {
                        let at = i.index(n);
                        lines.insert(at, lines[at].clone());
                    }
                    LineEdit::Swap(a, b) if n > 0 => lines.swap(a.index(n), b.index(n)),
                    LineEdit::ReplaceValue(i, v) if n > 0 => {
                        let at = i.index(n);
                        if let Some((k, _)) = lines[at].split_once('=') {
                            lines[at] = format!("{k}= {v}");
                        }
                    }
                    LineEdit::Insert(i, l) => lines.insert(i.index(n + 1), l.clone()),
                    LineEdit::TruncateAt(i) if n > 0 => lines.truncate(i.index(n)),
                    _ => {}
                }
            }
            check_config_result(Config::parse(&lines.join("\n"), path))
        },
    );
    println!("config fuzz: {total} cases");
}
