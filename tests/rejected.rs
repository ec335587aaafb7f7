//! One bad row costs that row, never its page or its pipeline: rows the simulator spoils (an id that
//! is null, missing or an object, an amount that is not a number, nesting SQLite cannot read, an
//! element that is not an object) are kept in `rejected_rows` with their reason, every other row is
//! stored exactly, the run ends `ok`, and reading the same rows again adds no copies. A 20-digit id
//! and a byte that is not UTF-8 in a field nobody reads are not errors at all. The same holds for
//! all five sources in one `sync`.

use ordersync_sim::{Poison, Simulator};
use std::collections::BTreeMap;

use chrono::Duration;
use ordersync_sim::Faults;
use serde_json::Value;

use crate::common::all_sources::{AllSources, Worlds, ADS, BACKFILLABLE};
use crate::common::*;

/// A backfill over every order of the world, from `margin` days before the oldest: reads each row
/// again (veapi backfills by payment time). Each margin is a range of its own, read from its start.
fn backfill_all(h: &Harness, margin: i64) -> std::process::Output {
    let from = (h.now - chrono::Duration::days(h.days + margin))
        .format("%Y-%m-%d")
        .to_string();
    h.run(&["backfill", "ve", "--from", &from])
}

fn rejected(h: &Harness) -> BTreeMap<String, (String, i64, Option<String>)> {
    let conn = h.db();
    let mut stmt = conn
        .prepare(
            "SELECT COALESCE(order_id, raw), reason, times_seen, resolved_at FROM rejected_rows",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn one_bad_row_of_each_kind_costs_only_itself_and_the_run_goes_on() {
    let h = Harness::veapi(300, 10, ordersync_sim::Faults::default());
    let ids: Vec<String> = h.sim.truth().iter().map(|o| o.order_id.clone()).collect();
    let long_id = "123456789012345678901".to_string();
    // (order, poison, how the row is known in rejected_rows, what its reason names)
    let bad = [
        (&ids[10], Poison::NullId, None, "order_id"),
        (&ids[40], Poison::MissingId, None, "order_id"),
        (&ids[70], Poison::ObjectId, None, "`order_id`"),
        (
            &ids[100],
            Poison::BadAmount,
            Some(&ids[100]),
            "`total_pay_amount`",
        ),
        (
            &ids[130],
            Poison::Deep(1200),
            Some(&ids[130]),
            "deeper than",
        ),
        (&ids[160], Poison::NotAnObject, None, "not a JSON object"),
    ];
    for (id, poison, _, _) in &bad {
        h.sim.poison(id, Some(poison.clone()));
    }
    // Not errors: a 20-digit id is kept exactly, a mangled byte in a field nobody reads costs
    // only that string.
    h.sim
        .poison(&ids[190], Some(Poison::LongId(long_id.clone())));
    h.sim.poison(&ids[220], Some(Poison::InvalidUtf8));

    let out = h.run(&["sync"]);
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("row rejected"),
        "a WARN line per new reject:\n{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("6 rejected"),
        "{}",
        text(&out)
    );

    // Every other order exactly as upstream has it.
    let conn = h.db();
    let bad_ids: Vec<&String> = bad.iter().map(|(id, ..)| *id).collect();
    let mut want: Vec<ExpectedOrder> = h
        .sim
        .truth()
        .iter()
        .filter(|o| !bad_ids.contains(&&o.order_id))
        .map(expected)
        .collect();
    for w in &mut want {
        if w.order_id == ids[190] {
            w.order_id = long_id.clone();
        }
    }
    want.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    assert_eq!(stored_orders(&conn), want);
    let mangled: String = conn
        .query_row(
            "SELECT json_extract(raw, '$.remark') FROM orders WHERE order_id = ?1",
            [&ids[220]],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(mangled, "caf\u{fffd}");
    // raw is readable by SQLite's JSON functions for every row.
    assert_eq!(
        scalar::<i64>(
            &conn,
            "SELECT COUNT(*) FROM orders WHERE json_valid(raw) = 0"
        ),
        0
    );
    let shops: i64 = scalar(
        &conn,
        "SELECT COUNT(DISTINCT json_extract(raw, '$.shop_id')) FROM orders",
    );
    assert!(shops > 0);

    // The bad ones are kept, each once, with a reason naming what is wrong.
    let kept = rejected(&h);
    assert_eq!(kept.len(), bad.len(), "{kept:#?}");
    for (_, _, known_as, names) in &bad {
        let hit = kept.iter().find(|(key, (reason, ..))| {
            known_as.is_none_or(|id| *key == id) && reason.contains(names)
        });
        assert!(hit.is_some(), "no reject naming {names}: {kept:#?}");
    }
    let run: (String, i64) = conn
        .query_row("SELECT outcome, rows_rejected FROM runs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(run, ("ok".to_string(), 6));
    let exposition = ordersync::metrics::render(&ordersync::metrics::State {
        db: ordersync::store::Location::File(h.db_path()),
        live: Default::default(),
    })
    .unwrap();
    let counted: Vec<f64> = parse_metrics(&exposition)
        .into_iter()
        .filter(|(name, labels, _)| {
            name == "ordersync_rows_rejected_total"
                && labels == &[("pipeline".to_string(), "ve".to_string())]
        })
        .map(|(.., v)| v)
        .collect();
    assert_eq!(counted, [6.0], "{exposition}");

    // Reading them all again adds no copies; each is seen twice.
    assert_ok(&backfill_all(&h, 1));
    let again = rejected(&h);
    assert_eq!(again.len(), bad.len());
    assert!(again.values().all(|(_, seen, _)| *seen == 2), "{again:#?}");

    // The operator's views.
    let listed = h.run(&["rejects", "ve", "--json"]);
    assert_ok(&listed);
    let rows: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(6));
    let status = h.run(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status[0]["rejected_open"], 6);
    assert_eq!(status[0]["last_run"]["rows_rejected"], 6);
    let text_status = String::from_utf8_lossy(&h.run(&["status"]).stdout).to_string();
    assert!(
        text_status.contains("ordersync rejects ve"),
        "{text_status}"
    );

    // Upstream mends one row: the next read stores it and resolves its reject.
    h.sim.poison(&ids[100], None);
    assert_ok(&backfill_all(&h, 2));
    let mended: Option<String> = h
        .db()
        .query_row(
            "SELECT resolved_at FROM rejected_rows WHERE order_id = ?1",
            [&ids[100]],
            |r| r.get(0),
        )
        .unwrap();
    assert!(mended.is_some(), "resolved by the good copy");
    let open = h.run(&["rejects", "ve", "--json"]);
    let open: Value = serde_json::from_slice(&open.stdout).unwrap();
    assert_eq!(open.as_array().map(Vec::len), Some(5));
    let all = h.run(&["rejects", "--all", "--json"]);
    let all: Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(all.as_array().map(Vec::len), Some(6));
    let n: i64 = scalar(
        &h.db(),
        &format!(
            "SELECT COUNT(*) FROM orders WHERE order_id = '{}'",
            ids[100]
        ),
    );
    assert_eq!(n, 1);
}

#[test]
fn a_secret_echoed_in_a_bad_field_stays_out_of_the_reason_and_the_logs() {
    let h = Harness::veapi(60, 5, ordersync_sim::Faults::default());
    let id = h.sim.truth()[3].order_id.clone();
    h.sim
        .poison(&id, Some(Poison::AmountText(VEKEY.to_string())));
    let out = h
        .command(&["sync"])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(!text(&out).contains(VEKEY), "{}", text(&out));
    let reason: String = h
        .db()
        .query_row("SELECT reason FROM rejected_rows", [], |r| r.get(0))
        .unwrap();
    assert!(
        reason.contains("`total_pay_amount`") && reason.contains("***"),
        "{reason}"
    );
    let listed = h.run(&["rejects"]);
    let shown = String::from_utf8_lossy(&listed.stdout);
    // The row's text is kept as upstream sent it (raw is data, not a message); the reason is ours.
    assert!(shown.contains("reason: `total_pay_amount`"), "{shown}");
    assert!(!shown
        .lines()
        .any(|l| l.contains("reason:") && l.contains(VEKEY)));
}

#[test]
fn rejects_of_an_unknown_pipeline_is_a_config_error() {
    let h = Harness::veapi(5, 2, ordersync_sim::Faults::default());
    let out = h.run(&["rejects", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_no_panic(&out);
    let none = h.run(&["rejects"]);
    assert_ok(&none);
    assert!(String::from_utf8_lossy(&none.stdout).contains("no open rejected rows"));
}

#[test]
fn one_spoiled_row_per_source_costs_only_itself() {
    let worlds = Worlds {
        ve: (120, 10),
        myq: (120, 10),
        ud: (60, 5),
        dmj: (120, 10),
        sxt: (40, 10),
    };
    let all = AllSources::start(
        seed_for("all sources spoiled rows"),
        worlds,
        &Faults::default(),
    );
    // One row per source with an amount that is not a number; veapi and damaijia also get a list
    // element that is not an object at all.
    let spoiled = [
        ("veapi", all.ve.truth()[7].order_id.clone()),
        ("miaoyouquan", all.myq.truth()[7].order_id.clone()),
        ("unidesk", all.ud.truth()[7].order_id.clone()),
        ("damaijia", all.dmj.truth()[7].order_id.clone()),
        ("sxt", all.sxt.truth()[7].order_id.clone()),
    ];
    for ((_, sim, _), (_, id)) in all.sims().iter().zip(&spoiled) {
        sim.poison(id, Some(Poison::BadAmount));
    }
    all.ve
        .poison(&all.ve.truth()[20].order_id, Some(Poison::NotAnObject));
    all.dmj
        .poison(&all.dmj.truth()[20].order_id, Some(Poison::NotAnObject));

    let out = all.run(&["sync"]);
    assert_ok(&out);
    let conn = all.db();
    let outcomes: Vec<(String, (String, i64))> = query_map(
        &conn,
        "SELECT pipeline, outcome, rows_rejected FROM runs ORDER BY pipeline",
        |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))),
    );
    assert_eq!(outcomes.len(), 5);
    assert!(
        outcomes
            .iter()
            .all(|(_, (outcome, n))| outcome == "ok" && *n >= 1),
        "every pipeline ends ok with its bad row counted: {outcomes:?}"
    );
    for (source, id) in &spoiled {
        let reason: String = conn
            .query_row(
                "SELECT reason FROM rejected_rows WHERE source = ?1 AND order_id = ?2",
                [*source, id.as_str()],
                |r| r.get(0),
            )
            .unwrap_or_else(|e| panic!("{source} {id}: not in rejected_rows ({e})"));
        assert!(!reason.is_empty());
    }
    let not_objects: i64 = scalar(
        &conn,
        "SELECT COUNT(*) FROM rejected_rows WHERE reason = 'row is not a JSON object'",
    );
    assert_eq!(not_objects, 2);
    for (source, id) in &spoiled {
        let stored: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM orders WHERE source = ?1 AND order_id = ?2",
                [*source, id.as_str()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stored, 0, "{source}: the spoiled row is not stored");
    }

    // Upstream mends them; reading everything again stores them and the database equals the
    // truth of all five sources, with every reject resolved (sxt's snapshot re-reads itself).
    for ((_, sim, _), (_, id)) in all.sims().iter().zip(&spoiled) {
        sim.poison(id, None);
    }
    all.ve.poison(&all.ve.truth()[20].order_id, None);
    all.dmj.poison(&all.dmj.truth()[20].order_id, None);
    for p in BACKFILLABLE {
        let from = (all.now - Duration::days(all.days(p) + 2))
            .format("%Y-%m-%d")
            .to_string();
        assert_ok(&all.run(&["backfill", p, "--from", &from]));
    }
    assert_ok(&all.run(&["sync", ADS]));
    all.assert_equals_truth(None);
    let open: i64 = scalar(
        &all.db(),
        "SELECT COUNT(*) FROM rejected_rows WHERE resolved_at IS NULL AND order_id IS NOT NULL \
         AND source != 'unidesk'",
    );
    assert_eq!(open, 0, "good copies resolve the rejects of whole orders");
}
