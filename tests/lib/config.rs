//! `DbConfig` from a URL: the client deadline's defaults and conflicts, and the TLS mode the
//! driver will really use.

use std::time::Duration;

use dbservice::DbConfig;

/// Every statement has a client deadline by default; Prisma's `socket_timeout` sets it; it
/// follows `statement_timeout` when only that is set and must stay above it when both are.
#[test]
fn query_timeout_defaults_aliases_and_conflicts() {
    let d = |url: &str| DbConfig::from_url(url).map(|c| c.pool().query_timeout);
    assert_eq!(d("postgres://u@h/db"), Ok(Some(Duration::from_secs(30))));
    assert_eq!(
        d("postgres://u@h/db?socket_timeout=7"),
        Ok(Some(Duration::from_secs(7)))
    );
    assert_eq!(d("sqlite://x.db?query_timeout=0"), Ok(None));
    assert_eq!(
        d("postgres://u@h/db?statement_timeout=45s"),
        Ok(Some(Duration::from_secs(46)))
    );
    let err = d("postgres://u@h/db?statement_timeout=10&query_timeout=5")
        .expect_err("client bound below the server's")
        .to_string();
    assert!(
        err.contains("query_timeout") && err.contains("statement_timeout"),
        "{err}"
    );
}

/// A remote database reached without certificate verification is called out; a local one or
/// a verified one is not; the mode shown is the one the driver will use.
#[test]
fn tls_mode_is_reported_and_unverified_remote_databases_are_flagged() {
    let remote =
        DbConfig::from_url("postgres://u@db.example.com/x?sslmode=require").expect("valid");
    let tls = remote.tls().expect("PostgreSQL has a TLS mode");
    assert_eq!(
        (tls.mode, tls.source, tls.verifies_server),
        ("require", "url", false)
    );
    assert!(
        remote
            .tls_warning()
            .is_some_and(|w| w.contains("db.example.com") && w.contains("verify-full")),
        "{:?}",
        remote.tls_warning()
    );
    let verified =
        DbConfig::from_url("postgres://u@db.example.com/x?sslmode=verify-full").expect("valid");
    assert_eq!(verified.tls_warning(), None);
    let local = DbConfig::from_url("postgres://u@127.0.0.1/x?sslmode=disable").expect("valid");
    assert_eq!(local.tls_warning(), None);
    let shown = serde_json::to_value(&remote).expect("serializes");
    assert_eq!(shown["tls"]["mode"], "require");
    assert!(
        DbConfig::from_url("sqlite://x.db")
            .expect("valid")
            .tls()
            .is_none()
    );
}
