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
