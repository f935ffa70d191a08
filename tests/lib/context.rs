//! Session context (`db.with_context`): every statement sees its `app.*` settings, nothing of
//! them survives its transaction, `require_context` refuses work without one.
//!
//! Row-level security does not bind superusers, and the test databases are a superuser's: the
//! tests that rely on a policy create a role of their own (`rls_*`, `NOSUPERUSER NOBYPASSRLS`),
//! give it the tables (`ENABLE` + `FORCE ROW LEVEL SECURITY`) and connect the service as it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dbservice::batch::{BatchMethod, BatchOptions};
use dbservice::context::{ContextError, SessionContext};
use dbservice::replica::ReplicaConfig;
use dbservice::{DbService, TxOptions, config::DbConfig};
use futures::TryStreamExt;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryResult,
    Statement, StreamTrait,
};

use crate::support::{
    cluster_with_replica, connected_service as service, eventually, fresh_pg_database,
    private_cluster, sqlite_url, unique_name, with_params,
};

const SETTING: &str = "SELECT current_setting('app.tenant_id', true) AS v";

/// What every tenant query reads: the setting, the rows the policy shows, and how many of
/// them belong to someone else (`$other` is written in).
const VIEW: &str = "SELECT current_setting('app.tenant_id', true) AS v, count(*) AS n, \
                    count(*) FILTER (WHERE tenant_id IS DISTINCT FROM \
                    nullif(current_setting('app.tenant_id', true), '')::bigint) AS foreign_rows \
                    FROM docs";

mod docs {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "docs")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub tenant_id: i64,
        pub body: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn stmt(sql: &str) -> Statement {
    Statement::from_string(DbBackend::Postgres, sql)
}

fn tenant_ctx(id: i64) -> SessionContext {
    SessionContext::tenant("app.tenant_id", id).expect("context")
}

async fn setting(db: &impl ConnectionTrait) -> Option<String> {
    let row = db
        .query_one_raw(stmt(SETTING))
        .await
        .expect("query")
        .expect("row");
    row.try_get_by_index::<Option<String>>(0).expect("column")
}

async fn scalar(db: &impl ConnectionTrait, sql: &str) -> i64 {
    db.query_one_raw(stmt(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("row")
        .try_get_by_index::<i64>(0)
        .expect("bigint")
}

/// The setting, the visible rows, and the visible rows of another tenant.
fn view_of(row: &QueryResult) -> (Option<String>, i64, i64) {
    (
        row.try_get_by_index::<Option<String>>(0).expect("v"),
        row.try_get_by_index::<i64>(1).expect("n"),
        row.try_get_by_index::<i64>(2).expect("foreign"),
    )
}

async fn view(db: &impl ConnectionTrait) -> (Option<String>, i64, i64) {
    let row = db
        .query_one_raw(stmt(VIEW))
        .await
        .expect("view")
        .expect("row");
    view_of(&row)
}

fn empty(v: Option<&str>) -> bool {
    v.unwrap_or("").is_empty()
}

/// `url` with its user replaced by `role` (the clusters trust loopback connections).
fn as_role(url: &str, role: &str) -> String {
    assert!(url.contains("://postgres:"), "{url}");
    url.replacen("://postgres:", &format!("://{role}:"), 1)
}

/// Creates a role, the RLS table `docs` (tenant 1: 3 rows, tenant 2: 2 rows), `canary` (one
/// row, n = 1) and `seen`, all the role's; returns the role's name.
async fn rls_schema(admin: &DbService) -> String {
    let role = unique_name("rls");
    admin
        .conn()
        .execute_unprepared(&format!(
            "CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS; \
             CREATE TABLE docs (id serial PRIMARY KEY, tenant_id bigint NOT NULL, body text NOT NULL); \
             INSERT INTO docs (tenant_id, body) VALUES (1, 'a1'), (1, 'a2'), (1, 'a3'), (2, 'b1'), (2, 'b2'); \
             CREATE TABLE canary (n int NOT NULL); INSERT INTO canary VALUES (1); \
             CREATE TABLE seen (v text); \
             ALTER TABLE docs OWNER TO {role}; ALTER TABLE canary OWNER TO {role}; \
             ALTER TABLE seen OWNER TO {role}; \
             ALTER TABLE docs ENABLE ROW LEVEL SECURITY; ALTER TABLE docs FORCE ROW LEVEL SECURITY; \
             CREATE POLICY by_tenant ON docs USING \
               (tenant_id = nullif(current_setting('app.tenant_id', true), '')::bigint)"
        ))
        .await
        .expect("RLS schema");
    role
}

/// A fresh database with the RLS schema: the superuser's service and the role's URL.
async fn rls_database(params: &str) -> (DbService, String) {
    let url = fresh_pg_database().await;
    let admin = service(&url).await;
    let role = rls_schema(&admin).await;
    let role_url = as_role(&url, &role);
    let role_url = if params.is_empty() {
        role_url
    } else {
        with_params(&role_url, params)
    };
    (admin, role_url)
}

async fn docs_of(admin: &DbService, tenant: i64) -> i64 {
    scalar(
        admin.conn(),
        &format!("SELECT count(*) FROM docs WHERE tenant_id = {tenant}"),
    )
    .await
}

async fn canary(db: &impl ConnectionTrait) -> i64 {
    scalar(db, "SELECT sum(n)::bigint FROM canary").await
}

#[tokio::test]
async fn a_statement_sees_its_context_and_the_next_one_does_not() {
    let url = with_params(&fresh_pg_database().await, "connection_limit=1");
    let db = service(&url).await;
    let tenant = db
        .with_context(SessionContext::tenant("app.tenant_id", 42).expect("context"))
        .expect("postgres");
    assert_eq!(setting(&tenant).await.as_deref(), Some("42"));
    let after = setting(db.conn()).await;
    assert!(after.as_deref().unwrap_or("").is_empty(), "{after:?}");
    let in_tx = tenant
        .transaction(async |tx| Ok::<_, sea_orm::DbErr>(setting(tx).await))
        .await
        .expect("tx");
    assert_eq!(in_tx.as_deref(), Some("42"));
    let after = setting(db.conn()).await;
    assert!(after.as_deref().unwrap_or("").is_empty(), "{after:?}");
}

// 1. Every kind of statement carries the context, prepared or not.

async fn every_statement_kind_sees_the_context(params: &str) {
    let base = fresh_pg_database().await;
    let url = if params.is_empty() {
        base
    } else {
        with_params(&base, params)
    };
    let db = service(&url).await;
    db.conn()
        .execute_unprepared(
            "CREATE TABLE seen (v text); \
             CREATE TABLE docs (id serial PRIMARY KEY, tenant_id bigint NOT NULL, body text NOT NULL); \
             INSERT INTO docs (tenant_id, body) VALUES (7, 'mine'), (8, 'theirs')",
        )
        .await
        .expect("schema");
    let tenant = db
        .with_context(SessionContext::new([("app.tenant_id", "7")]).expect("context"))
        .expect("postgres");

    // query_one / query_all
    assert_eq!(setting(&tenant).await.as_deref(), Some("7"), "{params}");
    let all = tenant
        .query_all_raw(stmt(
            "SELECT current_setting('app.tenant_id', true) FROM generate_series(1, 3)",
        ))
        .await
        .expect("query_all");
    let values: Vec<String> = all
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("text"))
        .collect();
    assert_eq!(values, ["7", "7", "7"], "{params}");

    // execute_unprepared, and execute / query with bound values ($1)
    let done = tenant
        .execute_unprepared("INSERT INTO seen SELECT current_setting('app.tenant_id', true)")
        .await
        .expect("execute_unprepared");
    assert_eq!(done.rows_affected(), 1);
    let done = tenant
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO seen SELECT current_setting('app.tenant_id', true) || $1",
            ["/bound".into()],
        ))
        .await
        .expect("execute with a bound value");
    assert_eq!(done.rows_affected(), 1);
    let same = tenant
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT current_setting('app.tenant_id', true) = $1::text, $2::int4 + 1",
            ["7".into(), 41.into()],
        ))
        .await
        .expect("query with bound values")
        .expect("row");
    assert!(same.try_get_by_index::<bool>(0).expect("bool"), "{params}");
    assert_eq!(same.try_get_by_index::<i32>(1).expect("int"), 42);

    // A SeaORM entity query with a bound value ($1) and the setting in its filter.
    let mine = docs::Entity::find()
        .filter(Expr::cust(
            "tenant_id = current_setting('app.tenant_id', true)::bigint",
        ))
        .filter(docs::Column::Id.gt(0))
        .all(&tenant)
        .await
        .expect("entity query");
    assert_eq!(
        mine.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(),
        ["mine"],
        "{params}"
    );

    let seen: Vec<String> = db
        .conn()
        .query_all_raw(stmt("SELECT v FROM seen ORDER BY v"))
        .await
        .expect("seen")
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("v"))
        .collect();
    assert_eq!(seen, ["7", "7/bound"], "{params}");
    // And none of it stayed with the session.
    assert!(empty(setting(db.conn()).await.as_deref()));
}

#[tokio::test]
async fn every_statement_kind_sees_the_context_prepared() {
    every_statement_kind_sees_the_context("").await;
}

#[tokio::test]
async fn every_statement_kind_sees_the_context_without_statement_cache() {
    every_statement_kind_sees_the_context("statement_cache_size=0").await;
}

// 2. Nothing leaks to the next user of the (only) connection.

async fn backend_pid(db: &impl ConnectionTrait) -> i64 {
    scalar(db, "SELECT pg_backend_pid()::bigint").await
}

/// The next statement without a context, on the pool's only connection, sees no setting and
/// no row; the connection is the same one (`pid`).
async fn assert_clean(db: &DbService, pid: i64, after: &str) {
    let (v, n, _) = view(db.conn()).await;
    assert!(
        empty(v.as_deref()) && n == 0,
        "after {after}, a statement without a context sees the setting {v:?} and {n} rows"
    );
    assert_eq!(backend_pid(db.conn()).await, pid, "after {after}: replaced");
    let stats = db.stats();
    assert_eq!(
        (stats.open, stats.opened_total),
        (1, 1),
        "after {after}: {stats:?}"
    );
}

async fn nothing_of_a_context_leaks(params: &str) {
    let (_admin, url) = rls_database(params).await;
    let db = service(&url).await;
    let pid = backend_pid(db.conn()).await;
    let tenant = db.with_context(tenant_ctx(1)).expect("postgres");

    assert_eq!(view(&tenant).await, (Some("1".into()), 3, 0));
    assert_clean(&db, pid, "a statement").await;

    let seen = tenant
        .transaction(async |tx| Ok::<_, DbErr>(view(tx).await))
        .await
        .expect("tx");
    assert_eq!(seen, (Some("1".into()), 3, 0));
    assert_clean(&db, pid, "a transaction").await;

    let tx = tenant.begin(TxOptions::default()).await.expect("begin");
    assert_eq!(view(&tx).await, (Some("1".into()), 3, 0));
    tx.commit().await.expect("commit");
    assert_clean(&db, pid, "begin + commit").await;

    let tx = tenant.begin(TxOptions::default()).await.expect("begin");
    assert_eq!(view(&tx).await, (Some("1".into()), 3, 0));
    drop(tx);
    assert_clean(&db, pid, "begin, dropped").await;
}

/// Work abandoned or failed under a context (a stream dropped after one row, a statement
/// that fails, one cut off by `query_timeout`) leaves nothing of it behind on the only
/// connection (it may have been replaced: only the session matters here).
#[tokio::test]
async fn abandoned_or_failed_work_leaves_nothing_of_the_context_behind() {
    let (_admin, url) = rls_database("connection_limit=1&query_timeout=500ms").await;
    let db = service(&url).await;
    let tenant = db.with_context(tenant_ctx(1)).expect("postgres");
    let check = async |after: &str| {
        let (v, n, _) = view(db.conn()).await;
        assert!(
            empty(v.as_deref()) && n == 0,
            "after {after}, a statement without a context sees the setting {v:?} and {n} rows"
        );
        assert!(db.stats().open <= 1, "{:?}", db.stats());
    };

    let mut stream = Box::pin(
        tenant
            .stream_raw(stmt(
                "SELECT tenant_id FROM docs, generate_series(1, 100000) g",
            ))
            .await
            .expect("stream"),
    );
    let first = stream.try_next().await.expect("first row").expect("a row");
    assert_eq!(first.try_get_by_index::<i64>(0).expect("tenant_id"), 1);
    drop(stream);
    check("a stream dropped after one row").await;

    let err = tenant
        .execute_unprepared("UPDATE docs SET body = body || (1 / 0)::text")
        .await
        .expect_err("division by zero");
    assert!(err.to_string().contains("division by zero"), "{err}");
    check("a failed statement").await;

    let started = std::time::Instant::now();
    tenant
        .query_one_raw(stmt("SELECT pg_sleep(5), current_setting('app.tenant_id')"))
        .await
        .expect_err("query_timeout");
    assert!(started.elapsed() < Duration::from_secs(4), "not cut off");
    check("a statement cut off by query_timeout").await;

    let err = tenant
        .transaction(async |tx| {
            view(tx).await;
            tx.execute_unprepared("SELECT 1 / 0").await.map(|_| ())
        })
        .await
        .expect_err("a failed transaction");
    assert!(err.to_string().contains("division by zero"), "{err}");
    check("a failed transaction").await;
}

/// Many tenants at once on a small pool: each statement and transaction sees its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tenants_on_a_small_pool_each_see_their_own() {
    let (_admin, url) = rls_database("connection_limit=2").await;
    let db = service(&url).await;
    let work = (0..200_i64).map(|i| {
        let db = db.clone();
        async move {
            let t = 1 + i % 2;
            let expected = (Some(t.to_string()), if t == 1 { 3 } else { 2 }, 0);
            let tenant = db.with_context(tenant_ctx(t)).expect("postgres");
            if i % 3 == 0 {
                let seen = tenant
                    .transaction(async |tx| Ok::<_, DbErr>(view(tx).await))
                    .await
                    .expect("tx");
                assert_eq!(seen, expected, "transaction {i}");
            } else {
                assert_eq!(view(&tenant).await, expected, "statement {i}");
            }
            let (v, n, _) = view(db.conn()).await;
            assert!(empty(v.as_deref()) && n == 0, "no context {i}: {v:?} {n}");
        }
    });
    futures::future::join_all(work).await;
}

/// A session-level setting made through the context executor (`sql`, outside a transaction
/// and inside one) must not outlive the context: the next statement without one, on the
/// pool's only connection, sees no setting and no row.
async fn a_session_level_setting_does_not_outlive_the_context(params: &str, sql: &str) {
    let (_admin, url) = rls_database(params).await;
    let db = service(&url).await;
    let pid = backend_pid(db.conn()).await;
    let tenant = db.with_context(tenant_ctx(1)).expect("postgres");
    let resets = db.stats().session_resets;
    // Behind PgBouncer nothing could reset it: refused before it is sent.
    let behind_pgbouncer = params.contains("pgbouncer=true");
    let refused = |e: &DbErr| e.to_string().contains("pgbouncer=true");
    let direct = tenant.execute_unprepared(sql).await;
    match &direct {
        Err(e) if behind_pgbouncer && refused(e) => {}
        Ok(_) if !behind_pgbouncer => {}
        other => panic!("{sql} through the context: {other:?}"),
    }
    assert_clean(&db, pid, &format!("`{sql}` through the context")).await;
    let in_tx = tenant
        .transaction(async |tx| tx.execute_unprepared(sql).await.map(|_| ()))
        .await;
    match &in_tx {
        Err(dbservice::TxError::Aborted(e)) if behind_pgbouncer && refused(e) => {}
        Ok(()) if !behind_pgbouncer => {}
        other => panic!("{sql} in the context's transaction: {other:?}"),
    }
    assert_clean(&db, pid, &format!("`{sql}` in the context's transaction")).await;
    if !behind_pgbouncer {
        assert!(
            db.stats().session_resets >= resets + 2,
            "{resets} -> {:?}",
            db.stats()
        );
    }
}

#[tokio::test]
async fn a_plain_set_through_the_context_is_undone_by_the_session_reset() {
    a_session_level_setting_does_not_outlive_the_context(
        "connection_limit=1",
        "SET app.tenant_id = '1'",
    )
    .await;
}

/// `set_config(.., false)` is a session-level SET in a SELECT.
#[tokio::test]
async fn set_config_through_the_context_is_undone_by_the_session_reset() {
    a_session_level_setting_does_not_outlive_the_context(
        "connection_limit=1",
        "SELECT set_config('app.tenant_id', '1', false)",
    )
    .await;
}

/// `pgbouncer=true` (against PostgreSQL itself: the same connection, the inline writer): the
/// pool sends no session reset in this mode, the session being PgBouncer's, so a change of a
/// setting beyond the transaction is refused with a context.
#[tokio::test]
async fn a_plain_set_through_the_context_is_refused_with_the_pgbouncer_writer() {
    for sql in [
        "SET app.tenant_id = '1'",
        "SELECT set_config('app.tenant_id', '1', false)",
        "RESET ALL",
    ] {
        a_session_level_setting_does_not_outlive_the_context(
            "connection_limit=1&pgbouncer=true",
            sql,
        )
        .await;
    }
}

#[tokio::test]
async fn nothing_of_a_context_leaks_to_the_next_statement_on_a_pool_of_one() {
    nothing_of_a_context_leaks("connection_limit=1").await;
}

#[tokio::test]
async fn nothing_of_a_context_leaks_on_a_pool_of_one_without_statement_cache() {
    nothing_of_a_context_leaks("connection_limit=1&statement_cache_size=0").await;
}

/// `pgbouncer=true` against PostgreSQL itself: the same connection, the inline writer.
#[tokio::test]
async fn nothing_of_a_context_leaks_on_a_pool_of_one_with_the_pgbouncer_writer() {
    nothing_of_a_context_leaks("connection_limit=1&pgbouncer=true").await;
}

// Transaction options, retries and savepoints keep the context.

#[tokio::test]
async fn options_retries_and_savepoints_keep_the_context() {
    let (_admin, url) = rls_database("").await;
    let db = service(&url).await;
    let one = db.with_context(tenant_ctx(1)).expect("postgres");
    let opts = TxOptions::default()
        .isolation(dbservice::Isolation::Serializable)
        .read_only(true);
    let (seen, iso, ro) = one
        .transaction_with(opts, async |tx| {
            let iso = tx
                .query_one_raw(stmt("SHOW transaction_isolation"))
                .await?
                .and_then(|r| r.try_get_by_index::<String>(0).ok());
            let ro = tx
                .query_one_raw(stmt("SHOW transaction_read_only"))
                .await?
                .and_then(|r| r.try_get_by_index::<String>(0).ok());
            Ok::<_, DbErr>((view(tx).await, iso, ro))
        })
        .await
        .expect("serializable, read-only");
    assert_eq!(seen, (Some("1".into()), 3, 0));
    assert_eq!(
        (iso.as_deref(), ro.as_deref()),
        (Some("serializable"), Some("on"))
    );

    // A serialization failure on the first attempt: the retry's BEGIN carries it again.
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let seen = one
        .transaction_with(TxOptions::default().retries(2), async |tx| {
            let before = view(tx).await;
            if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                tx.execute_unprepared(
                    "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$",
                )
                .await?;
            }
            Ok::<_, DbErr>((before, view(tx).await))
        })
        .await
        .expect("retried");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(seen, ((Some("1".into()), 3, 0), (Some("1".into()), 3, 0)));

    // A savepoint rolled back keeps the transaction's context.
    let seen = one
        .transaction(async |tx| {
            let inner = dbservice::savepoint(tx, async |sp| {
                sp.execute_unprepared("INSERT INTO docs (tenant_id, body) VALUES (2, 'x')")
                    .await
                    .map(|_| ())
            })
            .await;
            assert!(inner.is_err(), "the policy refuses it: {inner:?}");
            Ok::<_, DbErr>(view(tx).await)
        })
        .await
        .expect("savepoint");
    assert_eq!(seen, (Some("1".into()), 3, 0));
}

// 3. Row-level security sees the tenant's rows only, on every path.

#[tokio::test]
async fn a_tenant_sees_and_writes_only_its_own_rows() {
    let (admin, url) = rls_database("").await;
    let db = service(&url).await;
    let one = db.with_context(tenant_ctx(1)).expect("postgres");
    let two = db.with_context(tenant_ctx(2)).expect("postgres");

    assert_eq!(view(&one).await, (Some("1".into()), 3, 0));
    assert_eq!(view(&two).await, (Some("2".into()), 2, 0));
    let mine = docs::Entity::find().all(&one).await.expect("entity");
    assert_eq!(
        mine.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(),
        ["a1", "a2", "a3"]
    );
    let in_tx = one
        .transaction(async |tx| {
            let all = docs::Entity::find().all(tx).await?;
            Ok::<_, DbErr>((all.len(), view(tx).await))
        })
        .await
        .expect("tx");
    assert_eq!(in_tx, (3, (Some("1".into()), 3, 0)));
    let tx = two.begin(TxOptions::default()).await.expect("begin");
    assert_eq!(view(&tx).await, (Some("2".into()), 2, 0));
    tx.commit().await.expect("commit");

    // Streams: raw, and SeaORM's entity stream.
    let rows: Vec<QueryResult> = one
        .stream_raw(stmt("SELECT tenant_id FROM docs ORDER BY id"))
        .await
        .expect("stream")
        .try_collect()
        .await
        .expect("rows");
    let tenants: Vec<i64> = rows
        .iter()
        .map(|r| r.try_get_by_index::<i64>(0).expect("tenant_id"))
        .collect();
    assert_eq!(tenants, [1, 1, 1]);
    let streamed: Vec<docs::Model> = docs::Entity::find()
        .stream(&two)
        .await
        .expect("entity stream")
        .try_collect()
        .await
        .expect("models");
    assert_eq!(streamed.len(), 2);
    assert!(streamed.iter().all(|d| d.tenant_id == 2), "{streamed:?}");

    // read() without replicas: the primary, with the context.
    assert_eq!(view(&one.read()).await, (Some("1".into()), 3, 0));
    assert_eq!(view(&two.read_any()).await, (Some("2".into()), 2, 0));

    // Without a context: nothing.
    assert_eq!(view(db.conn()).await.1, 0);

    // Writing another tenant's row: the policy's check refuses it.
    let err = one
        .execute_unprepared("INSERT INTO docs (tenant_id, body) VALUES (2, 'smuggled')")
        .await
        .expect_err("another tenant's row");
    assert!(err.to_string().contains("row-level security"), "{err}");
    let err = one
        .transaction(async |tx| {
            docs::Entity::insert(docs::ActiveModel {
                tenant_id: Set(2),
                body: Set("smuggled".into()),
                ..Default::default()
            })
            .exec_without_returning(tx)
            .await
        })
        .await
        .expect_err("another tenant's row in a transaction");
    assert!(err.to_string().contains("row-level security"), "{err}");
    let err = one
        .execute_unprepared("UPDATE docs SET tenant_id = 2")
        .await
        .expect_err("moving rows to another tenant");
    assert!(err.to_string().contains("row-level security"), "{err}");
    assert_eq!((docs_of(&admin, 1).await, docs_of(&admin, 2).await), (3, 2));
    // Its own row: written.
    one.execute_unprepared("INSERT INTO docs (tenant_id, body) VALUES (1, 'a4')")
        .await
        .expect("own row");
    assert_eq!((docs_of(&admin, 1).await, docs_of(&admin, 2).await), (4, 2));
}

// 4. require_context refuses, on the client, everything without a context.

fn docs_row(tenant: i64, body: &str) -> docs::ActiveModel {
    docs::ActiveModel {
        tenant_id: Set(tenant),
        body: Set(body.to_owned()),
        ..Default::default()
    }
}

fn assert_refused(err: &impl std::fmt::Display, names: &str) {
    let text = err.to_string();
    assert!(text.contains("require_context is on and"), "{text}");
    assert!(text.contains(names), "`{names}` not in: {text}");
}

#[tokio::test]
async fn require_context_refuses_work_without_one_and_counts_it() {
    let url = fresh_pg_database().await;
    let admin = service(&url).await;
    admin
        .conn()
        .execute_unprepared(
            "CREATE TABLE docs (id serial PRIMARY KEY, tenant_id bigint NOT NULL, body text NOT NULL); \
             INSERT INTO docs (tenant_id, body) VALUES (1, 'a1'); \
             CREATE TABLE accounts (id int PRIMARY KEY)",
        )
        .await
        .expect("schema");
    let db = service(&with_params(&url, "require_context=true")).await;
    let before = db.stats().context_refused;

    let err = db
        .conn()
        .query_all_raw(stmt("SELECT * FROM accounts"))
        .await
        .expect_err("statement");
    assert_refused(&err, "SELECT accounts");
    let err = db
        .conn()
        .execute_unprepared("INSERT INTO docs (tenant_id, body) VALUES (1, 'refused')")
        .await
        .expect_err("insert");
    assert_refused(&err, "INSERT docs");
    let ran = AtomicBool::new(false);
    let err = db
        .transaction(async |tx| {
            ran.store(true, Ordering::SeqCst);
            tx.execute_unprepared("INSERT INTO docs (tenant_id, body) VALUES (1, 'refused')")
                .await
                .map(|_| ())
        })
        .await
        .expect_err("transaction");
    assert_refused(&err, "tests/lib/context.rs");
    assert!(!ran.load(Ordering::SeqCst), "the body ran");
    let err = db.begin(TxOptions::default()).await.expect_err("begin");
    assert_refused(&err, "tests/lib/context.rs");
    let err = db
        .read()
        .query_one_raw(stmt("SELECT count(*) FROM docs"))
        .await
        .expect_err("read");
    assert_refused(&err, "SELECT docs");
    let err = db
        .conn()
        .stream_raw(stmt("SELECT * FROM docs"))
        .await
        .expect_err("stream");
    assert_refused(&err, "SELECT docs");
    let err = db
        .insert_batch(vec![docs_row(1, "refused")], BatchOptions::default())
        .await
        .expect_err("batch");
    assert_refused(&err, "batch");
    let refused = db.stats().context_refused - before;
    assert_eq!(refused, 7, "{:?}", db.stats());
    assert_eq!(scalar(admin.conn(), "SELECT count(*) FROM docs").await, 1);

    // The same work with a context runs.
    let tenant = db.with_context(tenant_ctx(1)).expect("postgres");
    assert_eq!(
        scalar(&tenant, "SELECT count(*) FROM accounts").await,
        0,
        "statement"
    );
    tenant
        .execute_unprepared("INSERT INTO docs (tenant_id, body) VALUES (1, 'ok')")
        .await
        .expect("insert");
    tenant
        .transaction(async |tx| {
            tx.execute_unprepared("INSERT INTO docs (tenant_id, body) VALUES (1, 'tx')")
                .await
                .map(|_| ())
        })
        .await
        .expect("transaction");
    let tx = tenant.begin(TxOptions::default()).await.expect("begin");
    tx.execute_unprepared("INSERT INTO docs (tenant_id, body) VALUES (1, 'begun')")
        .await
        .expect("in begin");
    tx.commit().await.expect("commit");
    assert_eq!(scalar(&tenant.read(), "SELECT count(*) FROM docs").await, 4);
    let rows: Vec<QueryResult> = tenant
        .stream_raw(stmt("SELECT * FROM docs"))
        .await
        .expect("stream")
        .try_collect()
        .await
        .expect("rows");
    assert_eq!(rows.len(), 4);
    let done = tenant
        .insert_batch(vec![docs_row(1, "batch")], BatchOptions::default())
        .await
        .expect("batch");
    assert_eq!(done.rows, 1);
    assert_eq!(scalar(admin.conn(), "SELECT count(*) FROM docs").await, 5);
    assert_eq!(
        db.stats().context_refused - before,
        7,
        "nothing more refused"
    );

    // The refusals in the Prometheus text.
    let text = dbservice::metrics::Metrics::new(&db, None).render();
    let line = text
        .lines()
        .find(|l| l.starts_with("dbservice_client_context_refused_total"))
        .unwrap_or_else(|| panic!("no refused counter in:\n{text}"));
    let value: f64 = line
        .split_whitespace()
        .last()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(value as u64, db.stats().context_refused, "{line}");
    assert!(value >= 7.0, "{line}");
}

// 5. Names and values are checked; values travel verbatim.

#[test]
fn bad_names_and_values_are_refused_naming_the_setting() {
    for bad in ["search_path", "app.x; DROP TABLE t", "app.X"] {
        let err = SessionContext::new([(bad, "1")]).expect_err(bad);
        assert!(
            matches!(&err, ContextError::Name { name } if name == bad),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().contains(bad), "{err}");
    }
    let err = SessionContext::new([("app.tenant_id", "1\0; DROP TABLE t")]).expect_err("NUL");
    assert_eq!(
        err,
        ContextError::Nul {
            name: "app.tenant_id".into()
        }
    );
    assert!(err.to_string().contains("app.tenant_id"), "{err}");
    let big = "x".repeat(10 * 1024);
    let err = SessionContext::new([("app.claims", big.as_str())]).expect_err("10 kB");
    assert!(
        matches!(&err, ContextError::TooLong { name, bytes: 10240 } if name == "app.claims"),
        "{err:?}"
    );
    assert!(err.to_string().contains("app.claims"), "{err}");
    // The longest value allowed is accepted.
    let max = "y".repeat(dbservice::context::MAX_VALUE_BYTES);
    assert!(SessionContext::new([("app.claims", max.as_str())]).is_ok());
}

const HOSTILE: [&str; 10] = [
    "it's",
    r"back\slash \' \\ end\",
    "'; DROP TABLE canary; --",
    "x'; DROP TABLE canary; SELECT '",
    "$$; DROP TABLE canary; $$",
    "$tag$ DROP TABLE canary $tag$",
    "E'\\x41' \"double\" `tick`",
    "línea\nnueva\ttab ✓",
    "",
    " --comment /* open",
];

async fn hostile_values_travel_verbatim(url: &str) {
    let db = service(url).await;
    db.conn()
        .execute_unprepared("CREATE TABLE canary (n int NOT NULL); INSERT INTO canary VALUES (1)")
        .await
        .expect("canary");
    for value in HOSTILE {
        let ctx = SessionContext::new([("app.tenant_id", value), ("app.other", "2")])
            .expect("a valid value");
        let tenant = db.with_context(ctx).expect("postgres");
        assert_eq!(setting(&tenant).await.as_deref(), Some(value), "statement");
        let in_tx = tenant
            .transaction(async |tx| Ok::<_, DbErr>(setting(tx).await))
            .await
            .expect("tx");
        assert_eq!(in_tx.as_deref(), Some(value), "transaction");
        let rows: Vec<QueryResult> = tenant
            .stream_raw(stmt(SETTING))
            .await
            .expect("stream")
            .try_collect()
            .await
            .expect("rows");
        assert_eq!(
            rows[0]
                .try_get_by_index::<Option<String>>(0)
                .expect("v")
                .as_deref(),
            Some(value),
            "stream"
        );
        assert_eq!(canary(db.conn()).await, 1, "after {value:?}");
    }
}

#[tokio::test]
async fn hostile_values_travel_verbatim_prepared() {
    hostile_values_travel_verbatim(&fresh_pg_database().await).await;
}

#[tokio::test]
async fn hostile_values_travel_verbatim_with_pgbouncer_writer() {
    hostile_values_travel_verbatim(&with_params(&fresh_pg_database().await, "pgbouncer=true"))
        .await;
}

// 6. Transaction control through the context executor is refused before anything runs.

#[tokio::test]
async fn transaction_control_through_the_context_is_refused() {
    let db = service(&fresh_pg_database().await).await;
    db.conn()
        .execute_unprepared("CREATE TABLE canary (n int NOT NULL); INSERT INTO canary VALUES (1)")
        .await
        .expect("canary");
    let tenant = db.with_context(tenant_ctx(1)).expect("postgres");
    for (sql, word) in [
        (
            "UPDATE canary SET n = n + 1; COMMIT; UPDATE canary SET n = n + 100",
            "COMMIT",
        ),
        ("BEGIN; UPDATE canary SET n = n + 1", "BEGIN"),
        ("UPDATE canary SET n = n + 1; end", "END"),
        (
            "start transaction; UPDATE canary SET n = n + 1; commit",
            "START",
        ),
        ("UPDATE canary SET n = n + 1; ROLLBACK", "ROLLBACK"),
    ] {
        let err = tenant.execute_unprepared(sql).await.expect_err(sql);
        let text = err.to_string();
        assert!(
            text.contains(&format!("`{word}`")) && text.contains(".transaction("),
            "{sql}: {text}"
        );
        let err = tenant.execute_raw(stmt(sql)).await.expect_err(sql);
        assert!(err.to_string().contains(word), "{sql}: {err}");
        let err = tenant.query_all_raw(stmt(sql)).await.expect_err(sql);
        assert!(err.to_string().contains(word), "{sql}: {err}");
        let err = tenant.stream_raw(stmt(sql)).await.expect_err(sql);
        assert!(err.to_string().contains(word), "{sql}: {err}");
        assert_eq!(canary(db.conn()).await, 1, "{sql} ran");
    }
    // Inside the context's transaction: ending it from the body would leave what follows
    // outside it, without the context; a savepoint's ROLLBACK TO keeps it.
    let outcome = tenant
        .transaction(async |tx| {
            tx.execute_unprepared("COMMIT; UPDATE canary SET n = n + 100")
                .await
                .map(|_| ())
        })
        .await;
    assert!(
        matches!(&outcome, Err(dbservice::TxError::Aborted(e)) if e.to_string().contains("`COMMIT`")),
        "{outcome:?}"
    );
    let kept = tenant
        .transaction(async |tx| {
            tx.execute_unprepared(
                "SAVEPOINT s; UPDATE canary SET n = n + 1; ROLLBACK TO SAVEPOINT s",
            )
            .await?;
            Ok::<_, DbErr>(setting(tx).await)
        })
        .await
        .expect("a savepoint rolled back inside the context's transaction");
    assert_eq!(kept.as_deref(), Some("1"));
    let err = tenant
        .execute_unprepared("SELECT 1; PREPARE TRANSACTION 'x'")
        .await
        .expect_err("two-phase commit ends the transaction");
    assert!(err.to_string().contains("PREPARE TRANSACTION"), "{err}");
    assert_eq!(canary(db.conn()).await, 1, "the body ran");
    // The words inside literals, identifiers and comments are not statements.
    let row = tenant
        .query_one_raw(stmt("SELECT 'COMMIT; BEGIN' AS begin /* ; commit */"))
        .await
        .expect("a literal")
        .expect("row");
    assert_eq!(
        row.try_get_by_index::<String>(0).expect("text"),
        "COMMIT; BEGIN"
    );
}

/// A name that is a reserved word (`user`, `order`) is a name: the server is sent `app."user"`.
#[tokio::test]
async fn reserved_words_are_names() {
    let db = service(&fresh_pg_database().await).await;
    let ctx = SessionContext::new([("app.user", "alice"), ("app.order", "o'1")]).expect("valid");
    let row = db
        .with_context(ctx)
        .expect("postgres")
        .query_one_raw(stmt(
            "SELECT current_setting('app.user', true), current_setting('app.order', true)",
        ))
        .await
        .expect("a context of reserved words")
        .expect("row");
    assert_eq!(
        (
            row.try_get_by_index::<String>(0).expect("user"),
            row.try_get_by_index::<String>(1).expect("order")
        ),
        ("alice".to_owned(), "o'1".to_owned())
    );
}

/// Behind PgBouncer a replica read with a context may not change a setting for the session
/// either (`set_config(.., false)` reads as a `SELECT`).
#[tokio::test]
async fn a_session_level_set_config_in_a_read_is_refused_with_the_pgbouncer_writer() {
    let url = with_params(
        &fresh_pg_database().await,
        "pgbouncer=true&connection_limit=1",
    );
    let db = service(&url).await;
    let tenant = db.with_context(tenant_ctx(3)).expect("postgres");
    let err = tenant
        .read()
        .query_one_raw(stmt("SELECT set_config('app.tenant_id', '7', false)"))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("set_config"), "{err}");
    assert!(empty(setting(db.conn()).await.as_deref()));
    // Reading pg_settings is a read.
    tenant
        .read()
        .query_one_raw(stmt(
            "SELECT setting FROM pg_settings WHERE name = 'work_mem'",
        ))
        .await
        .expect("reading pg_settings");
}

// 7. Through a real PgBouncer (transaction mode, one server connection).

/// A private cluster with the RLS schema behind a PgBouncer (transaction mode, one server
/// connection); the URL of its database `tenants`, served as the role; `None` without a binary.
async fn rls_behind_pgbouncer() -> Option<(
    Arc<crate::support::PgCluster>,
    crate::support::pgbouncer::PgBouncer,
    String,
    String,
)> {
    if crate::support::pgbouncer::binary().is_none() {
        eprintln!("SKIPPED: no pgbouncer binary");
        return None;
    }
    let cluster = private_cluster().await;
    let admin = service(&cluster.url("postgres")).await;
    let role = rls_schema(&admin).await;
    // PgBouncer's own auth file knows `postgres` only: clients log in as it to the database
    // `tenants`, which PgBouncer serves by logging in to the server as the role.
    let extra = format!(
        "\n[databases]\ntenants = host=127.0.0.1 port={} dbname=postgres user={role}\n",
        cluster.port
    );
    let c = cluster.clone();
    let bouncer = tokio::task::spawn_blocking(move || {
        crate::support::pgbouncer::PgBouncer::start(&c, 1, &extra)
    })
    .await
    .expect("start pgbouncer")?;
    let url = bouncer.url("tenants");
    Some((cluster, bouncer, url, role))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_alternate_through_pgbouncer_on_one_server_connection() {
    let Some((_cluster, bouncer, url, role)) = rls_behind_pgbouncer().await else {
        return;
    };
    let url = with_params(
        &url,
        "pgbouncer=true&connection_limit=4&statement_timeout=10s",
    );
    let one = service(&url).await;
    let two = service(&url).await;
    // As the role (the policy binds), not as the superuser.
    let who = one
        .conn()
        .query_one_raw(stmt("SELECT current_user::text"))
        .await
        .expect("current_user")
        .expect("row")
        .try_get_by_index::<String>(0)
        .expect("text");
    assert_eq!(who, role);

    let expected = |t: i64| (Some(t.to_string()), if t == 1 { 3 } else { 2 }, 0);
    let run = |db: DbService, phase: i64| async move {
        let workers = (0..4).map(|w| {
            let db = db.clone();
            async move {
                for i in 0..25_i64 {
                    let t = 1 + (i + w + phase) % 2;
                    let tenant = db.with_context(tenant_ctx(t)).expect("postgres");
                    assert_eq!(view(&tenant).await, expected(t), "statement, tenant {t}");
                    let seen = tenant
                        .transaction(async |tx| {
                            let first = view(tx).await;
                            let second = view(tx).await;
                            Ok::<_, DbErr>((first, second))
                        })
                        .await
                        .expect("tx");
                    assert_eq!(seen, (expected(t), expected(t)), "transaction, tenant {t}");
                    if i % 5 == 0 {
                        let (v, n, _) = view(db.conn()).await;
                        assert!(empty(v.as_deref()) && n == 0, "no context: {v:?}, {n}");
                    }
                }
            }
        });
        futures::future::join_all(workers).await;
    };
    tokio::join!(run(one.clone(), 0), run(two.clone(), 1));
    assert_eq!(one.stats().queries_failed, 0, "{:?}", one.stats());
    assert_eq!(two.stats().queries_failed, 0, "{:?}", two.stats());
    drop(bouncer);
}

/// Behind a real PgBouncer the server connection is shared: a plain `SET app.tenant_id` run
/// through one service's context executor is refused, and reaches no other service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_set_through_the_context_does_not_reach_another_service_through_pgbouncer() {
    let Some((_cluster, bouncer, url, _role)) = rls_behind_pgbouncer().await else {
        return;
    };
    let url = with_params(&url, "pgbouncer=true&connection_limit=1");
    let one = service(&url).await;
    let other = service(&url).await;
    assert_eq!(view(other.conn()).await.1, 0);
    let set = one
        .with_context(tenant_ctx(1))
        .expect("postgres")
        .execute_unprepared("SET app.tenant_id = '1'")
        .await;
    assert!(
        set.as_ref()
            .is_err_and(|e| e.to_string().contains("pgbouncer=true")),
        "a plain SET through a context behind PgBouncer: {set:?}"
    );
    let (v, n, _) = view(other.conn()).await;
    assert!(
        empty(v.as_deref()) && n == 0,
        "another service, without a context, sees the setting {v:?} and {n} of tenant 1's rows"
    );
    drop(bouncer);
}

// 8. Reads on a streaming replica carry the context.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_reads_carry_the_context() {
    let (primary, replica) = cluster_with_replica().await;
    let admin = service(&primary.url("postgres")).await;
    let role = rls_schema(&admin).await;
    let replicas = ReplicaConfig::from_urls(
        &with_params(
            &as_role(&replica.url("postgres"), &role),
            "connection_limit=4&connect_timeout=1s",
        ),
        &[],
    )
    .expect("replica URL");
    let config = DbConfig::from_url(&with_params(
        &as_role(&primary.url("postgres"), &role),
        "connection_limit=4&query_timeout=5s&require_context=true",
    ))
    .and_then(|c| c.with_replicas(replicas.check_interval(Duration::from_millis(200))))
    .expect("config");
    let db = DbService::new(config).expect("service");
    db.connect().await.expect("connects");
    let one = db.with_context(tenant_ctx(1)).expect("postgres");
    let two = db.with_context(tenant_ctx(2)).expect("postgres");
    const ON_REPLICA: &str = "SELECT current_setting('app.tenant_id', true), pg_is_in_recovery(), \
                              count(*), count(*) FILTER (WHERE tenant_id <> \
                              current_setting('app.tenant_id')::bigint) FROM docs";
    let read = async |on: &dbservice::replica::Reader| {
        let row = on
            .query_one_raw(stmt(ON_REPLICA))
            .await?
            .ok_or_else(|| DbErr::Custom("no row".into()))?;
        Ok::<_, DbErr>((
            row.try_get_by_index::<String>(0)?,
            row.try_get_by_index::<bool>(1)?,
            row.try_get_by_index::<i64>(2)?,
            row.try_get_by_index::<i64>(3)?,
        ))
    };
    // The replica has replayed the schema and is in rotation.
    assert!(
        eventually(Duration::from_secs(15), || async {
            db.replica_stats()
                .is_some_and(|s| s.replicas.iter().all(|r| r.in_rotation))
                && read(&one.read_any())
                    .await
                    .is_ok_and(|(_, on_replica, _, _)| on_replica)
        })
        .await,
        "replica never served: {:?}",
        db.replica_stats()
    );
    let before = db.replica_stats().expect("stats").reads.replica;
    for _ in 0..10 {
        assert_eq!(
            read(&one.read()).await.expect("read"),
            ("1".into(), true, 3, 0)
        );
        assert_eq!(
            read(&two.read_any()).await.expect("read_any"),
            ("2".into(), true, 2, 0)
        );
    }
    let after = db.replica_stats().expect("stats").reads;
    assert!(after.replica >= before + 20, "{before} -> {after:?}");
    // Without a context (require_context is on): refused, on the client.
    let refused = db.stats().context_refused;
    let err = db
        .read_any()
        .query_one_raw(stmt(ON_REPLICA))
        .await
        .expect_err("a replica read without a context");
    assert_refused(&err, "SELECT docs");
    let err = db
        .read()
        .query_one_raw(stmt(ON_REPLICA))
        .await
        .expect_err("a read without a context");
    assert_refused(&err, "SELECT docs");
    assert_eq!(db.stats().context_refused, refused + 2);
}

// 9. Batches under a context go by INSERT, each row checked by the policy.

fn tenant_rows(tenant: i64, n: usize, tag: &str) -> Vec<docs::ActiveModel> {
    (0..n)
        .map(|i| docs_row(tenant, &format!("{tag}-{i}")))
        .collect()
}

#[tokio::test]
async fn a_batch_under_a_context_is_inserted_and_checked_by_the_policy() {
    let (admin, url) = rls_database("").await;
    let db = service(&url).await;
    let one = db.with_context(tenant_ctx(1)).expect("postgres");
    let done = one
        .insert_batch(tenant_rows(1, 1500, "bulk"), BatchOptions::default())
        .await
        .expect("batch of 1500");
    assert_eq!(
        (done.rows, done.statements, done.method),
        (1500, 2, BatchMethod::Insert),
        "{done:?}"
    );
    assert_eq!(
        (docs_of(&admin, 1).await, docs_of(&admin, 2).await),
        (1503, 2)
    );
    assert_eq!(view(&one).await, (Some("1".into()), 1503, 0));

    // One row of another tenant: nothing of the batch is written.
    let mut rows = tenant_rows(1, 1200, "mixed");
    rows[1100] = docs_row(2, "smuggled");
    let err = one
        .insert_batch(rows, BatchOptions::default())
        .await
        .expect_err("a row of another tenant");
    assert!(err.to_string().contains("row-level security"), "{err}");
    // COPY, forced, is refused by the server on a table under row-level security.
    let err = one
        .insert_batch(
            tenant_rows(1, 10, "copy"),
            BatchOptions::default().method(BatchMethod::Copy),
        )
        .await
        .expect_err("COPY under RLS");
    assert!(err.to_string().contains("row-level security"), "{err}");
    assert_eq!(
        (docs_of(&admin, 1).await, docs_of(&admin, 2).await),
        (1503, 2)
    );
}

// 10. Names seen; only PostgreSQL.

#[tokio::test]
async fn context_names_are_listed_and_other_backends_refuse_a_context() {
    let db = service(&fresh_pg_database().await).await;
    assert!(db.context_names().is_empty(), "{:?}", db.context_names());
    let ctx = SessionContext::new([("app.tenant_id", "1"), ("app.user_id", "secret-user")])
        .expect("context");
    let tenant = db.with_context(ctx).expect("postgres");
    assert_eq!(setting(&tenant).await.as_deref(), Some("1"));
    assert_eq!(db.context_names(), ["app.tenant_id", "app.user_id"]);
    assert!(!format!("{tenant:?}").contains("secret-user"), "{tenant:?}");
    // `/health/db`: the names served, never a value.
    let health = dbservice::health::details(&db, None).body;
    assert_eq!(
        health["context"],
        serde_json::json!({"required": false, "names": ["app.tenant_id", "app.user_id"], "refused": 0})
    );
    assert!(!health.to_string().contains("secret-user"));

    let dir = tempfile::tempdir().expect("dir");
    let sqlite = service(&sqlite_url(&dir)).await;
    let err = sqlite.with_context(tenant_ctx(1)).expect_err("SQLite");
    assert!(matches!(err, ContextError::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("PostgreSQL"), "{err}");
    assert!(sqlite.context_names().is_empty());
}
