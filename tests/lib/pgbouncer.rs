//! PgBouncer in transaction mode for real (Debian's 1.18, which has no prepared-statement
//! support): why sqlx's named statements fail through it, and that `pgbouncer=true` with the
//! seed's session settings serves two service instances at once without one error.

use std::sync::Arc;
use std::time::Duration;

use dbservice::DbService;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::support::{
    cluster_with_pgbouncer, connected_service as service, fresh_pg_database, pg_scalar_i64,
    with_params,
};

fn sql(s: &str) -> Statement {
    Statement::from_string(DbBackend::Postgres, s)
}

/// The failure `pgbouncer=true` exists for: two clients on one server connection, each with
/// sqlx's named statements (`sqlx_s_1`), collide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_statements_collide_behind_pgbouncer() {
    use sea_orm::sqlx::{self, Connection};
    let Some((_cluster, bouncer)) = cluster_with_pgbouncer(1, "").await else {
        return;
    };
    let url = bouncer.url("postgres");
    let mut a = sqlx::PgConnection::connect(&url).await.expect("a");
    let mut b = sqlx::PgConnection::connect(&url).await.expect("b");
    let q = "SELECT $1::int4 + 1";
    sqlx::query(q)
        .bind(1)
        .execute(&mut a)
        .await
        .expect("a prepares sqlx_s_1");
    let err = sqlx::query(q)
        .bind(1)
        .execute(&mut b)
        .await
        .expect_err("b's sqlx_s_1 meets a's on the one server connection");
    assert!(err.to_string().contains("already exists"), "{err}");
}

/// Two instances with `pgbouncer=true` and the seed's settings (`statement_timeout`,
/// `idle_in_transaction_session_timeout`, `schema`) behind a PgBouncer with fewer server
/// connections than clients: 200 concurrent transfers and reads, no error, the sum conserved;
/// the settings are in force on every statement; the timeouts still fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_through_pgbouncer_transaction_mode() {
    let Some((cluster, bouncer)) = cluster_with_pgbouncer(3, "").await else {
        return;
    };
    let direct = cluster.url("postgres");
    {
        use sea_orm::sqlx::{self, Connection};
        let mut admin = sqlx::PgConnection::connect(&direct).await.expect("admin");
        sqlx::raw_sql(
            "CREATE TABLE acc (id int PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0)); \
             INSERT INTO acc SELECT g, 1000 FROM generate_series(1, 10) g",
        )
        .execute(&mut admin)
        .await
        .expect("schema");
    }
    let url = with_params(
        &bouncer.url("postgres"),
        "pgbouncer=true&statement_timeout=2s&idle_in_transaction_session_timeout=10s&schema=public&connection_limit=5",
    );
    let one = service(&url).await;
    let two = service(&url).await;
    let show = |db: &DbService| {
        let db = db.clone();
        async move {
            db.conn()
                .query_one_raw(sql("SHOW statement_timeout"))
                .await
                .expect("SHOW")
                .expect("row")
                .try_get_by_index::<String>(0)
                .expect("text")
        }
    };
    assert_eq!(show(&one).await, "2s");

    let dbs = Arc::new([one.clone(), two.clone()]);
    let jobs = (0..200).map(|i| {
        let dbs = dbs.clone();
        async move {
            let db = &dbs[i % 2];
            let (from, to) = (1 + (i % 10) as i32, 1 + ((i * 7 + 3) % 10) as i32);
            if from == to {
                return db
                    .conn()
                    .query_one_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "SELECT balance FROM acc WHERE id = $1",
                        [from.into()],
                    ))
                    .await
                    .map(|_| ());
            }
            db.transaction(async |tx| {
                let (lo, hi) = (from.min(to), from.max(to));
                tx.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT id FROM acc WHERE id IN ($1, $2) ORDER BY id FOR UPDATE",
                    [lo.into(), hi.into()],
                ))
                .await?;
                tx.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "UPDATE acc SET balance = balance - $1 WHERE id = $2",
                    [1i64.into(), from.into()],
                ))
                .await?;
                tx.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "UPDATE acc SET balance = balance + $1 WHERE id = $2",
                    [1i64.into(), to.into()],
                ))
                .await?;
                Ok::<_, sea_orm::DbErr>(())
            })
            .await
            .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))
        }
    });
    let results = futures::future::join_all(jobs).await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert_eq!(
        pg_scalar_i64(&direct, "SELECT sum(balance)::bigint FROM acc").await,
        10_000
    );

    // The server-side bound still fires behind PgBouncer, and the pool stays usable.
    let err = one
        .conn()
        .execute_unprepared("SELECT pg_sleep(3)")
        .await
        .expect_err("statement_timeout");
    assert_eq!(
        dbservice::classify::sqlstate(&err).as_deref(),
        Some("57014"),
        "{err}"
    );
    assert_eq!(show(&two).await, "2s");
    // A transaction's own timeout too.
    let slow = one
        .transaction_with(
            one.tx_options().timeout(Duration::from_millis(500)),
            async |tx| tx.execute_unprepared("SELECT pg_sleep(2)").await,
        )
        .await;
    assert!(
        matches!(slow, Err(dbservice::TxError::Timeout(_))),
        "{slow:?}"
    );
    one.close(Duration::from_secs(5)).await;
    two.close(Duration::from_secs(5)).await;
    drop(bouncer);
}

/// `statement_cache_size=0` without PgBouncer: statements are unnamed, so none pile up on the
/// server (sqlx 0.9 alone names each one and never closes it, sqlx#4328).
#[tokio::test]
async fn no_statement_cache_leaves_no_prepared_statements() {
    let base = fresh_pg_database().await;
    let db = service(&with_params(
        &base,
        "statement_cache_size=0&connection_limit=1",
    ))
    .await;
    for i in 0..20 {
        db.conn()
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!("SELECT $1::int4 + {i}"),
                [i.into()],
            ))
            .await
            .expect("runs");
    }
    let left = db
        .conn()
        .query_one_raw(sql("SELECT count(*) FROM pg_prepared_statements"))
        .await
        .expect("count")
        .expect("row")
        .try_get_by_index::<i64>(0)
        .expect("int");
    assert_eq!(left, 0);
    db.close(Duration::from_secs(5)).await;
}

/// `pgbouncer=true` writes values into the SQL: they come back exactly as written, hostile
/// strings included, and a placeholder without a value is an error, not a panic.
#[tokio::test]
async fn inlined_values_round_trip_and_cannot_inject() {
    let base = fresh_pg_database().await;
    let db = service(&with_params(&base, "pgbouncer=true")).await;
    db.conn()
        .execute_unprepared(
            "CREATE TABLE v (s text, n bigint, f double precision, b bytea, ok bool)",
        )
        .await
        .expect("schema");
    let nasty = "O'Brien \\' \"; DROP TABLE v; -- \n\t ünï $1 \\x00";
    db.conn()
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO v VALUES ($1, $2, $3, $4, $5)",
            [
                nasty.into(),
                i64::MIN.into(),
                1.5f64.into(),
                vec![0u8, 1, 255].into(),
                true.into(),
            ],
        ))
        .await
        .expect("insert");
    let row = db
        .conn()
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT s, n, f, b, ok FROM v WHERE s = $1",
            [nasty.into()],
        ))
        .await
        .expect("select")
        .expect("the row, found by the same value");
    assert_eq!(row.try_get_by_index::<String>(0).expect("s"), nasty);
    assert_eq!(row.try_get_by_index::<i64>(1).expect("n"), i64::MIN);
    assert_eq!(row.try_get_by_index::<f64>(2).expect("f"), 1.5);
    assert_eq!(
        row.try_get_by_index::<Vec<u8>>(3).expect("b"),
        vec![0u8, 1, 255]
    );
    assert!(row.try_get_by_index::<bool>(4).expect("ok"));
    let err = db
        .conn()
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT $1, $2",
            [1i32.into()],
        ))
        .await
        .expect_err("a placeholder without a value");
    assert!(err.to_string().contains("$2"), "{err}");
    db.close(Duration::from_secs(5)).await;
}

/// PgBouncer ≥ 1.21 with `max_prepared_statements` tracks prepared statements per client:
/// then the ordinary named, cached statements work through it and `pgbouncer=true` is not
/// needed. Runs with a newer binary from `PGBOUNCER_BIN`; skips loudly with Debian's 1.18.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_pgbouncer_with_max_prepared_statements_takes_named_statements() {
    match dbservice_testkit::pgbouncer::version() {
        Some(v) if v >= (1, 21) => {}
        other => {
            eprintln!(
                "SKIPPED: PgBouncer >= 1.21 needed (found {other:?}); set PGBOUNCER_BIN to a newer binary"
            );
            return;
        }
    }
    let Some((_cluster, bouncer)) =
        cluster_with_pgbouncer(2, "max_prepared_statements = 200").await
    else {
        return;
    };
    let url = with_params(&bouncer.url("postgres"), "connection_limit=6");
    let (one, two) = (service(&url).await, service(&url).await);
    let reads = (0..100).map(|i| {
        let db = if i % 2 == 0 { one.clone() } else { two.clone() };
        async move {
            db.conn()
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT $1::int4 + 1",
                    [i.into()],
                ))
                .await
        }
    });
    let results = futures::future::join_all(reads).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}
