//! What a slow COMMIT, an unanswered COMMIT, a killed backend or an abandoned statement can no
//! longer do: be reported as failed when it committed, be answered "retry later" when nobody
//! knows, run a write twice, or hand out a connection inside a transaction.

use std::time::{Duration, Instant};

use dbservice::TxError;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::support::{
    connected_service as service, eventually, fresh_mysql_database, fresh_pg_database,
    pg_scalar_i64, private_cluster, with_params,
};

/// A COMMIT that takes longer than `ping_timeout` (an fsync stall, a synchronous standby; here
/// a deferred trigger) is waited for and reported committed, not "failed, retry later".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_commit_is_waited_for() {
    let base = fresh_pg_database().await;
    let db = service(&with_params(&base, "ping_timeout=1&transaction_timeout=5")).await;
    db.conn()
        .execute_unprepared(
            "CREATE TABLE slow_commit (id int); \
             CREATE FUNCTION slow_commit_fn() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END $$; \
             CREATE CONSTRAINT TRIGGER slow_commit_tr AFTER INSERT ON slow_commit \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit_fn()",
        )
        .await
        .expect("schema");
    let started = Instant::now();
    let result = db
        .transaction(async |tx| {
            tx.execute_unprepared("INSERT INTO slow_commit VALUES (1)")
                .await
        })
        .await;
    assert!(result.is_ok(), "{result:?}");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(
        pg_scalar_i64(&base, "SELECT count(*) FROM slow_commit").await,
        1
    );
    assert_eq!(db.stats().transactions.commit, 1);
    db.close(Duration::from_secs(5)).await;
}

/// A COMMIT the server never answers is reported as an unknown outcome (not "retry later"),
/// within the transaction timeout + 1 s, and the demo answers it without `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_commit_is_an_unknown_outcome() {
    let cluster = private_cluster().await;
    let url = with_params(
        &cluster.url("postgres"),
        "transaction_timeout=3&ping_timeout=1",
    );
    let db = service(&url).await;
    db.conn()
        .execute_unprepared("CREATE TABLE unknown_commit (id int)")
        .await
        .expect("schema");
    let tx = db.begin(db.tx_options()).await.expect("begins");
    tx.execute_unprepared("INSERT INTO unknown_commit VALUES (1)")
        .await
        .expect("insert");
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.pause())
        .await
        .expect("pause");
    let started = Instant::now();
    let result = tx.commit().await;
    let took = started.elapsed();
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.resume())
        .await
        .expect("resume");
    assert!(
        matches!(result, Err(TxError::CommitOutcomeUnknown(_))),
        "{result:?}"
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert_eq!(db.stats().transactions.commit_unknown, 1);

    let api = dbservice::http::ApiError::from(TxError::<std::io::Error>::CommitOutcomeUnknown(
        "no answer".into(),
    ));
    assert_eq!(
        (api.status.as_u16(), api.code, api.retry_after),
        (504, "commit_outcome_unknown", None)
    );
    db.close(Duration::from_secs(5)).await;
}

/// A write whose backend was terminated mid-statement (57P01) is not run again: it may have
/// committed already (a backend killed while waiting for a synchronous standby reports 57P01
/// after its local commit). The caller gets the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_write_is_not_run_twice() {
    let base = fresh_pg_database().await;
    let db = service(&base).await;
    db.conn()
        .execute_unprepared("CREATE TABLE killed_write (n int)")
        .await
        .expect("schema");
    let write = tokio::spawn({
        let db = db.clone();
        async move {
            db.conn()
                .execute_unprepared("INSERT INTO killed_write SELECT 1 FROM pg_sleep(2)")
                .await
        }
    });
    let running = eventually(Duration::from_secs(5), || async {
        pg_scalar_i64(
            &base,
            "SELECT count(*) FROM pg_stat_activity \
             WHERE state = 'active' AND query LIKE 'INSERT INTO killed_write%'",
        )
        .await
            == 1
    })
    .await;
    assert!(running, "the write started");
    let killed = pg_scalar_i64(
        &base,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE query LIKE 'INSERT INTO killed_write%'",
    )
    .await;
    assert_eq!(killed, 1, "the write was running");
    let result = write.await.expect("task");
    assert!(result.is_err(), "the terminated write reports its error");
    assert_eq!(
        pg_scalar_i64(&base, "SELECT count(*) FROM killed_write").await,
        0,
        "the write was not run again"
    );
    db.close(Duration::from_secs(5)).await;
}

/// MariaDB: a connection left inside a transaction by an abandoned statement is not handed
/// out again, and the server bounds row-lock waits by the transaction budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_never_hands_out_a_connection_inside_a_transaction() {
    let Some(url) = fresh_mysql_database().await else {
        return;
    };
    let db = service(&with_params(
        &url,
        "connection_limit=1&ping_timeout=5&transaction_timeout=2",
    ))
    .await;
    let scalar = async |sql: &str| -> i64 {
        let row = db
            .conn()
            .query_one_raw(Statement::from_string(DbBackend::MySql, sql.to_owned()))
            .await
            .expect("query")
            .expect("a row");
        row.try_get_by_index::<i64>(0).expect("an integer")
    };
    assert_eq!(
        scalar("SELECT CAST(@@innodb_lock_wait_timeout AS SIGNED)").await,
        3
    );
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        db.conn()
            .execute_unprepared("START TRANSACTION; SELECT SLEEP(1)"),
    )
    .await;
    assert!(abandoned.is_err(), "the statement was abandoned mid-flight");
    assert_eq!(
        scalar("SELECT CAST(@@in_transaction AS SIGNED)").await,
        0,
        "the next caller got a connection inside a transaction"
    );
    db.close(Duration::from_secs(5)).await;
}
