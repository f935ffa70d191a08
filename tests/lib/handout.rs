//! The service's own hand-out of connections: what goes back without a round trip, what is
//! checked or closed, why connections close, how long they may be held, and what a caller
//! who gets none is told.

use std::time::{Duration, Instant};

use dbservice::{DbService, TxOptions, classify::AcquireError, classify::acquire_error};
use futures::StreamExt;
use sea_orm::{ConnectionTrait, DbBackend, Statement, StreamTrait};

use crate::support::proxy::FaultProxy;
use crate::support::{
    backends_named, connected_service as service, eventually, fresh_pg_database, private_cluster,
    select_one, sqlite_url, unique_name, with_params,
};

fn sql(s: &str) -> Statement {
    Statement::from_string(DbBackend::Postgres, s)
}

/// A connection whose statements completed goes back and out again with no I/O: 200
/// statements on a warm pool make no ping and no check. One whose statement was abandoned
/// mid-flight has it cancelled and is checked once before reuse, and is usable.
#[tokio::test]
async fn clean_connections_cost_no_round_trip_and_abandoned_ones_one() {
    let base = fresh_pg_database().await;
    let db = service(&with_params(
        &base,
        "connection_limit=2&ping_after_idle=60s",
    ))
    .await;
    for _ in 0..200 {
        select_one(&db).await.expect("select");
    }
    let s = db.stats();
    assert_eq!((s.checkout_pings, s.checkout_checks), (0, 0), "{s:?}");

    let abandoned = tokio::time::timeout(
        Duration::from_millis(100),
        db.conn().execute_raw(sql("SELECT pg_sleep(0.5)")),
    )
    .await;
    assert!(abandoned.is_err(), "the statement was still running");
    for _ in 0..5 {
        select_one(&db)
            .await
            .expect("the abandoned connection is usable again");
    }
    // Its statement is cancelled and the connection checked once, in the background, before
    // anyone else gets it.
    assert!(
        eventually(Duration::from_secs(2), || async {
            db.stats().checkout_checks == 1 && db.stats().idle == 2
        })
        .await,
        "checked once, before its reuse: {:?}",
        db.stats()
    );
    let s = db.stats();
    assert_eq!(s.statements_cancelled, 1, "{s:?}");
    assert_eq!(s.closed_total, 0, "and kept: {s:?}");
    assert!(db.close(Duration::from_secs(5)).await);
    assert_eq!(db.stats().closed.shutdown, db.stats().opened_total);
}

/// A connection someone left inside a transaction through raw SQL is found out at its next
/// checkout and closed (`unclean`), never handed to the next caller.
#[tokio::test]
async fn a_connection_left_in_a_transaction_is_closed_not_reused() {
    let base = fresh_pg_database().await;
    let db = service(&with_params(&base, "connection_limit=1")).await;
    db.conn().execute_unprepared("BEGIN").await.expect("BEGIN");
    let err = db
        .conn()
        .execute_unprepared("SAVEPOINT probe")
        .await
        .expect_err("the next caller is outside any transaction");
    assert_eq!(
        dbservice::classify::sqlstate(&err).as_deref(),
        Some("25P01"),
        "{err}"
    );
    let s = db.stats();
    assert_eq!(s.closed.unclean, 1, "{s:?}");
    assert_eq!(s.checkout_checks, 1, "{s:?}");
    db.close(Duration::from_secs(5)).await;
}

/// `max_uses`: a connection is retired after (a jittered share of) that many checkouts, and
/// never more connections are open than the limit.
#[tokio::test]
async fn max_uses_retires_connections() {
    let base = fresh_pg_database().await;
    let name = unique_name("maxuses");
    let db = service(&with_params(
        &base,
        &format!("connection_limit=1&max_uses=5&application_name={name}"),
    ))
    .await;
    for _ in 0..40 {
        select_one(&db).await.expect("select");
    }
    let s = db.stats();
    // 41 checkouts (the connect's own probe included), at most 5 per connection.
    assert!(s.closed.max_uses >= 8, "{s:?}");
    assert!(s.opened_total >= 9, "{s:?}");
    assert!(
        eventually(Duration::from_secs(2), || async {
            backends_named(&base, &name).await == 1
        })
        .await,
        "retired connections are closed on the server"
    );
    db.close(Duration::from_secs(5)).await;
}

/// A pool timeout says the pool was saturated: how many connections were busy, how many
/// callers waited, and where the longest-held connection was taken.
#[tokio::test]
async fn a_saturated_pool_timeout_names_the_longest_hold() {
    let base = fresh_pg_database().await;
    let db = service(&with_params(&base, "connection_limit=1&pool_timeout=300ms")).await;
    let tx = db
        .begin(TxOptions::default())
        .await
        .expect("holds the only connection");
    let err = select_one(&db).await.expect_err("no connection");
    match acquire_error(&err) {
        Some(AcquireError::Saturated {
            busy: 1,
            max: 1,
            longest_hold: Some(held),
            held_at: Some(at),
            ..
        }) => {
            assert!(*held >= Duration::from_millis(300), "{held:?}");
            assert!(at.contains("handout.rs"), "{at}");
        }
        other => panic!("expected a saturated pool: {other:?} ({err})"),
    }
    assert!(
        err.to_string().contains("pool saturated (1/1 busy"),
        "{err}"
    );
    assert_eq!(db.stats().errors.pool_timeout, 1);
    drop(tx);
    db.close(Duration::from_secs(5)).await;
}

/// `connect_timeout` bounds every connection the pool opens: a database that accepts TCP but
/// never answers costs a caller `pool_timeout`, and the error says the database was
/// unreachable and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_bounds_every_connection_the_pool_opens() {
    let base = fresh_pg_database().await;
    let proxy = FaultProxy::start(&base, Duration::ZERO).await;
    let db = service(&with_params(
        &proxy.url,
        "connection_limit=2&connect_timeout=300ms&pool_timeout=1s&fail_fast_after=0&idle_timeout=0&query_timeout=1s&ping_timeout=200ms",
    ))
    .await;
    // The open connections die and the database stops answering: the pool must open new
    // ones through the frozen proxy.
    proxy.blackhole(true);
    proxy.reset_all();
    // Whatever the old connection does (reset, or blackholed until query_timeout), it fails
    // and is not reused.
    let _ = db.conn().execute_unprepared("SELECT 1").await;
    let started = Instant::now();
    let err = db
        .conn()
        .execute_unprepared("SELECT 1")
        .await
        .expect_err("nothing answers");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert!(
        matches!(acquire_error(&err), Some(AcquireError::Unreachable { cause, fail_fast: false, .. }) if cause.contains("connect_timeout")),
        "{err}"
    );
    db.close(Duration::from_secs(2)).await;
}

/// While the database is down, callers are failed at once with the cause (after
/// `fail_fast_after` failed connects) instead of each waiting `pool_timeout`; readiness says
/// so; once it is back, a background probe notices and the pool serves again, under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_while_the_database_is_down_and_recover_when_back() {
    let cluster = private_cluster().await;
    let db = service(&with_params(
        &cluster.url("postgres"),
        "connection_limit=4&pool_timeout=5s&fail_fast_after=3&connect_timeout=1s",
    ))
    .await;
    select_one(&db).await.expect("up");
    let stopper = cluster.clone();
    tokio::task::spawn_blocking(move || stopper.stop_server())
        .await
        .expect("stopped");

    // Load while it is down: the first callers find out the hard way, then everyone fast.
    let started = Instant::now();
    let results = futures::future::join_all((0..40).map(|i| {
        let db = db.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(10 * i)).await;
            let t = Instant::now();
            (select_one(&db).await, t.elapsed())
        }
    }))
    .await;
    assert!(results.iter().all(|(r, _)| r.is_err()));
    let fast: Vec<_> = results
        .iter()
        .filter(|(r, took)| {
            r.as_ref().err().and_then(acquire_error).is_some_and(|e| {
                matches!(
                    e,
                    AcquireError::Unreachable {
                        fail_fast: true,
                        ..
                    }
                )
            }) && *took < Duration::from_millis(100)
        })
        .collect();
    assert!(
        fast.len() >= 20,
        "most callers failed fast: {} of 40",
        fast.len()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "nobody waited pool_timeout"
    );
    assert!(db.stats().database_down);
    let ready = db.readiness().await;
    assert!(
        matches!(&ready.result, Err(dbservice::PingError::Failed(m)) if m.contains("unreachable")),
        "{ready:?}"
    );

    let starter = cluster.clone();
    tokio::task::spawn_blocking(move || starter.start_server())
        .await
        .expect("started");
    assert!(
        eventually(Duration::from_secs(15), || async {
            select_one(&db).await.is_ok()
        })
        .await,
        "serves again once the database is back"
    );
    assert!(!db.stats().database_down);
    db.close(Duration::from_secs(5)).await;
}

/// Rows stream through `StreamTrait` on `db.conn()`; a stream read slower than
/// `stream_timeout` ends with an error and its connection goes back usable.
#[tokio::test]
async fn streams_rows_and_bounds_how_long_a_stream_holds_its_connection() {
    let base = fresh_pg_database().await;
    let db = service(&with_params(
        &base,
        "connection_limit=1&stream_timeout=500ms",
    ))
    .await;
    let mut rows = db
        .conn()
        .stream_raw(sql("SELECT g FROM generate_series(1, 1000) g"))
        .await
        .expect("stream");
    let mut sum = 0i64;
    while let Some(row) = rows.next().await {
        sum += i64::from(row.expect("row").try_get_by_index::<i32>(0).expect("int"));
    }
    assert_eq!(sum, 500_500);
    drop(rows);

    let mut slow = db
        .conn()
        .stream_raw(sql("SELECT g FROM generate_series(1, 100000) g"))
        .await
        .expect("stream");
    let started = Instant::now();
    let mut ended_with = None;
    while let Some(row) = slow.next().await {
        if let Err(e) = row {
            ended_with = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let err = ended_with.expect("the stream was cut off");
    assert!(err.to_string().contains("stream_timeout"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(slow);
    select_one(&db)
        .await
        .expect("the connection is back and usable");
    db.close(Duration::from_secs(5)).await;
}

/// SQLite runs on the same pool: statements, a transaction, and streams.
#[tokio::test]
async fn sqlite_on_the_owned_pool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db: DbService = service(&sqlite_url(&dir)).await;
    db.conn()
        .execute_unprepared("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        .await
        .expect("schema");
    db.transaction(async |tx| {
        for i in 0..10 {
            tx.execute_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "INSERT INTO t (v) VALUES (?)",
                [format!("v{i}").into()],
            ))
            .await?;
        }
        Ok::<_, sea_orm::DbErr>(())
    })
    .await
    .expect("committed");
    let rows: Vec<_> = db
        .conn()
        .stream_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT v FROM t ORDER BY id",
        ))
        .await
        .expect("stream")
        .collect()
        .await;
    assert_eq!(rows.len(), 10);
    db.close(Duration::from_secs(5)).await;
}
