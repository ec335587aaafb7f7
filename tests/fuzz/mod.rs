//! Property-based fuzzing of ordersync's pure functions: the five sources' page parsers and row
//! normalisers, `Config::parse`, money, and the window planner. Library calls only — no binary, no
//! simulator. One file per area; what they share is here: the seeded [`fuzz`] runner, [`Weird`]
//! values and JSON mutations of a fixture page, and the checks every accepted row must pass.
//!
//! Seeds as in `common::seeds`: each property has its own printed seed,
//! `ORDERSYNC_RELIABILITY_SEED=N` replays them, `ORDERSYNC_SOAK=1` runs ten times the cases.

mod config;
mod damaijia;
mod miaoyouquan;
mod money;
mod planner;
mod sxt;
mod veapi;

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::NaiveDate;
use ordersync::model::OrderRow;
use ordersync::planner::Window;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{
    Config as ProptestConfig, RngAlgorithm, TestCaseError, TestRng, TestRunner,
};
use rusqlite::Connection;
use serde_json::{json, Value};

use crate::common::{seed_for, soak};

/// Runs `test` on `cases` inputs of `strategy` (×10 under soak) from a seeded generator, shrinking
/// a failure to a minimal input; returns how many cases passed.
fn fuzz<S>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> u64
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let seed = seed_for(name);
    let cases = if soak() { cases * 10 } else { cases };
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    };
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&seed.rotate_left(i as u32 * 16).to_le_bytes());
    }
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let ran = AtomicU64::new(0);
    let result = runner.run(&strategy, |value| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(value)
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    println!(
        "{name}: {cases} cases passed ({} runs of the property)",
        ran.load(Ordering::Relaxed)
    );
    u64::from(cases)
}

/// A JSON value to put somewhere in an upstream page: odd strings, extreme numbers, wrong types —
/// or a raw JSON text spliced in verbatim (numbers serde cannot hold, lone surrogates, …).
#[derive(Debug, Clone)]
enum Weird {
    Json(Value),
    Raw(&'static str),
}

const WEIRD_STRINGS: &[&str] = &[
    "",
    "0",
    "-0",
    "00",
    " 1 ",
    "1",
    "-1",
    "12.5",
    "0.5",
    ".5",
    "5.",
    "1e5",
    "1,5",
    "abc",
    "null",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551616",
    "99999999999999999999999999",
    "0.000000000000000000001",
    "1712311295",
    "1712311295123",
    "99999999999",
    "253402300800",
    "-1712311295",
    "2024-02-29 23:59:59",
    "2024-02-30 10:00:00",
    "0000-00-00 00:00:00",
    "2024-01-01",
    "PAY_SUCC",
    "REFUND",
    "SETTLE",
    "CONFIRM",
    "FLYING",
    "中文订单",
    "\u{0}",
    "\u{202e}evil",
    "😀",
    "\n",
    "\\u0000",
    " ",
];

const RAW_SNIPPETS: &[&str] = &[
    "1e999",
    "-1e999",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "0.0000000000000000000000000001",
    "-0",
    "1.7976931348623157e308",
    "\"\\ud800\"",
    "\"\\udfff\\ud800\"",
    "\"\\u0000\"",
    "\"\\uD83D\\uDE00\"",
    "\"\\u4e2d\\u6587\"",
    "NaN",
    "[",
    "{\"a\":",
    "\"unterminated",
    "",
    "tru",
    "[[[[[[[[[[]]]]]]]]]]",
    "{}",
    "6928535482621498461",
    "6.928535482621498e18",
];

fn weird() -> BoxedStrategy<Weird> {
    let string = |s: String| Weird::Json(Value::String(s));
    prop_oneof![
        4 => prop::sample::select(WEIRD_STRINGS).prop_map(|s| Weird::Json(Value::String(s.into()))),
        2 => "[0-9]{0,25}".prop_map(string),
        2 => "-?[0-9]{0,12}\\.[0-9]{0,12}".prop_map(string),
        2 => any::<String>().prop_map(string),
        2 => prop_oneof![
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
        ]
        .prop_map(Weird::Json),
        1 => prop::sample::select(vec![json!([]), json!({}), json!(["1", 2, null]), json!({"error": "0"})])
            .prop_map(Weird::Json),
        3 => prop::sample::select(RAW_SNIPPETS).prop_map(Weird::Raw),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
enum Edit {
    /// Replace any node (the root included).
    Set(Index, Weird),
    /// Remove a key or an array element.
    Remove(Index),
    /// Add a key to an object.
    Insert(Index, String, Weird),
    /// Append a copy of a row to the list of rows.
    DuplicateRow(Index),
}

#[derive(Debug, Clone)]
enum TextEdit {
    Keep,
    Truncate(Index),
    Splice(Index, Vec<u8>),
    Bom,
}

#[derive(Debug, Clone)]
struct JsonMutation {
    edits: Vec<Edit>,
    text: TextEdit,
}

fn json_mutation() -> impl Strategy<Value = JsonMutation> {
    let edit = prop_oneof![
        4 => (any::<Index>(), weird()).prop_map(|(i, w)| Edit::Set(i, w)),
        2 => any::<Index>().prop_map(Edit::Remove),
        1 => (any::<Index>(), "[a-z_]{1,12}|\\PC{0,6}", weird()).prop_map(|(i, k, w)| Edit::Insert(i, k, w)),
        1 => any::<Index>().prop_map(Edit::DuplicateRow),
    ];
    let text = prop_oneof![
        6 => Just(TextEdit::Keep),
        2 => any::<Index>().prop_map(TextEdit::Truncate),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, b)| TextEdit::Splice(i, b)),
        1 => (any::<Index>(), prop::sample::select(RAW_SNIPPETS))
            .prop_map(|(i, s)| TextEdit::Splice(i, s.as_bytes().to_vec())),
        1 => Just(TextEdit::Bom),
    ];
    (prop::collection::vec(edit, 0..6), text).prop_map(|(edits, text)| JsonMutation { edits, text })
}

/// JSON pointers of every node under `v` (the root is `""`).
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                pointers(
                    child,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn unescape_pointer_token(t: &str) -> String {
    t.replace("~1", "/").replace("~0", "~")
}

/// Applies the mutation to `base`: the edited value, and the bytes sent.
fn apply(base: &Value, rows_at: &str, m: &JsonMutation) -> (Value, Vec<u8>) {
    let mut v = base.clone();
    let mut raws: Vec<&'static str> = Vec::new();
    let mut place = |w: &Weird| match w {
        Weird::Json(j) => j.clone(),
        Weird::Raw(r) => {
            raws.push(r);
            Value::String(format!("@@RAW{}@@", raws.len() - 1))
        }
    };
    for edit in &m.edits {
        let mut all = Vec::new();
        pointers(&v, String::new(), &mut all);
        match edit {
            Edit::Set(i, w) => {
                let p = &all[i.index(all.len())];
                let new = place(w);
                if let Some(slot) = v.pointer_mut(p) {
                    *slot = new;
                }
            }
            Edit::Remove(i) => {
                let p = all[i.index(all.len())].clone();
                if let Some((parent, last)) = p.rsplit_once('/') {
                    match v.pointer_mut(parent) {
                        Some(Value::Object(o)) => {
                            o.remove(&unescape_pointer_token(last));
                        }
                        Some(Value::Array(a)) => {
                            if let Ok(n) = last.parse::<usize>() {
                                if n < a.len() {
                                    a.remove(n);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            Edit::Insert(i, key, w) => {
                let objects: Vec<&String> = all
                    .iter()
                    .filter(|p| v.pointer(p).is_some_and(Value::is_object))
                    .collect();
                if !objects.is_empty() {
                    let p = objects[i.index(objects.len())].clone();
                    let new = place(w);
                    if let Some(Value::Object(o)) = v.pointer_mut(&p) {
                        o.insert(key.clone(), new);
                    }
                }
            }
            Edit::DuplicateRow(i) => {
                if let Some(Value::Array(rows)) = v.pointer_mut(rows_at) {
                    if !rows.is_empty() {
                        let copy = rows[i.index(rows.len())].clone();
                        rows.push(copy);
                    }
                }
            }
        }
    }
    let mut text = serde_json::to_string(&v).expect("a Value serialises");
    for (n, raw) in raws.iter().enumerate() {
        text = text.replace(&format!("\"@@RAW{n}@@\""), raw);
    }
    let mut bytes = text.into_bytes();
    match &m.text {
        TextEdit::Keep => {}
        TextEdit::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
        TextEdit::Splice(i, b) => {
            let at = i.index(bytes.len() + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        TextEdit::Bom => bytes.splice(0..0, [0xEF, 0xBB, 0xBF]).for_each(drop),
    }
    (v, bytes)
}

/// What an accepted affiliate row (veapi, miaoyouquan) must look like whatever upstream sent.
fn check_order(o: &OrderRow) -> Result<(), TestCaseError> {
    check_order_of_kind(o, "affiliate")?;
    prop_assert_eq!(o.sub_orders.len(), 1);
    prop_assert_eq!(&o.sub_orders[0].sub_order_id, &o.order_id);
    Ok(())
}

/// What an accepted row of any source must look like whatever upstream sent: an id, its kind, and
/// a `raw` that is JSON.
fn check_order_of_kind(o: &OrderRow, kind: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        !o.order_id.is_empty() && o.order_id != "0",
        "order id {:?}",
        o.order_id
    );
    prop_assert_eq!(o.kind.as_str(), kind);
    prop_assert!(
        is_json_object(&o.raw),
        "raw is not a JSON object: {}",
        o.raw
    );
    Ok(())
}

/// `raw` as the people who query it read it: an object by JSON's grammar that SQLite's JSON
/// functions accept. Not `serde_json::Value`: a field ordersync does not read is stored as
/// upstream sent it, and JSON allows what `Value` refuses (`"\ud800"`, `1e999`).
fn is_json_object(raw: &str) -> bool {
    thread_local! {
        static SQLITE: Connection = Connection::open_in_memory().expect("in-memory SQLite");
    }
    let grammar = serde_json::from_str::<&serde_json::value::RawValue>(raw).is_ok();
    grammar
        && SQLITE.with(|db| {
            db.query_row(
                "SELECT json_valid(?1) AND json_type(?1) = 'object'",
                [raw],
                |r| r.get::<_, bool>(0),
            )
            .unwrap_or(false)
        })
}

fn check_error(e: &ordersync::http::UpstreamError) -> Result<(), TestCaseError> {
    prop_assert!(!e.code().is_empty() && !e.to_string().is_empty(), "{:?}", e);
    Ok(())
}

/// The HTTP status of a fuzzed answer: mostly 200, sometimes one an upstream documents, sometimes any.
fn statuses() -> impl Strategy<Value = u16> {
    prop_oneof![6 => Just(200u16), 1 => prop::sample::select(vec![401u16, 403, 405, 429, 500, 502]), 1 => 100u16..600]
}

fn damaijia_window() -> Window {
    let day = |m: u32, d: u32| {
        NaiveDate::from_ymd_opt(2021, m, d)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("date")
    };
    Window {
        start: day(12, 1),
        end: day(12, 31),
    }
}

/// An independent reading of a decimal: one pass over the characters collecting digits, then the
/// arithmetic in i128. `None` where the text is not a decimal or the result does not fit in i64.
fn reference_scaled(text: &str, shift: usize) -> Option<i64> {
    let t = text.trim();
    let mut negative = false;
    let (mut int_digits, mut frac_digits, mut point) = (Vec::new(), Vec::new(), false);
    for (i, c) in t.chars().enumerate() {
        match c {
            '-' if i == 0 => negative = true,
            '+' if i == 0 => {}
            '.' if !point => point = true,
            '0'..='9' if point => frac_digits.push(c as u8 - b'0'),
            '0'..='9' => int_digits.push(c as u8 - b'0'),
            _ => return None,
        }
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return None;
    }
    let significant: Vec<u8> = int_digits.into_iter().skip_while(|d| *d == 0).collect();
    if significant.len() > 20 {
        return None;
    }
    let mut v: i128 = significant.iter().fold(0, |v, d| v * 10 + i128::from(*d));
    for i in 0..shift {
        v = v * 10 + i128::from(frac_digits.get(i).copied().unwrap_or(0));
    }
    if frac_digits.get(shift).is_some_and(|d| *d >= 5) {
        v += 1;
    }
    let v = i64::try_from(v).ok()?;
    Some(if negative { -v } else { v })
}
