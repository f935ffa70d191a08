//! Faults from the database server: killed backends, restarts, a frozen server, idle
//! sessions ended by the server, connection lifetimes, TLS.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dbservice::{DbService, config::DbConfig};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;

use crate::support::drill::*;
use crate::support::{
    PgCluster, backends_named, eventually, fresh_pg_database, pg_scalar_i64, spawn_app,
    unique_name, with_params,
};
use crate::support::{select_one, warm};

/// Backends killed with `pg_terminate_backend` while the pool idles: no request fails (a
/// statement that meets a killed connection never ran and is run again on another; the
/// connection's peers are pinged before use), and `min_connections` is refilled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backends_cost_no_errors_and_are_refilled() {
    let base = fresh_pg_database().await;
    let app = unique_name("kill");
    let db = DbService::new(
        DbConfig::from_url(&with_params(
            &base,
            &format!("connection_limit=5&min_connections=3&application_name={app}"),
        ))
        .expect("valid"),
    )
    .expect("service");
    db.connect().await.expect("connects");
    // Warm the pool: five connections open and idle.
    warm(&db, 5).await;
    assert_eq!(backends_named(&base, &app).await, 5);

    let killed = pg_scalar_i64(
        &base,
        &format!(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = '{app}') t"
        ),
    )
    .await;
    assert_eq!(killed, 5);
    assert!(
        eventually(Duration::from_secs(2), || async {
            backends_named(&base, &app).await == 0
        })
        .await
    );

    let mut errors = 0;
    for _ in 0..20 {
        if select_one(&db).await.is_err() {
            errors += 1;
        }
    }
    assert!(
        errors <= 1,
        "{errors} requests failed; only the first one to meet a dead connection may"
    );
    let burst = futures::future::join_all((0..5).map(|_| select_one(&db))).await;
    assert!(
        burst.iter().all(Result::is_ok),
        "full capacity back: {burst:?}"
    );
    assert!(
        eventually(Duration::from_secs(2), || async {
            backends_named(&base, &app).await >= 3
        })
        .await,
        "min_connections refilled"
    );
    db.close(Duration::from_secs(5)).await;
}

/// Clean (`-m fast`) and crash (`-m immediate`) restarts, twice each, under transfer load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_under_load_keep_the_books_and_recover_fully() {
    let cluster = Arc::new(
        tokio::task::spawn_blocking(PgCluster::start)
            .await
            .expect("cluster"),
    );
    let app_name = unique_name("restart");
    let url = with_params(
        &cluster.url("postgres"),
        &format!("connection_limit=4&application_name={app_name}&pool_timeout=2&connect_timeout=2"),
    );
    let app = spawn_app(&url, |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let ledger = open_accounts(&app, 4, 100_000).await;

    let running = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU32::new(0));
    let load = {
        let (running, sent) = (running.clone(), sent.clone());
        let accounts = ledger.accounts.clone();
        let app = &app;
        async move {
            let mut acknowledged = Vec::new();
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                let batch: Vec<_> = (0..4)
                    .map(|i| {
                        n += 1;
                        let from = accounts[(n as usize + i) % 4];
                        let to = accounts[(n as usize + i + 1) % 4];
                        let body = json!({"from_account_id": from, "to_account_id": to, "amount_cents": 7});
                        transfer_with_retries(app, body, format!("k-{n}"))
                    })
                    .collect();
                for id in futures::future::join_all(batch).await.into_iter().flatten() {
                    acknowledged.push(id);
                }
                sent.fetch_add(4, Ordering::Relaxed);
            }
            acknowledged
        }
    };
    let faults = {
        let cluster = cluster.clone();
        let running = running.clone();
        async move {
            for mode in ["fast", "immediate", "fast", "immediate"] {
                tokio::time::sleep(Duration::from_millis(700)).await;
                let c = cluster.clone();
                let mode = mode.to_owned();
                tokio::task::spawn_blocking(move || c.restart_server(&mode))
                    .await
                    .expect("restart");
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
            running.store(false, Ordering::Relaxed);
        }
    };
    let (acknowledged, ()) = tokio::join!(load, faults);
    assert!(sent.load(Ordering::Relaxed) > 20, "load kept running");
    check_books(&app, &ledger, &acknowledged).await;

    // From 2 s after recovery: no errors, dead connections are not handed out again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..100 {
        let (status, body) = app
            .get(&format!("/api/accounts/{}", ledger.accounts[i % 4]))
            .await;
        assert_eq!(status, 200, "request {i} after recovery: {body}");
    }
    let full =
        futures::future::join_all((0..4).map(|_| app.get("/api/diagnostics/sleep?seconds=0.2")))
            .await;
    assert!(
        full.iter().all(|(s, _)| *s == 200),
        "connection_limit concurrent requests succeed: {full:?}"
    );
    let observer = cluster.url("postgres");
    assert_eq!(
        pg_scalar_i64(
            &observer,
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app_name}' \
                 AND state LIKE 'idle in transaction%'"
            )
        )
        .await,
        0
    );
    assert!(
        backends_named(&observer, &app_name).await <= 4,
        "never above connection_limit"
    );
    app.stop().await.expect("clean shutdown");
}

/// A stopped database: once connects have failed `fail_fast_after` times, requests get 503
/// `database_unreachable` at once (not after `pool_timeout`), readiness fails with the cause,
/// and the API serves again soon after the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_fails_requests_fast_with_the_cause() {
    let cluster = Arc::new(
        tokio::task::spawn_blocking(PgCluster::start)
            .await
            .expect("cluster"),
    );
    let url = with_params(
        &cluster.url("postgres"),
        "connection_limit=3&pool_timeout=5s&connect_timeout=1s&fail_fast_after=3",
    );
    let app = spawn_app(&url, |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let (status, _) = app.get("/api/accounts?limit=1").await;
    assert_eq!(status, 200);
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop_server())
        .await
        .expect("stopped");
    // The first requests learn that the database is gone.
    for _ in 0..4 {
        let _ = app.get("/api/accounts?limit=1").await;
    }
    let started = Instant::now();
    let (status, body) = app.get("/api/accounts?limit=1").await;
    let took = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "database_unreachable", "{body}");
    assert!(took < Duration::from_millis(500), "failed fast: {took:?}");
    let (status, body) = app.get("/health/ready").await;
    assert_eq!(status, 503, "{body}");
    let (_, db) = app.get("/health/db").await;
    assert_eq!(db["pool"]["database_down"], true, "{db}");
    assert!(
        db["pool"]["closed"]["broken"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "the dead connection is counted as broken: {db}"
    );

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start_server())
        .await
        .expect("started");
    assert!(
        eventually(Duration::from_secs(15), || async {
            app.get("/api/accounts?limit=1").await.0 == 200
        })
        .await,
        "serves again once the database is back"
    );
    app.stop().await.expect("clean shutdown");
}

/// The whole server frozen (SIGSTOP) for 20 s under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_database_never_hangs_a_request() {
    let cluster = Arc::new(
        tokio::task::spawn_blocking(PgCluster::start)
            .await
            .expect("cluster"),
    );
    let app = spawn_app(&with_params(&cluster.url("postgres"), DRILL_PARAMS), |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let (a, b) = (cluster.clone(), cluster.clone());
    fault_drill(
        &app,
        Duration::from_secs(20),
        0,
        move || a.pause(),
        move || b.resume(),
    )
    .await;
    app.stop().await.expect("clean shutdown");
}

/// The server ends idle sessions (`idle_session_timeout`) while the pool idles, with the
/// default `ping_after_idle` (10 s, so these connections are not pinged): the next burst sees
/// no error. A statement that meets such a connection never ran, and is run again on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_killed_by_the_server_cost_nothing() {
    let base = fresh_pg_database().await;
    let name = url::Url::parse(&base)
        .expect("URL")
        .path()
        .trim_start_matches('/')
        .to_owned();
    {
        use sea_orm::sqlx::{self, Connection};
        let mut admin = sqlx::PgConnection::connect(&base)
            .await
            .expect("admin connection");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {name} SET idle_session_timeout = '1s'"
        )))
        .execute(&mut admin)
        .await
        .expect("set idle_session_timeout");
        let _ = admin.close().await;
    }
    let db = DbService::new(
        DbConfig::from_url(&with_params(&base, "connection_limit=4")).expect("valid"),
    )
    .expect("service");
    db.connect().await.expect("connects");
    warm(&db, 4).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let burst = futures::future::join_all((0..12).map(|_| select_one(&db))).await;
    assert!(burst.iter().all(Result::is_ok), "{burst:?}");
    db.close(Duration::from_secs(5)).await;
}

/// TLS with a throwaway CA: `verify-full` connects to the name on the certificate and refuses
/// another name, at once and naming `sslmode`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verify_full_checks_the_server_name() {
    let (cluster, ca) = tokio::task::spawn_blocking(|| {
        let c = PgCluster::start();
        let ca = c.enable_tls();
        (c, ca)
    })
    .await
    .expect("cluster with TLS");
    let params = format!(
        "sslmode=verify-full&sslrootcert={}&connect_retry_timeout=0",
        ca.display()
    );
    let good = DbService::new(
        DbConfig::from_url(&with_params(&cluster.url("postgres"), &params)).expect("valid"),
    )
    .expect("service");
    good.connect()
        .await
        .expect("verify-full against the certificate's address connects");
    let row = good
        .conn()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ))
        .await
        .expect("query")
        .expect("row");
    assert!(
        row.try_get_by_index::<bool>(0).expect("bool"),
        "the session is encrypted"
    );
    good.close(Duration::from_secs(5)).await;

    let mut wrong = url::Url::parse(&cluster.url("postgres")).expect("URL");
    wrong.set_host(Some("localhost")).expect("host");
    let bad =
        DbService::new(DbConfig::from_url(&with_params(wrong.as_str(), &params)).expect("valid"))
            .expect("service");
    let started = Instant::now();
    let err = bad
        .connect()
        .await
        .expect_err("a name not on the certificate is refused");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once: {:?}",
        started.elapsed()
    );
    let msg = err.to_string();
    assert!(msg.contains("sslmode=verify-full"), "{msg}");
    assert!(!msg.contains(crate::support::PASSWORD));
}
