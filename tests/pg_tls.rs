//! TLS to PostgreSQL, against the test cluster with a certificate for 127.0.0.1 signed by a CA of
//! its own: `sslmode` as libpq means it. `verify-full` trusts only a certificate chained to
//! `sslrootcert` that names the host; `verify-ca` the chain alone; `require` encrypts without
//! checking; no `sslmode`, plaintext. A certificate that fails is one sentence and exit 1, and a
//! sync over `verify-full` stores what a plaintext one does.

use ordersync::secret::Secret;
use ordersync::store::pg::{PgDb, PgTarget};
use ordersync::store::sql::Db;
use ordersync::store::StoreError;

use crate::common::{assert_ok, pg_database, pg_target, pg_tls, Harness, PG_PASSWORD};

/// Whether the connection to `url` is encrypted, from the server's side, or why it failed.
fn encrypted(url: &str) -> Result<bool, String> {
    let target = PgTarget::new(url, Some(Secret::new(PG_PASSWORD))).map_err(|e| e.to_string())?;
    let mut db = PgDb::connect(&target).map_err(|e: StoreError| e.to_string())?;
    let rows = db
        .query(
            "SELECT CAST(ssl AS INTEGER) FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap();
    Ok(rows[0].get::<i64>(0).unwrap() == 1)
}

#[test]
fn sslmode_means_what_libpq_means() {
    let Some(pg) = pg_database() else { return };
    let Some(tls) = pg_tls() else { return };
    let (ca, other) = (tls.ca.display(), tls.other_ca.display());
    let at = |host: &str, query: &str| {
        format!(
            "postgres://ordersync_test@{host}:{}/{}?{query}",
            pg.port, pg.name
        )
    };

    assert_eq!(encrypted(&pg.url()), Ok(false), "no sslmode: plaintext");
    assert_eq!(encrypted(&at("127.0.0.1", "sslmode=disable")), Ok(false));
    assert_eq!(encrypted(&at("127.0.0.1", "sslmode=require")), Ok(true));
    assert_eq!(encrypted(&at("127.0.0.1", "sslmode=prefer")), Ok(true));
    let full = at(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    assert_eq!(encrypted(&full), Ok(true));

    // Signed by an authority not trusted: refused, whatever the name.
    for mode in ["verify-full", "verify-ca"] {
        let e = encrypted(&at(
            "127.0.0.1",
            &format!("sslmode={mode}&sslrootcert={other}"),
        ))
        .unwrap_err();
        assert!(
            e.contains("cannot connect") && e.contains("invalid peer certificate: UnknownIssuer"),
            "{e}"
        );
        assert!(!e.contains(PG_PASSWORD));
    }
    // The certificate names 127.0.0.1, not localhost: the chain is good, the name is not.
    let e = encrypted(&at(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .unwrap_err();
    assert!(e.contains("not valid for name \"localhost\""), "{e}");
    assert_eq!(
        encrypted(&at(
            "localhost",
            &format!("sslmode=verify-ca&sslrootcert={ca}")
        )),
        Ok(true)
    );
}

#[test]
fn a_sync_over_verified_tls_stores_what_a_plaintext_one_does() {
    use ordersync_sim::Faults;

    let Some(pg) = pg_database() else { return };
    let Some(tls) = pg_tls() else { return };
    let h = Harness::veapi(150, 5, Faults::default());
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url(),
        tls.ca.display()
    );
    let with = |url: &str, args: &[&str]| h.run_on(url, args);
    assert_ok(&with(&url, &["sync"]));
    let status = with(&url, &["status"]);
    assert_ok(&status);
    let target = pg_target(&pg.url());
    let mut db = PgDb::connect(&target).unwrap();
    let orders: i64 = db.query("SELECT COUNT(*) FROM orders", &[]).unwrap()[0]
        .get(0)
        .unwrap();
    assert_eq!(orders, h.sim.truth().len() as i64);

    // An authority that did not sign the server's certificate: one sentence, exit 1, nothing
    // written, the password nowhere.
    let wrong = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url(),
        tls.other_ca.display()
    );
    let refused = with(&wrong, &["sync"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("invalid peer certificate: UnknownIssuer"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("cannot connect").count(),
        1,
        "said once: {stderr}"
    );
    assert!(!stderr.contains(PG_PASSWORD));
    // A root file that is not there is the command line's mistake: exit 2, naming it.
    let missing = format!(
        "{}?sslmode=verify-full&sslrootcert=/nonexistent/root.crt",
        pg.url()
    );
    let usage = with(&missing, &["status"]);
    assert_eq!(
        usage.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&usage.stderr)
    );
    assert!(String::from_utf8_lossy(&usage.stderr).contains("/nonexistent/root.crt"));
}
