//! Unit tests of `config::url` (kept in `tests/` beside the code).

use super::*;

#[test]
fn strips_our_keys_and_keeps_driver_keys() {
    let s = split("postgres://u:p@h:5/db?connection_limit=3&sslmode=disable&pool_timeout=2")
        .expect("valid URL");
    assert_eq!(s.backend, Backend::Postgres);
    assert_eq!(
        s.driver_url.as_str(),
        "postgres://u:p@h:5/db?sslmode=disable"
    );
    assert_eq!(
        s.params,
        vec![
            ("connection_limit".to_owned(), "3".to_owned()),
            ("pool_timeout".to_owned(), "2".to_owned())
        ]
    );
}

#[test]
fn removes_the_question_mark_when_nothing_is_left() {
    let s = split("sqlite://x.db?connection_limit=1").expect("valid URL");
    assert_eq!(s.driver_url.as_str(), "sqlite://x.db");
    let s = split("sqlite::memory:").expect("valid URL");
    assert_eq!(s.backend, Backend::Sqlite);
}

#[test]
fn typo_gets_a_suggestion() {
    let err = split("postgres://h/db?conection_limit=3").expect_err("rejected");
    assert_eq!(
        err.to_string(),
        "unknown parameter `conection_limit` in DATABASE_URL (did you mean `connection_limit`?)"
    );
}

#[test]
fn unknown_scheme_is_named() {
    let err = split("mongodb://h/db").expect_err("rejected");
    assert!(err.to_string().contains("`mongodb`"), "{err}");
}

#[test]
fn mariadb_scheme_becomes_mysql() {
    let s = split("mariadb://root@127.0.0.1/test").expect("valid URL");
    assert_eq!(s.backend, Backend::MySql);
    assert!(s.driver_url.as_str().starts_with("mysql://"));
}

// --- libpq host lists --------------------------------------------------------------------

fn hosts(url: &str) -> Vec<(String, u16)> {
    split(url)
        .expect("valid URL")
        .hosts
        .into_iter()
        .map(|h| (h.host, h.port))
        .collect()
}

fn h(host: &str, port: u16) -> (String, u16) {
    (host.to_owned(), port)
}

/// The error's text, after checking that neither it nor its `Debug` shows the password.
fn error_of(url: &str) -> String {
    let err = split(url).expect_err("rejected");
    let (shown, debug) = (err.to_string(), format!("{err:?}"));
    for text in [&shown, &debug] {
        assert!(!text.contains("s3cr"), "password in {text}");
    }
    shown
}

#[test]
fn a_single_host_url_reaches_the_driver_as_before() {
    // What `split` gave before host lists: `Url::parse` of the input, the query rewritten
    // when driver keys remain (which re-encodes it).
    for (url, before) in [
        (
            "postgres://u:p@h:5/db?sslmode=disable&connection_limit=2",
            "postgres://u:p@h:5/db?sslmode=disable",
        ),
        ("postgres://u:p@h/db", "postgres://u:p@h/db"),
        (
            "postgresql://u:p%2Fq@db.internal:6432/app?options=-c%20x%3D1",
            "postgresql://u:p%2Fq@db.internal:6432/app?options=-c+x%3D1",
        ),
        ("postgres://u@[::1]:5433/db", "postgres://u@[::1]:5433/db"),
        ("postgres://u@h:/db", "postgres://u@h/db"),
        (
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/db",
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/db",
        ),
        ("postgres:///db", "postgres:///db"),
        ("postgres://h", "postgres://h"),
        (" postgres://h/db?connection_limit=1 ", "postgres://h/db"),
    ] {
        assert_eq!(
            split(url).expect("valid").driver_url.as_str(),
            before,
            "{url}"
        );
    }
    assert_eq!(hosts("postgres://u:p@h/db"), [h("h", 5432)]);
    assert_eq!(hosts("postgres://u:p@h:6432/db"), [h("h", 6432)]);
    assert!(hosts("postgres:///db").is_empty());
}

#[test]
fn authority_lists_every_host_with_its_port() {
    let s =
        split("postgres://u:p@db1:5433,[::1]:5434,db3,db4:/app?sslmode=require").expect("valid");
    let got: Vec<(String, u16)> = s.hosts.iter().map(|h| (h.host.clone(), h.port)).collect();
    assert_eq!(
        got,
        [
            h("db1", 5433),
            h("::1", 5434),
            h("db3", 5432),
            h("db4", 5432)
        ]
    );
    assert_eq!(
        s.driver_url.as_str(),
        "postgres://u:p@db1:5433/app?sslmode=require"
    );
    assert_eq!(
        split("postgres://u:p@[::1]:5433,db2/app")
            .expect("valid")
            .driver_url
            .as_str(),
        "postgres://u:p@[::1]:5433/app"
    );
}

#[test]
fn query_hosts_and_ports_follow_libpq() {
    // One port for every host.
    assert_eq!(
        hosts("postgres://u@/app?host=db1,db2&port=6432"),
        [h("db1", 6432), h("db2", 6432)]
    );
    // One port per host.
    let s =
        split("postgres://u:p@/app?host=db1,db2&port=6432,6433&sslmode=disable").expect("valid");
    assert_eq!(
        s.hosts[1],
        HostSpec {
            host: "db2".into(),
            port: 6433
        }
    );
    assert_eq!(
        s.driver_url.as_str(),
        "postgres://u:p@db1:6432/app?sslmode=disable"
    );
    // The query's hosts replace the authority's; the authority's port still counts.
    assert_eq!(
        hosts("postgres://old:7000/app?host=a,b"),
        [h("a", 7000), h("b", 7000)]
    );
    // A query port with authority hosts: the same rule.
    assert_eq!(
        hosts("postgres://db1,db2/app?port=7,8"),
        [h("db1", 7), h("db2", 8)]
    );
    let s = split("postgres://db1,db2/app?port=7").expect("valid");
    assert_eq!(s.driver_url.as_str(), "postgres://db1:7/app");
    // IPv6 in the query: bare or in brackets.
    assert_eq!(
        hosts("postgres:///app?host=::1,[fe80::2]"),
        [h("::1", 5432), h("fe80::2", 5432)]
    );
}

#[test]
fn socket_directories() {
    let s = split("postgres://u:p@/app?host=/var/run/postgresql").expect("valid");
    assert_eq!(
        s.hosts,
        [HostSpec {
            host: "/var/run/postgresql".into(),
            port: 5432
        }]
    );
    assert!(s.hosts[0].is_socket());
    assert_eq!(
        s.driver_url.as_str(),
        "postgres://u:p@%2Fvar%2Frun%2Fpostgresql/app"
    );
    assert_eq!(
        hosts("postgres://u@%2Ftmp:5433,db2/app"),
        [h("/tmp", 5433), h("db2", 5432)]
    );
}

#[cfg(feature = "postgres")]
#[test]
fn sqlx_reads_a_socket_first_host_as_a_socket() {
    use std::str::FromStr;
    let s = split("postgres://u:p@/app?host=/var/run/postgresql&port=5433").expect("valid");
    let opts = sea_orm::sqlx::postgres::PgConnectOptions::from_str(s.driver_url.as_str())
        .expect("sqlx parses it");
    assert_eq!(
        opts.get_socket()
            .map(|p| p.to_string_lossy().into_owned())
            .as_deref(),
        Some("/var/run/postgresql")
    );
    assert_eq!(opts.get_port(), 5433);
}

#[test]
fn a_port_without_host_stays_with_the_driver() {
    let s = split("postgres:///app?port=5433").expect("valid");
    assert!(s.hosts.is_empty());
    assert_eq!(s.driver_url.as_str(), "postgres:///app?port=5433");
}

#[test]
fn malformed_host_lists_are_named_by_position() {
    const PW: &str = "postgres://app:s3cr%2Ft@";
    let cases = [
        (
            "db1:5432,db2:abc,db3/app",
            "DATABASE_URL host 2 of 3: port is not a number (1-65535)",
        ),
        (
            "db1,db2:0/app",
            "DATABASE_URL host 2 of 2: port is out of range (1-65535)",
        ),
        (
            "db1:70000,db2/app",
            "DATABASE_URL host 1 of 2: port is out of range (1-65535)",
        ),
        ("db:70000/app", "DATABASE_URL port: out of range (1-65535)"),
        ("db:x/app", "DATABASE_URL port: not a number (1-65535)"),
        (
            "db1,,db3/app",
            "DATABASE_URL host 2 of 3: the host name is empty",
        ),
        (
            "db1,db2,/app",
            "DATABASE_URL host 3 of 3: the host name is empty",
        ),
        (
            "[::1:5432,db2/app",
            "DATABASE_URL host: `[` has no matching `]`",
        ),
        (
            "[::1]x,db2/app",
            "DATABASE_URL host 1 of 2: only `:port` may follow",
        ),
        (
            "[::zz]:1,db2/app",
            "DATABASE_URL host 1 of 2: not a valid host name or address",
        ),
        (
            "::1,db2/app",
            "DATABASE_URL host 1 of 2: an IPv6 address needs brackets",
        ),
        (
            "db 1,db2/app",
            "DATABASE_URL host 1 of 2: not a valid host name or address",
        ),
        (
            "/app?host=a,b,c&port=1,2",
            "DATABASE_URL port: could not match 2 port numbers to 3 hosts",
        ),
        (
            "db1:1,db2:2/app?host=a",
            "DATABASE_URL port: could not match 2 port numbers to 1 hosts",
        ),
        (
            "/app?host=a,,b",
            "DATABASE_URL host 2 of 3: the host name is empty",
        ),
        (
            "/app?host=db:5432,b",
            "DATABASE_URL host 1 of 2: not a host name or an IPv6 address",
        ),
        (
            "/app?host=a,b&port=1,x",
            "DATABASE_URL host 2 of 2: port is not a number (1-65535)",
        ),
        ("/app", "DATABASE_URL host: missing"),
        (
            "a,b/app?hostaddr=10.0.0.1",
            "DATABASE_URL hostaddr: is only supported with a single host",
        ),
    ];
    for (rest, expected) in cases {
        let got = error_of(&format!("{PW}{rest}"));
        assert!(got.starts_with(expected), "{rest}: {got}");
    }
}

#[test]
fn an_unencoded_slash_in_the_password_is_explained() {
    let got = error_of("postgres://app:s3cr/t@db/app");
    assert!(
        got.starts_with("DATABASE_URL user info: an `@` follows the host"),
        "{got}"
    );
    let got = error_of("postgres://app:s3cr#t@db/app");
    assert!(got.contains("percent-encode"), "{got}");
}

#[test]
fn the_userinfo_ends_at_the_last_at_sign() {
    // Commas, colons, brackets and `@` in the password are not hosts.
    let s = split("postgres://u:a,b:[c@d@db1,db2:6432/app").expect("valid");
    assert_eq!(s.hosts.len(), 2);
    assert_eq!(s.hosts[1].label(), "db2:6432");
    assert_eq!(s.driver_url.host_str(), Some("db1"));
    assert_eq!(
        s.driver_url
            .password()
            .map(|p| percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned())
            .as_deref(),
        Some("a,b:[c@d")
    );
}

#[test]
fn hostaddr_with_one_host_goes_to_the_driver() {
    let s = split("postgres://db/app?hostaddr=10.0.0.1").expect("valid");
    assert_eq!(s.driver_url.as_str(), "postgres://db/app?hostaddr=10.0.0.1");
}

#[test]
fn other_backends_take_no_host_list() {
    let got = error_of("mysql://root:s3cr@db1:3306,db2:3306/app");
    assert_eq!(
        got,
        "DATABASE_URL host: a comma-separated list of hosts is only supported in PostgreSQL URLs"
    );
    // A comma in a SQLite file name is just a file name.
    let s = split("sqlite://data,v2.db?mode=rwc").expect("valid");
    assert!(s.hosts.is_empty());
    let s = split("mysql://root@db:3306/app").expect("valid");
    assert!(s.hosts.is_empty());
}

#[test]
fn debug_and_redaction_show_every_host_and_no_password() {
    let s = split(
        "postgres://app:s3cr%40t@db1,[::1]:5433/app?host=db1,::1&port=5432,5433&password=s3cr2",
    )
    .expect("valid");
    let shown = s.redacted().to_string();
    assert_eq!(
        shown,
        "postgres://app:***@db1:5432,[::1]:5433/app?password=***"
    );
    let debug = format!("{s:?}");
    assert!(!debug.contains("s3cr"), "{debug}");
    assert!(debug.contains("db1:5432,[::1]:5433"), "{debug}");
    // Without a password the shown URL parses back to the same hosts.
    let s = split("postgres://app@/app?host=db1,/run/pg&port=6432").expect("valid");
    let shown = s.redacted().to_string();
    assert_eq!(shown, "postgres://app@db1:6432,%2Frun%2Fpg:6432/app");
    assert_eq!(split(&shown).expect("valid").hosts, s.hosts);
}
