//! The test harness shared by the library's tests, the demo's tests and the benchmark: private
//! PostgreSQL clusters (`pg_cluster`), a fault-injecting TCP proxy (`proxy`), an OTLP/HTTP
//! receiver (`otlp`), fresh databases on PostgreSQL, SQLite and MariaDB, and small polling
//! helpers. Not published.

#![allow(missing_docs)]

pub mod otlp;
pub mod pg_cluster;
pub mod pgbouncer;
pub mod proxy;

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dbservice::DbService;
use sea_orm::sqlx::{self, Connection, Executor};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

pub use pg_cluster::PgCluster;

/// The password every test URL carries; it must never appear in any output.
pub const PASSWORD: &str = "pw-SECRET-4711";

/// `TEST_LOG=1` shows the library's logs while testing.
static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        // The library installs no subscriber; the tests' own, filtered by `RUST_LOG`.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn")
        });
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .compact()
            .try_init();
    }
});

/// The PostgreSQL server shared by the ordinary tests: `TEST_DATABASE_URL`'s server if set,
/// else a private cluster started once per test process.
enum SharedPg {
    Url(String),
    Cluster(PgCluster),
}

static SHARED_PG: LazyLock<SharedPg> = LazyLock::new(|| match std::env::var("TEST_DATABASE_URL") {
    Ok(url) if !url.is_empty() => SharedPg::Url(url),
    _ => SharedPg::Cluster(PgCluster::start()),
});

/// A URL for `database` on the shared PostgreSQL server (starting it on first use).
pub fn shared_url(database: &str) -> String {
    match &*SHARED_PG {
        SharedPg::Cluster(c) => c.url(database),
        SharedPg::Url(base) => {
            let mut url = url::Url::parse(base).expect("TEST_DATABASE_URL is a URL");
            url.set_path(database);
            url.to_string()
        }
    }
}

/// A name no other test in this run uses.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates an empty database on the shared PostgreSQL server; returns its URL.
pub async fn fresh_pg_database() -> String {
    LazyLock::force(&TRACING);
    let name = unique_name("dbs");
    let admin = tokio::task::spawn_blocking(|| shared_url("postgres"))
        .await
        .expect("shared cluster starts");
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to the shared server");
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create test database");
    let _ = conn.close().await;
    shared_url(&name)
}

/// A fresh SQLite file URL in `dir`.
pub fn sqlite_url(dir: &tempfile::TempDir) -> String {
    LazyLock::force(&TRACING);
    format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("test.sqlite").display()
    )
}

/// A fresh MariaDB/MySQL database URL, or `None` (with a loud banner) when no server answers.
/// Uses `TEST_MYSQL_URL`, else the machine's MariaDB on 127.0.0.1:3306 as root.
pub async fn fresh_mysql_database() -> Option<String> {
    LazyLock::force(&TRACING);
    let base = std::env::var("TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".to_owned());
    let connect = tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::MySqlConnection::connect(&base),
    )
    .await;
    let mut conn = match connect {
        Ok(Ok(c)) => c,
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_owned(),
            };
            eprintln!(
                "\n==========================================================\n\
                 SKIPPED: no MySQL/MariaDB reachable ({why}).\n\
                 Set TEST_MYSQL_URL to run the MySQL/MariaDB tests.\n\
                 ==========================================================\n"
            );
            return None;
        }
    };
    let name = unique_name("dbs");
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create MySQL test database");
    let _ = conn.close().await;
    let mut url = url::Url::parse(&base).expect("MySQL URL");
    url.set_path(&name);
    Some(url.to_string())
}

/// Runs SQL on a separate, unpooled connection (the observer's view of the server).
pub async fn pg_scalar_i64(url: &str, sql: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("observer connection");
    let v: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut conn)
        .await
        .expect("observer query");
    let _ = conn.close().await;
    v
}

/// Opens connections to `url` until the server refuses one for want of a slot (SQLSTATE
/// 53300), at most 1000; returns them open, so the server stays full until they are dropped.
pub async fn fill_connection_slots(url: &str) -> Vec<sqlx::PgConnection> {
    let mut open = Vec::new();
    for _ in 0..1000 {
        match sqlx::PgConnection::connect(url).await {
            Ok(c) => open.push(c),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("53300") => return open,
            Err(e) => panic!("filling the server's connection slots: {e}"),
        }
    }
    panic!("the server took 1000 connections without refusing one")
}

/// Backends of ours (by `application_name`) on the server.
pub async fn backends_named(url: &str, application_name: &str) -> i64 {
    pg_scalar_i64(
        url,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application_name}'"
        ),
    )
    .await
}

/// Polls `check` every 50 ms until it returns true or `bound` passes; returns whether it did.
pub async fn eventually<F, Fut>(bound: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A started service on `url` (connected, ready).
pub async fn connected_service(url: &str) -> dbservice::DbService {
    let config = dbservice::config::DbConfig::from_url(url).expect("valid URL");
    let db = dbservice::DbService::new(config).expect("service");
    db.connect().await.expect("connects");
    db
}

pub async fn select_one(db: &DbService) -> Result<(), sea_orm::DbErr> {
    db.conn()
        .query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT 1"))
        .await
        .map(|_| ())
}

/// Opens `n` connections at once (concurrent short sleeps) and leaves them idle in the pool.
pub async fn warm(db: &DbService, n: usize) {
    let all = futures::future::join_all((0..n).map(|_| async {
        db.conn()
            .execute_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT pg_sleep(0.05)",
            ))
            .await
    }))
    .await;
    assert!(all.iter().all(Result::is_ok), "{all:?}");
}

/// A private cluster of the test's own (it may be paused, stopped or restarted).
pub async fn private_cluster() -> std::sync::Arc<PgCluster> {
    LazyLock::force(&TRACING);
    std::sync::Arc::new(
        tokio::task::spawn_blocking(PgCluster::start)
            .await
            .expect("cluster starts"),
    )
}

/// A private cluster with a private PgBouncer (transaction mode, `pool_size` server
/// connections, `extra` config lines) in front; `None` (said on stderr) without a binary.
pub async fn cluster_with_pgbouncer(
    pool_size: u32,
    extra: &'static str,
) -> Option<(std::sync::Arc<PgCluster>, pgbouncer::PgBouncer)> {
    let cluster = private_cluster().await;
    let c = cluster.clone();
    let bouncer =
        tokio::task::spawn_blocking(move || pgbouncer::PgBouncer::start(&c, pool_size, extra))
            .await
            .expect("start pgbouncer")?;
    Some((cluster, bouncer))
}

/// Appends query parameters to a URL.
pub fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// A libpq multi-host URL naming `clusters` in order:
/// `postgres://postgres:<PASSWORD>@127.0.0.1:<p1>,127.0.0.1:<p2>/<database>?<query>` (the
/// user, password and host form of [`PgCluster::url`]); `query` may be empty.
pub fn multi_host_url(clusters: &[&PgCluster], database: &str, query: &str) -> String {
    assert!(
        !clusters.is_empty(),
        "multi_host_url needs at least one cluster"
    );
    let hosts = clusters
        .iter()
        .map(|c| format!("127.0.0.1:{}", c.port))
        .collect::<Vec<_>>()
        .join(",");
    let query = query.trim_start_matches('?');
    let sep = if query.is_empty() { "" } else { "?" };
    format!("postgres://postgres:{PASSWORD}@{hosts}/{database}{sep}{query}")
}

/// A private cluster and a streaming replica of it (each may be stopped, paused, restarted).
pub async fn cluster_with_replica() -> (std::sync::Arc<PgCluster>, std::sync::Arc<PgCluster>) {
    let cluster = private_cluster().await;
    let c = cluster.clone();
    let replica = tokio::task::spawn_blocking(move || c.replica())
        .await
        .expect("replica starts");
    (cluster, std::sync::Arc::new(replica))
}

/// An environment map (variable → value) from pairs, for `Settings::from_sources`.
pub fn env_of(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
