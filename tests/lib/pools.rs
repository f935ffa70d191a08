//! Named pools: several databases in one process, each a full service with its own limits.

use std::collections::HashMap;
use std::time::Duration;

use dbservice::{Pools, PoolsError, config::Settings};

use crate::support::{
    backends_named, eventually, fresh_pg_database, select_one, unique_name, with_params,
};

/// Two pools on two databases from `DATABASE_URL` and `DATABASE_URL_ANALYTICS`, each with
/// its own limits, asked for by name; closing all leaves no backend on either database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_named_pools_on_two_databases() {
    let (main_db, analytics_db) = (fresh_pg_database().await, fresh_pg_database().await);
    let (main_app, analytics_app) = (unique_name("main"), unique_name("analytics"));
    let env: HashMap<String, String> = [
        (
            "DATABASE_URL".to_owned(),
            with_params(
                &main_db,
                &format!("connection_limit=3&application_name={main_app}"),
            ),
        ),
        (
            "DATABASE_URL_ANALYTICS".to_owned(),
            with_params(
                &analytics_db,
                &format!("connection_limit=2&application_name={analytics_app}"),
            ),
        ),
    ]
    .into_iter()
    .collect();
    let dir = tempfile::tempdir().expect("dir");
    let settings = Settings::from_sources(&env, dir.path()).expect("settings");
    let pools = Pools::from_settings(&settings, None).expect("pools");
    assert_eq!(pools.names(), ["primary", "analytics"]);
    pools.connect().await.expect("connects");
    let analytics = pools.get("analytics").expect("named pool");
    assert!(
        eventually(Duration::from_secs(10), || async {
            analytics.phase() == dbservice::Phase::Ready
        })
        .await
    );
    assert_eq!(pools.primary().config().pool().limits.connection_limit, 3);
    assert_eq!(analytics.config().pool().limits.connection_limit, 2);
    // Work on each lands on its own database.
    let busy = futures::future::join_all((0..6).map(|_| async {
        select_one(analytics).await.expect("analytics");
        select_one(pools.primary()).await.expect("primary");
    }))
    .await;
    assert_eq!(busy.len(), 6);
    assert!(backends_named(&analytics_db, &analytics_app).await <= 2);
    assert!(backends_named(&main_db, &main_app).await <= 3);
    assert!(analytics.stats().queries_total >= 6);

    // Every pool's series carry its name; each family is declared once.
    let text = dbservice::metrics::Metrics::for_pools(&pools, None).render();
    for series in [
        "dbservice_pool_connections_max{pool=\"primary\"} 3",
        "dbservice_pool_connections_max{pool=\"analytics\"} 2",
        "dbservice_client_errors_total{pool=\"analytics\",kind=\"pool_timeout\"} 0",
        "dbservice_client_queries_duration_seconds_count{pool=\"analytics\"}",
        "dbservice_pool_connections_closed_total{pool=\"primary\",reason=\"idle\"}",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
    assert_eq!(
        text.matches("# TYPE dbservice_pool_connections_open ")
            .count(),
        1,
        "{text}"
    );

    match pools.get("reports") {
        Err(PoolsError::Unknown { known, .. }) => assert_eq!(known, "primary, analytics"),
        other => panic!("expected an unknown-pool error: {other:?}"),
    }

    assert!(pools.close_all(Duration::from_secs(5)).await);
    // The server drops a session from pg_stat_activity a moment after the client's Terminate.
    for (db, app) in [(&main_db, &main_app), (&analytics_db, &analytics_app)] {
        assert!(
            eventually(Duration::from_secs(2), || async {
                backends_named(db, app).await == 0
            })
            .await,
            "{app}: a session outlived close_all"
        );
    }
}

/// A bad parameter in a named pool's URL is an error that names the pool and the parameter.
#[tokio::test]
async fn a_named_pools_error_names_the_pool() {
    let env: HashMap<String, String> = [
        (
            "DATABASE_URL".to_owned(),
            "postgres://u@127.0.0.1/db".to_owned(),
        ),
        (
            "DATABASE_URL_REPORTS".to_owned(),
            "postgres://u:secret@127.0.0.1/r?pool_timeout=abc".to_owned(),
        ),
    ]
    .into_iter()
    .collect();
    let dir = tempfile::tempdir().expect("dir");
    let settings = Settings::from_sources(&env, dir.path()).expect("settings");
    let err = Pools::from_settings(&settings, None).expect_err("invalid");
    let text = err.to_string();
    assert!(
        text.contains("pool `reports`")
            && text.contains("pool_timeout")
            && !text.contains("secret"),
        "{text}"
    );
}

/// `[pools.<name>]` in the config file: its URL, its own pool parameters and whether it is
/// required; `DATABASE_URL_<NAME>` replaces the file's URL and keeps the rest; a bad value
/// names the pool and the parameter.
#[tokio::test]
async fn named_pools_from_the_config_file() {
    let dir = tempfile::tempdir().expect("dir");
    let write =
        |text: &str| std::fs::write(dir.path().join("dbservice.toml"), text).expect("write");
    write(
        r#"
database_url = "postgres://u@127.0.0.1/main"

[pools.analytics]
url = "postgres://u:secret@127.0.0.1/analytics"
connection_limit = 3
required = true

[pools.Archive]
url = "postgres://u@127.0.0.1/archive?connection_limit=4"
pool_timeout = "2s"
"#,
    );
    let env: HashMap<String, String> = [(
        "DATABASE_URL_ARCHIVE".to_owned(),
        "postgres://u@127.0.0.1/archive2".to_owned(),
    )]
    .into_iter()
    .collect();
    let settings = Settings::from_sources(&env, dir.path()).expect("settings");
    let pools = Pools::from_settings(&settings, None).expect("pools");
    assert_eq!(pools.names(), ["primary", "analytics", "archive"]);
    let required: Vec<(&str, bool)> = pools.iter().map(|(n, _, r)| (n, r)).collect();
    assert_eq!(
        required,
        [("primary", true), ("analytics", true), ("archive", false)]
    );
    let analytics = pools.get("analytics").expect("analytics").config().pool();
    assert_eq!(analytics.limits.connection_limit, 3);
    // The environment's URL replaced the file's (and with it the file URL's query), the
    // table's parameters stay.
    let archive = pools.get("archive").expect("archive").config();
    assert!(archive.redacted_url().to_string().ends_with("/archive2"));
    assert_eq!(
        archive.pool().limits.pool_timeout,
        Some(Duration::from_secs(2))
    );
    assert_ne!(archive.pool().limits.connection_limit, 4);

    write(
        r#"
[pools.analytics]
url = "postgres://u:secret@127.0.0.1/analytics"
connection_limit = "many"
"#,
    );
    let settings = Settings::from_sources(&HashMap::new(), dir.path()).expect("settings");
    let err = Pools::from_settings(&settings, Some("postgres://u@127.0.0.1/main"))
        .expect_err("bad value");
    let text = err.to_string();
    assert!(
        text.contains("pool `analytics`")
            && text.contains("connection_limit")
            && text.contains("many"),
        "{text}"
    );
    write("[pools.analytics]\nconnection_limit = 3\n");
    let err = Settings::from_sources(&HashMap::new(), dir.path()).expect_err("no url");
    assert!(
        err.to_string()
            .contains("[pools.analytics]: `url` is missing"),
        "{err}"
    );
    write("[pools.analytics]\nurl = \"postgres://u@h/d\"\nconection_limit = 3\n");
    let err = Settings::from_sources(&HashMap::new(), dir.path()).expect_err("typo");
    assert!(
        err.to_string()
            .contains("unknown setting `conection_limit`"),
        "{err}"
    );
}

/// With a `Pools` in the app data, `/health/db` lists every pool, and `/health/ready` fails
/// for a failing *required* pool (naming it), not for an optional one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_lists_every_pool_and_readiness_follows_the_required_ones() {
    use actix_web::{App, test, web};
    let (main_db, other_db) = (fresh_pg_database().await, fresh_pg_database().await);
    let primary = crate::support::connected_service(&main_db).await;
    let analytics =
        crate::support::connected_service(&with_params(&other_db, "connection_limit=2")).await;
    // A pool whose database is gone (a stopped private cluster).
    let cluster = crate::support::private_cluster().await;
    let gone_url = with_params(
        &cluster.url("postgres"),
        "connect_retry_timeout=0&connect_timeout=1s",
    );
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop_server())
        .await
        .expect("stopped");
    let dead = || {
        dbservice::DbService::new(dbservice::config::DbConfig::from_url(&gone_url).expect("valid"))
            .expect("service")
    };
    let mut pools = Pools::new(primary.clone());
    pools
        .add("analytics", analytics.clone(), false)
        .expect("add");
    pools.add("archive", dead(), false).expect("add");
    let app = |pools: Pools| {
        App::new()
            .app_data(web::Data::new(pools.primary().clone()))
            .app_data(web::Data::new(pools))
            .service(dbservice::http::health::scope())
    };
    let svc = test::init_service(app(pools.clone())).await;
    let details: serde_json::Value = test::call_and_read_body_json(
        &svc,
        test::TestRequest::get().uri("/health/db").to_request(),
    )
    .await;
    assert_eq!(
        details["pool"]["max"],
        primary.config().pool().limits.connection_limit
    );
    assert_eq!(details["pools"]["analytics"]["pool"]["max"], 2);
    assert_eq!(details["pools"]["archive"]["required"], false);
    let res = test::call_service(
        &svc,
        test::TestRequest::get().uri("/health/ready").to_request(),
    )
    .await;
    assert_eq!(
        res.status(),
        200,
        "an optional pool down does not fail readiness"
    );

    let mut strict = pools.clone();
    strict.add("billing", dead(), true).expect("add");
    let svc = test::init_service(app(strict)).await;
    let res = test::call_service(
        &svc,
        test::TestRequest::get().uri("/health/ready").to_request(),
    )
    .await;
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = test::read_body_json(res).await;
    assert!(
        body["output"]
            .as_str()
            .is_some_and(|o| o.contains("billing")),
        "{body}"
    );
    assert!(pools.close_all(Duration::from_secs(5)).await);
}
