//! Transactions across a switchover: one whose `BEGIN` or body lost its server before the
//! `COMMIT` was sent (the backend was terminated, the server turned read-only) runs again on a
//! new connection within `max_wait` and commits once; one that runs out of `max_wait` reports a
//! connection error (the demo's 503), not a query error (500); a `COMMIT` that was sent is never
//! run again, whether it got no answer or an answer that the session was ending.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dbservice::classify::ErrorKind;
use dbservice::{DbService, TxError, TxOptions};
use sea_orm::{ConnectionTrait, DbErr};

use crate::support::{
    PgCluster, cluster_with_replica, connected_service as service, eventually, multi_host_url,
    pg_scalar_i64, private_cluster, with_params,
};
use crate::transactions::{exec, scalar};

/// A service with two connections on a private cluster of its own (the tests change the
/// whole server), with a table `moved (n int)`.
async fn service_on(cluster: &PgCluster) -> DbService {
    let db = service(&with_params(&cluster.url("postgres"), "connection_limit=2")).await;
    exec(db.conn(), "CREATE TABLE moved (n int)").await;
    db
}

async fn set_read_only(cluster: &Arc<PgCluster>, on: bool) {
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.set_read_only(on))
        .await
        .expect("set_read_only");
}

/// The body's write meets its own backend terminated (as a fast shutdown or a failover ends
/// it): run again on a new connection, committed once, counted as one retry (not taken from
/// `retries`, the budget for serialization failures). With `retries(0)` the closure runs
/// once and the caller gets the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_whose_backend_was_terminated_is_retried_and_commits_once() {
    let cluster = private_cluster().await;
    let url = cluster.url("postgres");
    let db = service_on(&cluster).await;
    let attempts = AtomicU32::new(0);
    let opts = TxOptions::default()
        .retries(1)
        .max_wait(Duration::from_secs(10));
    let result = db
        .transaction_with(opts, async |tx| {
            if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                let pid = scalar(tx, "SELECT pg_backend_pid()::bigint").await;
                // From another connection, waiting (up to 5 s) until the backend is gone.
                let killed = pg_scalar_i64(
                    &url,
                    &format!("SELECT count(*) FILTER (WHERE pg_terminate_backend({pid}, 5000))"),
                )
                .await;
                assert_eq!(killed, 1, "backend {pid} terminated");
            }
            tx.execute_unprepared("INSERT INTO moved VALUES (1)")
                .await
                .map(|_| ())
        })
        .await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(attempts.load(Ordering::SeqCst), 2, "run once more");
    assert_eq!(scalar(db.conn(), "SELECT count(*) FROM moved").await, 1);
    let stats = db.stats().transactions;
    assert_eq!((stats.retry, stats.commit), (1, 1), "{stats:?}");

    let once = AtomicU32::new(0);
    let result = db
        .transaction_with(
            TxOptions::default()
                .retries(0)
                .max_wait(Duration::from_secs(10)),
            async |tx| {
                once.fetch_add(1, Ordering::SeqCst);
                let pid = scalar(tx, "SELECT pg_backend_pid()::bigint").await;
                pg_scalar_i64(
                    &url,
                    &format!("SELECT count(*) FILTER (WHERE pg_terminate_backend({pid}, 5000))"),
                )
                .await;
                tx.execute_unprepared("INSERT INTO moved VALUES (2)")
                    .await
                    .map(|_| ())
            },
        )
        .await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(
        once.load(Ordering::SeqCst),
        1,
        "retries(0): the closure ran once"
    );
    assert_eq!(scalar(db.conn(), "SELECT count(*) FROM moved").await, 1);
    db.close(Duration::from_secs(5)).await;
}

/// The server turns read-only under the service (a primary demoted in place) and writable
/// again 300 ms later: the transaction whose write met 25006 is retried until it commits,
/// within its `max_wait`, and its row is there once. With a `max_wait` that ends first, the
/// caller gets the 25006 as a connection error (503 + `Retry-After`), not a query error (500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_met_a_read_only_server_is_retried_within_max_wait() {
    let cluster = private_cluster().await;
    let db = service_on(&cluster).await;

    set_read_only(&cluster, true).await;
    let flip = tokio::spawn({
        let cluster = cluster.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            set_read_only(&cluster, false).await;
        }
    });
    let attempts = AtomicU32::new(0);
    let max_wait = Duration::from_secs(10);
    let started = Instant::now();
    let result = db
        .transaction_with(
            TxOptions::default().retries(1).max_wait(max_wait),
            async |tx| {
                attempts.fetch_add(1, Ordering::SeqCst);
                tx.execute_unprepared("INSERT INTO moved VALUES (1)")
                    .await
                    .map(|_| ())
            },
        )
        .await;
    let took = started.elapsed();
    flip.await.expect("flipped back");
    assert!(result.is_ok(), "{result:?}");
    assert!(took < max_wait, "{took:?}");
    let attempts = attempts.load(Ordering::SeqCst);
    assert!(attempts >= 2, "the first write met the read-only server");
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM moved").await,
        1,
        "written once"
    );
    let stats = db.stats().transactions;
    // Retries whose BEGIN met the pool failing fast (the host marked) count too.
    assert!(stats.retry >= u64::from(attempts) - 1, "{stats:?}");
    assert_eq!(stats.commit, 1, "{stats:?}");

    // It stays read-only for longer than the caller will wait.
    set_read_only(&cluster, true).await;
    let retries_before = db.stats().transactions.retry;
    let max_wait = Duration::from_millis(600);
    let started = Instant::now();
    let result = db
        .transaction_with(TxOptions::default().max_wait(max_wait), async |tx| {
            tx.execute_unprepared("INSERT INTO moved VALUES (2)")
                .await
                .map(|_| ())
        })
        .await;
    let took = started.elapsed();
    let err: DbErr = match result {
        Err(TxError::Aborted(e)) | Err(TxError::Database(e)) => e,
        other => panic!("expected the read-only server's error, got {other:?}"),
    };
    // The write's own 25006, or (once the host is marked) the pool's fail-fast answer that
    // names the host as read-only: either way the read-only server is the cause.
    assert!(
        dbservice::classify::sqlstate(&err).as_deref() == Some("25006")
            || err.to_string().contains("is read-only"),
        "{err}"
    );
    assert_eq!(ErrorKind::of(&err), ErrorKind::Connection, "{err}");
    let api = dbservice::http::ApiError::from(err);
    assert_eq!(
        (api.status.as_u16(), api.retry_after.is_some()),
        (503, true),
        "{api}"
    );
    // Retried meanwhile, then given up within max_wait (and a generous margin for a busy
    // machine), not after the default 2 s or never.
    assert!(db.stats().transactions.retry > retries_before);
    assert!(took < max_wait + Duration::from_secs(1), "{took:?}");
    set_read_only(&cluster, false).await;
    // The pool's probe finds the host writable again within its backoff (at most ~1 s).
    assert!(
        eventually(Duration::from_secs(10), || async {
            !db.stats().database_down
        })
        .await,
        "{:?}",
        db.stats()
    );
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM moved WHERE n = 2").await,
        0,
        "nothing of the failed call was written"
    );
    db.close(Duration::from_secs(5)).await;
}

/// A write in a transaction the caller opened read-only is the body's own mistake: answered at
/// once, not retried for `max_wait`.
#[tokio::test]
async fn a_write_in_a_read_only_transaction_is_not_retried() {
    let cluster = private_cluster().await;
    let db = service_on(&cluster).await;
    let started = Instant::now();
    let result = db
        .transaction_with(
            TxOptions::default()
                .read_only(true)
                .max_wait(Duration::from_secs(10)),
            async |tx| tx.execute_unprepared("INSERT INTO moved VALUES (1)").await,
        )
        .await;
    assert!(matches!(result, Err(TxError::Aborted(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(db.stats().transactions.retry, 0);
    db.close(Duration::from_secs(5)).await;
}

/// The server freezes while the COMMIT is on its way: the outcome is unknown, and the body is
/// not run again (it may well have committed: the server reads the COMMIT once it thaws).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_commit_is_never_retried() {
    let cluster = private_cluster().await;
    let db = service(&with_params(
        &cluster.url("postgres"),
        "connection_limit=2&ping_timeout=1",
    ))
    .await;
    exec(db.conn(), "CREATE TABLE moved (n int)").await;
    let attempts = AtomicU32::new(0);
    let result = db
        .transaction_with(
            TxOptions::default()
                .timeout(Duration::from_secs(2))
                .max_wait(Duration::from_secs(10)),
            async |tx| {
                attempts.fetch_add(1, Ordering::SeqCst);
                tx.execute_unprepared("INSERT INTO moved VALUES (1)")
                    .await?;
                let c = cluster.clone();
                tokio::task::spawn_blocking(move || c.pause())
                    .await
                    .expect("pause");
                Ok::<_, DbErr>(())
            },
        )
        .await;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.resume())
        .await
        .expect("resume");
    assert!(
        matches!(result, Err(TxError::CommitOutcomeUnknown(_))),
        "{result:?}"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "not run again");
    let stats = db.stats().transactions;
    assert_eq!((stats.retry, stats.commit_unknown), (0, 1), "{stats:?}");
    assert!(
        scalar(db.conn(), "SELECT count(*) FROM moved").await <= 1,
        "never written twice"
    );
    db.close(Duration::from_secs(5)).await;
}

/// A backend terminated while its COMMIT waits for a synchronous standby answers 57P01 *after*
/// it committed locally: the outcome is unknown (not "rolled back"), and the body is not run
/// again, so the row is there exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_answered_by_a_terminated_backend_is_unknown_and_not_retried() {
    let cluster = private_cluster().await;
    let url = cluster.url("postgres");
    // A synchronous standby that never comes, from the server's start (a reload would reach
    // the checkpointer, which tells the backends, only some time later); commits wait for it
    // only where the session asks for `synchronous_commit = on`.
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || {
        c.stop_server();
        c.start_server_with("-c synchronous_standby_names=nobody -c synchronous_commit=local");
    })
    .await
    .expect("restarted");
    let db = service_on(&cluster).await;
    let attempts = AtomicU32::new(0);
    let commit = db.transaction_with(
        TxOptions::default()
            .timeout(Duration::from_secs(10))
            .max_wait(Duration::from_secs(10)),
        async |tx| {
            attempts.fetch_add(1, Ordering::SeqCst);
            tx.execute_unprepared("SET LOCAL synchronous_commit = on; INSERT INTO moved VALUES (1)")
                .await
                .map(|_| ())
        },
    );
    // Polled together in this task: the killer ends the backend while its COMMIT waits.
    let kill = async {
        let waiting = eventually(Duration::from_secs(8), || async {
            pg_scalar_i64(
                &url,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
            )
            .await
                == 1
        })
        .await;
        assert!(waiting, "the COMMIT waits for the synchronous standby");
        pg_scalar_i64(
            &url,
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) \
             FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
        )
        .await
    };
    let (result, killed) = tokio::join!(commit, kill);
    assert_eq!(killed, 1);
    assert!(
        matches!(result, Err(TxError::CommitOutcomeUnknown(_))),
        "{result:?}"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "not run again");
    // The terminated COMMIT had committed locally.
    assert_eq!(
        pg_scalar_i64(&url, "SELECT count(*) FROM moved").await,
        1,
        "committed once, locally"
    );
    let stats = db.stats().transactions;
    assert_eq!((stats.retry, stats.commit_unknown), (0, 1), "{stats:?}");
    db.close(Duration::from_secs(5)).await;
}

/// The harness's switchover, as the failover tests use it: the primary stopped (fast), its
/// standby promoted and writable, the old primary back as a standby of the new one that
/// replays its writes; and the multi-host URL naming both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_switches_a_primary_and_its_standby_over() {
    let (primary, standby) = cluster_with_replica().await;
    let write = "WITH w AS (INSERT INTO moved VALUES (1) RETURNING 1) SELECT count(*) FROM w";
    let db = service_on(&primary).await;
    db.close(Duration::from_secs(5)).await;
    assert_eq!(pg_scalar_i64(&primary.url("postgres"), write).await, 1);

    let (p, s) = (primary.clone(), standby.clone());
    tokio::task::spawn_blocking(move || {
        p.stop_server();
        s.promote();
    })
    .await
    .expect("switched over");
    let new_primary = standby.url("postgres");
    assert_eq!(pg_scalar_i64(&new_primary, write).await, 1, "writable");
    assert_eq!(
        pg_scalar_i64(&new_primary, "SELECT count(*) FROM moved").await,
        2,
        "the old primary's write and the new one"
    );

    let (p, s) = (primary.clone(), standby.clone());
    tokio::task::spawn_blocking(move || p.follow(&s))
        .await
        .expect("rejoined");
    let old_primary = primary.url("postgres");
    assert_eq!(
        pg_scalar_i64(&old_primary, "SELECT pg_is_in_recovery()::int::bigint").await,
        1
    );
    assert_eq!(pg_scalar_i64(&new_primary, write).await, 1);
    assert!(
        eventually(Duration::from_secs(10), || async {
            pg_scalar_i64(&old_primary, "SELECT count(*) FROM moved").await == 3
        })
        .await,
        "the old primary replays the new primary's writes"
    );

    assert_eq!(
        multi_host_url(
            &[&standby, &primary],
            "app",
            "target_session_attrs=read-write"
        ),
        format!(
            "postgres://postgres:{}@127.0.0.1:{},127.0.0.1:{}/app?target_session_attrs=read-write",
            crate::support::PASSWORD,
            standby.port,
            primary.port
        )
    );
    assert_eq!(
        multi_host_url(&[&primary], "app", ""),
        primary.url("app"),
        "one host: the single-host URL"
    );
}
