//! A statement run with a session context outside a transaction, on a pool with the statement
//! cache on, travels as `SET LOCAL ...; EXECUTE name(args)` of a statement the connection
//! prepared once: what it returns must equal what the prepared path returns, the statement is
//! prepared once per connection, and nothing the server drops behind the pool's back (a
//! migration, a session reset, an eviction) turns into an error for the caller.

use dbservice::DbService;
use dbservice::context::SessionContext;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};

use crate::support::{connected_service as service, fresh_pg_database, with_params};

fn with_values(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// The connection's statements prepared for contexts.
async fn prepared(db: &DbService) -> i64 {
    let row = db
        .conn()
        .query_one_raw(with_values(
            "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'dbservice_ctx_%'",
            vec![],
        ))
        .await
        .expect("count")
        .expect("row");
    row.try_get_by_index(0).expect("count")
}

async fn setup(params: &str) -> DbService {
    let url = with_params(&fresh_pg_database().await, params);
    let db = service(&url).await;
    db.conn()
        .execute_unprepared(
            "CREATE TABLE t (id int8 PRIMARY KEY, name text, flag bool); \
             INSERT INTO t VALUES (1, 'one', true), (2, 'two', false), (3, NULL, NULL)",
        )
        .await
        .expect("table");
    db
}

fn tenant() -> SessionContext {
    SessionContext::tenant("app.tenant_id", 5).expect("context")
}

#[tokio::test]
async fn a_statement_is_prepared_once_per_connection_and_answers_as_the_prepared_path_does() {
    let db = setup("connection_limit=1").await;
    let scoped = db.with_context(tenant()).expect("postgres");
    let read = "SELECT id, name, flag, current_setting('app.tenant_id', true) AS t \
                FROM t WHERE id = $1 AND (name = $2 OR $2 IS NULL OR flag = $3)";
    for (id, name, flag) in [
        (1i64, Some("one"), Some(true)),
        (2, Some("x"), Some(false)),
        (3, None, None),
    ] {
        let values = vec![
            Value::from(id),
            Value::from(name.map(str::to_owned)),
            Value::from(flag),
        ];
        let ours = scoped
            .query_one_raw(with_values(read, values.clone()))
            .await
            .expect("through the context")
            .expect("a row");
        let plain = db
            .conn()
            .query_one_raw(with_values(
                &read.replace("current_setting('app.tenant_id', true)", "'5'"),
                values,
            ))
            .await
            .expect("prepared")
            .expect("a row");
        for i in 0..3 {
            assert_eq!(
                format!("{:?}", ours.try_get_by_index::<Option<String>>(i).ok()),
                format!("{:?}", plain.try_get_by_index::<Option<String>>(i).ok()),
                "column {i} of id {id}"
            );
        }
        assert_eq!(ours.try_get_by_index::<i64>(0).expect("id"), id);
        assert_eq!(ours.try_get_by_index::<String>(3).expect("setting"), "5");
    }
    // One statement, prepared once on the pool's one connection.
    assert_eq!(prepared(&db).await, 1);
    // A write with RETURNING and one without.
    let n = scoped
        .execute_raw(with_values(
            "UPDATE t SET name = $1 WHERE id = $2",
            vec!["uno".into(), 1i64.into()],
        ))
        .await
        .expect("update");
    assert_eq!(n.rows_affected(), 1);
    let row = scoped
        .query_one_raw(with_values(
            "INSERT INTO t VALUES ($1, $2, $3) RETURNING id, name",
            vec![4i64.into(), "it's \\ four".into(), true.into()],
        ))
        .await
        .expect("insert")
        .expect("returning");
    assert_eq!(
        row.try_get_by_index::<String>(1).expect("name"),
        "it's \\ four"
    );
}

/// What the server will not prepare (not a preparable statement, several statements, a
/// parameter of a type it cannot tell) runs inlined, as under `pgbouncer=true`.
#[tokio::test]
async fn what_cannot_be_prepared_runs_inlined() {
    let db = setup("connection_limit=1").await;
    let scoped = db.with_context(tenant()).expect("postgres");
    let show = scoped
        .query_one_raw(with_values("SHOW work_mem", vec![]))
        .await
        .expect("SHOW")
        .expect("row");
    assert!(!show.try_get_by_index::<String>(0).expect("text").is_empty());
    // An untyped NULL in a target list: PREPARE cannot tell its type.
    let null = scoped
        .query_one_raw(with_values(
            "SELECT $1 IS NULL, current_setting('app.tenant_id', true)",
            vec![Value::String(None)],
        ))
        .await
        .expect("select")
        .expect("row");
    assert!(null.try_get_by_index::<bool>(0).expect("is null"));
    assert_eq!(null.try_get_by_index::<String>(1).expect("setting"), "5");
    // The same again: remembered, no second PREPARE attempt shows as an error either.
    scoped
        .query_one_raw(with_values("SHOW work_mem", vec![]))
        .await
        .expect("SHOW again");
}

/// A migration that changes a prepared statement's result type, a session reset that
/// deallocates every SQL-prepared statement, and evictions beyond `statement_cache_size`:
/// the next statement prepares afresh and answers.
#[tokio::test]
async fn statements_the_server_dropped_or_changed_are_prepared_again() {
    let db = setup("connection_limit=1&statement_cache_size=2").await;
    let scoped = db.with_context(tenant()).expect("postgres");
    let star = || with_values("SELECT * FROM t WHERE id = $1", vec![1i64.into()]);
    let columns = |row: &sea_orm::QueryResult| row.column_names().len();
    let before = scoped
        .query_one_raw(star())
        .await
        .expect("read")
        .expect("row");
    assert_eq!(columns(&before), 3);
    db.conn()
        .execute_unprepared("ALTER TABLE t ADD COLUMN extra int DEFAULT 7")
        .await
        .expect("migration");
    let after = scoped
        .query_one_raw(star())
        .await
        .expect("read after the migration")
        .expect("row");
    assert_eq!(columns(&after), 4);
    // A session change through the pool: the reset at check-in deallocates them all.
    db.conn()
        .execute_unprepared("SET work_mem = '8MB'")
        .await
        .expect("set");
    assert_eq!(prepared(&db).await, 0, "the reset deallocated them");
    scoped
        .query_one_raw(star())
        .await
        .expect("read after the reset")
        .expect("row");
    // Three statements through a cache of two: the oldest is deallocated, none fails.
    for round in 0..2 {
        for n in 1..=3i64 {
            let sql = format!("SELECT id + {n} FROM t WHERE id = $1");
            let row = scoped
                .query_one_raw(with_values(&sql, vec![1i64.into()]))
                .await
                .unwrap_or_else(|e| panic!("round {round}, statement {n}: {e}"))
                .expect("row");
            assert_eq!(row.try_get_by_index::<i64>(0).expect("sum"), 1 + n);
        }
    }
    // The cache's two, and the one evicted last, deallocated in front of the next PREPARE.
    let left = prepared(&db).await;
    assert!(left <= 3, "{left}");
    let err: Result<_, DbErr> = scoped
        .query_one_raw(with_values(
            "SELECT * FROM missing WHERE id = $1",
            vec![1i64.into()],
        ))
        .await;
    assert!(
        err.as_ref()
            .is_err_and(|e| e.to_string().contains("missing")),
        "{err:?}"
    );
    // Once the table exists the same statement answers (it was not taken for unpreparable).
    db.conn()
        .execute_unprepared("CREATE TABLE missing (id int8); INSERT INTO missing VALUES (1)")
        .await
        .expect("create");
    for _ in 0..2 {
        let found = scoped
            .query_one_raw(with_values(
                "SELECT * FROM missing WHERE id = $1",
                vec![1i64.into()],
            ))
            .await
            .expect("the table exists now");
        assert!(found.is_some());
    }
    let named = db
        .conn()
        .query_one_raw(with_values(
            "SELECT count(*) FROM pg_prepared_statements WHERE from_sql AND statement LIKE '%FROM missing%'",
            vec![],
        ))
        .await
        .expect("count")
        .expect("row");
    assert_eq!(named.try_get_by_index::<i64>(0).expect("count"), 1);
}
