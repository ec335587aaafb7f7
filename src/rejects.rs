//! `ordersync rejects`: the upstream rows kept in `rejected_rows` because they could not be read.
//!
//! Read-only over its own connection, like `status`. By default it lists the rows still open (no
//! good copy of the same order has been stored since); `--all` adds the resolved ones. The text
//! form shows a row's text cut short; `--json` gives everything.

use std::fmt::Write as _;

use rusqlite::{params_from_iter, Connection};
use serde::Serialize;

use crate::store::StoreError;

/// One row of `rejected_rows`.
#[derive(Debug, Serialize)]
pub struct Rejection {
    pub pipeline: String,
    pub source: String,
    pub scope: String,
    pub window_start: String,
    pub window_end: String,
    pub cursor: String,
    pub order_id: Option<String>,
    pub reason: String,
    pub raw: String,
    pub first_seen_at: String,
    pub last_seen_at: String,
    pub times_seen: i64,
    pub resolved_at: Option<String>,
}

/// The rejected rows of `pipelines` (every pipeline when empty), open ones only unless `all`,
/// newest sighting first.
pub fn collect(
    conn: &Connection,
    pipelines: &[String],
    all: bool,
) -> Result<Vec<Rejection>, StoreError> {
    let mut sql = String::from(
        "SELECT pipeline, source, scope, window_start, window_end, cursor, order_id, reason, raw, \
         first_seen_at, last_seen_at, times_seen, resolved_at FROM rejected_rows WHERE 1 = 1",
    );
    if !all {
        sql.push_str(" AND resolved_at IS NULL");
    }
    if !pipelines.is_empty() {
        let marks = vec!["?"; pipelines.len()].join(", ");
        let _ = write!(sql, " AND pipeline IN ({marks})");
    }
    sql.push_str(" ORDER BY pipeline, last_seen_at DESC, id DESC");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(pipelines), |r| {
        Ok(Rejection {
            pipeline: r.get(0)?,
            source: r.get(1)?,
            scope: r.get(2)?,
            window_start: r.get(3)?,
            window_end: r.get(4)?,
            cursor: r.get(5)?,
            order_id: r.get(6)?,
            reason: r.get(7)?,
            raw: r.get(8)?,
            first_seen_at: r.get(9)?,
            last_seen_at: r.get(10)?,
            times_seen: r.get(11)?,
            resolved_at: r.get(12)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How much of a row's text the text form shows.
const SHOWN: usize = 300;

/// The text form: a block per rejected row.
pub fn render_text(rows: &[Rejection], all: bool) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str(if all {
            "no rejected rows\n"
        } else {
            "no open rejected rows (`--all` shows resolved ones too)\n"
        });
        return out;
    }
    for r in rows {
        let state = match &r.resolved_at {
            Some(at) => format!("resolved {at}"),
            None => "open".to_string(),
        };
        let _ = writeln!(
            out,
            "{} ({}) order {}: {}",
            r.pipeline,
            r.source,
            r.order_id.as_deref().unwrap_or("unknown"),
            state
        );
        let _ = writeln!(out, "  reason: {}", r.reason);
        let _ = writeln!(
            out,
            "  seen {} time(s), first {}, last {}",
            r.times_seen, r.first_seen_at, r.last_seen_at
        );
        let _ = writeln!(
            out,
            "  from {} window {} .. {}, cursor {:?}",
            r.scope, r.window_start, r.window_end, r.cursor
        );
        let _ = writeln!(out, "  raw: {}", shorten(&r.raw));
    }
    out
}

/// At most [`SHOWN`] characters on one line.
fn shorten(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!(
            "{}… ({} bytes; --json shows all)",
            &one_line[..cut],
            text.len()
        ),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_or_multi_line_text_is_shown_short_on_one_line() {
        assert_eq!(shorten("a\nb"), "a b");
        let long = "é".repeat(SHOWN + 10);
        let shown = shorten(&long);
        assert!(shown.starts_with(&"é".repeat(SHOWN)));
        assert!(shown.contains(&format!("({} bytes", long.len())));
    }
}
