//! What a deployment's environment holds beside our settings: Kubernetes' service links, a
//! setting a newer image knows, a shared `APP_ENV`, and production without its database.

use std::collections::HashMap;

use dbservice::config::Profile;
use dbservice::{config::ConfigError, config::Settings};

use crate::support::env_of;

/// The variables Kubernetes injects for a Service named `name` (upper-cased, `-` as `_`) with
/// one TCP port 80 named `http`.
fn service_links(name: &str, ip: &str) -> Vec<(String, String)> {
    let n = name.to_ascii_uppercase().replace('-', "_");
    vec![
        (format!("{n}_SERVICE_HOST"), ip.to_owned()),
        (format!("{n}_SERVICE_PORT"), "80".to_owned()),
        (format!("{n}_SERVICE_PORT_HTTP"), "80".to_owned()),
        (format!("{n}_PORT"), format!("tcp://{ip}:80")),
        (format!("{n}_PORT_80_TCP"), format!("tcp://{ip}:80")),
        (format!("{n}_PORT_80_TCP_PROTO"), "tcp".to_owned()),
        (format!("{n}_PORT_80_TCP_PORT"), "80".to_owned()),
        (format!("{n}_PORT_80_TCP_ADDR"), ip.to_owned()),
    ]
}

fn load(env: &HashMap<String, String>) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().expect("dir");
    Settings::from_sources(env, dir.path())
}

/// Service links load as no setting, whatever the Service is called, even where the name
/// makes them look like one of ours (`dbservice-management` gives `DBSERVICE_MANAGEMENT_PORT`
/// as a `tcp://` address); the names are kept for the application's DEBUG line.
#[test]
fn kubernetes_service_links_are_recognised_and_ignored() {
    for names in [
        &["dbservice"][..],
        &["api", "dbservice-db", "dbservice-connection-limit"][..],
    ] {
        let mut env: HashMap<String, String> = names
            .iter()
            .flat_map(|n| service_links(n, "10.0.0.1"))
            .collect();
        env.insert("DATABASE_URL".into(), "postgres://app@db/app".into());
        let settings = load(&env).unwrap_or_else(|e| panic!("{names:?}: {e}"));
        let config = settings.db_config(None).expect("config");
        assert_eq!(
            config
                .sources()
                .get("connection_limit")
                .map(ToString::to_string),
            Some("default".into()),
            "{names:?}: a link variable was read as a setting"
        );
        let ignored = settings.ignored_variables();
        let expected = names.iter().filter(|n| n.starts_with("dbservice")).count() * 8;
        assert_eq!(ignored.len(), expected, "{names:?}: {ignored:?}");
        assert!(
            ignored.iter().all(|v| v.starts_with("DBSERVICE_")),
            "{ignored:?}"
        );
    }
    // An application's setting spelled like a link is still read: its port is a number.
    let dir = tempfile::tempdir().expect("dir");
    let app = dbservice::config::AppKeys {
        keys: &["management_port"],
        bare: &[],
    };
    let (settings, values) = Settings::from_sources_with(
        &env_of(&[("DBSERVICE_MANAGEMENT_PORT", "9090")]),
        dir.path(),
        app,
    )
    .expect("loads");
    assert!(settings.ignored_variables().is_empty());
    assert_eq!(values.port("management_port").expect("a port"), Some(9090));
}

/// An unknown `DBSERVICE_*` variable stops development, test and profile-less starts (a typo
/// is caught), and is a warning with a suggestion in production (an image rolled back under a
/// newer setting keeps serving).
#[test]
fn unknown_variables_are_fatal_except_in_production() {
    for profile in [None, Some("development"), Some("test")] {
        let mut env = env_of(&[("DBSERVICE_CONECTION_LIMIT", "3")]);
        if let Some(p) = profile {
            env.insert("APP_ENV".into(), p.into());
        }
        let err = load(&env).expect_err("a typo is fatal").to_string();
        assert!(
            err.contains("DBSERVICE_CONECTION_LIMIT")
                && err.contains("did you mean `DBSERVICE_CONNECTION_LIMIT`"),
            "{profile:?}: {err}"
        );
    }
    let settings = load(&env_of(&[
        ("APP_ENV", "production"),
        ("DATABASE_URL", "postgres://app@db/app"),
        ("DBSERVICE_CONECTION_LIMIT", "3"),
        ("DBSERVICE_FEATURE_FROM_THE_FUTURE", "on"),
    ]))
    .expect("production tolerates unknown settings");
    let warnings = settings.warnings().join("\n");
    assert!(
        warnings.contains("DBSERVICE_CONECTION_LIMIT")
            && warnings.contains("did you mean `DBSERVICE_CONNECTION_LIMIT`")
            && warnings.contains("DBSERVICE_FEATURE_FROM_THE_FUTURE"),
        "{warnings}"
    );
    let config = settings.db_config(None).expect("config");
    assert_ne!(
        config.pool().limits.connection_limit,
        3,
        "an unknown name sets nothing"
    );
}

/// Production refuses to fall back to a default database; the other profiles keep it.
#[test]
fn production_requires_a_database_url() {
    let default = Some("sqlite::memory:");
    for var in ["APP_ENV", "DBSERVICE_PROFILE"] {
        let settings = load(&env_of(&[(var, "production")])).expect("settings load");
        let err = settings.db_config(default).expect_err("no fallback");
        let text = err.to_string();
        assert!(
            text.contains("DATABASE_URL") && text.contains("production"),
            "{text}"
        );
    }
    for profile in ["development", "test"] {
        let settings = load(&env_of(&[("APP_ENV", profile)])).expect("settings load");
        settings.db_config(default).expect("falls back");
    }
    let settings = load(&env_of(&[
        ("APP_ENV", "production"),
        ("DATABASE_URL", "sqlite::memory:"),
    ]))
    .expect("settings load");
    settings
        .db_config(default)
        .expect("an explicit URL is fine");
}

/// `APP_ENV` naming none of our profiles is an error naming the value and the accepted ones,
/// with the way out (`DBSERVICE_PROFILE` wins over it).
#[test]
fn an_unknown_app_env_is_an_error_unless_dbservice_profile_decides() {
    let err = load(&env_of(&[("APP_ENV", "staging")]))
        .expect_err("unknown APP_ENV")
        .to_string();
    for needle in [
        "APP_ENV",
        "`staging`",
        "production, development, test",
        "DBSERVICE_PROFILE",
    ] {
        assert!(err.contains(needle), "{err} lacks {needle}");
    }
    let settings = load(&env_of(&[
        ("APP_ENV", "staging"),
        ("DBSERVICE_PROFILE", "production"),
    ]))
    .expect("DBSERVICE_PROFILE decides");
    assert_eq!(settings.profile(), Some(Profile::Production));
}
