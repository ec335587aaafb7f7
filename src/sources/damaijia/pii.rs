//! damaijia customer PII: masked, kept or dropped in an upstream row's JSON text before it becomes
//! `raw` (receiver name, phone, address detail, ID card, buyer message, buyer ids).
//!
//! Only the personal fields are parsed; they are protected as `Value`s and written back in place,
//! so the plain values never reach the store or a log. A personal object in an undocumented shape
//! (a string, a list) cannot be told apart, so none of it is kept.

use serde_json::{Map, Value};

use crate::sources::rawrow::RawRow;

/// What happens to customer PII before a row is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiiMode {
    /// `138****1234`, `张*`, `***`: enough to recognise, not enough to reach anyone.
    Mask,
    Keep,
    Drop,
}

/// How one personal field is hidden.
#[derive(Clone, Copy)]
enum PiiKind {
    Phone,
    Name,
    /// Addresses, ID numbers, ciphertexts, buyer messages and ids: nothing of them is kept.
    Opaque,
}

/// Personal fields of an order and of each SKU line (the same names at both levels).
const PII_FIELDS: &[(&str, PiiKind)] = &[
    ("post_tel", PiiKind::Phone),
    ("post_receiver", PiiKind::Name),
    ("encrypt_post_tel", PiiKind::Opaque),
    ("encrypt_post_receiver", PiiKind::Opaque),
    ("buyer_words", PiiKind::Opaque),
    ("doudian_open_id", PiiKind::Opaque),
    ("open_id", PiiKind::Opaque),
];
const ADDRESS_FIELDS: &[(&str, PiiKind)] = &[
    ("detail", PiiKind::Opaque),
    ("encrypt_detail", PiiKind::Opaque),
];
const ID_CARD_FIELDS: &[(&str, PiiKind)] = &[
    ("id_card_no", PiiKind::Opaque),
    ("id_card_name", PiiKind::Name),
];
/// Objects holding personal fields, with those fields.
const NESTED_PII: &[(&str, &[(&str, PiiKind)])] = &[
    ("post_addr", ADDRESS_FIELDS),
    ("user_id_info", ID_CARD_FIELDS),
];

/// Masks, keeps or drops the personal fields of one shop order or SKU line, in its JSON text: the
/// personal fields alone are parsed, protected as a `Value` and written back.
///
/// It cannot fail: a personal field that cannot be parsed (a lone surrogate, a number out of range,
/// nesting too deep) cannot be told apart either, so none of it is kept. Whatever else is wrong
/// with the row, its text holds no plain PII afterwards, even as a rejected row.
pub(super) fn protect_pii(row: &mut RawRow<'_>, mode: PiiMode) {
    if mode == PiiMode::Keep {
        return;
    }
    let keys: Vec<&str> = PII_FIELDS
        .iter()
        .map(|(key, _)| *key)
        .chain(NESTED_PII.iter().map(|(key, _)| *key))
        .collect();
    let mut personal = row.pick(&keys).unwrap_or_else(|_| {
        let mut readable = Map::new();
        for key in &keys {
            match row.pick(&[key]) {
                Ok(Value::Object(field)) => readable.extend(field),
                _ => {
                    readable.insert(key.to_string(), Value::String(mask("", PiiKind::Opaque)));
                }
            }
        }
        Value::Object(readable)
    });
    protect_level(&mut personal, mode);
    for key in keys {
        match personal.get(key) {
            Some(value) => row.replace(key, value),
            None => row.remove(key),
        }
    }
}

fn protect_level(v: &mut Value, mode: PiiMode) {
    let Some(obj) = v.as_object_mut() else { return };
    protect_fields(obj, PII_FIELDS, mode);
    for &(key, fields) in NESTED_PII {
        match obj.get_mut(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(inner)) => protect_fields(inner, fields, mode),
            Some(Value::Array(items)) => {
                for item in items {
                    match item {
                        Value::Object(inner) => protect_fields(inner, fields, mode),
                        other => *other = Value::String(mask("", PiiKind::Opaque)),
                    }
                }
            }
            // Not the documented object: its parts cannot be told apart, so none of it is kept.
            Some(_) => match mode {
                PiiMode::Drop => {
                    obj.remove(key);
                }
                _ => {
                    obj.insert(key.to_string(), Value::String(mask("", PiiKind::Opaque)));
                }
            },
        }
    }
}

fn protect_fields(obj: &mut Map<String, Value>, fields: &[(&str, PiiKind)], mode: PiiMode) {
    for (name, kind) in fields {
        match mode {
            PiiMode::Keep => {}
            PiiMode::Drop => {
                obj.remove(*name);
            }
            PiiMode::Mask => {
                if let Some(value) = obj.get_mut(*name) {
                    let masked = match &*value {
                        Value::Null => continue,
                        Value::String(s) if s.is_empty() => continue,
                        Value::String(s) => mask(s, *kind),
                        other => mask(&other.to_string(), *kind),
                    };
                    *value = Value::String(masked);
                }
            }
        }
    }
}

/// `13812341234` → `138****1234`, `张三丰` → `张**`, anything else → `***`.
fn mask(text: &str, kind: PiiKind) -> String {
    // Most personal fields are opaque: they are hidden without looking at their characters.
    let chars = match kind {
        PiiKind::Opaque => return "***".to_string(),
        PiiKind::Phone | PiiKind::Name => text.chars().count(),
    };
    match kind {
        PiiKind::Phone if chars >= 8 => {
            let head: String = text.chars().take(3).collect();
            let tail: String = text.chars().skip(chars - 4).collect();
            format!("{head}****{tail}")
        }
        PiiKind::Name if chars >= 2 => {
            let mut out = String::with_capacity(text.len());
            out.extend(text.chars().take(1));
            out.extend(std::iter::repeat_n('*', chars - 1));
            out
        }
        _ => "***".to_string(),
    }
}
