//! `DbConfig` from a URL: the client deadline's defaults and conflicts, and the TLS mode the
//! driver will really use.

use std::time::Duration;

use dbservice::config::DbConfig;

/// Every statement has a client deadline by default; Prisma's `socket_timeout` sets it; it
/// follows `statement_timeout` when only that is set and must stay above it when both are.
#[test]
fn query_timeout_defaults_aliases_and_conflicts() {
    let d = |url: &str| DbConfig::from_url(url).map(|c| c.pool().deadlines.query_timeout);
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

use crate::support::env_of;

/// A profile's defaults apply where nothing explicit is set, and every value says where it
/// came from: default, profile, file, environment, URL, code.
#[test]
fn profiles_fill_defaults_and_every_value_names_its_source() {
    use dbservice::config::{LogFormat, Profile, Source};
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("dbservice.toml"), "pool_timeout = \"7s\"\n").expect("file");
    let env = env_of(&[
        ("APP_ENV", "production"),
        (
            "DATABASE_URL",
            "postgres://app:secret@db/app?connection_limit=3",
        ),
        ("DBSERVICE_SLOW_QUERY_THRESHOLD", "2s"),
    ]);
    let settings = dbservice::config::Settings::from_sources(&env, dir.path()).expect("settings");
    assert_eq!(settings.profile(), Some(Profile::Production));
    assert_eq!(settings.log_format, LogFormat::Json);
    assert_eq!(settings.shutdown.grace, Duration::from_secs(5));
    let config = settings.db_config(None).expect("config");
    let p = config.pool();
    assert_eq!(
        p.monitoring.stats_log_interval,
        Some(Duration::from_secs(60))
    );
    assert_eq!(p.limits.connection_limit, 3);
    assert_eq!(p.limits.pool_timeout, Some(Duration::from_secs(7)));
    assert_eq!(
        p.monitoring.slow_query_threshold,
        Some(Duration::from_secs(2))
    );
    let source = |k: &str| config.sources().get(k).map(ToString::to_string);
    assert_eq!(
        source("stats_log_interval").as_deref(),
        Some("profile:production")
    );
    assert_eq!(source("connection_limit").as_deref(), Some("url"));
    assert_eq!(
        source("pool_timeout").as_deref(),
        Some("file:dbservice.toml")
    );
    assert_eq!(
        source("slow_query_threshold").as_deref(),
        Some("environment")
    );
    assert_eq!(source("idle_timeout").as_deref(), Some("default"));
    assert_eq!(source("database_url").as_deref(), Some("environment"));
    assert_eq!(
        settings.sources().get("log_format"),
        Some(&Source::Profile(Profile::Production))
    );
    assert_eq!(
        settings.sources().get("profile"),
        Some(&Source::Environment)
    );
    // Shown in the configuration's JSON (/health/db, the startup line), redacted.
    let shown = serde_json::to_string(&config).expect("json");
    assert!(
        shown.contains("\"stats_log_interval\":\"profile:production\""),
        "{shown}"
    );
    assert!(!shown.contains("secret"), "{shown}");

    // DBSERVICE_PROFILE wins over APP_ENV; an explicit setting over the profile.
    let env = env_of(&[
        ("APP_ENV", "production"),
        ("DBSERVICE_PROFILE", "development"),
        ("DBSERVICE_LOG_STATEMENTS", "false"),
        ("DATABASE_URL", "postgres://app@db/app"),
    ]);
    let mut settings =
        dbservice::config::Settings::from_sources(&env, dir.path()).expect("settings");
    assert_eq!(settings.profile(), Some(Profile::Development));
    settings.set_pool_param("connection_limit", "8");
    let config = settings.db_config(None).expect("config");
    assert!(!config.pool().monitoring.log_statements);
    assert_eq!(
        config.pool().monitoring.slow_query_threshold,
        Some(Duration::from_millis(200))
    );
    assert_eq!(config.pool().limits.connection_limit, 8);
    assert_eq!(
        config.sources().get("connection_limit"),
        Some(&Source::Code)
    );
    assert_eq!(
        config.sources().get("log_statements"),
        Some(&Source::Environment)
    );

    // DBSERVICE_PROFILE is ours: a profile nobody knows is an error naming it and the value.
    let env = env_of(&[("DBSERVICE_PROFILE", "staging")]);
    let err =
        dbservice::config::Settings::from_sources(&env, dir.path()).expect_err("unknown profile");
    let text = err.to_string();
    assert!(
        text.contains("DBSERVICE_PROFILE")
            && text.contains("staging")
            && text.contains("production"),
        "{text}"
    );
    // APP_ENV naming none of ours is an error too (see `environment.rs`).
    // The prefixed form of a bare name is the environment too, and beats the profile.
    let env = env_of(&[
        ("APP_ENV", "production"),
        ("DBSERVICE_LOG_FORMAT", "pretty"),
    ]);
    let settings = dbservice::config::Settings::from_sources(&env, dir.path()).expect("settings");
    assert_eq!(settings.log_format, LogFormat::Pretty);
    assert_eq!(
        settings.sources().get("log_format"),
        Some(&Source::Environment)
    );
}
