//! An upstream JSON object kept as the text it came in: fields are split out without parsing their
//! values, read on demand, and rewritten (personal ones) in place, so a page is never built into a
//! tree of `serde_json::Value`s and serialised again (that was most of the client's own CPU).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::hash::BuildHasherDefault;

use crate::fnv::Fnv1a;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// One JSON object as `(key, value as JSON text)` pairs, in upstream order. A key that appears
/// twice keeps its last copy only, as `serde_json::Value` would (and not the first, as SQLite's
/// `json_extract` would read it): `raw` and the columns read from it always agree.
#[derive(Debug)]
pub struct RawRow<'a> {
    fields: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> RawRow<'a> {
    /// Splits `text`, which must be one JSON object, into its fields.
    pub fn parse(text: &'a str) -> Result<RawRow<'a>, String> {
        serde_json::from_str(text).map_err(|e| format!("not a JSON object ({e})"))
    }

    /// An object without fields.
    pub fn empty() -> Self {
        RawRow { fields: Vec::new() }
    }

    /// The JSON text of `key`'s value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// The JSON text of `key`'s value, as long as the input it was split from lives: rows split
    /// out of it (a list inside the row) do not borrow the row itself.
    pub fn get_text(&self, key: &str) -> Option<Cow<'a, str>> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// The fields named in `keys` that the row has, parsed, as one object: what a source reads.
    /// An integer too long for 64 bits (a 20-digit id) comes out as its exact digits in a string,
    /// never through a float.
    pub fn pick(&self, keys: &[&str]) -> Result<Value, String> {
        let mut map = Map::new();
        // A field whose key length no key has is passed over without comparing it to each key.
        let lengths = keys.iter().fold(0u64, |m, k| m | length_bit(k));
        for (k, v) in &self.fields {
            if lengths & length_bit(k) != 0 && keys.contains(&k.as_ref()) {
                let value = match long_integer(v) {
                    Some(digits) => Value::String(digits.to_string()),
                    None => serde_json::from_str(v).map_err(|e| format!("`{k}`: {e}"))?,
                };
                map.insert(k.to_string(), value);
            }
        }
        Ok(Value::Object(map))
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        self.fields.retain(|(k, _)| k != key);
    }

    /// Sets `key` to `value`; a key the row does not have stays absent.
    pub fn replace(&mut self, key: &str, value: &Value) {
        self.replace_text(key, value.to_string());
    }

    /// Sets `key` to the JSON text `json` (which must be one JSON value); a key the row does not
    /// have stays absent.
    pub fn replace_text(&mut self, key: &str, json: String) {
        if let Some((_, v)) = self.fields.iter_mut().find(|(k, _)| k == key) {
            *v = Cow::Owned(json);
        }
    }

    /// The row as compact JSON text; values that were not rewritten are the upstream's own text.
    pub fn to_json(&self) -> String {
        let len: usize = self.fields.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
        let mut out = String::with_capacity(len + 2);
        out.push('{');
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match k {
                // Borrowed means the key had no escape sequence upstream, and JSON allows no raw
                // control characters or quotes in a string: it goes back between quotes as it is.
                Cow::Borrowed(k) => {
                    out.push('"');
                    out.push_str(k);
                    out.push('"');
                }
                Cow::Owned(k) => out.push_str(&Value::from(k.as_str()).to_string()),
            }
            out.push(':');
            out.push_str(v);
        }
        out.push('}');
        out
    }
}

/// A bit for a key's length (lengths of 63 and more share one): [`RawRow::pick`]'s filter.
fn length_bit(key: &str) -> u64 {
    1 << key.len().min(63)
}

/// Drops every copy of a repeated key but the last. A set of the keys finds whether any repeats
/// (they almost never do) in one pass; comparing every pair cost more than parsing the row. The
/// set hashes with FNV-1a: keys are short and come from the answer being parsed, and SipHash,
/// the default, cost as much as the set's other work (2% of a sync's CPU).
fn keep_last_copies(fields: &mut Vec<(Cow<'_, str>, Cow<'_, str>)>) {
    // FNV-1a: fast for short keys; a key crafted to collide costs only time here, and a row is
    // at most `max_body` bytes.
    let mut seen: HashSet<&str, BuildHasherDefault<Fnv1a>> =
        HashSet::with_capacity_and_hasher(fields.len(), BuildHasherDefault::default());
    if fields.iter().all(|(k, _)| seen.insert(k.as_ref())) {
        return;
    }
    let keep: Vec<bool> = (0..fields.len())
        .map(|i| {
            !fields[i + 1..]
                .iter()
                .any(|(later, _)| *later == fields[i].0)
        })
        .collect();
    let mut keep = keep.into_iter();
    fields.retain(|_| keep.next().unwrap_or(true));
}

/// An integer literal too long for 64 bits: its digits. JSON numbers that fit are left to serde.
fn long_integer(text: &str) -> Option<&str> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let integer = digits.len() > 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && text.parse::<i64>().is_err()
        && text.parse::<u64>().is_err();
    integer.then_some(text)
}

/// The rows of a JSON list of objects, split in one pass; `null` or no list at all is no rows.
pub fn rows(text: Option<&str>) -> Result<Vec<RawRow<'_>>, String> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let rows: Option<Vec<RawRow<'_>>> =
        serde_json::from_str(text).map_err(|e| format!("not a list of objects ({e})"))?;
    Ok(rows.unwrap_or_default())
}

/// One element of a list of rows: an object split into its fields, or the JSON text of
/// anything else (a number, a string, a list), which no source can read as a row.
pub type Element<'a> = Result<RawRow<'a>, &'a str>;

/// The elements of a JSON list, each an object or not, so that one odd element costs itself and
/// not the list; `null` or no list at all is no elements. Only text that is not a JSON list is
/// an error.
pub fn elements(text: Option<&str>) -> Result<Vec<Element<'_>>, String> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let items: Option<Vec<&RawValue>> =
        serde_json::from_str(text).map_err(|e| format!("not a list ({e})"))?;
    Ok(items
        .unwrap_or_default()
        .into_iter()
        .map(|item| RawRow::parse(item.get()).map_err(|_| item.get()))
        .collect())
}

/// How deep SQLite's JSON functions read (its own limit is 1000) and serde_json parses (128):
/// a value nested deeper cannot be stored as `raw`, which every JSON query over `orders` reads.
pub const MAX_DEPTH: usize = 100;

/// Whether JSON text nests objects and lists at most [`MAX_DEPTH`] deep. Text with no more than
/// [`MAX_DEPTH`] opening brackets in all cannot nest deeper, and counting them is one fast pass
/// (the exact walk below went byte by byte through every row and line: 3% of a damaijia sync's
/// CPU); only text with more is walked, skipping strings.
pub fn within_depth(text: &str) -> bool {
    let openers = text.bytes().filter(|b| matches!(b, b'{' | b'[')).count();
    openers <= MAX_DEPTH || nests_within_depth(text)
}

/// [`within_depth`] by walking the bytes, strings skipped.
fn nests_within_depth(text: &str) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

impl<'de: 'a, 'a> Deserialize<'de> for RawRow<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Fields<'a> {
            type Value = RawRow<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRow<'a>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(48));
                while let Some(Key(key)) = map.next_key()? {
                    let value: &'de RawValue = map.next_value()?;
                    fields.push((key, Cow::Borrowed(value.get())));
                }
                keep_last_copies(&mut fields);
                Ok(RawRow { fields })
            }
        }
        d.deserialize_map(Fields(std::marker::PhantomData))
    }
}

/// A key borrowed from the input when it can be (no escape sequences), owned when it cannot.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyText<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for KeyText<'a> {
            type Value = Key<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }

            fn visit_string<E>(self, v: String) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyText(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_row_round_trips_to_the_same_value_and_keeps_upstream_order() {
        let text = r#"{ "b" : 1, "a\"q": "x\u00e9", "n": {"z": [1, 2.50, null]}, "id": 9007199254740993 }"#;
        let row = RawRow::parse(text).unwrap();
        let out = row.to_json();
        let back: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(text).unwrap());
        assert!(out.starts_with(r#"{"b":1,"a\"q":"#), "{out}");
        assert!(
            out.contains("2.50") && out.contains("9007199254740993"),
            "values verbatim: {out}"
        );
    }

    #[test]
    fn a_repeated_key_keeps_its_last_copy_and_fields_are_rewritten_in_place() {
        let mut row = RawRow::parse(r#"{"tel":"1","x":1,"tel":"2","x":3,"y":4}"#).unwrap();
        assert_eq!(row.get("tel"), Some("\"2\""));
        assert_eq!(row.pick(&["tel", "none"]).unwrap(), json!({"tel": "2"}));
        assert_eq!(
            row.to_json(),
            r#"{"tel":"2","x":3,"y":4}"#,
            "the copies Value keeps"
        );
        row.replace("tel", &json!("***"));
        row.replace("absent", &json!(1));
        assert_eq!(row.to_json(), r#"{"tel":"***","x":3,"y":4}"#);
        row.remove("tel");
        assert_eq!(row.to_json(), r#"{"x":3,"y":4}"#);
    }

    #[test]
    fn a_long_integer_is_picked_as_its_exact_digits() {
        let row = RawRow::parse(
            r#"{"id": 123456789012345678901, "n": 7, "neg": -98765432109876543210, "f": 1.5}"#,
        )
        .unwrap();
        assert_eq!(
            row.pick(&["id", "n", "neg", "f"]).unwrap(),
            json!({"id": "123456789012345678901", "n": 7, "neg": "-98765432109876543210", "f": 1.5})
        );
        assert_eq!(row.get_text("n").as_deref(), Some("7"));
    }

    #[test]
    fn list_elements_that_are_not_objects_cost_only_themselves() {
        let items = elements(Some(r#"[{"a":1}, 2, "x", [3], {"b":{}}]"#)).unwrap();
        assert_eq!(items.len(), 5);
        assert!(items[0].is_ok() && items[4].is_ok());
        let odd: Vec<&str> = items
            .iter()
            .filter_map(|i| i.as_ref().err().copied())
            .collect();
        assert_eq!(odd, ["2", "\"x\"", "[3]"]);
        assert!(elements(Some("{}")).is_err());
        assert!(elements(Some("null")).unwrap().is_empty());
    }

    #[test]
    fn many_brackets_side_by_side_are_not_depth() {
        let wide = format!("[{}]", vec!["{}"; 3 * MAX_DEPTH].join(","));
        assert!(within_depth(&wide));
        let deep_after_wide = format!(
            "[{},{}1{}]",
            vec!["[]"; MAX_DEPTH].join(","),
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert!(!within_depth(&deep_after_wide));
    }

    #[test]
    fn depth_is_counted_outside_strings_only() {
        let deep = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(within_depth(&deep));
        let deeper = format!(
            "{{\"a\":{}1{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert!(!within_depth(&deeper));
        let quoted = format!("{{\"a\":\"{}\\\"{}\"}}", "[".repeat(500), "{".repeat(500));
        assert!(
            within_depth(&quoted),
            "brackets inside a string do not count"
        );
    }

    #[test]
    fn what_is_not_an_object_or_a_list_is_an_error_not_a_panic() {
        for bad in ["[1]", "\"s\"", "{\"a\":", "", "{\"a\":1}}"] {
            assert!(RawRow::parse(bad).is_err(), "{bad:?}");
        }
        assert!(rows(Some("{}")).is_err());
        assert!(rows(Some(r#"[{"a":1}, 2]"#)).is_err());
        assert!(rows(Some("null")).unwrap().is_empty());
        assert!(rows(None).unwrap().is_empty());
        assert_eq!(rows(Some(r#"[{"a":1}, {}]"#)).unwrap().len(), 2);
    }
}
