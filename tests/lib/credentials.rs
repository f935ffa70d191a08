//! Secrets that rotate, against a private cluster that asks for passwords (scram-sha-256):
//! a password file rewritten the kubelet's way under load, a passfile with a line per host, a
//! provider handing out a new role per connection, the retry of a password refused just after
//! a rotation, and `soft_evict` leaving only connections opened with the new secret. No
//! password appears in any log line, error, health report or metric.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dbservice::DbService;
use dbservice::config::{Credentials, CredentialsProvider, CredentialsRequest, DbConfig};

use crate::support::{PgCluster, eventually, pg_scalar_i64, select_one, with_params};

/// Every log line the test's tasks write (current-thread runtime: the service's tasks run on
/// the test's thread, where the subscriber is installed).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let sub = tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_default(sub)
    }
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    }
}

async fn cluster() -> Arc<PgCluster> {
    Arc::new(
        tokio::task::spawn_blocking(PgCluster::start)
            .await
            .expect("cluster"),
    )
}

/// Creates `role` with `password`, logging in with scram-sha-256 over TCP.
async fn scram_role(c: &Arc<PgCluster>, role: &str, password: &str) {
    let c = c.clone();
    let (role, password) = (role.to_owned(), password.to_owned());
    tokio::task::spawn_blocking(move || c.require_password(&role, &password))
        .await
        .expect("role");
}

async fn admin(c: &Arc<PgCluster>, sql: &str) {
    let c = c.clone();
    let sql = sql.to_owned();
    tokio::task::spawn_blocking(move || c.admin(&sql))
        .await
        .expect("admin statement");
}

/// Writes `text` to `path` the kubelet's way: a new file renamed over the old one.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write the new file");
    set_mode(&tmp, 0o600);
    std::fs::rename(&tmp, path).expect("rename over the old file");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Connections of `role` on `c` opened before `since_sql` (a timestamp expression).
async fn sessions_of(c: &PgCluster, role: &str, filter: &str) -> i64 {
    pg_scalar_i64(
        &c.url("postgres"),
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}' AND pid <> pg_backend_pid() {filter}"
        ),
    )
    .await
}

/// A service over `url` with `min = max = n` connections, all open before it returns.
async fn warm_service(config: DbConfig) -> DbService {
    let db = DbService::new(config).expect("service");
    db.connect().await.expect("connects");
    let want = db.stats().min;
    assert!(
        eventually(Duration::from_secs(10), || async {
            db.stats().open >= want
        })
        .await,
        "the pool fills to min_connections: {:?}",
        db.stats()
    );
    db
}

/// Readers running `SELECT 1` in a loop until stopped.
struct Readers {
    stop: Arc<AtomicU32>,
    failed: Arc<AtomicU32>,
    done: Arc<AtomicU32>,
    handles: Vec<tokio::task::JoinHandle<Option<String>>>,
}

impl Readers {
    fn start(db: &DbService, n: usize) -> Self {
        let (stop, failed, done) = (Arc::default(), Arc::default(), Arc::default());
        let handles = (0..n)
            .map(|_| {
                let db = db.clone();
                let (stop, failed, done): (Arc<AtomicU32>, Arc<AtomicU32>, Arc<AtomicU32>) =
                    (Arc::clone(&stop), Arc::clone(&failed), Arc::clone(&done));
                tokio::spawn(async move {
                    let mut first = None;
                    while stop.load(Ordering::Relaxed) == 0 {
                        match select_one(&db).await {
                            Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                first.get_or_insert(e.to_string());
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    first
                })
            })
            .collect();
        Self {
            stop,
            failed,
            done,
            handles,
        }
    }

    /// Stops them; the first error any of them saw, and how many statements failed.
    async fn stop(self) -> (Option<String>, u32) {
        self.stop.store(1, Ordering::Relaxed);
        let mut first = None;
        for h in self.handles {
            if let Some(e) = h.await.expect("reader") {
                first.get_or_insert(e);
            }
        }
        (first, self.failed.load(Ordering::Relaxed))
    }
}

fn assert_no_secret(haystacks: &[(&str, &str)], secrets: &[&str]) {
    for (what, text) in haystacks {
        for s in secrets {
            assert!(!text.contains(s), "a password ({s}) in {what}:\n{text}");
        }
    }
}

/// What the service shows of itself: `/health/db`, statistics, metrics.
async fn shown(db: &DbService) -> String {
    format!(
        "{}\n{:?}\n{}\n{:?}",
        dbservice::health::details(db, None).body,
        db.stats(),
        dbservice::metrics::Metrics::new(db, None).render(),
        db.hosts()
    )
}

#[tokio::test(flavor = "current_thread")]
async fn a_password_file_rotated_under_load_loses_nothing_and_soft_evict_leaves_only_new_sessions()
{
    let logs = Captured::default();
    let _guard = logs.install();
    let c = cluster().await;
    scram_role(&c, "rot_file", "old-secret-1").await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("db_password");
    write_atomically(&file, "old-secret-1\n");
    let url = format!(
        "postgres://rot_file@127.0.0.1:{}/postgres?connection_limit=4&min_connections=4&connect_timeout=5",
        c.port
    );
    let config = DbConfig::from_url(&url)
        .expect("url")
        .with_password_file(&file)
        .expect("password file");
    let db = warm_service(config).await;
    let readers = Readers::start(&db, 8);
    let done = readers.done.clone();
    let served = |more: u32| {
        let done = done.clone();
        let from = done.load(Ordering::Relaxed);
        async move {
            eventually(Duration::from_secs(10), || async {
                done.load(Ordering::Relaxed) >= from + more
            })
            .await
        }
    };
    assert!(served(100).await, "the readers are under way");

    // The rotation: the Secret's file first, then the role (connections opened with the old
    // password keep serving: PostgreSQL does not end them).
    write_atomically(&file, "new-secret-2\n");
    admin(&c, "ALTER ROLE rot_file PASSWORD 'new-secret-2'").await;
    let rotated = pg_scalar_i64(
        &c.url("postgres"),
        "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint",
    )
    .await;
    assert!(
        served(100).await,
        "connections opened with the old password go on serving after the rotation"
    );
    let before = done.load(Ordering::Relaxed);
    db.soft_evict();
    let old = format!("AND (extract(epoch FROM backend_start) * 1000000)::bigint < {rotated}");
    assert!(
        eventually(Duration::from_secs(10), || async {
            sessions_of(&c, "rot_file", &old).await == 0
        })
        .await,
        "soft_evict closed every connection opened with the old password: {} left",
        sessions_of(&c, "rot_file", &old).await
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            sessions_of(&c, "rot_file", "").await >= 1 && done.load(Ordering::Relaxed) > before + 50
        })
        .await,
        "statements go on over connections opened with the new password"
    );
    let (first, failed) = readers.stop().await;
    assert_eq!(first, None, "a statement failed during the rotation");
    assert_eq!(failed, 0);
    assert!(db.stats().closed.evicted >= 1, "{:?}", db.stats().closed);
    assert_eq!(
        db.config().sources().get("password"),
        Some(&dbservice::config::Source::Code),
        "the provenance of the password setting"
    );
    assert_eq!(
        db.password_source(),
        format!("DATABASE_PASSWORD_FILE {}", file.display()),
        "where passwords come from, without the value"
    );
    let shown = shown(&db).await;
    assert!(
        shown.contains("evicted"),
        "the close reason is a metric:\n{shown}"
    );
    db.close(Duration::from_secs(5)).await;
    assert_no_secret(
        &[
            ("the logs", &logs.text()),
            ("the service's reports", &shown),
        ],
        &["old-secret-1", "new-secret-2"],
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_passfile_gives_each_host_its_own_line_and_is_reread_when_it_changes() {
    let logs = Captured::default();
    let _guard = logs.install();
    let (a, b) = (cluster().await, cluster().await);
    scram_role(&a, "pf_user", "alpha-pass-1").await;
    scram_role(&b, "pf_user", "bravo-pass-1").await;
    let dir = tempfile::tempdir().expect("dir");
    let passfile = dir.path().join("pgpass");
    let lines = |pa: &str, pb: &str| {
        format!(
            "# one line per host\n127.0.0.1:{}:*:pf_user:{pa}\n127.0.0.1:{}:postgres:pf_user:{pb}\n*:*:*:*:wrong-for-everyone\n",
            a.port, b.port
        )
    };
    write_atomically(&passfile, &lines("alpha-pass-1", "bravo-pass-1"));
    let url = format!(
        "postgres://pf_user@127.0.0.1:{},127.0.0.1:{}/postgres?load_balance_hosts=random&connection_limit=6&min_connections=6&passfile={}",
        a.port,
        b.port,
        passfile.display()
    );
    let db = warm_service(DbConfig::from_url(&url).expect("url")).await;
    for (c, name) in [(&a, "a"), (&b, "b")] {
        assert!(
            eventually(Duration::from_secs(10), || async {
                sessions_of(c, "pf_user", "").await >= 1
            })
            .await,
            "connections logged in on host {name} with its own line"
        );
    }
    // Host b's password rotates; the passfile follows; new connections use the new line.
    write_atomically(&passfile, &lines("alpha-pass-1", "bravo-pass-2"));
    admin(&b, "ALTER ROLE pf_user PASSWORD 'bravo-pass-2'").await;
    db.soft_evict();
    let mut ok = 0;
    for _ in 0..40 {
        select_one(&db)
            .await
            .expect("a statement after the rotation");
        ok += 1;
    }
    assert_eq!(ok, 40);
    assert!(
        eventually(Duration::from_secs(10), || async {
            sessions_of(&b, "pf_user", "").await >= 1
        })
        .await,
        "host b takes connections with its new line"
    );
    let shown = shown(&db).await;
    db.close(Duration::from_secs(5)).await;
    assert_no_secret(
        &[
            ("the logs", &logs.text()),
            ("the service's reports", &shown),
        ],
        &[
            "alpha-pass-1",
            "bravo-pass-1",
            "bravo-pass-2",
            "wrong-for-everyone",
        ],
    );
}

/// A provider in the way of Vault's dynamic secrets: each call creates a role of its own with
/// a new password, and answers with both.
struct DynamicRoles {
    admin_url: String,
    calls: AtomicU32,
}

#[async_trait::async_trait]
impl CredentialsProvider for DynamicRoles {
    async fn credentials(
        &self,
        request: &CredentialsRequest<'_>,
    ) -> Result<Credentials, dbservice::config::ProviderError> {
        use sea_orm::sqlx::{self, ConnectOptions, Connection};
        assert_eq!(request.backend, "postgresql");
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let (user, password) = (format!("dyn_{n}"), format!("dyn-secret-{n}"));
        // The provider's own statements are its business: not logged (they hold the secret).
        let opts: sqlx::postgres::PgConnectOptions = self.admin_url.parse()?;
        let mut admin = opts.disable_statement_logging().connect().await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE {user} LOGIN PASSWORD '{password}' IN ROLE dyn_group"
        )))
        .execute(&mut admin)
        .await?;
        let _ = admin.close().await;
        Ok(Credentials::user_password(user, password))
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_provider_is_asked_for_each_new_connection_and_its_new_secret_is_used() {
    let logs = Captured::default();
    let _guard = logs.install();
    let c = cluster().await;
    admin(&c, "CREATE ROLE dyn_group NOLOGIN").await;
    {
        let c = c.clone();
        tokio::task::spawn_blocking(move || c.require_scram("+dyn_group"))
            .await
            .expect("hba");
    }
    let provider = Arc::new(DynamicRoles {
        admin_url: c.url("postgres"),
        calls: AtomicU32::new(0),
    });
    let url = format!(
        "postgres://ignored@127.0.0.1:{}/postgres?connection_limit=3&min_connections=3",
        c.port
    );
    let config = DbConfig::from_url(&url)
        .expect("url")
        .with_credentials_arc(provider.clone())
        .expect("provider");
    let db = warm_service(config).await;
    let asked = provider.calls.load(Ordering::SeqCst);
    assert!(asked >= 3, "asked once per connection opened: {asked}");
    select_one(&db)
        .await
        .expect("a statement as a dynamic role");
    db.soft_evict();
    assert!(
        eventually(Duration::from_secs(10), || async {
            db.stats().closed.evicted >= 3 && select_one(&db).await.is_ok()
        })
        .await,
        "{:?}",
        db.stats()
    );
    let now = provider.calls.load(Ordering::SeqCst);
    assert!(
        now > asked,
        "new connections asked again: {asked} then {now}"
    );
    let newest = format!("dyn_{now}");
    assert!(
        eventually(Duration::from_secs(10), || async {
            sessions_of(&c, &newest, "").await >= 1
        })
        .await,
        "the newest role is logged in"
    );
    let shown = shown(&db).await;
    db.close(Duration::from_secs(5)).await;
    assert_no_secret(
        &[
            ("the logs", &logs.text()),
            ("the service's reports", &shown),
        ],
        &["dyn-secret-"],
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_password_refused_just_after_a_rotation_is_read_again_and_retried_once() {
    let logs = Captured::default();
    let _guard = logs.install();
    let c = cluster().await;
    scram_role(&c, "rot_retry", "before-rotation").await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("pw");
    write_atomically(&file, "before-rotation");
    // A slow link: the file is read when the connect begins, and the server checks the
    // password a round trip later, after the rotation below.
    let proxy =
        crate::support::proxy::DelayProxy::start(&c.url("postgres"), Duration::from_millis(400))
            .await;
    let port = url::Url::parse(&proxy.url)
        .expect("proxy url")
        .port()
        .expect("port");
    let url = format!(
        "postgres://rot_retry@127.0.0.1:{port}/postgres?connection_limit=1&connect_timeout=15&connect_retry_timeout=0"
    );
    let config = DbConfig::from_url(&url)
        .expect("url")
        .with_password_file(&file)
        .expect("password file");
    let db = DbService::new(config).expect("service");
    let connecting = tokio::spawn({
        let db = db.clone();
        async move { db.connect().await }
    });
    // A window, not a condition: each hop of the proxy takes 400 ms, so the server checks the
    // password at least 800 ms after the file was read; 150 ms in, the read is done (local)
    // and the check is still ahead.
    tokio::time::sleep(Duration::from_millis(150)).await;
    admin(&c, "ALTER ROLE rot_retry PASSWORD 'after-rotation'").await;
    write_atomically(&file, "after-rotation");
    connecting
        .await
        .expect("task")
        .expect("the refused password was read again and the retry logged in");
    select_one(&db).await.expect("serves");
    let text = logs.text();
    assert!(
        text.contains("trying once more"),
        "the retry is logged:\n{text}"
    );
    db.close(Duration::from_secs(5)).await;
    assert_no_secret(
        &[("the logs", &text)],
        &["before-rotation", "after-rotation"],
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_wrong_password_file_fails_the_start_at_once_naming_the_file_not_its_content() {
    let logs = Captured::default();
    let _guard = logs.install();
    let c = cluster().await;
    scram_role(&c, "wrong_file", "the-right-one").await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("db_password");
    write_atomically(&file, "not-the-right-one\n");
    let url = with_params(
        &format!("postgres://wrong_file@127.0.0.1:{}/postgres", c.port),
        "connect_timeout=2&connect_retry_timeout=60",
    );
    let config = DbConfig::from_url(&url)
        .expect("url")
        .with_password_file(&file)
        .expect("password file");
    let db = DbService::new(config).expect("service");
    let started = Instant::now();
    let err = db.connect().await.expect_err("a wrong password fails");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no retry loop: {:?}",
        started.elapsed()
    );
    let msg = err.to_string();
    assert!(msg.contains("28P01"), "{msg}");
    assert!(
        msg.contains("DATABASE_PASSWORD_FILE") && msg.contains(&file.display().to_string()),
        "names the setting and the file: {msg}"
    );
    assert_no_secret(
        &[("the error", &msg), ("the logs", &logs.text())],
        &["not-the-right-one", "the-right-one"],
    );
}

#[tokio::test]
async fn a_missing_or_empty_password_file_is_refused_at_start_naming_it() {
    let dir = tempfile::tempdir().expect("dir");
    let missing: PathBuf = dir.path().join("nowhere");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").expect("write");
    for (file, expect) in [(&missing, "no such file"), (&empty, "empty")] {
        let config = DbConfig::from_url("postgres://app@127.0.0.1:1/app")
            .expect("url")
            .with_password_file(file)
            .expect("a path is a valid value");
        let err = DbService::new(config)
            .expect_err("refused at start")
            .to_string();
        assert!(
            err.contains("DATABASE_PASSWORD_FILE")
                && err.contains(&file.display().to_string())
                && err.to_lowercase().contains(expect),
            "{err}"
        );
    }
}

/// sqlx reads `sslrootcert` at every TLS handshake: a CA file replaced under a running pool is
/// used from the next connection on (a wrong one refuses it, the right one again accepts it).
#[tokio::test(flavor = "current_thread")]
async fn a_replaced_ca_file_is_read_by_the_next_connection() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = cluster().await;
    let served_ca = {
        let c = c.clone();
        tokio::task::spawn_blocking(move || c.enable_tls())
            .await
            .expect("tls")
    };
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("ca.pem");
    let right = std::fs::read_to_string(&served_ca).expect("the cluster's CA");
    write_atomically(&ca, &right);
    let status = std::process::Command::new("openssl")
        .current_dir(dir.path())
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "other.key",
            "-out",
            "other.pem",
            "-days",
            "2",
            "-subj",
            "/CN=another-ca",
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    let wrong = std::fs::read_to_string(dir.path().join("other.pem")).expect("other CA");
    let url = with_params(
        &c.url("postgres"),
        &format!(
            "sslmode=verify-ca&sslrootcert={}&connection_limit=1&connect_timeout=2&pool_timeout=3s&fail_fast_after=0",
            ca.display()
        ),
    );
    let db = DbService::new(DbConfig::from_url(&url).expect("url")).expect("service");
    db.connect().await.expect("connects with the right CA");
    select_one(&db).await.expect("serves");

    write_atomically(&ca, &wrong);
    db.soft_evict();
    assert!(
        eventually(Duration::from_secs(10), || async {
            select_one(&db).await.is_err()
        })
        .await,
        "a new connection read the replaced CA file and refused the server"
    );
    write_atomically(&ca, &right);
    assert!(
        eventually(Duration::from_secs(15), || async {
            select_one(&db).await.is_ok()
        })
        .await,
        "the right CA file again: connections open again"
    );
    db.close(Duration::from_secs(5)).await;
}

/// MySQL/MariaDB: the pool and the one connection behind `DbConn::raw()` take the password
/// from the file, and follow it when it rotates.
#[tokio::test(flavor = "current_thread")]
async fn mysql_takes_its_password_from_a_file_for_the_pool_and_for_raw() {
    use sea_orm::ConnectionTrait;
    use sea_orm::sqlx::{self, ConnectOptions, Connection};
    let logs = Captured::default();
    let _guard = logs.install();
    let Some(root_url) = crate::support::fresh_mysql_database().await else {
        return;
    };
    let parsed = url::Url::parse(&root_url).expect("url");
    let database = parsed.path().trim_start_matches('/').to_owned();
    let user = crate::support::unique_name("rot");
    // The test's own statements hold the passwords: not logged.
    let root_opts: sqlx::mysql::MySqlConnectOptions = root_url.parse().expect("root url");
    let mut root = root_opts
        .disable_statement_logging()
        .connect()
        .await
        .expect("root");
    for sql in [
        format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'maria-secret-1'"),
        format!("GRANT ALL ON {database}.* TO '{user}'@'%'"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut root)
            .await
            .expect("user");
    }
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("pw");
    write_atomically(&file, "maria-secret-1\n");
    let url = format!(
        "mysql://{user}@{}:{}/{database}?connection_limit=2",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(3306)
    );
    let config = DbConfig::from_url(&url)
        .expect("url")
        .with_password_file(&file)
        .expect("password file");
    let db = DbService::new(config).expect("service");
    db.connect()
        .await
        .expect("logs in with the file's password");
    select_one(&db).await.expect("the pool serves");
    db.conn()
        .raw()
        .execute_unprepared("SELECT 1")
        .await
        .expect("raw() logs in with the file's password too");

    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER USER '{user}'@'%' IDENTIFIED BY 'maria-secret-2'"
    )))
    .execute(&mut root)
    .await
    .expect("rotate");
    write_atomically(&file, "maria-secret-2\n");
    db.soft_evict();
    assert!(
        eventually(Duration::from_secs(10), || async {
            select_one(&db).await.is_ok()
        })
        .await,
        "new connections log in with the rotated password"
    );
    // MySQL keeps sessions whose password changed: end raw()'s, so that its next use must
    // log in again, with the password its pool was told.
    let id = db
        .conn()
        .raw()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::MySql,
            "SELECT CONNECTION_ID() AS id",
        ))
        .await
        .expect("raw() session id")
        .and_then(|row| row.try_get::<u64>("", "id").ok())
        .expect("an id");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("KILL {id}")))
        .execute(&mut root)
        .await
        .expect("kill raw()'s session");
    assert!(
        eventually(Duration::from_secs(10), || async {
            db.conn().raw().execute_unprepared("SELECT 1").await.is_ok()
        })
        .await,
        "raw() logs in again with the rotated password"
    );
    let text = logs.text();
    db.close(Duration::from_secs(5)).await;
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP USER '{user}'@'%'")))
        .execute(&mut root)
        .await;
    let _ = root.close().await;
    assert_no_secret(
        &[("the logs", &text)],
        &["maria-secret-1", "maria-secret-2"],
    );
}
