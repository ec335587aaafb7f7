//! Field readers shared by the sources: upstreams send numbers as strings or as numbers, ids as
//! either (never through a float), times in their own formats; each reader says which field is
//! wrong and why.

use chrono::NaiveDateTime;
use serde_json::Value;

use crate::{money, timefmt};

/// A text field; numbers are accepted and kept as their exact decimal text. Empty → `None`.
pub fn text(row: &Value, key: &str) -> Option<String> {
    match row.get(key)? {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An id: a string, or an integer JSON number (kept exactly). A float is refused: its digits are
/// already lost.
pub fn id(row: &Value, key: &str) -> Result<Option<String>, String> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() || s == "0" => Ok(None),
        Some(Value::String(s))
            if s.contains(char::REPLACEMENT_CHARACTER) || s.contains(char::is_control) =>
        {
            Err(format!(
                "`{key}` is not an id: {s:?} holds bytes that are not text"
            ))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => {
            let s = n.to_string();
            Ok((s != "0").then_some(s))
        }
        Some(other) => Err(format!("`{key}` is not an exact id: {other}")),
    }
}

/// An integer sent as a number or a decimal string.
pub fn int(row: &Value, key: &str) -> Result<Option<i64>, String> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("`{key}` is not an integer: {s:?}")),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("`{key}` is not an integer: {n}")),
        Some(other) => Err(format!("`{key}` is not an integer: {other}")),
    }
}

/// Fen, possibly with a fraction of a fen, rounded half up. Parsed from the exact text.
pub fn fen(row: &Value, key: &str) -> Result<Option<i64>, String> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => money::fen_round_half_up(s)
            .map(Some)
            .map_err(|e| format!("`{key}`: {e}")),
        Some(Value::Number(n)) => money::fen_round_half_up(&n.to_string())
            .map(Some)
            .map_err(|e| format!("`{key}`: {e}")),
        Some(other) => Err(format!("`{key}` is not an amount: {other}")),
    }
}

pub fn time(row: &Value, key: &str) -> Result<Option<NaiveDateTime>, String> {
    timefmt::parse_upstream_time(row.get(key)).map_err(|e| format!("`{key}`: {e}"))
}
