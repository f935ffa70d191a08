//! Pool parameters, checked on the live pool and the live server (not by reading options
//! back): sea-orm#1674 is what happens otherwise.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dbservice::{DbService, config::DbConfig};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::support::{
    PASSWORD, backends_named, eventually, fresh_pg_database, select_one, unique_name, warm,
    with_params,
};

async fn show(db: &DbService, setting: &str) -> String {
    let row = db
        .conn()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SHOW {setting}"),
        ))
        .await
        .expect("SHOW runs")
        .expect("one row");
    row.try_get_by_index::<String>(0).expect("text value")
}

#[tokio::test]
async fn session_parameters_reach_the_server() {
    let base = fresh_pg_database().await;
    let url = with_params(
        &base,
        "application_name=ledger-x&statement_timeout=1500ms&idle_in_transaction_session_timeout=20&schema=app,public",
    );
    let db = DbService::new(DbConfig::from_url(&url).expect("valid")).expect("service");
    db.connect().await.expect("connects");
    assert_eq!(show(&db, "application_name").await, "ledger-x");
    assert_eq!(show(&db, "statement_timeout").await, "1500ms");
    assert_eq!(
        show(&db, "idle_in_transaction_session_timeout").await,
        "20s"
    );
    assert_eq!(show(&db, "search_path").await, "app,public");
    assert!(db.close(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn statement_timeout_cancels_long_statements_on_the_server() {
    let base = fresh_pg_database().await;
    let db = DbService::new(
        DbConfig::from_url(&with_params(&base, "statement_timeout=200ms")).expect("valid"),
    )
    .expect("service");
    db.connect().await.expect("connects");
    let started = Instant::now();
    let err = db
        .conn()
        .execute_unprepared("SELECT pg_sleep(5)")
        .await
        .expect_err("cancelled by the server");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("statement timeout"), "{err}");
    db.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn pool_timeout_fails_a_waiting_caller_in_time() {
    let base = fresh_pg_database().await;
    let db = DbService::new(
        DbConfig::from_url(&with_params(&base, "connection_limit=1&pool_timeout=300ms"))
            .expect("valid"),
    )
    .expect("service");
    db.connect().await.expect("connects");
    let held = db
        .begin(dbservice::TxOptions::default())
        .await
        .expect("takes the only connection");
    let started = Instant::now();
    let err = db
        .conn()
        .execute_unprepared("SELECT 1")
        .await
        .expect_err("no connection free");
    let waited = started.elapsed();
    assert!(
        matches!(
            dbservice::classify::acquire_error(&err),
            Some(dbservice::classify::AcquireError::Saturated {
                busy: 1,
                max: 1,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "waited {waited:?}"
    );
    held.rollback().await.expect("rollback");
    db.conn()
        .execute_unprepared("SELECT 1")
        .await
        .expect("free again");
    db.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn min_connections_are_opened_and_idle_ones_closed() {
    let base = fresh_pg_database().await;
    let name = unique_name("minidle");
    let url = with_params(
        &base,
        &format!("min_connections=2&idle_timeout=1&application_name={name}"),
    );
    let db = DbService::new(DbConfig::from_url(&url).expect("valid")).expect("service");
    db.connect().await.expect("connects");
    assert!(
        eventually(Duration::from_secs(5), || async {
            backends_named(&base, &name).await >= 2
        })
        .await,
        "min_connections=2 opens two connections"
    );
    // Open more than the minimum, then let them idle past idle_timeout.
    let txns =
        futures::future::join_all((0..4).map(|_| db.begin(dbservice::TxOptions::default()))).await;
    for txn in txns {
        txn.expect("begin").rollback().await.expect("rollback");
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            backends_named(&base, &name).await == 2
        })
        .await,
        "idle connections above the minimum are closed after idle_timeout"
    );
    db.close(Duration::from_secs(5)).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            backends_named(&base, &name).await == 0
        })
        .await,
        "close() leaves no backend behind"
    );
}

#[tokio::test]
async fn stripped_url_reaches_the_driver_and_password_never_shows() {
    let base = fresh_pg_database().await;
    let cfg = DbConfig::from_url(&with_params(
        &base,
        "connection_limit=2&pool_timeout=1&sslmode=disable",
    ))
    .expect("valid");
    let shown = cfg.redacted_url().to_string();
    assert!(
        !shown.contains(PASSWORD) && shown.contains("***") && shown.contains("sslmode=disable"),
        "{shown}"
    );
    assert!(
        !shown.contains("connection_limit"),
        "pool keys are stripped: {shown}"
    );
    let db = DbService::new(cfg).expect("service");
    db.connect()
        .await
        .expect("the driver accepts the stripped URL");
    assert!(!format!("{db:?}").contains(PASSWORD));
    db.close(Duration::from_secs(5)).await;
}

/// `max_lifetime` recycling under load: no errors, and connections opened together retire
/// at different moments (jitter), not all at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_lifetime_recycles_without_errors_and_spreads_closures() {
    let base = fresh_pg_database().await;
    let db = DbService::new(
        DbConfig::from_url(&with_params(&base, "connection_limit=4&max_lifetime=2"))
            .expect("valid"),
    )
    .expect("service");
    db.connect().await.expect("connects");
    warm(&db, 4).await;
    let retired_before = db.stats().closed.lifetime;
    let running = AtomicBool::new(true);
    let errors = AtomicU32::new(0);
    let load = futures::future::join_all((0..4).map(|_| async {
        while running.load(Ordering::Relaxed) {
            if select_one(&db).await.is_err() {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }));
    let watch = async {
        // When did each connection retire?
        let mut moments = Vec::new();
        let started = Instant::now();
        let mut seen = retired_before;
        while started.elapsed() < Duration::from_millis(2600) {
            let retired = db.stats().closed.lifetime;
            for _ in seen..retired {
                moments.push(started.elapsed());
            }
            seen = retired;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        running.store(false, Ordering::Relaxed);
        moments
    };
    let (_, moments) = tokio::join!(load, watch);
    assert_eq!(errors.load(Ordering::Relaxed), 0, "recycling caused errors");
    assert!(
        moments.len() >= 4,
        "every connection was recycled: {moments:?}"
    );
    let first_wave = &moments[..4];
    let spread = first_wave[3] - first_wave[0];
    assert!(
        spread >= Duration::from_millis(50),
        "connections retired all at once: {first_wave:?}"
    );
    db.close(Duration::from_secs(5)).await;
}

/// Keepalive reaches the server: the session's TCP keepalive settings come from
/// `keepalive_idle`; `keepalive=false` leaves the server's defaults.
#[tokio::test]
async fn keepalive_settings_reach_the_server() {
    let url = fresh_pg_database().await;
    let db = crate::support::connected_service(&with_params(&url, "keepalive_idle=42s")).await;
    assert_eq!(show(&db, "tcp_keepalives_idle").await, "42");
    assert_eq!(show(&db, "tcp_keepalives_interval").await, "7");
    assert_eq!(show(&db, "tcp_keepalives_count").await, "3");
    db.close(Duration::from_secs(5)).await;
    let off =
        crate::support::connected_service(&with_params(&url, "keepalive=false&keepalive_idle=42s"))
            .await;
    assert_ne!(show(&off, "tcp_keepalives_idle").await, "42");
    off.close(Duration::from_secs(5)).await;
}

/// A connection dropped while idle (here: terminated by the server) is found and closed by the
/// keepalive, with no request meeting it: no error is ever seen by a caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_finds_connections_dropped_while_idle() {
    let url = fresh_pg_database().await;
    let app = unique_name("keepalive");
    let db = crate::support::connected_service(&with_params(
        &url,
        &format!("keepalive_idle=1s&ping_after_idle=1h&application_name={app}"),
    ))
    .await;
    warm(&db, 3).await;
    assert_eq!(db.stats().open, 3);
    let killed = crate::support::pg_scalar_i64(
        &url,
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = '{app}'"
        ),
    )
    .await;
    assert_eq!(killed, 3);
    // Found while idle: closed as broken, pinged by the keepalive, without any statement.
    let queries = db.stats().queries_total;
    assert!(
        eventually(Duration::from_secs(10), || async {
            db.stats().closed.broken >= 3
        })
        .await,
        "{:?}",
        db.stats()
    );
    let s = db.stats();
    // The keepalive took the first; the failure it met marks the older connections for a
    // ping on the way out of the pool, which found the others in the same pass.
    assert!(s.keepalive_pings >= 1, "{s:?}");
    assert_eq!(
        s.queries_total, queries,
        "no statement was needed to find them"
    );
    // The next request gets a fresh connection and no error.
    select_one(&db).await.expect("a fresh connection");
    assert_eq!(db.stats().errors.connection, 0, "{:?}", db.stats());
    db.close(Duration::from_secs(5)).await;
}

/// Seed 001's statistics: error rate, uptime and average statement time, in `PoolStats` (and
/// so in `/health/db`).
#[tokio::test]
async fn stats_report_error_rate_uptime_and_average_query_time() {
    let url = fresh_pg_database().await;
    let db = crate::support::connected_service(&url).await;
    let before = db.stats();
    assert_eq!(before.error_rate, 0.0);
    for _ in 0..3 {
        select_one(&db).await.expect("select");
    }
    db.conn()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_sleep(0.02)",
        ))
        .await
        .expect("sleep");
    let failed = db
        .conn()
        .execute_unprepared("SELECT * FROM no_such_table")
        .await;
    assert!(failed.is_err());
    let s = db.stats();
    assert_eq!(s.queries_failed, 1);
    assert_eq!(s.queries_total, 5);
    assert!((s.error_rate - 0.2).abs() < 1e-9, "{}", s.error_rate);
    // The average sits between the fastest and the slowest (the 20 ms sleep) statement.
    assert!(
        s.query.mean_ms > 0.0 && s.query.mean_ms <= s.query.max_ms,
        "{:?}",
        s.query
    );
    assert!(s.query.mean_ms >= 20.0 / 5.0, "{:?}", s.query);
    assert!(
        eventually(Duration::from_secs(2), || async {
            db.stats().uptime_seconds > s.uptime_seconds
        })
        .await
    );
    db.close(Duration::from_secs(5)).await;
}
