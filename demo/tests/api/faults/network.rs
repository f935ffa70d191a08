//! Faults from the network between service and database: a blackhole, resets, latency.

use std::sync::Arc;
use std::time::Duration;

use dbservice::{DbService, config::DbConfig};

use crate::support::drill::*;
use crate::support::select_one;
use crate::support::{fresh_pg_database, spawn_app, with_params};

/// A network blackhole (data silently dropped, sockets left open) between the service and the
/// database for 8 s: the blackholed connections would hold their pool slots forever without
/// the bounded release check (sqlx#4349; without it this test fails). One slot may still be
/// lost: after our check, sqlx pings once more without a bound, and if the blackhole starts
/// in between, that ping waits forever on a link that discards data forever (a real
/// blackhole ends in a TCP timeout). CONNECTION_POOLING.md, "Failure modes", names this limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_blackhole_never_hangs_or_leaks() {
    let base = fresh_pg_database().await;
    let proxy = Arc::new(crate::support::proxy::FaultProxy::start(&base, Duration::ZERO).await);
    let app = spawn_app(&with_params(&proxy.url, DRILL_PARAMS), |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let (a, b) = (proxy.clone(), proxy.clone());
    fault_drill(
        &app,
        Duration::from_secs(8),
        1,
        move || a.blackhole(true),
        move || b.blackhole(false),
    )
    .await;
    app.stop().await.expect("clean shutdown");
}

/// Every connection reset (RST) and the link dead for 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_resets_never_hang_or_leak() {
    let base = fresh_pg_database().await;
    let proxy = Arc::new(crate::support::proxy::FaultProxy::start(&base, Duration::ZERO).await);
    let app = spawn_app(&with_params(&proxy.url, DRILL_PARAMS), |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let (a, b) = (proxy.clone(), proxy.clone());
    let inject = move || {
        a.blackhole(true);
        a.reset_all();
    };
    fault_drill(&app, Duration::from_secs(3), 0, inject, move || {
        b.blackhole(false)
    })
    .await;
    app.stop().await.expect("clean shutdown");
}

/// 100 ms of latency each way: slower, but no errors, and the queue shows in the statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_alone_causes_no_errors_and_the_queue_is_visible() {
    let base = fresh_pg_database().await;
    let proxy = crate::support::proxy::DelayProxy::start(&base, Duration::from_millis(100)).await;
    let db = DbService::new(
        DbConfig::from_url(&with_params(&proxy.url, "connection_limit=2")).expect("valid"),
    )
    .expect("service");
    db.connect().await.expect("connects through the slow link");
    let before = db.stats();
    let results = futures::future::join_all((0..8).map(|_| select_one(&db))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let after = db.stats();
    assert_eq!(after.errors, before.errors, "no errors from latency alone");
    assert!(
        after.wait.max_ms >= 300.0,
        "callers queued behind the slow link: {:?}",
        after.wait
    );
    assert!(
        after.query.p50_ms >= 150.0,
        "statements took a round trip each: {:?}",
        after.query
    );
    db.close(Duration::from_secs(5)).await;
}
