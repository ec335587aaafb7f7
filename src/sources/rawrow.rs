//! An upstream JSON object kept as the text it came in: fields are split out without parsing their
//! values, read on demand, and rewritten (personal ones) in place, so a page is never built into a
//! tree of `serde_json::Value`s and serialised again (that was most of the client's own CPU).

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// One JSON object as `(key, value as JSON text)` pairs, in upstream order. A key that appears
/// twice keeps both copies: reads see the last one (as `Value` would), rewrites change every one.
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

    /// The JSON text of `key`'s value (its last copy).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// The fields named in `keys` that the row has, parsed, as one object: what a source reads.
    pub fn pick(&self, keys: &[&str]) -> Result<Value, String> {
        let mut map = Map::new();
        for (k, v) in &self.fields {
            if keys.contains(&k.as_ref()) {
                let value: Value = serde_json::from_str(v).map_err(|e| format!("`{k}`: {e}"))?;
                map.insert(k.to_string(), value);
            }
        }
        Ok(Value::Object(map))
    }

    /// Removes every copy of `key`.
    pub fn remove(&mut self, key: &str) {
        self.fields.retain(|(k, _)| k != key);
    }

    /// Sets every copy of `key` to `value`; a key the row does not have stays absent.
    pub fn replace(&mut self, key: &str, value: &Value) {
        let mut text = None;
        for (k, v) in &mut self.fields {
            if k == key {
                let t = text.get_or_insert_with(|| value.to_string());
                *v = Cow::Owned(t.clone());
            }
        }
    }

    /// The row as compact JSON text; values that were not rewritten are the upstream's own text.
    /// A repeated key keeps its last copy only, the one the columns were read from (SQLite's
    /// `json_extract` would read the first).
    pub fn to_json(&self) -> String {
        let len: usize = self.fields.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
        let mut out = String::with_capacity(len + 2);
        out.push('{');
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if self.fields[i + 1..].iter().any(|(later, _)| later == k) {
                continue;
            }
            if out.len() > 1 {
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

/// The elements of a JSON array as their own text; `null` is an empty list.
pub fn elements(text: &str) -> Result<Vec<&RawValue>, String> {
    let items: Option<Vec<&RawValue>> =
        serde_json::from_str(text).map_err(|e| format!("not a list ({e})"))?;
    Ok(items.unwrap_or_default())
}

impl<'de> Deserialize<'de> for RawRow<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = RawRow<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRow<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(48));
                while let Some(Key(key)) = map.next_key()? {
                    let value: &'de RawValue = map.next_value()?;
                    fields.push((key, Cow::Borrowed(value.get())));
                }
                Ok(RawRow { fields })
            }
        }
        d.deserialize_map(Fields)
    }
}

/// A key borrowed from the input when it can be (no escape sequences), owned when it cannot.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyText;
        impl<'de> Visitor<'de> for KeyText {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }

            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyText)
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
    fn reads_see_the_last_copy_and_rewrites_change_every_copy() {
        let mut row = RawRow::parse(r#"{"tel":"1","x":1,"tel":"2"}"#).unwrap();
        assert_eq!(row.get("tel"), Some("\"2\""));
        assert_eq!(row.pick(&["tel", "none"]).unwrap(), json!({"tel": "2"}));
        assert_eq!(
            row.to_json(),
            r#"{"x":1,"tel":"2"}"#,
            "the copy that was read"
        );
        row.replace("tel", &json!("***"));
        row.replace("absent", &json!(1));
        assert_eq!(row.get("tel"), Some("\"***\""));
        assert!(row.fields.iter().all(|(k, v)| k != "tel" || v == "\"***\""));
        assert_eq!(row.to_json(), r#"{"x":1,"tel":"***"}"#);
        row.remove("tel");
        assert_eq!(row.to_json(), r#"{"x":1}"#);
    }

    #[test]
    fn what_is_not_an_object_or_a_list_is_an_error_not_a_panic() {
        for bad in ["[1]", "\"s\"", "{\"a\":", "", "{\"a\":1}}"] {
            assert!(RawRow::parse(bad).is_err(), "{bad:?}");
        }
        assert!(elements("{}").is_err());
        assert!(elements("null").unwrap().is_empty());
        assert_eq!(elements(r#"[{"a":1}, 2]"#).unwrap().len(), 2);
    }
}
