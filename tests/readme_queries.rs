//! The README's SQL on both engines: every query, in the form the README gives for each engine,
//! run on a veapi world synced into SQLite and the same world synced into PostgreSQL (`--db`),
//! with its rows compared, and the late-changes queries checked after a rescan against what
//! upstream withdrew and changed. Without PostgreSQL installed, SQLite alone (unless
//! `ORDERSYNC_REQUIRE_TOOLS` is set, as in CI).

use std::time::Duration as StdDuration;

use chrono::Duration;
use ordersync_sim::{Faults, Simulator};

use crate::common::*;

/// The README's example order id, made one of the test world's.
const README_ORDER: &str = "'6928535482621498461'";
/// Result columns holding times ordersync stamps as it stores a row: two syncs into two databases
/// stamp them a few seconds apart, so they are checked to be times on both and not compared.
const STAMPS: &[&str] = &["observed_at", "last_seen_at"];

/// Every README query, in each engine's form, on one veapi world synced into SQLite and into
/// PostgreSQL (`--db`; SQLite alone when PostgreSQL is not installed): each runs, has rows where
/// the world has any, and gives the same rows on both engines.
#[test]
fn readme_queries_run_against_a_synced_database() {
    let h = Harness::veapi(600, 90, Faults::default());
    // One row upstream spoils, so that the rejected_rows example has something to show.
    let spoiled = h.sim.truth()[5].order_id.clone();
    h.sim
        .poison(&spoiled, Some(ordersync_sim::Poison::BadAmount));
    assert_ok(&h.run(&["sync"]));
    let pg = pg_database();
    if let Some(pg) = &pg {
        assert_ok(&h.run_on(&pg.url(), &["sync"]));
    }
    let order = format!("'{}'", h.sim.truth()[0].order_id);
    let mut sqlite = Engine::Sqlite(h.db());
    let mut postgres = pg.as_ref().map(|pg| Engine::Postgres(pg.client()));
    let (mut ran, mut two_forms) = (0, 0);
    for q in readme_queries() {
        let q = if q.sqlite.contains(README_ORDER) {
            q.replace(README_ORDER, &order)
        } else {
            q
        };
        let lite = sqlite.answer(&q);
        // Every query has rows on a synced veapi database except the ad queries (veapi has no ad
        // orders) and those over rescans (late_changes runs them after one).
        if !q.sqlite.contains("'sxt'") && !q.sqlite.contains("'rescan'") {
            assert!(!lite.rows.is_empty(), "no rows from:\n{}", q.sqlite);
        }
        if let Some(postgres) = &mut postgres {
            assert_eq!(
                postgres.answer(&q).without_stamps(STAMPS),
                lite.without_stamps(STAMPS),
                "PostgreSQL's rows differ from SQLite's:\n{}\n\n{}",
                q.sqlite,
                q.postgres
            );
        }
        ran += 1;
        two_forms += usize::from(!q.shared());
    }
    assert!(
        ran >= 9,
        "README should show at least nine queries, found {ran}"
    );
    assert!(
        two_forms >= 2,
        "the late-changes queries have a PostgreSQL form each; found {two_forms}"
    );
    // daily_summary agrees with the orders table to the fen.
    let conn = h.db();
    let gmv_view: i64 = scalar(&conn, "SELECT SUM(gmv) FROM daily_summary");
    let gmv_orders: i64 = scalar(
        &conn,
        "SELECT SUM(pay_amount) FROM orders WHERE status NOT IN ('pending','closed','ad_unpaid')",
    );
    assert_eq!(gmv_view, gmv_orders);
}

/// An order upstream deletes is never deleted here, and the README's late-changes queries, run
/// after a rescan, on SQLite and on the same world synced into PostgreSQL (each engine's form;
/// SQLite alone when PostgreSQL is not installed): "vanished orders" names exactly the orders
/// upstream no longer returned in the rescan's range, and "how late" counts exactly the status
/// changes the rescan found, each as late as upstream dated it.
#[test]
fn the_late_changes_queries_name_exactly_the_orders_upstream_withdrew_and_changed_late() {
    let h = Harness::veapi(600, 40, Faults::default());
    let pg = pg_database();
    let url = pg.as_ref().map(|pg| pg.url());
    let on_both = |args: &[&str]| {
        assert_ok(&h.run(args));
        if let Some(url) = &url {
            assert_ok(&h.run_on(url, args));
        }
    };
    on_both(&["sync"]);
    let now = ordersync_sim::beijing_now();
    let mut withdrawn = h
        .sim
        .withdraw(6, now - Duration::days(14), now - Duration::days(2));
    withdrawn.sort();
    assert_eq!(
        withdrawn.len(),
        6,
        "the world has orders updated in that range"
    );
    // Status changes dated three days back: live syncs miss them, the rescan finds them, some
    // 72 hours after upstream dated them.
    let late = h.sim.mutate(8, now - Duration::days(3));
    let moved = late.iter().filter(|m| m.from != m.to).count();
    assert!(moved > 0, "{late:?}");
    let vanished_query = readme_query("last_seen_at <").replace("'veapi-main'", "'ve'");
    let how_late_query = readme_query("hours_late");
    let mut engines = vec![Engine::Sqlite(h.db())];
    engines.extend(pg.as_ref().map(|pg| Engine::Postgres(pg.client())));
    let vanished = |engine: &mut Engine| -> Vec<String> {
        let mut ids: Vec<String> = engine
            .answer(&vanished_query)
            .column("order_id")
            .into_iter()
            .flatten()
            .collect();
        ids.sort();
        ids
    };

    // Without a rescan nothing is seen to vanish or found late: a live sync does not re-read
    // that far back.
    on_both(&["sync"]);
    for engine in &mut engines {
        let name = engine.name();
        assert_eq!(
            vanished(engine),
            Vec::<String>::new(),
            "{name}: before any rescan"
        );
        assert_eq!(
            engine.answer(&how_late_query).rows,
            Vec::<Vec<Option<String>>>::new(),
            "{name}"
        );
    }

    // Times are whole seconds: an order the last sync saw in the second the rescan starts would
    // not look older than the rescan (in real life hours lie between them).
    std::thread::sleep(StdDuration::from_millis(1100));
    on_both(&["rescan", "--since", "15d"]);
    let mut answers = Vec::new();
    for engine in &mut engines {
        let name = engine.name();
        assert_eq!(vanished(engine), withdrawn, "{name}");
        assert_eq!(
            engine.answer(&how_late_query).rows,
            vec![vec![
                Some("veapi".to_string()),
                Some("72".to_string()),
                Some(moved.to_string())
            ]],
            "{name}"
        );
        let mut rows = engine
            .answer(&vanished_query)
            .without_stamps(&["last_seen_at"]);
        rows.rows.sort();
        answers.push(rows);
    }
    // The orders' other columns (status, updated_at) read alike on both engines.
    if let [lite, postgres] = &answers[..] {
        assert_eq!(postgres, lite);
    }
    // Still there, as they were.
    let kept: i64 = scalar(
        &h.db(),
        &format!(
            "SELECT COUNT(*) FROM orders WHERE source = 'veapi' AND order_id IN ({})",
            withdrawn
                .iter()
                .map(|k| format!("'{k}'"))
                .collect::<Vec<_>>()
                .join(",")
        ),
    );
    assert_eq!(kept, 6, "a withdrawn order's row is kept");
}
