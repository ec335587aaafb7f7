//! `ordersync copy --to postgres://…` against a real PostgreSQL cluster (`testpg`): a database
//! from a real sync of all five simulated sources arrives row for row and fen for fen, the views
//! answer alike on both engines, a copy killed mid-way continues without duplicating, targets that
//! are not its own are refused, the password never shows, and the schema is applied once when two
//! processes connect at once.

use std::collections::BTreeSet;
use std::process::Stdio;

use ordersync::store::pg::PgError;
use ordersync_sim::Faults;
use rusqlite::Connection;

use crate::common::all_sources::{AllSources, Worlds};
use crate::common::*;

/// A world of every source, synced once into SQLite.
fn synced_sources(seed: u64) -> AllSources {
    let a = AllSources::start(
        seed,
        Worlds {
            ve: (300, 20),
            myq: (400, 40),
            ud: (300, 5),
            dmj: (300, 20),
            sxt: (60, 20),
        },
        &Faults::default(),
    );
    assert_ok(&a.run(&["sync"]));
    a
}

fn copy_to(a: &AllSources, db: &PgDb, extra: &[&str]) -> std::process::Output {
    let url = db.url();
    let mut args = vec!["copy", "--to", url.as_str()];
    args.extend_from_slice(extra);
    a.command(&args)
        .env("PGPASSWORD", PG_PASSWORD)
        .output()
        .expect("binary runs")
}

/// Every row of `table` as text, sorted: SQLite's columns (all of them, so PostgreSQL must have
/// each), `raw` JSON compared as JSON (jsonb keeps values, not key order), booleans as 0/1.
fn rows_of(
    sqlite: &Connection,
    pg: &mut postgres::Client,
    table: &str,
) -> [Vec<Vec<Option<String>>>; 2] {
    let columns: Vec<String> = sqlite
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let is_json = |c: &str| c == "raw" && table != "rejected_rows";
    let lite_sql = columns
        .iter()
        .map(|c| format!("CAST({c} AS TEXT)"))
        .collect::<Vec<_>>()
        .join(", ");
    let pg_sql = columns
        .iter()
        .map(|c| {
            if table == "track_windows" && c == "done" {
                "(done::int)::text".to_string()
            } else {
                format!("{c}::text")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let normalise = |c: &str, v: Option<String>| match v {
        Some(text) if is_json(c) => Some(
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("{table}.{c} is not JSON ({e}): {text}"))
                .to_string(),
        ),
        v => v,
    };
    let mut lite: Vec<Vec<Option<String>>> = sqlite
        .prepare(&format!("SELECT {lite_sql} FROM {table}"))
        .unwrap()
        .query_map([], |r| {
            (0..columns.len())
                .map(|i| Ok(normalise(&columns[i], r.get(i)?)))
                .collect()
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut post: Vec<Vec<Option<String>>> = pg
        .query(&format!("SELECT {pg_sql} FROM {table}"), &[])
        .unwrap_or_else(|e| panic!("{table} in PostgreSQL: {e}"))
        .iter()
        .map(|r| {
            (0..columns.len())
                .map(|i| normalise(&columns[i], r.get(i)))
                .collect()
        })
        .collect();
    lite.sort();
    post.sort();
    [lite, post]
}

const TABLES: [&str; 8] = [
    "orders",
    "sub_orders",
    "order_status_history",
    "runs",
    "checkpoints",
    "coverage",
    "track_windows",
    "rejected_rows",
];

#[test]
fn a_copy_of_five_synced_sources_equals_sqlite_row_for_row_and_view_for_view() {
    let Some(db) = pg_database() else { return };
    let a = synced_sources(71);
    let out = copy_to(&a, &db, &[]);
    assert_ok(&out);
    assert_no_panic(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    for source in ["veapi", "miaoyouquan", "unidesk", "damaijia", "sxt"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(source) && l.ends_with("equal")),
            "no equal line for {source}:\n{stdout}"
        );
    }
    let sqlite = a.db();
    let mut pg = db.client();
    for table in TABLES {
        let [lite, post] = rows_of(&sqlite, &mut pg, table);
        assert!(
            !lite.is_empty() || table == "track_windows" || table == "rejected_rows",
            "{table} is empty: the test proves nothing"
        );
        assert_eq!(lite.len(), post.len(), "{table}: row counts");
        assert!(lite == post, "{table}: rows differ");
    }
    // Money per source, on both engines, by SQL.
    let money = "SELECT source, COUNT(*), SUM(pay_amount), SUM(refund_amount), SUM(commission), SUM(ad_cost), SUM(ad_gmv) FROM orders GROUP BY source ORDER BY source";
    let lite: Vec<String> = sqlite
        .prepare(money)
        .unwrap()
        .query_map([], |r| {
            Ok((0..7)
                .map(|i| match i {
                    0 => r.get::<_, String>(0).unwrap(),
                    i => format!("{:?}", r.get::<_, Option<i64>>(i).unwrap()),
                })
                .collect::<Vec<_>>()
                .join(" "))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // PostgreSQL's SUM of BIGINT is NUMERIC.
    let pg_money = "SELECT source, COUNT(*), SUM(pay_amount)::bigint, SUM(refund_amount)::bigint, SUM(commission)::bigint, SUM(ad_cost)::bigint, SUM(ad_gmv)::bigint FROM orders GROUP BY source ORDER BY source";
    let post: Vec<String> = pg
        .query(pg_money, &[])
        .unwrap()
        .iter()
        .map(|r| {
            (0..7)
                .map(|i| match i {
                    0 => r.get::<_, String>(0),
                    i => format!("{:?}", r.get::<_, Option<i64>>(i)),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(lite.len(), 5, "{lite:?}");
    assert_eq!(lite, post);
    // The views people query give the same rows.
    let summary =
        "day, source, pipeline, orders, paid_orders, gmv, refunds, commission, ad_cost, ad_gmv";
    let lite: BTreeSet<Vec<Option<String>>> = sqlite
        .prepare(&format!(
            "SELECT {} FROM daily_summary",
            cast_all(summary, "CAST({} AS TEXT)")
        ))
        .unwrap()
        .query_map([], |r| (0..10).map(|i| r.get(i)).collect())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let post: BTreeSet<Vec<Option<String>>> = pg
        .query(
            &format!(
                "SELECT {} FROM daily_summary",
                cast_all(summary, "{}::text")
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (0..10).map(|i| r.get(i)).collect())
        .collect();
    assert!(lite.len() > 20, "{} summary rows", lite.len());
    assert_eq!(lite, post, "daily_summary differs");
    let lines = "source, order_id, sub_order_id, pipeline, order_status, paid_at, shop_name, sku_id, product_id, product_name, item_num, pay_amount, status, status_raw";
    let lite: BTreeSet<Vec<Option<String>>> = sqlite
        .prepare(&format!(
            "SELECT {} FROM order_lines",
            cast_all(lines, "CAST({} AS TEXT)")
        ))
        .unwrap()
        .query_map([], |r| (0..14).map(|i| r.get(i)).collect())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let post: BTreeSet<Vec<Option<String>>> = pg
        .query(
            &format!("SELECT {} FROM order_lines", cast_all(lines, "{}::text")),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (0..14).map(|i| r.get(i)).collect())
        .collect();
    assert_eq!(lite, post, "order_lines differs");
    // New rows get keys after the copied ones.
    let next: i64 = pg
        .query_one("SELECT nextval(pg_get_serial_sequence('runs', 'id'))", &[])
        .unwrap()
        .get(0);
    let max: i64 = scalar(&sqlite, "SELECT MAX(id) FROM runs");
    assert_eq!(next, max + 1);
    // Run again: nothing more to copy, verified equal again.
    let again = copy_to(&a, &db, &[]);
    assert_ok(&again);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains(" 0 rows copied, continuing"),
        "{}",
        text(&again)
    );
}

/// `columns` (comma-separated) each put through `pattern` (`{}` is the column).
fn cast_all(columns: &str, pattern: &str) -> String {
    columns
        .split(", ")
        .map(|c| pattern.replace("{}", c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Makes the synced database `times` + 1 times as big: every order, line and history row again
/// under ids with a suffix, so that a copy takes long enough to be killed in the middle.
fn inflate(conn: &Connection, times: usize) {
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE k AS WITH RECURSIVE n(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM n WHERE n < {times}) SELECT n FROM n"
    ))
    .unwrap();
    for table in ["orders", "sub_orders", "order_status_history"] {
        let columns: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let values: Vec<String> = columns
            .iter()
            .map(|c| match c.as_str() {
                "order_id" => "order_id || '-' || k.n".to_string(),
                "id" => "NULL".to_string(),
                c => c.to_string(),
            })
            .collect();
        conn.execute_batch(&format!(
            "INSERT INTO {table} ({}) SELECT {} FROM {table}, k",
            columns.join(", "),
            values.join(", ")
        ))
        .unwrap();
    }
}

#[test]
fn a_copy_killed_mid_way_continues_where_it_stopped_without_duplicates() {
    let Some(db) = pg_database() else { return };
    let a = synced_sources(72);
    inflate(&a.db(), 25);
    let orders: i64 = scalar(&a.db(), "SELECT COUNT(*) FROM orders");
    assert!(orders > 30_000, "{orders} orders");
    let url = db.url();
    let mut child = a
        .command(&["copy", "--to", &url, "--batch-rows", "500"])
        .env("PGPASSWORD", PG_PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("copy starts");
    let mut pg = db.client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Kill it once some batches of orders, but not all, have committed.
    let copied = loop {
        let copied: Option<i64> = pg
            .query_opt(
                "SELECT rows_copied FROM copy_progress WHERE table_name = 'orders'",
                &[],
            )
            .ok()
            .flatten()
            .map(|r| r.get(0));
        if copied.is_some_and(|n| n >= 2000) {
            child.kill().expect("SIGKILL");
            break copied.unwrap_or(0);
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy ended before it could be killed"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the copy made no progress"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    child.wait().unwrap();
    let stored: i64 = pg
        .query_one("SELECT COUNT(*) FROM orders", &[])
        .unwrap()
        .get(0);
    assert!(
        stored >= copied && stored < orders,
        "{stored} of {orders} copied when killed"
    );
    assert_eq!(stored % 500, 0, "whole batches only");
    let out = copy_to(&a, &db, &["--batch-rows", "500"]);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("continuing an earlier copy"),
        "{}",
        text(&out)
    );
    let sqlite = a.db();
    for table in ["orders", "sub_orders", "order_status_history"] {
        let keys = match table {
            "orders" => "source, order_id",
            "sub_orders" => "source, order_id, sub_order_id",
            _ => "id",
        };
        let lite: i64 = scalar(&sqlite, &format!("SELECT COUNT(*) FROM {table}"));
        let (all, distinct): (i64, i64) = {
            let r = pg
                .query_one(
                    &format!("SELECT COUNT(*), COUNT(DISTINCT ({keys})) FROM {table}"),
                    &[],
                )
                .unwrap();
            (r.get(0), r.get(1))
        };
        assert_eq!((all, distinct), (lite, lite), "{table}");
    }
    // Each order once, with its amount and time (rows_of compares whole rows in the first test).
    let order_rows = "SELECT source || ' ' || order_id || ' ' || COALESCE(CAST(pay_amount AS TEXT), '-') || ' ' || COALESCE(CAST(updated_at AS TEXT), '-') FROM orders";
    let mut lite: Vec<String> = sqlite
        .prepare(order_rows)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut post: Vec<String> = pg
        .query(order_rows, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    lite.sort();
    post.sort();
    assert!(lite == post, "orders differ after the resumed copy");
}

#[test]
fn a_target_that_is_not_empty_or_holds_another_database_is_refused() {
    let Some(db) = pg_database() else { return };
    let a = synced_sources(73);
    assert_ok(&copy_to(&a, &db, &[]));
    let mut pg = db.client();
    let before: i64 = pg
        .query_one("SELECT COUNT(*) FROM orders", &[])
        .unwrap()
        .get(0);
    // Another SQLite database into the same target.
    let other = Harness::veapi(50, 3, Faults::default());
    assert_ok(&other.run(&["sync"]));
    let url = db.url();
    let refused = other
        .command(&["copy", "--to", &url])
        .env("PGPASSWORD", PG_PASSWORD)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let said = error_sentences(&refused).join("\n");
    assert!(
        said.contains("holds a copy of") && said.contains("new, empty database"),
        "{said}"
    );
    // A database with rows that no copy wrote.
    pg.batch_execute("DROP TABLE copy_source, copy_progress")
        .unwrap();
    let refused = copy_to(&a, &db, &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let said = error_sentences(&refused).join("\n");
    assert!(
        said.contains("is not empty (its `orders` table has rows)"),
        "{said}"
    );
    assert_no_panic(&refused);
    let after: i64 = pg
        .query_one("SELECT COUNT(*) FROM orders", &[])
        .unwrap()
        .get(0);
    assert_eq!(before, after, "a refused copy wrote nothing");
}

#[test]
fn the_password_never_shows_and_a_url_carrying_one_is_refused() {
    let Some(db) = pg_database() else { return };
    let h = Harness::veapi(20, 2, Faults::default());
    assert_ok(&h.run(&["sync"]));
    let shown = |o: &std::process::Output| {
        let all = text(o);
        assert!(!all.contains("SeCrEt"), "a password showed:\n{all}");
        assert_no_panic(o);
        error_sentences(o).join("\n")
    };
    // In the URL: refused before anything is tried, exit 2.
    let in_url = format!(
        "postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{}/{}",
        db.port, db.name
    );
    let o = h.run(&["copy", "--to", &in_url]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(shown(&o).contains("carries a password"));
    // TLS asked for with a root file that is not there: refused before connecting, exit 2.
    let tls = format!(
        "{}?sslmode=verify-full&sslrootcert=/nonexistent/root.crt",
        db.url()
    );
    let o = h.run(&["copy", "--to", &tls]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(shown(&o).contains("/nonexistent/root.crt"));
    // A wrong password from PGPASSWORD and from a file: the server's refusal, exit 1.
    let o = h
        .command(&["copy", "--to", &db.url()])
        .env("PGPASSWORD", "SeCrEt-wrong-pass")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(shown(&o).contains("password authentication failed"));
    let file = h.dir.path().join("pgpass");
    std::fs::write(&file, "SeCrEt-wrong-pass\n").unwrap();
    let o = h
        .command(&[
            "copy",
            "--to",
            &db.url(),
            "--password-file",
            file.to_str().unwrap(),
        ])
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(shown(&o).contains("password authentication failed"));
    // Nobody listening: the connection error, exit 1.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("postgres://{PG_USER}@127.0.0.1:{closed}/x");
    let o = h
        .command(&["copy", "--to", &nowhere])
        .env("PGPASSWORD", PG_PASSWORD)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(shown(&o).contains("cannot connect to PostgreSQL at"));
    // And the right one from a file works.
    std::fs::write(&file, format!("{PG_PASSWORD}\n")).unwrap();
    let o = h
        .command(&[
            "copy",
            "--to",
            &db.url(),
            "--password-file",
            file.to_str().unwrap(),
        ])
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    assert_ok(&o);
    shown(&o);
}

#[test]
fn two_processes_connecting_at_once_apply_the_schema_once_and_a_newer_one_is_refused() {
    let Some(db) = pg_database() else { return };
    let target = pg_target(&db.url());
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        let connects: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    target.connect_migrated().map(|_| ())
                })
            })
            .collect();
        for c in connects {
            c.join().unwrap().expect("both connect");
        }
    });
    let mut pg = db.client();
    let versions: Vec<i64> = pg
        .query("SELECT version FROM schema_version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![ordersync::store::pg::schema_version()]);
    pg.batch_execute("INSERT INTO schema_version (version) VALUES (999)")
        .unwrap();
    match target.connect_migrated() {
        Err(PgError::TooNew { found: 999, .. }) => {}
        other => panic!("a newer database was not refused: {:?}", other.map(|_| ())),
    }
}
