//! An upstream JSON object kept as the text it came in: fields are split out without parsing their
//! values, read on demand, and rewritten (personal ones) in place, so a page is never built into a
//! tree of `serde_json::Value`s and serialised again (that was most of the client's own CPU).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

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

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        self.fields.retain(|(k, _)| k != key);
    }

    /// Sets `key` to `value`; a key the row does not have stays absent.
    pub fn replace(&mut self, key: &str, value: &Value) {
        if let Some((_, v)) = self.fields.iter_mut().find(|(k, _)| k == key) {
            *v = Cow::Owned(value.to_string());
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

/// Drops every copy of a repeated key but the last. A set of the keys finds whether any repeats
/// (they almost never do) in one pass; comparing every pair cost more than parsing the row.
fn keep_last_copies(fields: &mut Vec<(Cow<'_, str>, Cow<'_, str>)>) {
    let mut seen = HashSet::with_capacity(fields.len());
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

/// The rows of a JSON list of objects, split in one pass; `null` or no list at all is no rows.
pub fn rows(text: Option<&str>) -> Result<Vec<RawRow<'_>>, String> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let rows: Option<Vec<RawRow<'_>>> =
        serde_json::from_str(text).map_err(|e| format!("not a list of objects ({e})"))?;
    Ok(rows.unwrap_or_default())
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
