//! The README's SQL as the tests read it, and its answers on either engine as comparable text.
//!
//! The README's convention: a ```sql block runs as written on SQLite and on PostgreSQL, unless its
//! first line is `-- SQLite`; then the next block's first line is `-- PostgreSQL` and it holds the
//! same queries, in the same order, for PostgreSQL. Anything else (a lone `-- PostgreSQL` block, a
//! pair whose query counts differ, a `SELECT` outside any block) fails the test that reads it, so
//! a README edit cannot leave a query unrun on either engine.

use rusqlite::types::ValueRef;
use rusqlite::Connection;

const SQLITE_MARK: &str = "-- SQLite";
const POSTGRES_MARK: &str = "-- PostgreSQL";

/// One README query in the form each engine runs (the same text when the engines share it).
#[derive(Debug, Clone)]
pub struct ReadmeQuery {
    pub sqlite: String,
    pub postgres: String,
}

impl ReadmeQuery {
    pub fn shared(&self) -> bool {
        self.sqlite == self.postgres
    }

    /// Both forms with `from` replaced by `to` (a README example's pipeline name or order id
    /// made the test world's); panics unless both forms held `from`.
    pub fn replace(&self, from: &str, to: &str) -> ReadmeQuery {
        for form in [&self.sqlite, &self.postgres] {
            assert!(form.contains(from), "{from} is not in:\n{form}");
        }
        ReadmeQuery {
            sqlite: self.sqlite.replace(from, to),
            postgres: self.postgres.replace(from, to),
        }
    }
}

pub fn readme_text() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README")
}

/// Every query of the README, in order.
pub fn readme_queries() -> Vec<ReadmeQuery> {
    parse_queries(&readme_text())
}

/// The one README query whose SQLite form contains `marker`.
pub fn readme_query(marker: &str) -> ReadmeQuery {
    let found: Vec<ReadmeQuery> = readme_queries()
        .into_iter()
        .filter(|q| q.sqlite.contains(marker))
        .collect();
    assert_eq!(found.len(), 1, "README queries containing {marker:?}");
    found.into_iter().next().expect("one")
}

/// The queries of `markdown` under the convention above; panics on anything outside it.
pub fn parse_queries(markdown: &str) -> Vec<ReadmeQuery> {
    let mut blocks = Vec::new();
    let mut outside = String::new();
    let mut rest = markdown;
    while let Some(open) = rest.find("```sql") {
        outside.push_str(&rest[..open]);
        let body = &rest[open + "```sql".len()..];
        let close = body.find("```").expect("a ```sql block is closed");
        blocks.push(&body[..close]);
        rest = &body[close + 3..];
    }
    outside.push_str(rest);
    assert!(
        !outside.to_uppercase().contains("SELECT "),
        "SQL outside a ```sql block is run by no test: put it in one"
    );

    let mut queries = Vec::new();
    let mut blocks = blocks.into_iter();
    while let Some(block) = blocks.next() {
        match first_line(block) {
            SQLITE_MARK => {
                let pg = blocks
                    .next()
                    .filter(|b| first_line(b) == POSTGRES_MARK)
                    .unwrap_or_else(|| {
                        panic!("a `{SQLITE_MARK}` block without a `{POSTGRES_MARK}` block right after it:\n{block}")
                    });
                let (lite, pg) = (statements(block), statements(pg));
                assert_eq!(
                    lite.len(),
                    pg.len(),
                    "the PostgreSQL block after this one holds another number of queries:\n{block}"
                );
                queries.extend(
                    lite.into_iter()
                        .zip(pg)
                        .map(|(sqlite, postgres)| ReadmeQuery { sqlite, postgres }),
                );
            }
            POSTGRES_MARK => panic!(
                "a `{POSTGRES_MARK}` block with no `{SQLITE_MARK}` block before it:\n{block}"
            ),
            _ => queries.extend(statements(block).into_iter().map(|q| ReadmeQuery {
                sqlite: q.clone(),
                postgres: q,
            })),
        }
    }
    queries
}

fn first_line(block: &str) -> &str {
    block
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// The block's statements, split at `;`, those holding nothing but comments left out.
fn statements(block: &str) -> Vec<String> {
    block
        .split(';')
        .map(str::trim)
        .filter(|s| {
            !s.lines()
                .all(|l| l.trim().is_empty() || l.trim().starts_with("--"))
        })
        .map(str::to_string)
        .collect()
}

/// What a query gave: its column names and its rows, each value as text (`None` for NULL).
/// Numbers are written one way on both engines: an integer as its digits, SQLite's real and
/// PostgreSQL's `numeric` or `float8` as the shortest decimal (no trailing zeros), so
/// `1234.5600000000000000` (`gmv / 100.0` on PostgreSQL) and 1234.56 (on SQLite) read alike. A
/// `date` or `timestamp` prints as the text SQLite holds; nothing else is converted.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Answer {
    /// Column `name` of every row; panics when the answer has no such column.
    pub fn column(&self, name: &str) -> Vec<Option<String>> {
        let i = self
            .columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns));
        self.rows.iter().map(|r| r[i].clone()).collect()
    }

    /// The answer with the columns named in `stamps` (times ordersync stamps when it stores a row,
    /// which two syncs into two databases stamp a few seconds apart) each checked to be a time and
    /// then blanked, so the rest can be compared.
    pub fn without_stamps(&self, stamps: &[&str]) -> Answer {
        let mut out = self.clone();
        for (i, name) in self.columns.iter().enumerate() {
            if !stamps.contains(&name.as_str()) {
                continue;
            }
            for row in &mut out.rows {
                if let Some(t) = &row[i] {
                    super::parse_db_time(t);
                    row[i] = Some("<stamp>".into());
                }
            }
        }
        out
    }
}

pub fn sqlite_answer(conn: &Connection, sql: &str) -> Answer {
    let mut st = conn
        .prepare(sql)
        .unwrap_or_else(|e| panic!("SQLite: {sql}: {e}"));
    let columns = st.column_names().iter().map(|c| c.to_string()).collect();
    let n = st.column_count();
    let rows = st
        .query_map([], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        ValueRef::Null => None,
                        ValueRef::Integer(v) => Some(v.to_string()),
                        ValueRef::Real(v) => Some(v.to_string()),
                        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(_) => panic!("a README query gave a blob: {sql}"),
                    })
                })
                .collect()
        })
        .and_then(|it| it.collect())
        .unwrap_or_else(|e| panic!("SQLite: {sql}: {e}"));
    Answer { columns, rows }
}

pub fn postgres_answer(client: &mut postgres::Client, sql: &str) -> Answer {
    use postgres::types::Type;
    use postgres::SimpleQueryMessage;

    // The statement's column types, then its rows as the server prints them.
    let st = client
        .prepare(sql)
        .unwrap_or_else(|e| panic!("PostgreSQL: {sql}: {e}"));
    let columns: Vec<String> = st.columns().iter().map(|c| c.name().to_string()).collect();
    let decimal: Vec<bool> = st
        .columns()
        .iter()
        .map(|c| matches!(*c.type_(), Type::NUMERIC | Type::FLOAT8 | Type::FLOAT4))
        .collect();
    let rows = client
        .simple_query(sql)
        .unwrap_or_else(|e| panic!("PostgreSQL: {sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..columns.len())
                    .map(|i| {
                        r.get(i).map(|v| {
                            if decimal[i] {
                                shortest_decimal(v)
                            } else {
                                v.to_string()
                            }
                        })
                    })
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    Answer { columns, rows }
}

/// `12.50` → `12.5`, `7.00` → `7`: a decimal as Rust prints the same value held as an f64.
fn shortest_decimal(v: &str) -> String {
    if v.contains('.') && !v.contains(['e', 'E']) {
        v.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        v.to_string()
    }
}

/// A database a test reads README queries from: SQLite, or PostgreSQL when the cluster exists.
pub enum Engine {
    Sqlite(Connection),
    Postgres(postgres::Client),
}

impl Engine {
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Sqlite(_) => "SQLite",
            Engine::Postgres(_) => "PostgreSQL",
        }
    }

    /// The query's form for this engine, run.
    pub fn answer(&mut self, q: &ReadmeQuery) -> Answer {
        match self {
            Engine::Sqlite(c) => sqlite_answer(c, &q.sqlite),
            Engine::Postgres(c) => postgres_answer(c, &q.postgres),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_of_blocks_gives_one_query_per_engine_and_a_plain_block_one_for_both() {
        let md = "x\n```sql\n-- a\nSELECT 1;\n\n-- b\nSELECT 2;\n```\n  ```sql\n  -- SQLite\n  -- c\n  SELECT 3;\n  ```\n  ```sql\n  -- PostgreSQL\n  SELECT 4;\n  ```\n";
        let q = parse_queries(md);
        assert_eq!(q.len(), 3);
        assert!(q[0].shared() && q[1].shared() && !q[2].shared());
        assert!(q[2].sqlite.ends_with("SELECT 3") && q[2].postgres.ends_with("SELECT 4"));
    }

    #[test]
    #[should_panic(expected = "without a `-- PostgreSQL` block")]
    fn a_sqlite_block_with_no_postgres_block_after_it_fails() {
        parse_queries("```sql\n-- SQLite\nSELECT 1;\n```\n```sql\nSELECT 2;\n```\n");
    }

    #[test]
    #[should_panic(expected = "another number of queries")]
    fn a_pair_whose_query_counts_differ_fails() {
        parse_queries(
            "```sql\n-- SQLite\nSELECT 1;\nSELECT 2;\n```\n```sql\n-- PostgreSQL\nSELECT 1;\n```\n",
        );
    }

    #[test]
    #[should_panic(expected = "no `-- SQLite` block before it")]
    fn a_lone_postgres_block_fails() {
        parse_queries("```sql\nSELECT 1;\n```\n```sql\n-- PostgreSQL\nSELECT 2;\n```\n");
    }

    #[test]
    #[should_panic(expected = "SQL outside a ```sql block")]
    fn sql_outside_a_block_fails() {
        parse_queries("Try `SELECT 1 FROM orders`.\n```sql\nSELECT 2;\n```\n");
    }

    #[test]
    fn decimals_read_as_rust_prints_the_same_f64() {
        assert_eq!(shortest_decimal("1234.5600000000000000"), "1234.56");
        assert_eq!(shortest_decimal("7.00"), "7");
        assert_eq!(shortest_decimal("120"), "120");
        assert_eq!(1234.56_f64.to_string(), "1234.56");
        assert_eq!(7.0_f64.to_string(), "7");
    }
}
