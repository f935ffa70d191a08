//! What one caller does to its session never reaches the next: settings, role, advisory
//! locks, listeners, temporary tables and named statements are reset before a connection is
//! handed out again, while SeaORM's own statements still go back with no round trip. And work
//! a caller abandoned is cancelled on the server, and every checkout honours its bound.

use std::time::{Duration, Instant};

use dbservice::{DbService, TxOptions};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::support::proxy::FaultProxy;
use crate::support::{
    connected_service as service, eventually, fresh_mysql_database, pg_scalar_i64, private_cluster,
    sqlite_url, with_params,
};

fn pg(s: &str) -> Statement {
    Statement::from_string(DbBackend::Postgres, s)
}

/// The first column of the one row `sql` returns on PostgreSQL.
async fn scalar<T: sea_orm::TryGetable>(db: &DbService, sql: &str) -> T {
    db.conn()
        .query_one_raw(pg(sql))
        .await
        .expect("query")
        .expect("a row")
        .try_get_by_index::<T>(0)
        .expect("a value of the type asked")
}

async fn text(db: &DbService, sql: &str) -> String {
    scalar(db, sql).await
}

async fn int(db: &DbService, sql: &str) -> i64 {
    scalar(db, sql).await
}

/// On a pool of one, each way a caller can change its session is undone before the next
/// caller gets the connection: it sees the role, settings and catalog of a new connection.
#[tokio::test]
async fn session_state_never_reaches_the_next_caller_on_postgres() {
    let cluster = private_cluster().await;
    let url = cluster.url("postgres");
    let db = service(&with_params(&url, "connection_limit=1")).await;
    db.conn()
        .execute_unprepared("CREATE ROLE lowpriv")
        .await
        .expect("CREATE ROLE");
    let me = text(&db, "SELECT current_user::text").await;
    let zone = text(&db, "SHOW TimeZone").await;
    let path = text(&db, "SHOW search_path").await;

    db.conn()
        .execute_unprepared("SET ROLE lowpriv")
        .await
        .expect("SET ROLE");
    assert_eq!(text(&db, "SELECT current_user::text").await, me, "SET ROLE");

    db.conn()
        .query_one_raw(pg("SELECT set_config('role', 'lowpriv', false)"))
        .await
        .expect("set_config");
    assert_eq!(
        text(&db, "SELECT current_user::text").await,
        me,
        "set_config('role')"
    );

    db.conn()
        .execute_unprepared("SET search_path TO pg_catalog")
        .await
        .expect("SET search_path");
    db.conn()
        .execute_unprepared("SET TimeZone = 'Asia/Tokyo'")
        .await
        .expect("SET TimeZone");
    assert_eq!(text(&db, "SHOW search_path").await, path);
    assert_eq!(text(&db, "SHOW TimeZone").await, zone);

    db.conn()
        .execute_unprepared("CREATE TEMP TABLE leftover (id int)")
        .await
        .expect("CREATE TEMP TABLE");
    db.conn()
        .execute_unprepared("PREPARE mine AS SELECT 1")
        .await
        .expect("PREPARE");
    assert_eq!(
        int(
            &db,
            "SELECT count(*) FROM pg_class WHERE relpersistence = 't' AND relname = 'leftover'"
        )
        .await,
        0,
        "the temporary table is gone"
    );
    assert_eq!(
        int(
            &db,
            "SELECT count(*) FROM pg_prepared_statements WHERE from_sql"
        )
        .await,
        0,
        "the caller's PREPARE is gone"
    );

    // A session-level SET inside a transaction outlives its COMMIT.
    db.transaction_with(TxOptions::default(), async |tx| {
        tx.execute_unprepared("SET TimeZone = 'America/Lima'").await
    })
    .await
    .expect("transaction");
    assert_eq!(
        text(&db, "SHOW TimeZone").await,
        zone,
        "SET inside a transaction"
    );

    // An advisory lock is released as soon as its caller is done, not at the next checkout:
    // another session can take it while the pooled connection sits idle.
    db.conn()
        .query_one_raw(pg("SELECT pg_advisory_lock(42)"))
        .await
        .expect("lock");
    assert!(
        eventually(Duration::from_secs(2), || async {
            pg_scalar_i64(
                &url,
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 42",
            )
            .await
                == 0
        })
        .await,
        "an idle pooled connection still holds the advisory lock"
    );

    // LISTEN, then a NOTIFY from another session: later statements still work.
    db.conn()
        .execute_unprepared("LISTEN dbservice_channel")
        .await
        .expect("LISTEN");
    pg_scalar_i64(
        &url,
        "SELECT count(*) FROM (SELECT pg_notify('dbservice_channel', 'x')) n",
    )
    .await;
    for _ in 0..3 {
        assert_eq!(int(&db, "SELECT 1::bigint").await, 1);
    }
    assert_eq!(
        int(&db, "SELECT count(*) FROM pg_listening_channels()").await,
        0,
        "no listener is left"
    );
    let s = db.stats();
    assert!(s.session_resets >= 8, "each change was reset: {s:?}");
    assert!(db.close(Duration::from_secs(5)).await);
}

/// SeaORM's own statements (and plain reads) leave the session alone: they go back with no
/// reset and no check, however many there are.
#[tokio::test]
async fn known_clean_statements_cost_no_reset() {
    let cluster = private_cluster().await;
    let db = service(&with_params(&cluster.url("postgres"), "connection_limit=2")).await;
    db.conn()
        .execute_unprepared("CREATE TABLE t (id serial PRIMARY KEY, v int)")
        .await
        .expect("table");
    // The DDL's connection is reset once (a statement other than a read or write may change
    // the session), in the background.
    assert!(
        eventually(Duration::from_secs(2), || async {
            db.stats().session_resets == 1
        })
        .await,
        "{:?}",
        db.stats()
    );
    let before = db.stats();
    for i in 0..50 {
        db.conn()
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO t (v) VALUES ($1)",
                [i.into()],
            ))
            .await
            .expect("insert");
        db.conn()
            .query_all_raw(pg("SELECT id, v FROM t WHERE v > 10 ORDER BY id"))
            .await
            .expect("select");
        db.transaction_with(TxOptions::default(), async |tx| {
            tx.execute_raw(pg("UPDATE t SET v = v + 1 WHERE id = 1"))
                .await
                .map(|_| ())
        })
        .await
        .expect("transaction");
    }
    let s = db.stats();
    assert_eq!(
        (s.session_resets, s.checkout_checks),
        (before.session_resets, before.checkout_checks),
        "{s:?}"
    );
    assert!(db.close(Duration::from_secs(5)).await);
}

/// SQLite: a raw BEGIN left open by one caller is rolled back before the next caller gets the
/// connection, so what the next caller writes is committed and seen by others.
#[tokio::test]
async fn sqlite_never_hands_out_a_connection_inside_a_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(&dir);
    let db = service(&with_params(&url, "connection_limit=1")).await;
    db.conn()
        .execute_unprepared("CREATE TABLE t (v int)")
        .await
        .expect("table");
    db.conn().execute_unprepared("BEGIN").await.expect("BEGIN");
    db.conn()
        .execute_unprepared("INSERT INTO t VALUES (1)")
        .await
        .expect("insert");
    let other = service(&url).await;
    let seen = other
        .conn()
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT count(*) FROM t",
        ))
        .await
        .expect("count")
        .expect("row")
        .try_get_by_index::<i64>(0)
        .expect("int");
    assert_eq!(seen, 1, "the INSERT after the stray BEGIN was committed");
    assert!(db.close(Duration::from_secs(5)).await);
    assert!(other.close(Duration::from_secs(5)).await);
}

/// MariaDB/MySQL: user variables, session variables and named locks of one caller do not
/// reach the next.
#[tokio::test]
async fn mysql_session_state_never_reaches_the_next_caller() {
    let Some(url) = fresh_mysql_database().await else {
        return;
    };
    let db = service(&with_params(&url, "connection_limit=1")).await;
    let my = |s: &str| Statement::from_string(DbBackend::MySql, s);
    let one = async |sql: &str| -> Option<i64> {
        db.conn()
            .query_one_raw(my(sql))
            .await
            .expect("query")
            .expect("row")
            .try_get_by_index::<Option<i64>>(0)
            .expect("int")
    };
    let mode = db
        .conn()
        .query_one_raw(my("SELECT @@SESSION.sql_mode"))
        .await
        .expect("sql_mode")
        .expect("row")
        .try_get_by_index::<String>(0)
        .expect("text");
    // In MySQL, `SET LOCAL` is `SET SESSION`.
    db.conn()
        .execute_unprepared("SET LOCAL sql_mode = 'ANSI_QUOTES'")
        .await
        .expect("SET LOCAL sql_mode");
    let now = db
        .conn()
        .query_one_raw(my("SELECT @@SESSION.sql_mode"))
        .await
        .expect("sql_mode")
        .expect("row")
        .try_get_by_index::<String>(0)
        .expect("text");
    assert_eq!(now, mode, "SET LOCAL reached the next caller");
    db.conn()
        .execute_unprepared("SET @leak = 7")
        .await
        .expect("SET @leak");
    assert_eq!(one("SELECT CAST(@leak AS SIGNED)").await, None);
    db.conn()
        .query_one_raw(my("SELECT GET_LOCK('dbservice_lock', 0)"))
        .await
        .expect("GET_LOCK");
    assert_eq!(
        one("SELECT CAST(IS_USED_LOCK('dbservice_lock') IS NULL AS SIGNED)").await,
        Some(1),
        "the named lock was released"
    );
    assert!(db.close(Duration::from_secs(5)).await);
}

/// A statement abandoned on the client (its `query_timeout`, or its caller dropped) is
/// cancelled on the server: it is gone from `pg_stat_activity` within a second, and an
/// autocommit UPDATE abandoned at its deadline leaves the row unchanged.
#[tokio::test]
async fn abandoned_statements_are_cancelled_on_the_server() {
    let cluster = private_cluster().await;
    let url = cluster.url("postgres");
    let db = service(&with_params(
        &url,
        "connection_limit=2&query_timeout=300ms&application_name=cancel_test",
    ))
    .await;
    let running = || async {
        pg_scalar_i64(
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cancel_test' \
             AND state = 'active' AND query LIKE '%pg_sleep(%'",
        )
        .await
    };
    let started = Instant::now();
    let err = db
        .conn()
        .execute_raw(pg("SELECT pg_sleep(4)"))
        .await
        .expect_err("past query_timeout");
    assert!(started.elapsed() < Duration::from_secs(2), "{err}");
    assert!(
        eventually(Duration::from_secs(1), || async { running().await == 0 }).await,
        "the statement still runs on the server after the client's timeout"
    );

    // A caller dropped mid-statement.
    let dropped = tokio::time::timeout(
        Duration::from_millis(200),
        db.conn().execute_raw(pg("SELECT pg_sleep(4)")),
    )
    .await;
    assert!(dropped.is_err());
    assert!(
        eventually(Duration::from_secs(1), || async { running().await == 0 }).await,
        "the dropped caller's statement still runs on the server"
    );

    db.conn()
        .execute_unprepared(
            "CREATE TABLE acct (id int PRIMARY KEY, v int); INSERT INTO acct VALUES (1, 1)",
        )
        .await
        .expect("table");
    let update_began = Instant::now();
    db.conn()
        .execute_raw(pg(
            "UPDATE acct SET v = 2 FROM (SELECT pg_sleep(1)) s WHERE id = 1",
        ))
        .await
        .expect_err("past query_timeout");
    assert!(
        eventually(Duration::from_secs(1), || async { running().await == 0 }).await,
        "the UPDATE still runs on the server"
    );
    // Uncancelled, the UPDATE would commit about 1 s after it began: look after that moment
    // (what is checked is that nothing happens, so there is no event to await).
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(update_began.elapsed())).await;
    assert_eq!(
        pg_scalar_i64(&url, "SELECT v::bigint FROM acct WHERE id = 1").await,
        1,
        "an abandoned autocommit UPDATE must not commit"
    );
    let s = db.stats();
    assert!(s.statements_cancelled >= 3, "{s:?}");
    assert_eq!(s.closed.broken, 0, "a cancelled connection is kept: {s:?}");
    // The connections are usable afterwards.
    assert_eq!(int(&db, "SELECT 1::bigint").await, 1);
    assert!(db.close(Duration::from_secs(5)).await);
}

/// Every checkout honours its caller's bound, also when the connection free right now needs a
/// round trip first: with the server frozen, a transaction's `max_wait` of 100 ms ends in
/// about 100 ms, not at `ping_timeout`.
#[tokio::test]
async fn a_checkout_that_needs_a_round_trip_honours_its_bound() {
    let cluster = private_cluster().await;
    let db = service(&with_params(
        &cluster.url("postgres"),
        "connection_limit=2&ping_after_idle=1ms&ping_timeout=5s&pool_timeout=10s",
    ))
    .await;
    assert_eq!(int(&db, "SELECT 1::bigint").await, 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    cluster.pause();
    let started = Instant::now();
    let result = db
        .transaction_with(
            TxOptions::default().max_wait(Duration::from_millis(100)),
            async |_tx| Ok::<_, sea_orm::DbErr>(()),
        )
        .await;
    let took = started.elapsed();
    cluster.resume();
    assert!(result.is_err(), "no transaction on a frozen server");
    assert!(
        took < Duration::from_millis(800),
        "max_wait 100 ms took {took:?}"
    );
    db.close(Duration::from_secs(5)).await;
}

/// A cancel goes over a connection of its own, which an address that moved (a load balancer,
/// a failover) may take to another server, where the same pid is someone else's session: the
/// cancel is sent only to the session it was meant for, else the connection is closed.
#[tokio::test]
async fn a_cancel_that_reaches_another_server_is_not_sent() {
    let first = private_cluster().await;
    let second = private_cluster().await;
    let proxy = FaultProxy::start(&first.url("postgres"), Duration::ZERO).await;
    let db = service(&with_params(
        &proxy.url,
        "connection_limit=1&query_timeout=300ms",
    ))
    .await;
    assert_eq!(int(&db, "SELECT 1::bigint").await, 1);
    // New connections (the cancel's) now reach the second server.
    proxy.switch_to(&second.url("postgres"));
    db.conn()
        .execute_raw(pg("SELECT pg_sleep(2)"))
        .await
        .expect_err("past query_timeout");
    let s = db.stats();
    assert_eq!(s.statements_cancelled, 0, "{s:?}");
    assert!(
        eventually(Duration::from_secs(2), || async {
            db.stats().closed.broken == 1
        })
        .await,
        "the connection whose statement could not be cancelled is closed: {:?}",
        db.stats()
    );
    assert_eq!(
        int(&db, "SELECT 1::bigint").await,
        1,
        "a new connection serves"
    );
    db.close(Duration::from_secs(5)).await;
}
