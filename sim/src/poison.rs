//! Poison rows: one bad row among good ones, as an upstream written by someone else may send it.
//!
//! A test marks an order with a [`Poison`] ([`crate::Simulator::poison`]); every answer that would
//! carry that order's row carries it spoiled in that way instead, the other rows untouched. The
//! simulator's ground truth is unchanged: a client should keep every other order exactly and the
//! poisoned one aside — except the poisons that are not errors at all ([`Poison::LongId`], stored
//! under its long id; [`Poison::InvalidUtf8`], [`Poison::Nul`] and [`Poison::NulIn`], stored with
//! the character replaced where the database cannot hold it).
//!
//! [`Poisoner::apply`] works on an answer's JSON: it finds the rows list and each row's order id by
//! JSON pointer (each simulator says where they are), spoils the marked rows, and writes the body
//! again (its keys then sorted; only answers with a marked row are rewritten). What JSON text
//! cannot say — a byte that is not UTF-8, an integer past 64 bits — is written in by replacing a
//! marker in the serialised text.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::ledger::lock;

/// How a row is spoiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Poison {
    /// `order_id` is `null`.
    NullId,
    /// The row has no `order_id`.
    MissingId,
    /// `order_id` is an object.
    ObjectId,
    /// The amount field holds text that is not a number.
    BadAmount,
    /// The amount field holds this text (an upstream echoing what it was sent, say).
    AmountText(String),
    /// A field the client never reads (`remark`, added) holds one byte that is not UTF-8.
    InvalidUtf8,
    /// The order id is sent as this JSON integer, 20 digits or more (past 64 bits): not bad, only
    /// long; a client must keep its exact digits.
    LongId(String),
    /// A field the client never reads (`remark`, added) is nested this many lists deep.
    Deep(usize),
    /// The row is a JSON number instead of an object.
    NotAnObject,
    /// A field the client never reads (`remark`, added) holds U+0000, escaped as JSON allows
    /// (`"a\u0000b"`): legal JSON that PostgreSQL's `jsonb` and `text` cannot hold.
    Nul,
    /// The row's string field of this name, one the client reads (a product name, say), gets
    /// U+0000 appended. A row without such a top-level string field is served as it is: the test
    /// checks the stored field.
    NulIn(String),
}

/// Where a simulator's answer keeps its rows, as JSON pointers.
#[derive(Clone, Copy, Debug)]
pub struct RowsAt {
    /// The rows list in the answer, e.g. `/data`.
    pub rows: &'static str,
    /// The order id inside a row, e.g. `/order_id` or `/ad_info/order_id`.
    pub id: &'static str,
    /// An amount inside a row that the client reads, e.g. `/total_pay_amount`.
    pub amount: &'static str,
}

/// The field a row gets for the poisons of a field the client never reads.
const REMARK: &str = "remark";

const UTF8_MARK: &str = "@@poison-not-utf8@@";
const LONG_MARK: &str = "@@poison-long-id@@";

/// The marked orders of one simulator.
#[derive(Default)]
pub struct Poisoner {
    marked: Mutex<HashMap<String, Poison>>,
}

impl Poisoner {
    /// Spoils `order_id`'s row from now on (`None`: serves it sound again).
    pub fn set(&self, order_id: &str, poison: Option<Poison>) {
        let mut marked = lock(&self.marked);
        match poison {
            Some(p) => marked.insert(order_id.to_string(), p),
            None => marked.remove(order_id),
        };
    }

    /// The answer `body` with every marked row in it spoiled. An answer without one comes back
    /// as it was.
    pub fn apply(&self, body: Vec<u8>, at: RowsAt) -> Vec<u8> {
        let marked = lock(&self.marked).clone();
        if marked.is_empty() {
            return body;
        }
        let Ok(mut answer) = serde_json::from_slice::<Value>(&body) else {
            return body;
        };
        let Some(Value::Array(rows)) = answer.pointer_mut(at.rows) else {
            return body;
        };
        let mut long_ids = Vec::new();
        let mut spoiled = false;
        for row in rows.iter_mut() {
            let id = match row.pointer(at.id) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => continue,
            };
            let Some(poison) = marked.get(&id) else {
                continue;
            };
            spoiled = true;
            spoil(row, poison, at);
            if let Poison::LongId(digits) = poison {
                long_ids.push(digits.clone());
            }
        }
        if !spoiled {
            return body;
        }
        let Ok(text) = serde_json::to_string(&answer) else {
            return body;
        };
        let mut text = text.into_bytes();
        for digits in long_ids {
            text = replace_once(
                &text,
                format!("\"{LONG_MARK}\"").as_bytes(),
                digits.as_bytes(),
            );
        }
        while let Some(next) = replace(&text, UTF8_MARK.as_bytes(), b"caf\xff") {
            text = next;
        }
        text
    }
}

fn spoil(row: &mut Value, poison: &Poison, at: RowsAt) {
    let (parent, key) = at.id.rsplit_once('/').unwrap_or(("", at.id));
    match poison {
        Poison::NullId => set(row, parent, key, Value::Null),
        Poison::MissingId => {
            if let Some(Value::Object(obj)) = row.pointer_mut(parent) {
                obj.remove(key);
            }
        }
        Poison::ObjectId => {
            let old = row.pointer(at.id).cloned().unwrap_or(Value::Null);
            set(row, parent, key, json!({ "id": old }));
        }
        Poison::BadAmount | Poison::AmountText(_) => {
            let text = match poison {
                Poison::AmountText(text) => text.as_str(),
                _ => "12,50元",
            };
            let (parent, key) = at.amount.rsplit_once('/').unwrap_or(("", at.amount));
            set(row, parent, key, json!(text));
        }
        Poison::InvalidUtf8 => set(row, "", REMARK, json!(UTF8_MARK)),
        Poison::LongId(_) => set(row, parent, key, json!(LONG_MARK)),
        Poison::Deep(depth) => {
            let mut v = json!(1);
            for _ in 0..*depth {
                v = Value::Array(vec![v]);
            }
            set(row, "", REMARK, v);
        }
        Poison::NotAnObject => *row = json!(404),
        Poison::Nul => set(row, "", REMARK, json!("a\u{0}b")),
        Poison::NulIn(field) => {
            if let Some(Value::String(text)) = row.get_mut(field.as_str()) {
                text.push('\0');
            }
        }
    }
}

fn set(row: &mut Value, parent: &str, key: &str, value: Value) {
    if let Some(Value::Object(obj)) = row.pointer_mut(parent) {
        obj.insert(key.to_string(), value);
    }
}

fn replace(text: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    let at = text.windows(from.len()).position(|w| w == from)?;
    let mut out = Vec::with_capacity(text.len() + to.len());
    out.extend_from_slice(&text[..at]);
    out.extend_from_slice(to);
    out.extend_from_slice(&text[at + from.len()..]);
    Some(out)
}

fn replace_once(text: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    replace(text, from, to).unwrap_or_else(|| text.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: RowsAt = RowsAt {
        rows: "/data",
        id: "/order_id",
        amount: "/pay",
    };

    fn body() -> Vec<u8> {
        br#"{"data":[{"order_id":"1","pay":"5"},{"order_id":"2","pay":"7"}]}"#.to_vec()
    }

    #[test]
    fn only_the_marked_row_is_spoiled() {
        let p = Poisoner::default();
        assert_eq!(p.apply(body(), AT), body(), "nothing marked");
        p.set("2", Some(Poison::BadAmount));
        let out: Value = serde_json::from_slice(&p.apply(body(), AT)).unwrap();
        assert_eq!(out["data"][0], json!({"order_id": "1", "pay": "5"}));
        assert_eq!(out["data"][1]["pay"], "12,50元");
        p.set("2", None);
        assert_eq!(p.apply(body(), AT), body());
    }

    #[test]
    fn what_json_cannot_say_is_written_into_the_text() {
        let p = Poisoner::default();
        p.set("1", Some(Poison::InvalidUtf8));
        p.set("2", Some(Poison::LongId("123456789012345678901".into())));
        let out = p.apply(body(), AT);
        assert!(std::str::from_utf8(&out).is_err());
        assert!(out.windows(4).any(|w| w == b"caf\xff"));
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains(r#""order_id":123456789012345678901"#),
            "{text}"
        );
        p.set("1", Some(Poison::Deep(3)));
        p.set("2", Some(Poison::NotAnObject));
        let out: Value = serde_json::from_slice(&p.apply(body(), AT)).unwrap();
        assert_eq!(out["data"][0]["remark"], json!([[[1]]]));
        assert_eq!(out["data"][1], json!(404));
    }
}
