//! Unit tests of `config::db_config` (kept in `tests/` beside the code).

use std::time::Duration;

use super::*;
use crate::config::{HostSpec, LoadBalanceHosts, TargetSessionAttrs};

fn cfg(url: &str) -> Result<DbConfig, ConfigError> {
    DbConfig::from_url(url)
}

#[test]
fn every_parameter_is_parsed() {
    let c = cfg(
        "postgres://u:pw@h/db?connection_limit=7&min_connections=2&pool_timeout=500ms\
                 &connect_timeout=3&connect_retry_timeout=1m&idle_timeout=30&max_lifetime=0\
                 &ping_after_idle=0&health_check_timeout=2s&statement_timeout=1.5\
                 &idle_in_transaction_session_timeout=20s&statement_cache_size=50\
                 &schema=app,public&application_name=ledger",
    )
    .expect("valid");
    let p = c.pool();
    assert_eq!(p.limits.connection_limit, 7);
    assert_eq!(p.limits.min_connections, 2);
    assert_eq!(p.limits.pool_timeout, Some(Duration::from_millis(500)));
    assert_eq!(p.limits.connect_timeout, Duration::from_secs(3));
    assert_eq!(p.limits.connect_retry_timeout, Duration::from_secs(60));
    assert_eq!(p.limits.idle_timeout, Some(Duration::from_secs(30)));
    assert_eq!(p.limits.max_lifetime, None);
    assert_eq!(p.limits.ping_after_idle, Duration::ZERO);
    assert_eq!(p.limits.health_check_timeout, Duration::from_secs(2));
    assert_eq!(
        p.deadlines.statement_timeout,
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        p.deadlines.idle_in_transaction_session_timeout,
        Some(Duration::from_secs(20))
    );
    assert_eq!(p.session.statement_cache_size, Some(50));
    assert_eq!(p.session.schema.as_deref(), Some("app,public"));
    assert_eq!(p.session.application_name, "ledger");
    assert_eq!(c.driver_url(), "postgres://u:pw@h/db");
}

#[test]
fn defaults_follow_the_contract() {
    let p = cfg("postgres://h/db").expect("valid").pool().clone();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    assert_eq!(p.limits.connection_limit, cores * 2 + 1);
    assert_eq!(p.limits.min_connections, 0);
    assert_eq!(p.limits.pool_timeout, Some(Duration::from_secs(10)));
    assert_eq!(p.limits.connect_timeout, Duration::from_secs(5));
    assert_eq!(p.limits.idle_timeout, Some(Duration::from_secs(600)));
    assert_eq!(p.limits.max_lifetime, Some(Duration::from_secs(1800)));
    assert_eq!(p.session.application_name, "dbservice");
    assert!(!p.session.pgbouncer);
}

#[test]
fn bad_values_name_parameter_and_value() {
    for (url, needles) in [
        (
            "postgres://h/db?pool_timeout=abc",
            vec!["pool_timeout", "`abc`"],
        ),
        (
            "postgres://h/db?connection_limit=0",
            vec!["connection_limit", "`0`", "at least 1"],
        ),
        (
            "postgres://h/db?connection_limit=-4",
            vec!["connection_limit", "`-4`"],
        ),
        (
            "postgres://h/db?pgbouncer=maybe",
            vec!["pgbouncer", "`maybe`"],
        ),
        (
            "postgres://h/db?connect_timeout=0",
            vec!["connect_timeout", "greater than 0"],
        ),
        (
            "postgres://h/db?connection_limit=2&min_connections=5",
            vec!["min_connections", "(5)", "connection_limit", "(2)"],
        ),
        ("redis://h/0", vec!["`redis`"]),
        (
            "sqlite://x.db?statement_timeout=5",
            vec!["statement_timeout", "PostgreSQL", "SQLite"],
        ),
        (
            "postgres://h/db?pgbouncer=true&statement_cache_size=10",
            vec!["pgbouncer", "statement_cache_size"],
        ),
        (
            "postgres://h/db?pool_timout=1",
            vec!["pool_timout", "did you mean `pool_timeout`"],
        ),
        (
            "postgres://h1,h2/db?target_session_attrs=readwrite",
            vec!["`target_session_attrs`", "`readwrite`", "read-write"],
        ),
        (
            "postgres://h1,h2/db?load_balance_hosts=shuffle",
            vec!["`load_balance_hosts`", "`shuffle`", "disable or random"],
        ),
        (
            "sqlite://x.db?target_session_attrs=primary",
            vec!["target_session_attrs", "PostgreSQL", "SQLite"],
        ),
    ] {
        let msg = cfg(url)
            .err()
            .unwrap_or_else(|| panic!("{url} accepted"))
            .to_string();
        for needle in needles {
            assert!(msg.contains(needle), "{url}: {msg:?} lacks {needle:?}");
        }
    }
}

#[test]
fn url_overrides_settings() {
    let settings = vec![
        ("connection_limit".to_owned(), "4".to_owned()),
        ("pool_timeout".to_owned(), "3".to_owned()),
    ];
    let c = DbConfig::from_parts("postgres://h/db?connection_limit=9", &settings).expect("valid");
    assert_eq!(c.pool().limits.connection_limit, 9);
    assert_eq!(c.pool().limits.pool_timeout, Some(Duration::from_secs(3)));
}

#[test]
fn password_never_shows() {
    let c = cfg("postgres://app:hunter2@h/db?connection_limit=3").expect("valid");
    assert!(!format!("{c:?}").contains("hunter2"));
    let json = serde_json::to_string(&c).expect("serializes");
    assert!(
        !json.contains("hunter2") && json.contains("app:***@h"),
        "{json}"
    );
    let err = cfg("postgres://app:hunter2@h/db?pool_timeout=x").expect_err("rejected");
    assert!(!err.to_string().contains("hunter2"));
}

#[test]
fn multi_host_urls_keep_the_password_hidden() {
    let raw = "postgres://app:hunter2@db1:5432,db2:5433/db?target_session_attrs=read-write\
               &load_balance_hosts=random";
    let c = cfg(raw).expect("valid");
    assert_eq!(c.hosts().len(), 2);
    assert_eq!(
        c.pool().session.target_session_attrs,
        TargetSessionAttrs::ReadWrite
    );
    assert_eq!(
        c.pool().session.load_balance_hosts,
        LoadBalanceHosts::Random
    );
    assert_eq!(c.driver_url(), "postgres://app:hunter2@db1:5432/db");
    assert_eq!(
        c.redacted_url().to_string(),
        "postgres://app:***@db1:5432,db2:5433/db"
    );
    let shown = format!("{c:?} {}", serde_json::to_string(&c).expect("serializes"));
    assert!(!shown.contains("hunter2"), "{shown}");
    // The URL as written is a secret too (it is not the driver's URL).
    let scrubbed = c.scrub(&format!("connecting to {raw}: refused (hunter2)"));
    assert_eq!(scrubbed, "connecting to ***: refused (***)");
}

#[test]
fn the_direct_url_may_list_hosts() {
    let c = cfg("postgres://app:pw@bouncer:6432/db?pgbouncer=true")
        .expect("valid")
        .with_direct_url("postgres://app:hunter2@/db?host=db1,db2&port=5433")
        .expect("valid");
    let direct: Vec<String> = c
        .direct_hosts()
        .expect("set")
        .iter()
        .map(HostSpec::label)
        .collect();
    assert_eq!(direct, ["db1:5433", "db2:5433"]);
    assert_eq!(c.hosts().len(), 1);
    assert_eq!(
        c.direct_driver_url(),
        Some("postgres://app:hunter2@db1:5433/db")
    );
    assert_eq!(
        c.redacted_direct_url().map(|u| u.to_string()).as_deref(),
        Some("postgres://app:***@db1:5433,db2:5433/db")
    );
    let err = cfg("postgres://app:pw@bouncer:6432/db")
        .expect("valid")
        .with_direct_url("postgres://app:hunter2@db1:1,db2:x/db")
        .expect_err("bad port");
    assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
    assert!(
        err.to_string()
            .contains("host 2 of 2: port is not a number"),
        "{err}"
    );
}

/// `schema` is a list of identifiers (plain or double-quoted), not "anything without a
/// quote or a semicolon": a comment or an operator would otherwise reach `SET LOCAL
/// search_path TO ...` behind PgBouncer.
#[test]
fn schema_is_a_list_of_identifiers() {
    for ok in [
        "app",
        "app,public",
        " app , public ",
        "\"$user\", public",
        "\"My Schema\",\"a,b\",\"q\"\"uote\"",
        "ünï_1$",
    ] {
        let c = cfg(&format!("postgres://h/db?schema={}", enc(ok))).expect(ok);
        assert_eq!(c.pool().session.schema.as_deref(), Some(ok.trim()), "{ok}");
    }
    for bad in [
        "",
        "a--",
        "a -- x",
        "a/*",
        "a,",
        ",a",
        "a b",
        "1a",
        "$a",
        "a)",
        "\"open",
        "\"\"",
        "a;b",
        "a'b",
        "a\\b",
        "pg_catalog, public; SELECT 1",
    ] {
        let err = cfg(&format!("postgres://h/db?schema={}", enc(bad)))
            .expect_err(bad)
            .to_string();
        assert!(err.contains("`schema`"), "{bad}: {err}");
        assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
    }
    let long = "a".repeat(64);
    assert!(cfg(&format!("postgres://h/db?schema={long}")).is_err());
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
