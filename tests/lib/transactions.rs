//! `DbService::transaction`: max_wait, timeout (client and server side), cancellation,
//! retries, isolation, read-only, savepoints, and the ledger invariant under contention.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dbservice::savepoint;
use dbservice::{DbService, Isolation, TxError, TxOptions};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

use crate::support::{
    connected_service as service, eventually, fresh_pg_database, pg_scalar_i64, sqlite_url,
    unique_name, with_params,
};

pub(crate) async fn exec(db: &impl ConnectionTrait, sql: &str) {
    db.execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

pub(crate) async fn scalar(db: &impl ConnectionTrait, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query runs")
        .expect("one row")
        .try_get_by_index::<i64>(0)
        .expect("an integer")
}

/// Sessions of ours sitting inside a transaction, seen from an observer connection.
async fn idle_in_transaction(url: &str, app: &str) -> i64 {
    pg_scalar_i64(
        url,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}' \
             AND state LIKE 'idle in transaction%'"
        ),
    )
    .await
}

/// The next borrower must not be inside a (stale) transaction: `SAVEPOINT` is refused
/// (25P01) outside a transaction block and accepted inside one.
pub(crate) async fn assert_clean(db: &DbService) {
    let err = db
        .conn()
        .execute_unprepared("SAVEPOINT dbservice_probe")
        .await
        .expect_err("connection handed out inside a transaction");
    assert_eq!(
        dbservice::classify::sqlstate(&err).as_deref(),
        Some("25P01"),
        "{err}"
    );
}

/// A service on a fresh database with a table `t`, `connection_limit` as given and its own
/// `application_name`; returns it with the database URL and that name.
async fn named_with_table(prefix: &str, limit: u32) -> (DbService, String, String) {
    let app = unique_name(prefix);
    let base = fresh_pg_database().await;
    let db = service(&with_params(
        &base,
        &format!("connection_limit={limit}&application_name={app}"),
    ))
    .await;
    exec(db.conn(), "CREATE TABLE t (x int)").await;
    (db, base, app)
}

/// A service with `connection_limit=4` on a fresh database where `schema` has run.
async fn pool_of_four_with(schema: &str) -> DbService {
    let db = service(&with_params(
        &fresh_pg_database().await,
        "connection_limit=4",
    ))
    .await;
    exec(db.conn(), schema).await;
    db
}

#[tokio::test]
async fn max_wait_fails_fast_when_the_pool_is_held() {
    let url = with_params(&fresh_pg_database().await, "connection_limit=1");
    let db = service(&url).await;
    let holder = db
        .begin(TxOptions::default())
        .await
        .expect("holds the only connection");
    let started = Instant::now();
    let result = db
        .transaction_with(
            TxOptions::default().max_wait(Duration::from_millis(200)),
            async |tx| tx.execute_unprepared("SELECT 1").await,
        )
        .await;
    let waited = started.elapsed();
    assert!(matches!(result, Err(TxError::MaxWait(_))), "{result:?}");
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    assert_eq!(db.stats().transactions.max_wait, 1);
    holder.rollback().await.expect("rollback");
    // The abandoned BEGIN completed later and rolled itself back: the connection is clean.
    assert_clean(&db).await;
    db.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn timeout_rolls_back_and_frees_the_server() {
    let (db, base, app) = named_with_table("txto", 2).await;
    let started = Instant::now();
    let result = db
        .transaction_with(
            TxOptions::default().timeout(Duration::from_millis(500)),
            async |tx| {
                tx.execute_unprepared("INSERT INTO t VALUES (1)").await?;
                tx.execute_unprepared("SELECT pg_sleep(10)").await
            },
        )
        .await;
    assert!(matches!(result, Err(TxError::Timeout(_))), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "returned after {:?}",
        started.elapsed()
    );
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM t").await,
        0,
        "the write was rolled back"
    );
    assert!(
        eventually(Duration::from_secs(3), || async {
            idle_in_transaction(&base, &app).await == 0
        })
        .await,
        "a session of ours stayed idle in transaction"
    );
    assert_eq!(
        pg_scalar_i64(&base, &format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}' AND query LIKE '%pg_sleep%' AND state = 'active'")).await,
        0,
        "the server stopped the statement too"
    );
    assert_clean(&db).await;
    assert_eq!(db.stats().transactions.timeout, 1);
    db.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_dropped_caller_rolls_back_and_leaves_the_connection_clean() {
    let (db, base, app) = named_with_table("txdrop", 1).await;
    let call = db.transaction_with(TxOptions::default(), async |tx| {
        tx.execute_unprepared("INSERT INTO t VALUES (1)").await?;
        tx.execute_unprepared("SELECT pg_sleep(1)").await
    });
    // The caller gives up (like an HTTP client disconnecting): its future is dropped.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), call)
            .await
            .is_err()
    );
    assert_clean(&db).await;
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM t").await,
        0,
        "the write was rolled back"
    );
    assert_eq!(idle_in_transaction(&base, &app).await, 0);
    db.close(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serialization_failures_are_retried_and_nothing_is_lost() {
    let db = pool_of_four_with(
        "CREATE TABLE c (id int PRIMARY KEY, v int NOT NULL); INSERT INTO c VALUES (1, 0)",
    )
    .await;
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let attempts = Arc::new(AtomicU32::new(0));
    let opts = TxOptions::default()
        .isolation(Isolation::Serializable)
        .retries(3);
    // Polled concurrently in one task (join!): both transactions are open at once.
    let increment = || {
        let (db, barrier, attempts) = (&db, &barrier, &attempts);
        async move {
            db.transaction_with(opts, async |tx| {
                let n = attempts.fetch_add(1, Ordering::SeqCst);
                let v = scalar(tx, "SELECT v::bigint FROM c WHERE id = 1").await;
                if n < 2 {
                    // Both first attempts read the same value before either writes.
                    barrier.wait().await;
                }
                tx.execute_unprepared(&format!("UPDATE c SET v = {} WHERE id = 1", v + 1))
                    .await
            })
            .await
        }
    };
    let (a, b) = tokio::join!(increment(), increment());
    assert!(
        a.is_ok() && b.is_ok(),
        "both committed in the end: {a:?} {b:?}"
    );
    assert_eq!(
        scalar(db.conn(), "SELECT v::bigint FROM c WHERE id = 1").await,
        2,
        "no lost update"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 3, "exactly one re-run");
    let stats = db.stats().transactions;
    assert_eq!((stats.retry, stats.commit), (1, 2), "{stats:?}");
    db.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn non_retryable_errors_are_returned_at_once() {
    let db = service(&fresh_pg_database().await).await;
    exec(
        db.conn(),
        "CREATE TABLE u (id int PRIMARY KEY); INSERT INTO u VALUES (1)",
    )
    .await;
    let attempts = AtomicU32::new(0);
    let result = db
        .transaction_with(TxOptions::default().retries(5), async |tx| {
            attempts.fetch_add(1, Ordering::SeqCst);
            tx.execute_unprepared("INSERT INTO u VALUES (1)").await
        })
        .await;
    match result {
        Err(TxError::Aborted(e)) => assert!(e.to_string().contains("duplicate key"), "{e}"),
        other => panic!("expected the unique violation, got {other:?}"),
    }
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "a unique violation is not retried"
    );
    assert_eq!(db.stats().transactions.retry, 0);
    db.close(Duration::from_secs(5)).await;
}

/// The server-side guards and isolation level the connection `c` currently runs under.
async fn guards(c: &impl ConnectionTrait) -> Result<(i64, i64, String), DbErr> {
    let sql = "SELECT (SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout'), \
               (SELECT setting::bigint FROM pg_settings WHERE name = 'idle_in_transaction_session_timeout'), \
               current_setting('transaction_isolation')";
    let row = c
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .ok_or_else(|| DbErr::Custom("no row".into()))?;
    Ok((
        row.try_get_by_index(0)?,
        row.try_get_by_index(1)?,
        row.try_get_by_index(2)?,
    ))
}

#[tokio::test]
async fn isolation_and_read_only_are_applied() {
    let db = service(&fresh_pg_database().await).await;
    exec(db.conn(), "CREATE TABLE t (x int)").await;
    let level = db
        .transaction_with(
            TxOptions::default().isolation(Isolation::Serializable),
            async |tx| {
                let row = tx
                    .query_one_raw(Statement::from_string(
                        DbBackend::Postgres,
                        "SHOW transaction_isolation",
                    ))
                    .await?
                    .ok_or_else(|| DbErr::Custom("no row".into()))?;
                row.try_get_by_index::<String>(0)
            },
        )
        .await
        .expect("runs");
    assert_eq!(level, "serializable");

    // The transaction's budget reaches the server with the isolation level (one message after
    // BEGIN): both guards hold the remaining timeout plus a grace of 250 ms, and only inside.
    let (stmt_ms, idle_ms, level) = db
        .transaction_with(
            TxOptions::default()
                .timeout(Duration::from_secs(3))
                .isolation(Isolation::RepeatableRead),
            async |tx| guards(tx).await,
        )
        .await
        .expect("runs");
    assert!(
        (2_500..=3_250).contains(&stmt_ms),
        "statement_timeout inside: {stmt_ms} ms"
    );
    assert!(
        (2_500..=3_250).contains(&idle_ms),
        "idle_in_transaction_session_timeout inside: {idle_ms} ms"
    );
    assert_eq!(level, "repeatable read");
    let (stmt_ms, idle_ms, _) = guards(db.conn()).await.expect("reads");
    assert_eq!(
        (stmt_ms, idle_ms),
        (0, 0),
        "the guards must not outlive the transaction"
    );

    let result = db
        .transaction_with(TxOptions::default().read_only(true), async |tx| {
            tx.execute_unprepared("INSERT INTO t VALUES (1)").await
        })
        .await;
    match result {
        Err(TxError::Aborted(e)) => assert!(e.to_string().contains("read-only"), "{e}"),
        other => panic!("a write in a read-only transaction must fail, got {other:?}"),
    }
    db.close(Duration::from_secs(5)).await;
}

async fn savepoint_keeps_the_outer_work(url: &str) {
    let db = service(url).await;
    exec(db.conn(), "CREATE TABLE s (x int)").await;
    db.transaction_with(TxOptions::default(), async |tx| {
        tx.execute_unprepared("INSERT INTO s VALUES (1)").await?;
        let inner = savepoint(tx, async |sp| {
            sp.execute_unprepared("INSERT INTO s VALUES (2)").await?;
            Err::<(), DbErr>(DbErr::Custom("inner step failed".into()))
        })
        .await;
        assert!(matches!(inner, Err(TxError::Aborted(_))), "{inner:?}");
        tx.execute_unprepared("INSERT INTO s VALUES (3)").await
    })
    .await
    .expect("outer transaction commits");
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM s WHERE x IN (1, 3)").await,
        2
    );
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM s WHERE x = 2").await,
        0,
        "inner work undone"
    );
    db.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn savepoints_on_postgres() {
    savepoint_keeps_the_outer_work(&fresh_pg_database().await).await;
}

#[tokio::test]
async fn savepoints_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    savepoint_keeps_the_outer_work(&sqlite_url(&dir)).await;
}

/// sqlx#4393: a future dropped while BEGIN is in flight must not leave the pooled connection
/// inside a transaction. A 1 ms delaying proxy widens the window; the drop points are random.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_begin_never_poisons_the_pool() {
    let base = fresh_pg_database().await;
    let proxy = crate::support::proxy::DelayProxy::start(&base, Duration::from_millis(1)).await;
    let db = service(&with_params(&proxy.url, "connection_limit=1")).await;
    let mut rng = fastrand::Rng::with_seed(4393);
    for _ in 0..500 {
        let call = db.transaction_with(TxOptions::default(), async |tx| {
            tx.execute_unprepared("SELECT 1").await
        });
        let _ = tokio::time::timeout(Duration::from_micros(rng.u64(0..6_000)), call).await;
        assert_clean(&db).await;
    }
    db.close(Duration::from_secs(5)).await;
}

/// Many concurrent serializable transfers on a pool smaller than the concurrency: money is
/// conserved, nothing goes negative, and every success is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_transfers_conserve_money_under_contention() {
    let db = pool_of_four_with(
        "CREATE TABLE acc (id bigint PRIMARY KEY, bal bigint NOT NULL CHECK (bal >= 0)); \
         CREATE TABLE xfer (id bigserial PRIMARY KEY, src bigint, dst bigint, amt bigint); \
         INSERT INTO acc SELECT g, 1000 FROM generate_series(1, 5) g",
    )
    .await;
    let mut rng = fastrand::Rng::with_seed(11);
    let jobs: Vec<(i64, i64, i64)> = (0..100)
        .map(|_| {
            let src = rng.i64(1..=5);
            let dst = (src % 5) + 1;
            (src, dst, rng.i64(1..=300))
        })
        .collect();
    let opts = TxOptions::default()
        .isolation(Isolation::Serializable)
        .retries(20)
        .max_wait(Duration::from_secs(10))
        .timeout(Duration::from_secs(10));
    let results = futures::future::join_all(jobs.iter().map(|&(src, dst, amt)| {
        let db = db.clone();
        async move {
            db.transaction_with(opts, async |tx| {
                let bal = scalar(tx, &format!("SELECT bal FROM acc WHERE id = {src}")).await;
                if bal < amt {
                    return Ok(false);
                }
                tx.execute_unprepared(&format!(
                    "UPDATE acc SET bal = bal - {amt} WHERE id = {src}"
                ))
                .await?;
                tx.execute_unprepared(&format!(
                    "UPDATE acc SET bal = bal + {amt} WHERE id = {dst}"
                ))
                .await?;
                tx.execute_unprepared(&format!(
                    "INSERT INTO xfer (src, dst, amt) VALUES ({src}, {dst}, {amt})"
                ))
                .await?;
                Ok::<bool, DbErr>(true)
            })
            .await
        }
    }))
    .await;
    let moved = results.iter().filter(|r| matches!(r, Ok(true))).count() as i64;
    for r in &results {
        assert!(
            r.is_ok(),
            "every transfer ends in commit or a business refusal: {r:?}"
        );
    }
    assert_eq!(
        scalar(db.conn(), "SELECT sum(bal)::bigint FROM acc").await,
        5000,
        "money conserved"
    );
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM acc WHERE bal < 0").await,
        0
    );
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM xfer").await,
        moved,
        "each success stored once"
    );
    assert!(
        db.stats().transactions.retry > 0,
        "contention caused retries"
    );
    db.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn manual_begin_commits_rolls_back_on_drop_and_enforces_timeout() {
    let db = service(&with_params(
        &fresh_pg_database().await,
        "connection_limit=1",
    ))
    .await;
    exec(db.conn(), "CREATE TABLE m (x int)").await;

    let tx = db.begin(TxOptions::default()).await.expect("begins");
    exec(&tx, "INSERT INTO m VALUES (1)").await;
    tx.commit().await.expect("commits");

    let tx = db.begin(TxOptions::default()).await.expect("begins");
    exec(&tx, "INSERT INTO m VALUES (2)").await;
    drop(tx);
    assert_clean(&db).await;

    let tx = db
        .begin(TxOptions::default().timeout(Duration::from_millis(300)))
        .await
        .expect("begins");
    exec(&tx, "INSERT INTO m VALUES (3)").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        matches!(tx.commit().await, Err(TxError::Timeout(_))),
        "commit after the timeout fails"
    );

    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM m").await,
        1,
        "only the committed row remains"
    );
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM m WHERE x = 1").await,
        1
    );
    let stats = db.stats().transactions;
    assert_eq!(
        (stats.commit, stats.rollback, stats.timeout),
        (1, 1, 1),
        "{stats:?}"
    );
    db.close(Duration::from_secs(5)).await;
}
