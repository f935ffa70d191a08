//! The binary started as a deployment starts it: Kubernetes' service links in the environment,
//! a profile, a setting it does not know, a `.env` somewhere above it.

use std::time::Duration;

use crate::binary::Server;

/// The variables Kubernetes injects for a Service named `name` with one TCP port named `http`.
fn service_links(name: &str, ip: &str, port: u16) -> Vec<(String, String)> {
    let n = name.to_ascii_uppercase().replace('-', "_");
    vec![
        (format!("{n}_SERVICE_HOST"), ip.to_owned()),
        (format!("{n}_SERVICE_PORT"), port.to_string()),
        (format!("{n}_SERVICE_PORT_HTTP"), port.to_string()),
        (format!("{n}_PORT"), format!("tcp://{ip}:{port}")),
        (format!("{n}_PORT_{port}_TCP"), format!("tcp://{ip}:{port}")),
        (format!("{n}_PORT_{port}_TCP_PROTO"), "tcp".to_owned()),
        (format!("{n}_PORT_{port}_TCP_PORT"), port.to_string()),
        (format!("{n}_PORT_{port}_TCP_ADDR"), ip.to_owned()),
    ]
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, String)> {
    env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}

/// A pod of a Service named `dbservice` (and one beside Services named otherwise, one of which
/// looks like our `management_port`) starts and serves; the links get one DEBUG line.
#[tokio::test]
async fn starts_and_serves_with_kubernetes_service_links() {
    let mut env = service_links("dbservice", "10.0.0.1", 80);
    env.push(("RUST_LOG".into(), "info,dbservice=debug".into()));
    let server = Server::spawn(&borrowed(&env));
    let (address, client) = server.ready_client().await;
    let accounts = client
        .get(format!("{address}/api/accounts"))
        .send()
        .await
        .expect("accounts");
    assert_eq!(accounts.status().as_u16(), 200);
    let debug: Vec<_> = server
        .json_lines()
        .into_iter()
        .filter(|v| v["level"] == "DEBUG" && v.to_string().contains("DBSERVICE_SERVICE_PORT"))
        .collect();
    assert_eq!(debug.len(), 1, "one DEBUG line:\n{}", server.output());

    let mut env = service_links("api", "10.0.0.2", 8080);
    env.extend(service_links("dbservice-management", "10.0.0.3", 9090));
    let server = Server::spawn(&borrowed(&env));
    let (address, client) = server.ready_client().await;
    let metrics = client
        .get(format!("{address}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(
        metrics.status().as_u16(),
        200,
        "DBSERVICE_MANAGEMENT_PORT=tcp://... moved /metrics:\n{}",
        server.output()
    );
}

/// `APP_ENV=production` without `DATABASE_URL` exits 2 naming it instead of serving from a
/// throwaway SQLite file; development keeps that file.
#[tokio::test]
async fn production_without_database_url_exits_2_naming_it() {
    let mut server = Server::spawn(&[("APP_ENV", "production".into())]);
    let (code, _) = server.wait_exit(Duration::from_secs(20)).await;
    let out = server.output();
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("DATABASE_URL") && out.contains("production"),
        "{out}"
    );

    let server = Server::spawn(&[("APP_ENV", "development".into())]);
    server.ready_client().await;
}

/// An unknown `DBSERVICE_*` variable stops a development start; in production it is a WARN
/// naming it, with a suggestion, and the server serves.
#[tokio::test]
async fn unknown_setting_is_fatal_in_development_and_a_warning_in_production() {
    let mut server = Server::spawn(&[
        ("APP_ENV", "development".into()),
        ("DBSERVICE_FOO", "1".into()),
    ]);
    let (code, _) = server.wait_exit(Duration::from_secs(20)).await;
    let out = server.output();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("DBSERVICE_FOO"), "{out}");

    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}/app.sqlite?mode=rwc", dir.path().display());
    let server = Server::spawn(&[
        ("APP_ENV", "production".into()),
        ("DATABASE_URL", url),
        // Production does not migrate at startup; this fresh file needs it.
        ("DBSERVICE_MIGRATE", "true".into()),
        ("DBSERVICE_FOO", "1".into()),
        ("DBSERVICE_POOL_TIMOUT", "3s".into()),
    ]);
    server.ready_client().await;
    let warnings: Vec<String> = server
        .json_lines()
        .into_iter()
        .filter(|v| v["level"] == "WARN")
        .map(|v| v.to_string())
        .collect();
    let text = warnings.join("\n");
    assert!(
        warnings.iter().any(|w| w.contains("DBSERVICE_FOO"))
            && warnings.iter().any(|w| w.contains("DBSERVICE_POOL_TIMOUT")
                && w.contains("did you mean `DBSERVICE_POOL_TIMEOUT`")),
        "{text}\n{}",
        server.output()
    );
}

/// `.env` is read from the working directory only: one in a parent directory (here with a
/// value that would stop the server) is not read; one beside it is.
#[tokio::test]
async fn dotenv_is_read_from_the_working_directory_only() {
    let root = tempfile::tempdir().expect("dir");
    std::fs::write(root.path().join(".env"), "DBSERVICE_HTTP_WORKERS=many\n").expect(".env");
    let sub = root.path().join("app");
    std::fs::create_dir(&sub).expect("subdir");
    let server = Server::spawn_at(root, &sub, &[]);
    server.ready_client().await;

    let here = tempfile::tempdir().expect("dir");
    std::fs::write(here.path().join(".env"), "DBSERVICE_HTTP_WORKERS=many\n").expect(".env");
    let mut server = Server::spawn_in(here, &[]);
    let (code, _) = server.wait_exit(Duration::from_secs(20)).await;
    let out = server.output();
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("http_workers") && out.contains("many"),
        "{out}"
    );
}

/// The PostgreSQL driver reads `PGSSLMODE`, `PGPASSWORD`, ... from the process environment
/// only: in `.env` one would be silently ignored (here a TLS mode), so it stops the start
/// naming it; in the environment it is honoured (see `binary.rs`, the TLS mode test).
#[tokio::test]
async fn a_driver_variable_in_dotenv_is_refused_naming_it() {
    let here = tempfile::tempdir().expect("dir");
    std::fs::write(
        here.path().join(".env"),
        "PGSSLMODE=verify-full\nPGPASSWORD=hunter2-SECRET\n",
    )
    .expect(".env");
    let mut server = Server::spawn_in(here, &[]);
    let (code, _) = server.wait_exit(Duration::from_secs(20)).await;
    let out = server.output();
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("PGSSLMODE") && out.contains("environment"),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "a value was printed:\n{out}");
}
