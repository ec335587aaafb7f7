//! Keyset paging shared by the simulators whose API pages with a cursor.
//!
//! A world keeps, per queryable time, an index of `(unix seconds, order id)` keys, one per order;
//! a page is a range scan of that index strictly after the previous page's last key, so a cursor
//! stays valid and loses nothing while orders change between pages (an order whose time moves
//! behind the cursor is seen again later, never skipped). The cursor text is 30 ASCII digits: one
//! digit for the time type (1 pay, 2 update), the key's time as 10-digit unix seconds, and its
//! 19-digit order id. It is never `"0"` or empty, which the APIs use for "first page" and "no more".
//! [`page_by`] is the same scan over any key order, for a source whose index key is not `Key`
//! (it encodes its own cursor).

use std::collections::BTreeSet;
use std::ops::Bound;

/// A position in the paging order: (unix seconds of the queried time, order id).
pub(crate) type Key = (i64, u64);

const CURSOR_LEN: usize = 1 + 10 + 19;

/// Which time a query is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TimeType {
    Pay,
    Update,
}

impl TimeType {
    fn digit(self) -> char {
        match self {
            TimeType::Pay => '1',
            TimeType::Update => '2',
        }
    }
}

/// The cursor continuing after `key` in `time_type` order.
pub(crate) fn encode(time_type: TimeType, key: Key) -> String {
    format!("{}{:010}{:019}", time_type.digit(), key.0, key.1)
}

/// The time type and key inside a cursor, if it has the shape [`encode`] gives.
pub(crate) fn decode(text: &str) -> Option<(TimeType, Key)> {
    if text.len() != CURSOR_LEN || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let time_type = match text.get(..1)? {
        "1" => TimeType::Pay,
        "2" => TimeType::Update,
        _ => return None,
    };
    let secs = text.get(1..11)?.parse().ok()?;
    let id = text.get(11..)?.parse().ok()?;
    Some((time_type, (secs, id)))
}

/// One page of `index` between unix seconds `start` and `end` (both inclusive), strictly after
/// `after` when given: up to `size` orders that `pick` returns for an id (`None` skips it), and the
/// key of the last one if more follow.
pub(crate) fn page<'a, T>(
    index: &BTreeSet<Key>,
    start: i64,
    end: i64,
    after: Option<Key>,
    size: usize,
    pick: impl Fn(u64) -> Option<&'a T>,
) -> (Vec<&'a T>, Option<Key>) {
    page_by(index, (start, 0), (end, u64::MAX), after, size, |key| {
        pick(key.1)
    })
}

/// [`page`] for any key order (unidesk pages by `(unix ms, order id, sub-order id)`): up to `size`
/// items of `index` between the keys `first` and `last` (both inclusive), strictly after `after`
/// when given, that `pick` returns for a key (`None` skips it), and the key of the last one if
/// more follow. A key `after` before `first` counts as no key.
pub(crate) fn page_by<'a, K: Ord + Copy, T>(
    index: &BTreeSet<K>,
    first: K,
    last: K,
    after: Option<K>,
    size: usize,
    pick: impl Fn(&K) -> Option<&'a T>,
) -> (Vec<&'a T>, Option<K>) {
    let lower = match after {
        // A key at or past the end leaves nothing (and would make an invalid range).
        Some(k) if k >= last => return (Vec::new(), None),
        Some(k) if k >= first => Bound::Excluded(k),
        _ if first > last => return (Vec::new(), None),
        _ => Bound::Included(first),
    };
    let mut hits = index
        .range((lower, Bound::Included(last)))
        .filter_map(|key| pick(key).map(|item| (*key, item)))
        .take(size + 1);
    let page: Vec<(K, &T)> = hits.by_ref().take(size).collect();
    let more = hits.next().is_some();
    let next = if more {
        page.last().map(|(k, _)| *k)
    } else {
        None
    };
    (page.into_iter().map(|(_, item)| item).collect(), next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let key = (1_712_311_295, 6_928_535_482_621_498_461);
        let text = encode(TimeType::Update, key);
        assert_eq!(text.len(), 30);
        assert_eq!(decode(&text), Some((TimeType::Update, key)));
        for bad in ["", "0", "0x", "3171231129569285354826214984610", "1abc"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn pages_tile_the_range_and_the_last_says_so() {
        let index: BTreeSet<Key> = (0..10u64).map(|i| (100 + i as i64 / 2, i)).collect();
        let items: Vec<u64> = (0..10).collect();
        let pick = |id: u64| items.get(id as usize).filter(|i| *i % 3 != 0);
        let (first, next) = page(&index, 100, 104, None, 3, pick);
        assert_eq!(first, [&1, &2, &4]);
        let (second, next) = page(&index, 100, 104, next, 3, pick);
        assert_eq!(second, [&5, &7, &8]);
        assert_eq!(next, None, "a full page with nothing after it is the last");
        assert!(page(&index, 105, 104, None, 3, pick).0.is_empty());
        assert!(page(&index, 100, 104, Some((104, u64::MAX)), 3, pick)
            .0
            .is_empty());
    }

    #[test]
    fn any_key_order_pages_the_same_way() {
        let index: BTreeSet<(i64, u64, u64)> =
            (0..9u64).map(|i| (10 + i as i64 / 3, i / 2, i)).collect();
        let items: Vec<u64> = (0..9).collect();
        let pick = |k: &(i64, u64, u64)| items.get(k.2 as usize);
        let (first, next) = page_by(&index, (10, 0, 0), (12, u64::MAX, u64::MAX), None, 4, pick);
        assert_eq!(first, [&0, &1, &2, &3]);
        assert_eq!(next, Some((11, 1, 3)));
        let (rest, next) = page_by(&index, (10, 0, 0), (12, u64::MAX, u64::MAX), next, 5, pick);
        assert_eq!(rest, [&4, &5, &6, &7, &8]);
        assert_eq!(next, None);
        let (none, _) = page_by(&index, (11, 0, 0), (10, 0, 0), None, 4, pick);
        assert!(none.is_empty(), "an empty range");
        let (clamped, _) = page_by(
            &index,
            (11, 0, 0),
            (11, u64::MAX, u64::MAX),
            Some((0, 0, 0)),
            9,
            pick,
        );
        assert_eq!(clamped, [&3, &4, &5], "a key before the window starts it");
    }
}
