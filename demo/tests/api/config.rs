//! Layered settings: defaults < config file < environment < URL query; errors name the key.

use std::collections::HashMap;
use std::time::Duration;

use dbservice_demo::DemoSettings;

use crate::support::env_of as env;

#[test]
fn environment_overrides_file_and_url_overrides_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("dbservice.toml"),
        "database_url = \"postgres://file@h/db\"\nconnection_limit = 4\npool_timeout = 7\nmin_connections = 1\nport = 9000\n",
    )
    .expect("write config file");

    let only_file =
        DemoSettings::from_sources(&HashMap::new(), dir.path()).expect("file alone loads");
    let cfg = only_file.core.db_config(None).expect("valid");
    assert_eq!(
        cfg.pool().limits.connection_limit,
        4,
        "numbers from TOML are accepted"
    );
    assert_eq!(cfg.pool().limits.pool_timeout, Some(Duration::from_secs(7)));
    assert_eq!(only_file.port, 9000);

    let s = DemoSettings::from_sources(
        &env(&[
            ("DATABASE_URL", "postgres://env@h/db?connection_limit=9"),
            ("DBSERVICE_CONNECTION_LIMIT", "6"),
            ("DBSERVICE_POOL_TIMEOUT", "2s"),
            ("PORT", "9100"),
        ]),
        dir.path(),
    )
    .expect("layers load");
    let cfg = s.core.db_config(None).expect("valid");
    assert_eq!(
        cfg.pool().limits.connection_limit,
        9,
        "URL beats environment"
    );
    assert_eq!(
        cfg.pool().limits.pool_timeout,
        Some(Duration::from_secs(2)),
        "environment beats file"
    );
    assert_eq!(cfg.pool().limits.min_connections, 1, "file beats defaults");
    assert_eq!(s.port, 9100);
    assert!(
        cfg.redacted_url()
            .to_string()
            .starts_with("postgres://env@")
    );
}

#[test]
fn explicit_config_file_must_exist() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nope.toml");
    let err = DemoSettings::from_sources(
        &env(&[("DBSERVICE_CONFIG", missing.to_str().expect("utf-8 path"))]),
        dir.path(),
    )
    .expect_err("missing explicit file is an error");
    assert!(err.to_string().contains("nope.toml"), "{err}");
}

#[test]
fn unknown_prefixed_variable_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = DemoSettings::from_sources(&env(&[("DBSERVICE_CONECTION_LIMIT", "3")]), dir.path())
        .expect_err("typo is an error");
    let msg = err.to_string();
    assert!(
        msg.contains("conection_limit") && msg.contains("DBSERVICE_CONECTION_LIMIT"),
        "{msg}"
    );
}

#[test]
fn bad_values_from_the_environment_name_the_parameter() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (var, value, needle) in [
        ("DBSERVICE_POOL_TIMEOUT", "abc", "pool_timeout"),
        ("DBSERVICE_CONNECTION_LIMIT", "0", "connection_limit"),
        ("DBSERVICE_SHUTDOWN_GRACE", "soon", "shutdown_grace"),
        ("PORT", "http", "port"),
        ("LOG_FORMAT", "xml", "log_format"),
        ("DBSERVICE_METRICS", "maybe", "metrics"),
        ("DBSERVICE_HTTP_WORKERS", "many", "http_workers"),
    ] {
        let result = DemoSettings::from_sources(
            &env(&[(var, value), ("DATABASE_URL", "postgres://u:pw@h/db")]),
            dir.path(),
        )
        .and_then(|s| s.core.db_config(None));
        let msg = result
            .err()
            .unwrap_or_else(|| panic!("{var}={value} accepted"))
            .to_string();
        assert!(msg.contains(needle) && msg.contains(value), "{var}: {msg}");
    }
}

#[test]
fn shutdown_settings_have_documented_defaults() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = DemoSettings::from_sources(&HashMap::new(), dir.path()).expect("defaults load");
    assert_eq!(s.core.shutdown.grace, Duration::ZERO);
    assert_eq!(s.core.shutdown.drain_timeout, Duration::from_secs(15));
    assert_eq!(s.core.shutdown.pool_close_timeout, Duration::from_secs(5));
    assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", 8080));
    assert!(!s.core.has_database_url());
    let err = s.core.db_config(None).expect_err("no URL, no default");
    assert!(err.to_string().contains("DATABASE_URL"));
}

#[test]
fn http_workers_default_to_half_the_cores_and_can_be_set() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let s = DemoSettings::from_sources(&HashMap::new(), dir.path()).expect("defaults load");
    assert_eq!(s.http_workers, 0);
    assert_eq!(s.effective_http_workers(), cores.div_ceil(2));
    let s = DemoSettings::from_sources(&env(&[("DBSERVICE_HTTP_WORKERS", "3")]), dir.path())
        .expect("loads");
    assert_eq!(s.effective_http_workers(), 3);
}

/// `.env.example` documents every setting, and every example value in it is valid.
#[test]
fn env_example_lists_every_setting_with_valid_values() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.env.example"))
        .expect(".env.example exists");
    let mut vars: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some((k, v)) = line.split_once('=')
            && !k.is_empty()
            && k.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        {
            vars.insert(k.to_owned(), v.to_owned());
        }
    }
    for key in dbservice::config::POOL_KEYS {
        let var = format!("DBSERVICE_{}", key.to_ascii_uppercase());
        assert!(vars.contains_key(&var), ".env.example lacks {var}");
    }
    for key in dbservice::config::LIBRARY_KEYS
        .iter()
        .chain(dbservice_demo::DEMO_KEYS)
    {
        let var = match *key {
            "database_url"
            | "database_url_direct"
            | "database_replica_urls"
            | "database_password_file"
            | "host"
            | "port"
            | "log_format" => key.to_ascii_uppercase(),
            other => format!("DBSERVICE_{}", other.to_ascii_uppercase()),
        };
        assert!(vars.contains_key(&var), ".env.example lacks {var}");
    }
    for var in ["RUST_LOG", "DBSERVICE_CONFIG"] {
        assert!(vars.contains_key(var), ".env.example lacks {var}");
    }
    // The example values load, except the config file path (it need not exist here).
    vars.remove("DBSERVICE_CONFIG");
    // Several example URLs are listed; the PostgreSQL-only settings need the PostgreSQL one.
    vars.insert(
        "DATABASE_URL".into(),
        "postgres://app:secret@127.0.0.1:5432/app".into(),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = DemoSettings::from_sources(&vars, dir.path()).expect("example settings load");
    settings
        .core
        .db_config(None)
        .expect("example pool settings are valid");
}

/// Durations past the documented maximum are refused by name instead of overflowing a deadline
/// later (`Instant + Duration` panics).
#[test]
fn huge_durations_are_refused_naming_the_setting() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (var, param) in [
        ("DBSERVICE_PING_TIMEOUT", "ping_timeout"),
        ("DBSERVICE_TRANSACTION_TIMEOUT", "transaction_timeout"),
        ("DBSERVICE_DRAIN_TIMEOUT", "drain_timeout"),
        ("DBSERVICE_REQUEST_TIMEOUT", "request_timeout"),
    ] {
        let loaded = DemoSettings::from_sources(
            &env(&[
                ("DATABASE_URL", "postgres://u@h/db"),
                (var, "18446744073709551615s"),
            ]),
            dir.path(),
        )
        .and_then(|s| s.core.db_config(None).map(|_| s));
        let err = loaded.expect_err(var).to_string();
        assert!(
            err.contains(param) && err.contains("18446744073709551615s") && err.contains("365"),
            "{err}"
        );
    }
}

/// The HTTP bounds load from the environment with their defaults, and bad values are named.
#[test]
fn http_bounds_load_and_bad_values_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = DemoSettings::from_sources(&HashMap::new(), dir.path()).expect("defaults load");
    assert_eq!(s.http.request_timeout, Some(Duration::from_secs(35)));
    assert_eq!(s.http.keep_alive, Some(Duration::from_secs(5)));
    assert_eq!(s.http.client_request_timeout, Duration::from_secs(5));
    assert_eq!(s.http.management_port, None);
    assert!(!s.http.health_details);
    let s = DemoSettings::from_sources(
        &env(&[
            ("DBSERVICE_REQUEST_TIMEOUT", "0"),
            ("DBSERVICE_HTTP_KEEP_ALIVE", "0"),
            ("DBSERVICE_MANAGEMENT_PORT", "9090"),
            ("DBSERVICE_HEALTH_DETAILS", "true"),
            ("DBSERVICE_HTTP_BACKLOG", "64"),
        ]),
        dir.path(),
    )
    .expect("loads");
    assert_eq!(s.http.request_timeout, None);
    assert_eq!(s.http.keep_alive, None);
    assert_eq!(s.http.management_port, Some(9090));
    assert!(s.http.health_details);
    assert_eq!(s.http.backlog, 64);
    for (var, value) in [
        ("DBSERVICE_HTTP_CLIENT_REQUEST_TIMEOUT", "0"),
        ("DBSERVICE_HTTP_MAX_CONNECTIONS", "lots"),
        ("DBSERVICE_MANAGEMENT_PORT", "70000"),
    ] {
        let err = DemoSettings::from_sources(&env(&[(var, value)]), dir.path())
            .expect_err(var)
            .to_string();
        let param = var.trim_start_matches("DBSERVICE_").to_ascii_lowercase();
        assert!(err.contains(&param) && err.contains(value), "{err}");
    }
}

/// The shutdown margin the docs give (`... + pool_close_timeout + N s` under
/// `terminationGracePeriodSeconds`) is one the shipped manifest keeps with the production
/// profile's bounds.
#[test]
fn the_documented_shutdown_margin_is_the_manifests() {
    let read = |path: &str| {
        std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR")))
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    // The number after `pool_close_timeout` and `+`, before `s` (`+ 5s`, `+ 5 s`).
    let margin = |path: &str| -> u64 {
        let text = read(path)
            .replace('`', "")
            .replace('\n', " ")
            .replace("# ", "");
        let at = text
            .find("pool close + ")
            .map(|i| i + "pool close + ".len())
            .or_else(|| {
                text.find("pool_close_timeout + ")
                    .map(|i| i + "pool_close_timeout + ".len())
            })
            .unwrap_or_else(|| panic!("{path} states no shutdown margin"));
        let digits: String = text[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("{path}: {}", &text[at..at + 20]))
    };
    let manifest = read("deploy/kubernetes/dbservice.yaml");
    let termination: u64 = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("terminationGracePeriodSeconds");
    let dir = tempfile::tempdir().expect("temp dir");
    let production = DemoSettings::from_sources(&env(&[("APP_ENV", "production")]), dir.path())
        .expect("production loads");
    let s = production.core.shutdown;
    let budget = (s.grace + s.drain_timeout + s.pool_close_timeout).as_secs();
    for doc in [".env.example", "CONNECTION_POOLING.md"] {
        let m = margin(doc);
        assert_eq!(
            m, 5,
            "{doc}: the manifest's test keeps 5 s, the doc says {m} s"
        );
        assert!(
            budget + m <= termination,
            "{doc}: {budget} + {m} > {termination}"
        );
    }
}

/// Every metric the settings' rustdoc names (`leak_detection_threshold` counts in ...) is one
/// `/metrics` serves.
#[tokio::test]
async fn metrics_named_in_the_settings_docs_are_served() {
    let dir = tempfile::tempdir().expect("dir");
    let app = crate::support::spawn_app(&crate::support::sqlite_url(&dir), |s| {
        s.core.set_pool_param("leak_detection_threshold", "30s");
    })
    .await;
    let served: std::collections::BTreeSet<String> = app
        .metrics_text()
        .await
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let sources = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/config");
    let mut named = Vec::new();
    for entry in std::fs::read_dir(&sources).expect("src/config") {
        let path = entry.expect("entry").path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for line in text.lines().map(str::trim_start) {
            if !(line.starts_with("///") || line.starts_with("//!")) {
                continue;
            }
            for (at, _) in line.match_indices("`dbservice_") {
                let name: String = line[at + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                named.push((path.display().to_string(), name));
            }
        }
    }
    assert!(!named.is_empty(), "the settings' docs name no metric");
    for (file, name) in named {
        assert!(served.contains(&name), "{file} names `{name}`, not served");
    }
}
