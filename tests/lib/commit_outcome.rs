//! What COMMIT reports: PostgreSQL answers COMMIT inside a failed transaction with the tag
//! `ROLLBACK` and no error, so a body that swallowed a statement's error must not be told its
//! work committed (pgJDBC raises an error here too). A savepoint rolled back to heals the
//! transaction, and MySQL/SQLite, which have no failed-transaction state, commit as before.

use std::time::Duration;

use dbservice::replica::ReplicaConfig;
use dbservice::{DbService, TxError, TxOptions, config::DbConfig};
use sea_orm::{ConnectionTrait, DbErr};

use crate::support::{
    connected_service as service, fresh_mysql_database, fresh_pg_database, sqlite_url, with_params,
};
use crate::transactions::{assert_clean, exec, scalar};

/// A body that inserts a row, swallows a failing statement's error and returns `Ok`.
async fn swallow(tx: &dbservice::Transaction) -> Result<(), DbErr> {
    tx.execute_unprepared("INSERT INTO t VALUES (1)").await?;
    let _ = tx.execute_unprepared("SELECT 1/0").await;
    Ok(())
}

/// The closure form, then the manual `begin`/`commit`: both report the failure, count it,
/// leave no row, and hand the (only) connection out again outside a transaction.
async fn swallowed_error_is_reported(db: &DbService) {
    exec(db.conn(), "CREATE TABLE t (x int)").await;
    let position_before = db.write_position();

    let result = db
        .transaction_with(TxOptions::default().retries(0), async |tx| {
            swallow(tx).await
        })
        .await;
    assert!(
        matches!(result, Err(TxError::FailedBeforeCommit(_))),
        "{result:?}"
    );

    let tx = db.begin(TxOptions::default()).await.expect("begins");
    swallow(&tx).await.expect("the body swallows its error");
    let manual = tx.commit().await;
    assert!(
        matches!(manual, Err(TxError::FailedBeforeCommit(_))),
        "{manual:?}"
    );

    assert_eq!(scalar(db.conn(), "SELECT count(*) FROM t").await, 0);
    let stats = db.stats().transactions;
    assert_eq!(
        (
            stats.commit,
            stats.failed_before_commit,
            stats.commit_unknown
        ),
        (0, 2, 0),
        "{stats:?}"
    );
    assert_eq!(
        db.write_position(),
        position_before,
        "nothing committed, so no write position to wait for"
    );
    assert_clean(db).await;
}

#[tokio::test]
async fn a_commit_after_a_swallowed_error_is_an_error_on_postgres() {
    let db = service(&with_params(
        &fresh_pg_database().await,
        "connection_limit=1",
    ))
    .await;
    swallowed_error_is_reported(&db).await;
    db.close(Duration::from_secs(5)).await;
}

/// With replicas configured the COMMIT carries the write-position query in the same message;
/// the replica here is the primary itself (never in rotation), which is all that path needs.
#[tokio::test]
async fn a_commit_after_a_swallowed_error_is_an_error_with_replicas() {
    let url = fresh_pg_database().await;
    let replicas = ReplicaConfig::from_urls(&with_params(&url, "connection_limit=1"), &[])
        .expect("replica URL");
    let config = DbConfig::from_url(&with_params(&url, "connection_limit=1"))
        .and_then(|c| c.with_replicas(replicas))
        .expect("config");
    let db = DbService::new(config).expect("service");
    db.connect().await.expect("connects");
    swallowed_error_is_reported(&db).await;

    // A real commit still advances the write position (the same message, COMMIT first).
    db.transaction(async |tx| tx.execute_unprepared("INSERT INTO t VALUES (2)").await)
        .await
        .expect("commits");
    assert!(db.write_position().is_some());
    db.close(Duration::from_secs(5)).await;
}

/// `ROLLBACK TO SAVEPOINT` makes a failed transaction healthy again: it commits.
#[tokio::test]
async fn a_failure_undone_by_a_savepoint_still_commits() {
    let db = service(&with_params(
        &fresh_pg_database().await,
        "connection_limit=1",
    ))
    .await;
    exec(db.conn(), "CREATE TABLE t (x int)").await;
    db.transaction(async |tx| {
        tx.execute_unprepared("INSERT INTO t VALUES (1)").await?;
        let inner =
            dbservice::savepoint(tx, async |sp| sp.execute_unprepared("SELECT 1/0").await).await;
        assert!(matches!(inner, Err(TxError::Aborted(_))), "{inner:?}");
        tx.execute_unprepared("INSERT INTO t VALUES (2)").await
    })
    .await
    .expect("commits");
    assert_eq!(scalar(db.conn(), "SELECT count(*) FROM t").await, 2);
    assert_eq!(db.stats().transactions.commit, 1);
    db.close(Duration::from_secs(5)).await;
}

/// MySQL/MariaDB and SQLite keep a transaction usable after a failed statement: the body's
/// other work commits, as it always did.
async fn other_databases_commit_the_rest(url: &str) {
    let db = service(url).await;
    exec(db.conn(), "CREATE TABLE t (x int)").await;
    db.transaction_with(TxOptions::default().retries(0), async |tx| {
        tx.execute_unprepared("INSERT INTO t VALUES (1)").await?;
        let _ = tx.execute_unprepared("SELECT * FROM no_such_table").await;
        Ok::<_, DbErr>(())
    })
    .await
    .expect("commits");
    assert_eq!(scalar(db.conn(), "SELECT count(*) FROM t").await, 1);
    assert_eq!(db.stats().transactions.commit, 1);
    db.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn sqlite_commits_the_rest_after_a_swallowed_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    other_databases_commit_the_rest(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn mysql_commits_the_rest_after_a_swallowed_error() {
    let Some(url) = fresh_mysql_database().await else {
        return;
    };
    other_databases_commit_the_rest(&url).await;
}
