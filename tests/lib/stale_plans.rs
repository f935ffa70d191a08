//! Statements prepared before a migration: PostgreSQL refuses a cached statement whose result
//! type changed with 0A000 "cached plan must not change result type" (sqlx#1250), and one that
//! was deallocated with 26000. The pool evicts the statement caches of all its connections and
//! re-runs a read once; a write gets the error (it never ran) and succeeds when repeated.

use std::time::Duration;

use dbservice::DbService;
use sea_orm::sqlx::{self, Connection};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement};

use crate::support::{connected_service as service, fresh_pg_database, with_params};
use crate::transactions::exec;

const READ: &str = "SELECT * FROM p WHERE id = $1";

fn read() -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, READ, [1.into()])
}

/// `v` of the row read by [`READ`], as text whatever its column type.
fn v_text(rows: &[QueryResult]) -> String {
    let row = rows.first().expect("one row");
    row.try_get_by_index::<String>(1)
        .or_else(|_| row.try_get_by_index::<i32>(1).map(|v| v.to_string()))
        .expect("v")
}

/// A service with `connection_limit = limit` on a fresh database with `p(id, v int)` and one
/// row; returns it with the database URL.
async fn with_table(limit: u32) -> (DbService, String) {
    let url = fresh_pg_database().await;
    let db = service(&with_params(&url, &format!("connection_limit={limit}"))).await;
    exec(
        db.conn(),
        "CREATE TABLE p (id int PRIMARY KEY, v int); INSERT INTO p VALUES (1, 10)",
    )
    .await;
    (db, url)
}

/// The migration, from a session of its own: `SELECT *`'s result type changes. Boxed: a
/// connect's future is large in debug builds, and the tests' own futures hold several steps.
async fn migrate(url: &str) {
    Box::pin(migrate_now(url)).await;
}

async fn migrate_now(url: &str) {
    let mut other = sqlx::PgConnection::connect(url).await.expect("connects");
    sqlx::raw_sql("ALTER TABLE p ALTER COLUMN v TYPE text")
        .execute(&mut other)
        .await
        .expect("ALTER TABLE");
    let _ = other.close().await;
}

#[tokio::test]
async fn a_read_prepared_before_a_migration_answers_after_it() {
    let (db, url) = with_table(1).await;
    let before = db.conn().query_all_raw(read()).await.expect("reads");
    assert_eq!(v_text(&before), "10");
    migrate(&url).await;
    let after = db.conn().query_all_raw(read()).await;
    match after {
        Ok(rows) => assert_eq!(v_text(&rows), "10"),
        Err(e) => panic!("a read after the migration failed: {e}"),
    }
    db.close(Duration::from_secs(5)).await;
}

/// Every connection of the pool had the statement cached; after one of them met the error,
/// the others are evicted before they are handed out, so no caller meets it again (not even
/// inside a transaction, where the statement cannot be re-run).
#[tokio::test]
async fn every_connection_of_the_pool_is_evicted() {
    let (db, url) = with_table(2).await;
    let a = db.begin(db.tx_options()).await.expect("begins");
    let b = db.begin(db.tx_options()).await.expect("begins");
    for tx in [&a, &b] {
        tx.query_all_raw(read()).await.expect("reads");
    }
    a.commit().await.expect("commits");
    b.commit().await.expect("commits");
    migrate(&url).await;

    db.conn().query_all_raw(read()).await.expect("re-run once");
    let a = db.begin(db.tx_options()).await.expect("begins");
    let b = db.begin(db.tx_options()).await.expect("begins");
    for tx in [&a, &b] {
        let rows = tx
            .query_all_raw(read())
            .await
            .expect("no connection keeps the stale statement");
        assert_eq!(v_text(&rows), "10");
    }
    a.commit().await.expect("commits");
    b.commit().await.expect("commits");
    db.close(Duration::from_secs(5)).await;
}

/// A write is never re-run by the pool: it gets the error (it did not run: no row) and works
/// when the caller repeats it.
#[tokio::test]
async fn a_write_gets_the_error_once_and_is_not_rerun() {
    let (db, url) = with_table(1).await;
    let insert = |id: i32| {
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO p (id) VALUES ($1) RETURNING *",
            [id.into()],
        )
    };
    db.conn().query_one_raw(insert(2)).await.expect("inserts");
    migrate(&url).await;
    let err = db
        .conn()
        .query_one_raw(insert(3))
        .await
        .expect_err("the stale write fails");
    assert_eq!(
        dbservice::classify::sqlstate(&err).as_deref(),
        Some("0A000"),
        "{err}"
    );
    let db = &db;
    let count = |sql: &'static str| async move {
        db.conn()
            .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await
            .expect("counts")
            .expect("a row")
            .try_get_by_index::<i64>(0)
            .expect("a count")
    };
    assert_eq!(count("SELECT count(*) FROM p WHERE id = 3").await, 0);
    db.conn()
        .query_one_raw(insert(3))
        .await
        .expect("the repeated write works");
    assert_eq!(count("SELECT count(*) FROM p WHERE id = 3").await, 1);
    db.close(Duration::from_secs(5)).await;
}

/// `DEALLOCATE ALL` drops the server's statements behind sqlx's back (26000 next time).
#[tokio::test]
async fn a_read_after_deallocate_answers() {
    let (db, _url) = with_table(1).await;
    db.conn().query_all_raw(read()).await.expect("reads");
    exec(db.conn(), "DEALLOCATE ALL").await;
    let rows = db
        .conn()
        .query_all_raw(read())
        .await
        .unwrap_or_else(|e| panic!("a read after DEALLOCATE failed: {e}"));
    assert_eq!(v_text(&rows), "10");
    db.close(Duration::from_secs(5)).await;
}
