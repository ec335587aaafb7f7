//! damaijia paging: where a window's scan stands, kept in the cursor text, and where it goes next.
//!
//! The API pages by number (`page`, `size`) over whatever matches a query *at the moment of each
//! request*, so rows that change during a scan move under it. Two kinds of scan:
//!
//! **Live syncs page by key** ([`KeyCursor`], `k:since:skip:total:resets`), ordered by
//! `update_time` ascending. Each request asks from `since` (inclusive), the update second of the
//! last row read, and skips the `skip` rows already read at that second (page `skip / size`): an
//! offset is used only inside one second's tie group. A row updated during the scan moves to the
//! end of the window and is read again there, or out of it; either way no unread row moves
//! before the key, so nothing is skipped — whatever `total` does. Inside a tie group deeper than a
//! page, rows leaving or joining it would shift it under the offset: when `total` changes there,
//! the group is read again from its first row. A page whose rows are not in update order (an
//! upstream ignoring `order_by`) is read as plain offsets within `since`.
//!
//! **Backfills page by offset** ([`ScanCursor`], `offset:total:rescans`), ordered by
//! `create_time`, which never changes: rows move only when orders join or leave the window. When
//! a page reports a different `total`: fewer matches → the unread rows shifted back by at most the
//! difference, so step back that far; more → they may sit anywhere before us, so read the window
//! again from its first page.
//!
//! Each re-read costs one unit of a per-run budget ([`MAX_RESCANS`]); past it the run fails with
//! the code `drift`, leaving the checkpoint where the last page put it (the next run resumes there
//! with a fresh budget). Rows read twice are harmless: the upsert is idempotent.

use crate::http::UpstreamError;
use crate::sources::Axis;

/// How many times one run may re-read part of a window because `total` moved under it.
pub const MAX_RESCANS: u32 = 10;

/// Where a window's scan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cursor {
    Key(KeyCursor),
    Offset(ScanCursor),
}

/// A live scan by key: see the module doc.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct KeyCursor {
    /// Unix seconds: ask for `update_time ≥ since`; `None` for the window's start.
    pub(super) since: Option<i64>,
    /// Rows at the start of the query from `since` already read.
    pub(super) skip: u64,
    /// The `total` the last page reported.
    pub(super) total: Option<u64>,
    /// Re-reads of a tie group in this run.
    pub(super) resets: u32,
}

/// A backfill scan by offset: see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ScanCursor {
    pub(super) offset: u64,
    pub(super) total: Option<u64>,
    pub(super) rescans: u32,
}

fn not_ours(text: &str) -> UpstreamError {
    UpstreamError::fatal("cursor", format!("saved cursor {text:?} is not ours"))
}

impl Cursor {
    /// The cursor of a page of a window read along `axis`; `""` is the window's first page. A
    /// live window saved by an ordersync that paged live syncs by offset starts again from its
    /// first page (re-reading is harmless; an offset over update times is not).
    pub(super) fn parse(axis: Axis, text: &str) -> Result<Cursor, UpstreamError> {
        match axis {
            Axis::Live | Axis::Rescan => match text.strip_prefix("k:") {
                Some(rest) => KeyCursor::parse(rest)
                    .map(Cursor::Key)
                    .ok_or_else(|| not_ours(text)),
                None => {
                    ScanCursor::parse(text).ok_or_else(|| not_ours(text))?;
                    Ok(Cursor::Key(KeyCursor::default()))
                }
            },
            Axis::Backfill => ScanCursor::parse(text)
                .map(Cursor::Offset)
                .ok_or_else(|| not_ours(text)),
        }
    }

    pub(super) fn text(&self) -> String {
        match self {
            Cursor::Key(k) => format!(
                "k:{}:{}:{}:{}",
                opt(k.since),
                k.skip,
                opt(k.total),
                k.resets
            ),
            Cursor::Offset(c) => format!("{}:{}:{}", c.offset, opt(c.total), c.rescans),
        }
    }

    /// The page number to ask for with pages of `size` rows.
    pub(super) fn page(&self, size: u64) -> u64 {
        match self {
            Cursor::Key(k) => k.skip / size,
            Cursor::Offset(c) => c.offset / size,
        }
    }

    /// Where the update window of the request starts, when the cursor decides it.
    pub(super) fn since(&self) -> Option<i64> {
        match self {
            Cursor::Key(k) => k.since,
            Cursor::Offset(_) => None,
        }
    }

    /// Where to read next after a page of pages of `size` rows whose rows had these update
    /// seconds (in the order served; `None` where a row has none readable) and that reported
    /// `total`; `None` when the window is done.
    pub(super) fn next(
        self,
        size: u64,
        times: &[Option<i64>],
        total: u64,
    ) -> Result<Option<Cursor>, UpstreamError> {
        match self {
            Cursor::Key(k) => Ok(k.next(size, times, total)?.map(Cursor::Key)),
            Cursor::Offset(c) => Ok(c.next(size, times.len() as u64, total)?.map(Cursor::Offset)),
        }
    }
}

fn opt(v: Option<impl std::fmt::Display>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// `""` → `None`; anything else must parse.
fn field<T: std::str::FromStr>(part: Option<&str>) -> Option<Option<T>> {
    match part {
        None | Some("") => Some(None),
        Some(p) => p.parse().ok().map(Some),
    }
}

/// A saved cursor resumed by a new run gets a fresh re-read budget (else a window that once
/// drifted too often would fail every run from then on).
pub fn resume_cursor(saved: &str) -> String {
    if let Some(mut k) = saved.strip_prefix("k:").and_then(KeyCursor::parse) {
        k.resets = 0;
        return Cursor::Key(k).text();
    }
    match ScanCursor::parse(saved) {
        Some(c) => Cursor::Offset(ScanCursor { rescans: 0, ..c }).text(),
        None => saved.to_string(),
    }
}

fn drift(before: u64, total: u64, at: u64) -> UpstreamError {
    UpstreamError::fatal(
        "drift",
        format!(
            "the window's total kept changing while it was read ({before} → {total} at row {at}, \
             {MAX_RESCANS} re-reads this run); stopping here, the next run resumes from the last committed page"
        ),
    )
}

impl KeyCursor {
    fn parse(text: &str) -> Option<KeyCursor> {
        let mut parts = text.split(':');
        let since = field(parts.next())?;
        let skip = field(parts.next())?.unwrap_or(0);
        let total = field(parts.next())?;
        let resets = field(parts.next())?.unwrap_or(0);
        parts.next().is_none().then_some(KeyCursor {
            since,
            skip,
            total,
            resets,
        })
    }

    fn next(
        self,
        size: u64,
        times: &[Option<i64>],
        total: u64,
    ) -> Result<Option<KeyCursor>, UpstreamError> {
        let rows = times.len() as u64;
        let page_start = self.skip - self.skip % size;
        let drifted = self.total.is_some_and(|t| t != total);
        if drifted && page_start > 0 {
            // Deep in a tie group: rows that joined or left it shifted it under the offset.
            let resets = self.resets.saturating_add(1);
            if resets > MAX_RESCANS {
                return Err(drift(self.total.unwrap_or(total), total, page_start));
            }
            tracing::debug!(
                total,
                skip = self.skip,
                "damaijia total changed inside a tie group; re-reading it"
            );
            return Ok(Some(KeyCursor {
                skip: 0,
                total: Some(total),
                resets,
                ..self
            }));
        }
        if rows < size || page_start.saturating_add(rows) >= total {
            return Ok(None);
        }
        let known: Vec<i64> = times.iter().flatten().copied().collect();
        let in_order = known.windows(2).all(|w| w[0] <= w[1]);
        if !in_order {
            tracing::warn!(
                "damaijia answered a page not in update_time order; paging it by offset"
            );
        }
        let last = known.last().copied().filter(|_| in_order);
        let next = match last {
            // The key moves on to the last row's second; rows of that second on this page are read.
            Some(t) if self.since.is_none_or(|s| t > s) => KeyCursor {
                since: Some(t),
                skip: times
                    .iter()
                    .rev()
                    .take_while(|r| r.is_none_or(|r| r >= t))
                    .count() as u64,
                ..self
            },
            // Every row read is of the second the page began at: on through its tie group.
            _ => KeyCursor {
                skip: page_start.saturating_add(rows),
                ..self
            },
        };
        Ok(Some(KeyCursor {
            total: Some(total),
            ..next
        }))
    }
}

impl ScanCursor {
    fn parse(text: &str) -> Option<ScanCursor> {
        if text.is_empty() {
            return Some(ScanCursor {
                offset: 0,
                total: None,
                rescans: 0,
            });
        }
        let mut parts = text.split(':');
        let offset = parts.next()?.parse().ok()?;
        let total = field(parts.next())?;
        let rescans = field(parts.next())?.unwrap_or(0);
        Some(ScanCursor {
            offset,
            total,
            rescans,
        })
    }

    fn next(self, size: u64, rows: u64, total: u64) -> Result<Option<ScanCursor>, UpstreamError> {
        let page_start = self.offset - self.offset % size;
        let drifted = self.total.is_some_and(|t| t != total);
        if !drifted {
            if rows < size || page_start.saturating_add(rows) >= total {
                return Ok(None);
            }
            // Only a corrupt checkpoint holds an offset this close to the limit: refuse it.
            let offset = page_start.checked_add(size).ok_or_else(|| {
                UpstreamError::fatal(
                    "cursor",
                    format!("saved cursor offset {} is out of range", self.offset),
                )
            })?;
            return Ok(Some(ScanCursor {
                offset,
                total: Some(total),
                rescans: self.rescans,
            }));
        }
        let before = self.total.unwrap_or(total);
        let rescans = self.rescans.saturating_add(1);
        if rescans > MAX_RESCANS {
            return Err(drift(before, total, page_start));
        }
        let offset = if total < before {
            // Rows not yet read moved back by at most the shrink.
            page_start.saturating_sub(before - total)
        } else {
            0
        };
        tracing::debug!(
            before,
            total,
            offset,
            "damaijia total changed during the scan; re-reading"
        );
        Ok(Some(ScanCursor {
            offset: offset - offset % size,
            total: Some(total),
            rescans,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64, total: Option<u64>, rescans: u32) -> ScanCursor {
        ScanCursor {
            offset,
            total,
            rescans,
        }
    }

    #[test]
    fn backfills_stop_at_total_and_reread_on_drift() {
        // A steady window of 250 rows, pages of 100.
        assert_eq!(
            at(0, None, 0).next(100, 100, 250).unwrap(),
            Some(at(100, Some(250), 0))
        );
        assert_eq!(at(200, Some(250), 0).next(100, 50, 250).unwrap(), None);
        assert_eq!(at(100, Some(200), 0).next(100, 100, 200).unwrap(), None);
        // Two rows left the window before page 2: step back two rows (to the page holding them).
        assert_eq!(
            at(200, Some(250), 0).next(100, 48, 248).unwrap(),
            Some(at(100, Some(248), 1))
        );
        // A row appeared: it may be anywhere before us, start over.
        assert_eq!(
            at(200, Some(250), 0).next(100, 51, 251).unwrap(),
            Some(at(0, Some(251), 1))
        );
        // Past the budget: a clear failure, not an endless loop.
        let err = at(200, Some(250), MAX_RESCANS)
            .next(100, 51, 251)
            .unwrap_err();
        assert_eq!(err.code(), "drift");
    }

    fn key(since: Option<i64>, skip: u64, total: Option<u64>, resets: u32) -> KeyCursor {
        KeyCursor {
            since,
            skip,
            total,
            resets,
        }
    }

    fn secs(times: &[i64]) -> Vec<Option<i64>> {
        times.iter().map(|t| Some(*t)).collect()
    }

    #[test]
    fn live_scans_move_the_key_to_the_last_second_read_and_skip_only_its_ties() {
        // Pages of 4: the key moves to 13, where two rows were read.
        let first = key(None, 0, None, 0);
        assert_eq!(
            first.next(4, &secs(&[10, 11, 13, 13]), 50).unwrap(),
            Some(key(Some(13), 2, Some(50), 0))
        );
        // A whole page of one second: on through its tie group by offset.
        assert_eq!(
            key(Some(13), 2, Some(50), 0)
                .next(4, &secs(&[13, 13, 13, 13]), 50)
                .unwrap(),
            Some(key(Some(13), 4, Some(50), 0))
        );
        // A row without a readable time between ties counts as one of them.
        assert_eq!(
            key(Some(13), 4, Some(50), 0)
                .next(4, &[Some(13), Some(20), None, Some(20)], 50)
                .unwrap(),
            Some(key(Some(20), 3, Some(50), 0))
        );
        // A short page, or one reaching `total`, ends the window.
        assert_eq!(
            key(Some(20), 3, Some(9), 0)
                .next(4, &secs(&[20, 20, 21]), 9)
                .unwrap(),
            None
        );
        assert_eq!(
            key(Some(20), 0, Some(4), 0)
                .next(4, &secs(&[20, 21, 22, 23]), 4)
                .unwrap(),
            None
        );
    }

    #[test]
    fn a_changed_total_rereads_a_deep_tie_group_and_nothing_else() {
        // Near the key, `total` may move freely: the page began at the key's first row.
        assert_eq!(
            key(Some(13), 2, Some(50), 0)
                .next(4, &secs(&[13, 13, 14, 15]), 47)
                .unwrap(),
            Some(key(Some(15), 1, Some(47), 0))
        );
        // Deep in a tie group it may have shifted: read the group again from its first row.
        assert_eq!(
            key(Some(13), 6, Some(50), 0)
                .next(4, &secs(&[13, 13, 13, 13]), 49)
                .unwrap(),
            Some(key(Some(13), 0, Some(49), 1))
        );
        let err = key(Some(13), 6, Some(50), MAX_RESCANS)
            .next(4, &secs(&[13, 13, 13, 13]), 49)
            .unwrap_err();
        assert_eq!(err.code(), "drift");
    }

    #[test]
    fn a_page_out_of_update_order_is_paged_by_offset() {
        assert_eq!(
            key(Some(10), 1, Some(50), 0)
                .next(4, &secs(&[10, 30, 12, 20]), 50)
                .unwrap(),
            Some(key(Some(10), 4, Some(50), 0))
        );
    }

    #[test]
    fn cursors_round_trip_and_resume_with_a_fresh_budget() {
        for c in [
            Cursor::Offset(at(0, None, 0)),
            Cursor::Offset(at(300, Some(1234), 4)),
        ] {
            assert_eq!(Cursor::parse(Axis::Backfill, &c.text()).unwrap(), c);
        }
        for c in [key(None, 0, None, 0), key(Some(1700000000), 7, Some(99), 3)] {
            let c = Cursor::Key(c);
            assert_eq!(Cursor::parse(Axis::Live, &c.text()).unwrap(), c);
        }
        assert_eq!(resume_cursor("300:1234:4"), "300:1234:0");
        assert_eq!(resume_cursor("k:1700000000:7:99:3"), "k:1700000000:7:99:0");
        assert!(Cursor::parse(Axis::Backfill, "x:y").is_err());
        assert!(Cursor::parse(Axis::Live, "k:x").is_err());
        // A live window saved as an offset by an older ordersync starts again from its start.
        assert_eq!(
            Cursor::parse(Axis::Live, "200:250:0").unwrap(),
            Cursor::Key(KeyCursor::default())
        );
    }
}
