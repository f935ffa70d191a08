//! A database server with every connection slot taken is full, not down: the service keeps
//! serving on the connections it has, says "full" rather than "unreachable", and stays ready.

use std::time::{Duration, Instant};

use dbservice::{TxOptions, classify::AcquireError, classify::acquire_error};
use sea_orm::ConnectionTrait;

use crate::support::{
    connected_service as service, eventually, fill_connection_slots, private_cluster, select_one,
    warm, with_params,
};

/// `max_connections` filled by other sessions: callers who need a new connection get a
/// "too many connections" error within `pool_timeout` (more than `fail_fast_after` of them),
/// readiness stays ready, the pooled connections keep serving, and once slots are free again
/// the pool grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_is_not_a_dead_one() {
    let cluster = private_cluster().await;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || {
        c.stop_server();
        c.start_server_with("-c max_connections=12");
    })
    .await
    .expect("restarted with 12 slots");
    let url = cluster.url("postgres");
    let db = service(&with_params(
        &url,
        "connection_limit=4&pool_timeout=1s&fail_fast_after=3&connect_timeout=1s&health_check_timeout=1s",
    ))
    .await;
    warm(&db, 2).await;
    assert_eq!(db.stats().open, 2);
    let fillers = fill_connection_slots(&url).await;
    assert!(!fillers.is_empty());

    // Both pooled connections held: every caller below needs a new one, which the server refuses.
    let held = (
        db.begin(TxOptions::default()).await.expect("first held"),
        db.begin(TxOptions::default()).await.expect("second held"),
    );
    for _ in 0..4 {
        let t = Instant::now();
        let err = select_one(&db)
            .await
            .expect_err("no slot for a new connection");
        let took = t.elapsed();
        let text = err.to_string();
        assert!(
            text.contains("refused a new connection: too many connections")
                && !text.contains("unreachable"),
            "{text}"
        );
        assert!(
            took < Duration::from_millis(1500),
            "within pool_timeout: {took:?}"
        );
        assert!(
            matches!(acquire_error(&err), Some(AcquireError::ServerFull { cause, .. }) if cause.contains("53300")),
            "{err:?}"
        );
    }
    // Every pooled connection busy: readiness asks the server on a connection of its own,
    // is refused for want of a slot, and that is an answer.
    let ready = db.readiness().await;
    assert!(
        ready.result.is_ok(),
        "ready while the server is full: {ready:?}"
    );
    assert!(
        ready
            .server_full
            .as_deref()
            .is_some_and(|c| c.contains("too many clients")),
        "and says the server is full: {ready:?}"
    );
    let s = db.stats();
    assert!(!s.database_down && s.server_full, "full, not down: {s:?}");
    drop(held);

    // The open connections serve, two callers at once.
    for _ in 0..10 {
        let (a, b) = tokio::join!(select_one(&db), select_one(&db));
        a.expect("the open connections serve");
        b.expect("the open connections serve");
    }

    drop(fillers);
    let grew = eventually(Duration::from_secs(10), || async {
        let all = futures::future::join_all((0..4).map(|_| async {
            db.conn()
                .execute_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    "SELECT pg_sleep(0.05)",
                ))
                .await
        }))
        .await;
        all.iter().all(Result::is_ok) && db.stats().open == 4
    })
    .await;
    assert!(
        grew,
        "the pool grows again once slots are free: {:?}",
        db.stats()
    );
    assert!(!db.stats().server_full, "{:?}", db.stats());
    assert!(db.readiness().await.server_full.is_none());
    db.close(Duration::from_secs(5)).await;
}
