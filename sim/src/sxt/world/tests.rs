//! Tests of the 随心推 world: its state mix, its anchors, its stale copies and its changes.

use super::draw::STATE_WEIGHTS;
use super::*;
use crate::time::parse_wall_clock;

fn world(orders: usize, seed: u64) -> World {
    World::generate(&SxtSimConfig {
        seed,
        orders,
        days: 60,
        now: parse_wall_clock("2025-06-01 12:00:00").expect("time"),
        ..SxtSimConfig::default()
    })
}

fn all_states() -> Vec<i64> {
    STATE_WEIGHTS.iter().map(|(s, _)| *s).collect()
}

#[test]
fn weights_make_a_hundred_and_paths_climb() {
    assert_eq!(STATE_WEIGHTS.iter().map(|(_, w)| w).sum::<u32>(), 100);
    let w = world(2000, 3);
    for e in w.live() {
        assert!(e.path.windows(2).all(|p| p[0] < p[1]), "{:?}", e.path);
        assert_eq!(e.path[0], UNPAID);
        let s = e.state();
        if s < DELIVERING {
            assert_eq!(e.current, Indicators::ZERO, "{s}");
        }
        assert!(e.delivering.at_most(e.current));
        for f in [e.current, e.delivering] {
            assert_eq!(f.cost_fen > 0, f.plays > 0, "{f:?}");
            assert!(f.gmv_fen == 0 || f.cost_fen > 0, "{f:?}");
        }
        assert_eq!(e.path.contains(&DELIVERING), s >= DELIVERING);
        assert_eq!(e.order_id.len(), 19);
        assert!(e.order_id.parse::<i64>().is_ok());
    }
}

#[test]
fn anchors_come_first_and_are_never_vanished() {
    let mut w = world(10, 5);
    let texts: Vec<String> = w.truth().iter().map(|o| o.cost_text.clone()).collect();
    assert!(texts.contains(&"38.9".to_string()) && texts.contains(&"0.29".to_string()));
    let gone = w.vanish(100);
    assert_eq!(gone.len(), 8);
    let left: Vec<String> = w.truth().iter().map(|o| o.cost_text.clone()).collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&"38.9".to_string()) && left.contains(&"0.29".to_string()));
    assert_eq!(
        world(1, 5).truth().len(),
        1,
        "a one-order world has no anchors"
    );
}

#[test]
fn about_fifteen_percent_carry_copies_that_never_outrank_the_truth() {
    let w = world(4000, 9);
    let able: Vec<&Entry> = w.live().filter(|e| e.path.len() > 1).collect();
    let mut with_copies = 0;
    let (mut before, mut after, mut same) = (0, 0, 0);
    for e in &able {
        let (b, a) = w.copies(e);
        if b.is_empty() && a.is_empty() {
            continue;
        }
        with_copies += 1;
        assert!((1..=2).contains(&(b.len() + a.len())));
        before += b.len();
        after += a.len();
        for s in b.iter().chain(&a) {
            assert!(*s <= e.state() && e.path.contains(s));
            assert!(e.indicators_at(*s).at_most(e.current));
            same += usize::from(*s == e.state());
        }
    }
    let share = with_copies as f64 / able.len() as f64;
    assert!((0.12..0.18).contains(&share), "{share}");
    assert!(
        before > 50 && after > 50 && same > 5,
        "{before} {after} {same}"
    );
    assert_eq!(w.copies(able[0]), w.copies(able[0]), "stable per version");
}

#[test]
fn a_change_reshuffles_the_copies_and_filters_keep_them() {
    let mut w = world(500, 2);
    let pattern =
        |w: &World| -> Vec<(Vec<i64>, Vec<i64>)> { w.live().map(|e| w.copies(e)).collect() };
    let first = pattern(&w);
    let rows = w.snapshot(&all_states()).len();
    let extra: usize = first.iter().map(|(b, a)| b.len() + a.len()).sum();
    assert_eq!(rows, 500 + extra);
    w.add_orders(1, parse_wall_clock("2025-06-01 12:00:00").expect("time"));
    let second = pattern(&w);
    assert_ne!(first[..500], second[..500]);

    let delivering: usize = w
        .live()
        .filter(|e| e.state() == DELIVERING)
        .map(|e| {
            let (b, a) = w.copies(e);
            1 + b.len() + a.len()
        })
        .sum();
    assert_eq!(w.snapshot(&[DELIVERING]).len(), delivering);
}

#[test]
fn forced_copies_replace_the_random_ones_and_never_outrank() {
    let mut w = world(300, 4);
    let e = w
        .live()
        .find(|e| e.state() == COMPLETED)
        .expect("a completed order");
    let id = e.order_id.clone();
    assert!(w.add_stale_copy(&id, DELIVERING, true));
    assert!(w.add_stale_copy(&id, REVIEWING, false));
    assert!(w.add_stale_copy(&id, COMPLETED, false), "its own state");
    assert!(!w.add_stale_copy(&id, ENDED, true), "above the truth");
    assert!(!w.add_stale_copy(&id, 4, true), "not a state");
    assert!(!w.add_stale_copy("1", 1, true), "no such order");
    assert!(!w.add_stale_copy(&format!("+{id}"), 1, true), "not its id");
    let i = w.by_id[&id.parse::<u64>().expect("id")];
    assert_eq!(
        w.copies(&w.entries[i]),
        (vec![DELIVERING], vec![REVIEWING, COMPLETED])
    );
    let e = &w.entries[i];
    assert!(e.indicators_at(DELIVERING).at_most(e.current));
    assert_eq!(e.indicators_at(REVIEWING), Indicators::ZERO);
}

#[test]
fn mutation_moves_one_step_and_grows_deliveries() {
    let mut w = world(400, 6);
    let before: HashMap<String, SxtOrder> = w
        .truth()
        .into_iter()
        .map(|o| (o.order_id.clone(), o))
        .collect();
    let at = parse_wall_clock("2025-06-01 12:05:00").expect("time");
    let changes = w.mutate(30, at);
    assert_eq!(changes.iter().filter(|m| m.from != m.to).count(), 30);
    let after: HashMap<String, SxtOrder> = w
        .truth()
        .into_iter()
        .map(|o| (o.order_id.clone(), o))
        .collect();
    for m in &changes {
        let (old, new) = (&before[&m.order_id], &after[&m.order_id]);
        assert_eq!(
            (old.state.to_string(), new.state.to_string()),
            (m.from.clone(), m.to.clone())
        );
        assert!(
            new.cost_fen >= old.cost_fen && new.plays >= old.plays && new.gmv_fen >= old.gmv_fen
        );
        if m.from == m.to {
            assert!(new.cost_fen > old.cost_fen);
        }
    }
    let again = w.mutate(1000, at);
    assert!(!again.is_empty());
    assert!(
        again
            .iter()
            .all(|m| changes.iter().all(|c| c.order_id != m.order_id)),
        "an order changed at {at} cannot change again at {at}"
    );
}
