//! `ordersync rejects`: the upstream rows kept in `rejected_rows` because they could not be read.
//!
//! Read-only over its own connection, like `status`; the rows come from `store::report`. By
//! default it lists the rows still open (no good copy of the same order has been stored since);
//! `--all` adds the resolved ones. The text form shows a row's text cut short; `--json` gives
//! everything.

use std::fmt::Write as _;

use crate::store::sql::Db;
use crate::store::{report, StoreError};

pub use crate::store::report::Rejection;

/// The rejected rows of `pipelines` (every pipeline when empty), open ones only unless `all`,
/// newest sighting first.
pub fn collect(
    db: &mut dyn Db,
    pipelines: &[String],
    all: bool,
) -> Result<Vec<Rejection>, StoreError> {
    report::rejections(db, pipelines, all)
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
