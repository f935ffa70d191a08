//! Unit tests of the password file in the layered settings: `DATABASE_PASSWORD_FILE`,
//! `[pools.<name>] password_file` and `DATABASE_PASSWORD_FILE_<NAME>` (kept in `tests/`
//! beside the code).

use std::collections::HashMap;
use std::path::Path;

use crate::config::{ConfigError, DbConfig, Settings};

fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Settings from `pairs` and, when given, a `dbservice.toml` holding `toml`.
fn load(pairs: &[(&str, &str)], toml: Option<&str>) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().map_err(|e| ConfigError::Source(e.to_string()))?;
    if let Some(text) = toml {
        std::fs::write(dir.path().join("dbservice.toml"), text)
            .map_err(|e| ConfigError::Source(e.to_string()))?;
    }
    Settings::from_sources(&env_of(pairs), dir.path())
}

/// (setting, path) of the password file, and the `password` and `database_password_file`
/// sources.
fn password_file(c: &DbConfig) -> (Option<(String, &Path)>, Option<String>, Option<String>) {
    let file = c
        .credential_sources()
        .password_file
        .as_ref()
        .map(|p| (p.setting.clone(), p.path.as_path()));
    let source = |k: &str| c.sources().get(k).map(ToString::to_string);
    (file, source("password"), source("database_password_file"))
}

#[test]
fn database_password_file_is_read_bare_from_the_environment() {
    let s = load(
        &[
            ("DATABASE_URL", "postgres://app@db/app"),
            ("DATABASE_PASSWORD_FILE", "/run/secrets/db"),
        ],
        None,
    )
    .expect("settings");
    assert!(s.named_pools().is_empty(), "not a pool named \"\"");
    let c = s.db_config(None).expect("config");
    let (file, password, setting) = password_file(&c);
    assert_eq!(
        file,
        Some((
            "DATABASE_PASSWORD_FILE".to_owned(),
            Path::new("/run/secrets/db")
        ))
    );
    assert_eq!(password.as_deref(), Some("environment"));
    assert_eq!(setting.as_deref(), Some("environment"));
    assert!(format!("{s:?}").contains("/run/secrets/db"));
}

#[test]
fn the_config_file_and_code_set_it_too() {
    let s = load(
        &[("DATABASE_URL", "postgres://app@db/app")],
        Some("database_password_file = \"/etc/app/pw\"\n"),
    )
    .expect("settings");
    let c = s.db_config(None).expect("config");
    let (file, password, _) = password_file(&c);
    assert_eq!(file.map(|(_, p)| p.to_owned()), Some("/etc/app/pw".into()));
    assert_eq!(password.as_deref(), Some("file:dbservice.toml"));

    let mut s = load(
        &[("DBSERVICE_DATABASE_URL_DIRECT", "postgres://m@db/app")],
        None,
    )
    .expect("settings");
    s.set_password_file("/tmp/pw");
    // A migration Job with the direct URL alone uses the file too.
    let c = s.migration_db_config(None).expect("config");
    let (file, password, _) = password_file(&c);
    assert_eq!(file.map(|(_, p)| p.to_owned()), Some("/tmp/pw".into()));
    assert_eq!(password.as_deref(), Some("code"));

    let err = load(
        &[
            ("DATABASE_URL", "sqlite::memory:"),
            ("DBSERVICE_DATABASE_PASSWORD_FILE", "/run/pw"),
        ],
        None,
    )
    .expect("a known setting")
    .db_config(None)
    .expect_err("sqlite")
    .to_string();
    assert!(
        err.contains("DATABASE_PASSWORD_FILE") && err.contains("SQLite has no password"),
        "{err}"
    );
    let err = load(
        &[("DATABASE_URL", "postgres://app@db/app")],
        Some("database_password_file = \"\"\n"),
    )
    .expect("settings")
    .db_config(None)
    .expect_err("empty path")
    .to_string();
    assert!(err.contains("`DATABASE_PASSWORD_FILE`"), "{err}");
}

#[test]
fn named_pools_take_a_password_file_from_the_file_or_the_environment() {
    let toml = "[pools.reports]\nurl = \"postgres://r@db/reports\"\npassword_file = \"/etc/reports\"\n\
                [pools.audit]\nurl = \"mysql://a@db/audit\"\npassword_file = \"/etc/audit\"\n";
    let s = load(
        &[
            ("DATABASE_URL", "postgres://app@db/app"),
            ("DATABASE_PASSWORD_FILE_AUDIT", "/run/audit"),
        ],
        Some(toml),
    )
    .expect("settings");
    let pools = s.named_pools();
    assert_eq!(pools[0].name, "audit");
    assert_eq!(pools[0].password_file.as_deref(), Some("/run/audit"));
    let c = pools[0].db_config().expect("config");
    let (file, password, _) = password_file(&c);
    assert_eq!(
        file,
        Some((
            "DATABASE_PASSWORD_FILE_AUDIT".to_owned(),
            Path::new("/run/audit")
        ))
    );
    assert_eq!(password.as_deref(), Some("environment"));
    let c = pools[1].db_config().expect("config");
    let (file, password, _) = password_file(&c);
    assert_eq!(
        file,
        Some((
            "[pools.reports] password_file".to_owned(),
            Path::new("/etc/reports")
        ))
    );
    assert_eq!(password.as_deref(), Some("file:dbservice.toml"));
    // The primary has none of theirs.
    let c = s.db_config(None).expect("config");
    assert!(c.credential_sources().password_file.is_none());

    // From the environment alone, next to DATABASE_URL_<NAME>.
    let s = load(
        &[
            ("DATABASE_URL_CACHE", "postgres://c@db/cache"),
            ("DATABASE_PASSWORD_FILE_CACHE", "/run/cache"),
        ],
        None,
    )
    .expect("settings");
    assert_eq!(
        s.named_pools()[0].password_file.as_deref(),
        Some("/run/cache")
    );
}

#[test]
fn named_password_files_are_refused_with_the_setting_named() {
    let err = load(
        &[
            ("DATABASE_URL_CACHE", "postgres://c@db/cache"),
            ("DATABASE_PASSWORD_FILE_CAHCE", "/run/cache"),
        ],
        None,
    )
    .expect_err("no such pool")
    .to_string();
    for needle in [
        "DATABASE_PASSWORD_FILE_CAHCE",
        "no pool named `cahce`",
        "DATABASE_URL_CAHCE",
    ] {
        assert!(err.contains(needle), "{err}");
    }
    let err = load(&[("DATABASE_PASSWORD_FILE_DIRECT", "/run/d")], None)
        .expect_err("direct")
        .to_string();
    assert!(
        err.contains("DATABASE_URL_DIRECT uses DATABASE_PASSWORD_FILE"),
        "{err}"
    );
    let s = load(
        &[],
        Some("[pools.local]\nurl = \"sqlite::memory:\"\npassword_file = \"/run/l\"\n"),
    )
    .expect("settings");
    let err = s.named_pools()[0]
        .db_config()
        .expect_err("sqlite")
        .to_string();
    assert!(
        err.contains("[pools.local] password_file") && err.contains("SQLite has no password"),
        "{err}"
    );
    let err = load(
        &[],
        Some("[pools.x]\nurl = \"postgres://x@db/x\"\npassword_file = 3\n"),
    )
    .expect_err("not a path")
    .to_string();
    assert!(err.contains("`password_file` must be a string"), "{err}");
}

#[test]
fn production_does_not_warn_about_password_files() {
    let s = load(
        &[
            ("APP_ENV", "production"),
            ("DATABASE_URL", "postgres://app@db/app"),
            ("DATABASE_PASSWORD_FILE", "/run/pw"),
            ("DBSERVICE_DATABASE_PASSWORD_FILE", "/run/pw"),
        ],
        None,
    )
    .expect("settings");
    assert!(s.warnings().is_empty(), "{:?}", s.warnings());
}

/// Which hosts the primary looks for stays the primary's (the parameter table marks those
/// parameters); every other setting from the environment reaches the replicas too.
#[test]
fn replicas_inherit_pool_settings_but_not_what_the_primary_looks_for() {
    use crate::config::TargetSessionAttrs;
    let settings = load(
        &[
            ("DATABASE_URL", "postgres://u@p1:5432,p2:5432/app"),
            ("DATABASE_REPLICA_URLS", "postgres://u@r1/app"),
            ("DBSERVICE_TARGET_SESSION_ATTRS", "read-write"),
            ("DBSERVICE_CONNECTION_LIMIT", "7"),
        ],
        None,
    )
    .expect("settings");
    let config = settings.db_config(None).expect("config");
    assert_eq!(
        config.pool().session.target_session_attrs,
        TargetSessionAttrs::ReadWrite
    );
    let replica = &config.replicas().expect("replicas").replicas[0];
    assert_eq!(
        replica.pool().session.target_session_attrs,
        TargetSessionAttrs::Any,
        "not inherited"
    );
    assert_eq!(replica.pool().limits.connection_limit, 7, "inherited");
}
