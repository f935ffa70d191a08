//! `dbservice migrate` and `migrate=false`: migrations run once, by one process, under a lock
//! whose wait is bounded; an application that does not migrate refuses a database behind it.

use std::time::Duration;

use sea_orm::sqlx::{self, Connection, Executor};

use crate::binary::Server as Process;
use crate::support::{PASSWORD, eventually, fresh_pg_database};

/// The ledger's migrations, in order (the migration crate's names).
const MIGRATIONS: [&str; 4] = [
    "m20250101_000001_create_accounts",
    "m20250101_000002_create_transfers",
    "m20250101_000003_cap_balances",
    "m20250101_000004_tenant_isolation",
];

/// The versions recorded in `seaql_migrations`, in order of recording.
async fn recorded(url: &str) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("observer");
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT version FROM seaql_migrations ORDER BY applied_at, version")
            .fetch_all(&mut conn)
            .await
            .expect("read seaql_migrations");
    let _ = conn.close().await;
    rows
}

/// A session holding the migration lock until dropped; returns it and its backend pid.
async fn hold_migration_lock(url: &str, application_name: &str) -> (sqlx::PgConnection, i32) {
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("url");
    let mut conn = sqlx::PgConnection::connect_with(&options.application_name(application_name))
        .await
        .expect("lock holder connects");
    conn.execute(sqlx::AssertSqlSafe(format!(
        "SELECT pg_advisory_lock({})",
        dbservice::migrate::PG_LOCK_KEY
    )))
    .await
    .expect("take the migration lock");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .expect("pid");
    (conn, pid)
}

async fn migrate_ok(url: &str) {
    let mut run = Process::spawn_args(&["migrate"], &[("DATABASE_URL", url.to_owned())]);
    let (code, _) = run.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{}", run.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_migrate_runs_at_once_apply_each_migration_once() {
    let url = fresh_pg_database().await;
    // Held while both start, so both meet the lock and wait for it within their bound.
    let (holder, _) = hold_migration_lock(&url, "test-holder").await;
    let env = [
        (
            "DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/none".to_owned(),
        ),
        ("DATABASE_URL_DIRECT", url.clone()),
        ("DBSERVICE_MIGRATE_LOCK_TIMEOUT", "30s".to_owned()),
    ];
    // DATABASE_URL is the (unreachable) pooled path: the mode must use the direct URL only.
    let mut a = Process::spawn_args(&["migrate"], &env);
    let mut b = Process::spawn_args(&["migrate"], &env);
    let both_waiting = eventually(Duration::from_secs(20), || async {
        a.output().contains("waiting for the migration lock")
            && b.output().contains("waiting for the migration lock")
    })
    .await;
    assert!(both_waiting, "a:\n{}\nb:\n{}", a.output(), b.output());
    drop(holder);
    let (code_a, _) = a.wait_exit(Duration::from_secs(30)).await;
    let (code_b, _) = b.wait_exit(Duration::from_secs(30)).await;
    let (out_a, out_b) = (a.output(), b.output());
    assert_eq!((code_a, code_b), (0, 0), "a:\n{out_a}\nb:\n{out_b}");
    let applied = |out: &str| out.contains("applied 4 migration(s)");
    let nothing = |out: &str| out.contains("no pending migrations");
    assert!(
        (applied(&out_a) && nothing(&out_b)) || (applied(&out_b) && nothing(&out_a)),
        "one applies, the other finds nothing to do:\na:\n{out_a}\nb:\n{out_b}"
    );
    assert_eq!(recorded(&url).await, MIGRATIONS);
    assert!(!out_a.contains(PASSWORD) && !out_b.contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_gives_up_on_a_held_lock_within_its_bound_naming_the_holder() {
    let url = fresh_pg_database().await;
    let (_holder, pid) = hold_migration_lock(&url, "stuck-deployer").await;
    let mut run = Process::spawn_args(
        &["migrate"],
        &[
            ("DATABASE_URL", url.clone()),
            ("DBSERVICE_MIGRATE_LOCK_TIMEOUT", "2s".to_owned()),
        ],
    );
    let (code, took) = run.wait_exit(Duration::from_secs(30)).await;
    let out = run.output();
    assert_eq!(code, 1, "{out}");
    assert!(
        took >= Duration::from_secs(2),
        "gave up early ({took:?}):\n{out}"
    );
    assert!(
        took < Duration::from_secs(8),
        "bound not kept ({took:?}):\n{out}"
    );
    assert!(
        out.contains("migration lock")
            && out.contains("migrate_lock_timeout")
            && out.contains(&format!("pid {pid}"))
            && out.contains("stuck-deployer"),
        "the error names the lock and its holder:\n{out}"
    );
    // Nothing ran: the holder's deploy is not raced.
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("observer");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE tablename IN ('accounts', 'seaql_migrations')",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count tables");
    assert_eq!(tables, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_migrations_the_app_serves_a_migrated_database_and_warns_when_ahead() {
    let url = fresh_pg_database().await;
    migrate_ok(&url).await;
    // A newer image's migration, applied during a rollout: this build must still start.
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("observer");
    conn.execute(
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('m20991231_000001_newer', 0)",
    )
    .await
    .expect("record a newer migration");
    let _ = conn.close().await;

    let app = Process::spawn_args(
        &[],
        &[
            ("DATABASE_URL", url.clone()),
            ("DBSERVICE_MIGRATE", "false".to_owned()),
        ],
    );
    let address = app.address().await;
    let client = reqwest::Client::new();
    let ready = eventually(Duration::from_secs(20), || async {
        client
            .get(format!("{address}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready, "{}", app.output());
    let created = client
        .post(format!("{address}/api/accounts"))
        .json(&serde_json::json!({"owner": "ops", "balance_cents": 5}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), 201, "{}", app.output());
    let out = app.output();
    assert!(
        out.contains("WARN") && out.contains("m20991231_000001_newer"),
        "a database ahead is named in a WARN:\n{out}"
    );
    assert!(
        out.contains("schema checked") && !out.contains("migrations applied"),
        "it migrated:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_migrations_the_app_refuses_a_database_behind_naming_the_missing_migration() {
    // Never migrated: the first migration is missing.
    let empty = fresh_pg_database().await;
    // Migrated by an older image: the last one is missing.
    let older = fresh_pg_database().await;
    migrate_ok(&older).await;
    let mut conn = sqlx::PgConnection::connect(&older).await.expect("observer");
    conn.execute(sqlx::AssertSqlSafe(format!(
        "DELETE FROM seaql_migrations WHERE version = '{}'",
        MIGRATIONS[2]
    )))
    .await
    .expect("forget the last migration");
    let _ = conn.close().await;

    for (url, missing) in [(&empty, MIGRATIONS[0]), (&older, MIGRATIONS[2])] {
        let mut app = Process::spawn_args(
            &[],
            &[
                ("DATABASE_URL", url.clone()),
                ("DBSERVICE_MIGRATE", "false".to_owned()),
            ],
        );
        let (code, _) = app.wait_exit(Duration::from_secs(30)).await;
        let out = app.output();
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("behind") && out.contains(missing) && out.contains("dbservice migrate"),
            "the error names {missing} and the fix:\n{out}"
        );
    }
    // It did not create anything while refusing.
    let mut conn = sqlx::PgConnection::connect(&empty).await.expect("observer");
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .fetch_one(&mut conn)
            .await
            .expect("count tables");
    assert_eq!(tables, 0);
}

#[test]
fn production_does_not_migrate_at_startup_unless_told() {
    use dbservice_demo::DemoSettings;
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = |env: &[(&str, &str)]| {
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        DemoSettings::from_sources(&env, dir.path()).expect("valid settings")
    };
    assert!(settings(&[]).migrations.at_startup);
    assert!(
        settings(&[("APP_ENV", "development")])
            .migrations
            .at_startup
    );
    assert!(!settings(&[("APP_ENV", "production")]).migrations.at_startup);
    assert!(
        settings(&[("APP_ENV", "production"), ("DBSERVICE_MIGRATE", "true")])
            .migrations
            .at_startup
    );
    assert_eq!(
        settings(&[]).migrations.lock_timeout,
        Duration::from_secs(60)
    );
    let env = [("DBSERVICE_MIGRATE_LOCK_TIMEOUT", "soon".to_owned())]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let err = DemoSettings::from_sources(&env, dir.path())
        .expect_err("invalid")
        .to_string();
    assert!(
        err.contains("migrate_lock_timeout") && err.contains("soon"),
        "{err}"
    );
}

/// A migration Job holds only the migrator's URL: `DATABASE_URL_DIRECT` alone is enough,
/// also in the production profile (which otherwise refuses to start without `DATABASE_URL`).
#[tokio::test]
async fn migrate_needs_only_the_direct_url_in_production() {
    let url = fresh_pg_database().await;
    let mut run = Process::spawn_args(
        &["migrate"],
        &[
            ("APP_ENV", "production".to_owned()),
            ("DATABASE_URL_DIRECT", url.clone()),
        ],
    );
    let (code, _) = run.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{}", run.output());
    assert_eq!(recorded(&url).await, MIGRATIONS);
}
