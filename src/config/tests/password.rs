//! Unit tests of `config::password`: the password sources a `DbConfig` names (kept in
//! `tests/` beside the code).

use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::config::{Credentials, CredentialsRequest, ProviderError};
use crate::replica::ReplicaConfig;

/// `from_parts` over a map instead of the process environment.
fn with_env(url: &str, vars: &[(&str, &str)]) -> Result<DbConfig, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    DbConfig::from_parts_in(url, &[], &|name| map.get(name).cloned())
}

fn source(config: &DbConfig, key: &str) -> Option<String> {
    config.sources().get(key).map(ToString::to_string)
}

fn named(path: Option<&NamedPath>) -> Option<(&str, &Path)> {
    path.map(|p| (p.setting.as_str(), p.path.as_path()))
}

struct Fixed;

#[async_trait::async_trait]
impl CredentialsProvider for Fixed {
    async fn credentials(&self, _: &CredentialsRequest<'_>) -> Result<Credentials, ProviderError> {
        Ok(Credentials::password("provider-secret"))
    }
}

#[test]
fn the_passfile_parameter_leaves_the_driver_url_and_is_recorded() {
    let c = with_env(
        "postgres://app@db/app?passfile=/etc/app/pgpass&sslmode=require&connection_limit=3",
        &[("PGPASSFILE", "/elsewhere"), ("HOME", "/home/app")],
    )
    .expect("valid");
    assert_eq!(c.driver_url(), "postgres://app@db/app?sslmode=require");
    assert!(!c.redacted_url().to_string().contains("passfile"));
    let s = c.credential_sources();
    // The URL's wins over PGPASSFILE, and a named passfile replaces ~/.pgpass.
    assert_eq!(
        named(s.passfile.as_ref()),
        Some(("passfile", Path::new("/etc/app/pgpass")))
    );
    assert_eq!(s.default_passfile, None);
    assert_eq!(source(&c, "password").as_deref(), Some("url"));
    assert_eq!(c.pool().limits.connection_limit, 3);
}

#[test]
fn pgpassfile_pgpassword_and_home_come_from_the_environment() {
    let c = with_env(
        "postgres://app@db/app",
        &[("PGPASSFILE", "/run/pgpass"), ("HOME", "/home/app")],
    )
    .expect("valid");
    let s = c.credential_sources();
    assert_eq!(
        named(s.passfile.as_ref()),
        Some(("PGPASSFILE", Path::new("/run/pgpass")))
    );
    assert_eq!(s.default_passfile, None);
    assert_eq!(source(&c, "password").as_deref(), Some("environment"));

    let c = with_env(
        "postgres://app@db/app",
        &[
            ("PGPASSWORD", "pw"),
            ("PGPASSFILE", ""),
            ("HOME", "/home/app"),
        ],
    )
    .expect("valid");
    let s = c.credential_sources();
    assert_eq!(
        s.passfile, None,
        "an empty PGPASSFILE is unset, as in libpq"
    );
    assert_eq!(
        named(s.default_passfile.as_ref()),
        Some(("~/.pgpass", Path::new("/home/app/.pgpass")))
    );
    assert_eq!(s.env_password.as_ref().map(|(v, _)| *v), Some("PGPASSWORD"));
    assert_eq!(source(&c, "password").as_deref(), Some("environment"));
    assert_eq!(c.scrub("auth failed for pw"), "auth failed for ***");
    assert!(!format!("{c:?}").contains("\"pw\""), "{c:?}");

    let c = with_env("postgres://app@db/app", &[]).expect("valid");
    assert_eq!(c.credential_sources().default_passfile, None, "HOME unset");
    assert_eq!(source(&c, "password").as_deref(), Some("default"));
}

#[test]
fn mysql_and_sqlite_take_no_passfile() {
    let vars = [
        ("MYSQL_PWD", "pw"),
        ("PGPASSWORD", "pg"),
        ("PGPASSFILE", "/run/pgpass"),
        ("HOME", "/home/app"),
    ];
    let c = with_env("mysql://app@db/app", &vars).expect("valid");
    let s = c.credential_sources();
    assert_eq!(s.env_password.as_ref().map(|(v, _)| *v), Some("MYSQL_PWD"));
    assert!(s.passfile.is_none() && s.default_passfile.is_none());
    let c = with_env("sqlite::memory:", &vars).expect("valid");
    let s = c.credential_sources();
    assert!(s.env_password.is_none() && s.passfile.is_none() && s.default_passfile.is_none());
    for url in [
        "mysql://app@db/app?passfile=/x",
        "sqlite://x.db?passfile=/x",
    ] {
        let err = with_env(url, &[]).expect_err(url).to_string();
        assert!(err.contains("unknown parameter `passfile`"), "{url}: {err}");
    }
}

#[test]
fn a_passfile_belongs_on_the_main_url_only() {
    let err = DbConfig::from_url("postgres://app:s@bouncer/app?pgbouncer=true")
        .expect("valid")
        .with_direct_url("postgres://app@db/app?passfile=/run/pgpass")
        .expect_err("direct passfile")
        .to_string();
    for needle in [
        "`passfile`",
        "DATABASE_URL_DIRECT",
        "set passfile on DATABASE_URL",
    ] {
        assert!(err.contains(needle), "{err}");
    }
    let err = ReplicaConfig::from_urls(
        "postgres://app@r1/app postgres://app@r2/app?passfile=/run/pgpass",
        &[],
    )
    .expect_err("replica passfile")
    .to_string();
    for needle in ["replica 2", "`passfile`", "set passfile on DATABASE_URL"] {
        assert!(err.contains(needle), "{err}");
    }
    let err = with_env("postgres://app@db/app?passfile=", &[]).expect_err("empty");
    assert!(err.to_string().contains("`passfile`"), "{err}");
}

#[test]
fn a_password_file_is_validated_not_read() {
    let c = DbConfig::from_url("postgres://app@db/app")
        .expect("valid")
        .with_password_file("/does/not/exist")
        .expect("not read here");
    assert_eq!(
        named(c.credential_sources().password_file.as_ref()),
        Some(("DATABASE_PASSWORD_FILE", Path::new("/does/not/exist")))
    );
    assert_eq!(source(&c, "password").as_deref(), Some("code"));
    assert_eq!(
        source(&c, "database_password_file").as_deref(),
        Some("code")
    );
    assert!(
        DbConfig::from_url("mysql://app@db/app")
            .expect("valid")
            .with_password_file("/run/pw")
            .is_ok()
    );

    let err = DbConfig::from_url("sqlite::memory:")
        .expect("valid")
        .with_password_file("/run/pw")
        .expect_err("sqlite")
        .to_string();
    assert!(
        err.contains("DATABASE_PASSWORD_FILE") && err.contains("SQLite has no password"),
        "{err}"
    );
    let err = DbConfig::from_url("postgres://app@db/app")
        .expect("valid")
        .with_password_file_named("[pools.reports] password_file", " ")
        .expect_err("empty")
        .to_string();
    assert!(err.contains("`[pools.reports] password_file`"), "{err}");
}

#[test]
fn the_password_source_follows_the_runtime_precedence() {
    // The URL's own password wins over the file ...
    let c = DbConfig::from_url("postgres://app:hunter2@db/app")
        .expect("valid")
        .with_password_file("/run/pw")
        .expect("valid");
    assert_eq!(source(&c, "password").as_deref(), Some("url"));
    let c = DbConfig::from_url("postgres://app@db/app?password=hunter2").expect("valid");
    assert_eq!(source(&c, "password").as_deref(), Some("url"));
    // ... and a provider over both.
    let c = c.with_credentials(Fixed).expect("valid");
    assert_eq!(source(&c, "password").as_deref(), Some("code"));
    assert!(c.credential_sources().provider.is_some());
    let shown = format!("{c:?}");
    assert!(
        shown.contains("<set>") && !shown.contains("hunter2"),
        "{shown}"
    );

    let err = DbConfig::from_url("sqlite::memory:")
        .expect("valid")
        .with_credentials(Fixed)
        .expect_err("sqlite")
        .to_string();
    assert!(err.contains("SQLite has no password"), "{err}");
}

#[test]
fn each_url_tells_whether_it_has_a_password() {
    let c = DbConfig::from_url("postgres://app@bouncer/app?pgbouncer=true")
        .expect("valid")
        .with_direct_url("postgres://app:s@db/app")
        .expect("valid");
    assert!(!c.url_has_password());
    assert!(c.direct_url_has_password());
    let c = DbConfig::from_url("postgres://app:@db/app").expect("valid");
    assert!(!c.url_has_password(), "an empty password is none");
    assert!(!c.direct_url_has_password(), "no direct URL");
    let c = DbConfig::from_url("postgres://app@db1,db2/app?password=s").expect("valid");
    assert!(c.url_has_password());
    let r = ReplicaConfig::from_urls("postgres://app@r1/app postgres://app:s@r2/app", &[])
        .expect("valid");
    let has: Vec<bool> = r.replicas.iter().map(DbConfig::url_has_password).collect();
    assert_eq!(has, [false, true]);
}
