//! The compiled demo binary: exit codes, messages, signals, and what it prints.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{
    PASSWORD, backends_named, eventually, fresh_pg_database, shared_url, unique_name, with_params,
};

/// A running binary whose stdout and stderr are collected line by line.
pub(crate) struct Server {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    _cwd: tempfile::TempDir,
}

impl Server {
    pub(crate) fn spawn(env: &[(&str, String)]) -> Self {
        Self::spawn_in(tempfile::tempdir().expect("temp dir"), env)
    }

    /// Like [`spawn`](Self::spawn), in `cwd` (which may hold a `.env`).
    pub(crate) fn spawn_in(cwd: tempfile::TempDir, env: &[(&str, String)]) -> Self {
        let dir = cwd.path().to_owned();
        Self::spawn_at(cwd, &dir, env)
    }

    /// Like [`spawn`](Self::spawn), with command-line arguments (`migrate`).
    pub(crate) fn spawn_args(args: &[&str], env: &[(&str, String)]) -> Self {
        let cwd = tempfile::tempdir().expect("temp dir");
        let dir = cwd.path().to_owned();
        Self::launch(cwd, &dir, args, env)
    }

    /// Like [`spawn`](Self::spawn), in `dir` (inside `keep`, which lives as long as the server).
    pub(crate) fn spawn_at(
        keep: tempfile::TempDir,
        dir: &std::path::Path,
        env: &[(&str, String)],
    ) -> Self {
        Self::launch(keep, dir, &[], env)
    }

    fn launch(
        keep: tempfile::TempDir,
        dir: &std::path::Path,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dbservice"));
        cmd.args(args)
            .current_dir(dir)
            .env_clear()
            .env("PORT", "0")
            .env("LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("binary starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().expect("lines lock").push(line);
                }
            });
        }
        Self {
            child,
            lines,
            _cwd: keep,
        }
    }

    pub(crate) fn output(&self) -> String {
        self.lines.lock().expect("lines lock").join("\n")
    }

    /// The JSON log lines so far.
    pub(crate) fn json_lines(&self) -> Vec<serde_json::Value> {
        self.output()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The `settings` field of the startup line (`database reachable ...`).
    fn startup_settings(&self) -> String {
        self.json_lines()
            .into_iter()
            .find(|v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("database reachable"))
            })
            .and_then(|v| v["settings"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no startup line with settings:\n{}", self.output()))
    }

    /// The `http://host:port` from the "listening" log line.
    pub(crate) async fn address(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let found = self.lines.lock().expect("lines lock").iter().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                (v["message"] == "listening").then(|| v["address"].as_str().map(str::to_owned))?
            });
            if let Some(a) = found {
                return format!("http://{a}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no listening line:\n{}", self.output());
    }

    pub(crate) async fn wait_exit(&mut self, bound: Duration) -> (i32, Duration) {
        let started = Instant::now();
        while started.elapsed() < bound {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Let the reader threads drain the pipes.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return (status.code().unwrap_or(-1), started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        panic!("did not exit within {bound:?}:\n{}", self.output());
    }

    /// The server's address and an HTTP client (20 s timeout), once `/health/ready` is 200.
    pub(crate) async fn ready_client(&self) -> (String, reqwest::Client) {
        let address = self.address().await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        wait_ready(&client, &address).await;
        (address, client)
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn signal(&self, sig: Signal) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        kill(Pid::from_raw(pid), sig).expect("signal delivered");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Runs the binary against `database` on the shared cluster with `params`, expects exit code 1
/// within 30 s, and returns its output and how long it ran.
async fn fails_with_exit_1(database: &'static str, params: &str) -> (String, Duration) {
    let url = with_params(
        &tokio::task::spawn_blocking(move || shared_url(database))
            .await
            .expect("shared cluster"),
        params,
    );
    let mut server = Server::spawn(&[("DATABASE_URL", url)]);
    let (code, took) = server.wait_exit(Duration::from_secs(30)).await;
    let out = server.output();
    assert_eq!(code, 1, "{out}");
    (out, took)
}

async fn wait_ready(client: &reqwest::Client, address: &str) {
    let ok = eventually(Duration::from_secs(30), || async {
        client
            .get(format!("{address}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 200)
    })
    .await;
    assert!(ok, "never ready");
}

#[tokio::test]
async fn bad_setting_exits_2_naming_parameter_and_value() {
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:1/db?pool_timeout=abc");
    let mut server = Server::spawn(&[("DATABASE_URL", url)]);
    let (code, _) = server.wait_exit(Duration::from_secs(20)).await;
    let out = server.output();
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("pool_timeout") && out.contains("`abc`"),
        "{out}"
    );
    assert!(!out.contains(PASSWORD), "password printed:\n{out}");

    let mut server = Server::spawn(&[(
        "DATABASE_URL",
        "postgres://h/db?connection_limit=2&min_connections=3".into(),
    )]);
    let (code, _) = server.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, 2);
    assert!(
        server
            .output()
            .contains("`min_connections` (3) is greater than `connection_limit` (2)")
    );
}

#[tokio::test]
async fn unreachable_database_gives_up_after_connect_retry_timeout() {
    // A port that accepts TCP but never speaks (a hung database host): each attempt runs into
    // connect_timeout. Held open for the whole test, so nothing else can take the port.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("address").port();
    let url = format!(
        "postgres://app:{PASSWORD}@127.0.0.1:{port}/db?connect_retry_timeout=2&connect_timeout=1"
    );
    let mut server = Server::spawn(&[("DATABASE_URL", url)]);
    let (code, took) = server.wait_exit(Duration::from_secs(30)).await;
    let out = server.output();
    assert_eq!(code, 1, "{out}");
    assert!(
        took >= Duration::from_millis(1500),
        "kept retrying for the bound: {took:?}"
    );
    assert!(
        out.contains("gave up connecting") && out.contains("connect_retry_timeout"),
        "{out}"
    );
    assert!(
        out.contains("retrying"),
        "each failed attempt is logged:\n{out}"
    );
    assert!(!out.contains(PASSWORD), "password printed:\n{out}");
}

#[tokio::test]
async fn unknown_database_fails_fast_without_retrying() {
    let (out, took) = fails_with_exit_1(
        "no_such_database",
        "connect_timeout=2&connect_retry_timeout=60",
    )
    .await;
    assert!(
        took < Duration::from_secs(4),
        "exits within connect_timeout + 1 s (+ start-up), no retry loop: {took:?}"
    );
    assert!(out.contains("3D000"), "the SQLSTATE is reported:\n{out}");
    assert!(!out.contains(PASSWORD), "password printed:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_readiness_then_drains_in_flight_requests() {
    let base = fresh_pg_database().await;
    let name = unique_name("term");
    let mut server = Server::spawn(&[
        (
            "DATABASE_URL",
            with_params(&base, &format!("application_name={name}")),
        ),
        ("DBSERVICE_DEMO_DIAGNOSTICS", "true".into()),
        ("DBSERVICE_SHUTDOWN_GRACE", "1500ms".into()),
    ]);
    let (address, client) = server.ready_client().await;

    let slow = tokio::spawn({
        let (client, address) = (client.clone(), address.clone());
        async move {
            let res = client
                .get(format!("{address}/api/diagnostics/sleep?seconds=3"))
                .send()
                .await;
            res.map(|r| r.status().as_u16())
        }
    });
    assert!(
        eventually(Duration::from_secs(5), || async {
            backends_named(&base, &name).await >= 1
        })
        .await,
        "the slow request holds a connection"
    );
    server.signal(Signal::SIGTERM);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = client
        .get(format!("{address}/health/ready"))
        .send()
        .await
        .expect("served during grace");
    assert_eq!(ready.status().as_u16(), 503, "readiness fails at once");
    let live = client
        .get(format!("{address}/health/live"))
        .send()
        .await
        .expect("served during grace");
    assert_eq!(live.status().as_u16(), 200);

    assert_eq!(
        slow.await.expect("task").expect("slow request answered"),
        200,
        "in-flight request completed"
    );
    let (code, _) = server.wait_exit(Duration::from_secs(20)).await;
    let out = server.output();
    assert_eq!(code, 0, "{out}");
    assert!(
        eventually(Duration::from_secs(3), || async {
            backends_named(&base, &name).await == 0
        })
        .await,
        "a backend of ours outlived the process"
    );
    let request_line = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "request" && v["path"] == "/api/diagnostics/sleep")
        .unwrap_or_else(|| panic!("no request line:\n{out}"));
    assert_eq!(request_line["method"], "GET");
    assert_eq!(request_line["status"], 200);
    assert!(
        request_line["latency_ms"]
            .as_f64()
            .is_some_and(|ms| ms >= 2500.0),
        "{request_line}"
    );
    assert!(!out.contains(PASSWORD), "password printed:\n{out}");
}

#[tokio::test]
async fn sigint_stops_cleanly_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("int.sqlite").display()
    );
    let mut server = Server::spawn(&[("DATABASE_URL", url)]);
    let address = server.address().await;
    let client = reqwest::Client::new();
    wait_ready(&client, &address).await;
    server.signal(Signal::SIGINT);
    let (code, took) = server.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, 0, "{}", server.output());
    assert!(
        took < Duration::from_secs(5),
        "idle server stops promptly: {took:?}"
    );
}

/// Secret sweep: a password with special characters, logs at `RUST_LOG=trace` (sqlx and
/// sea_orm included), requests that succeed and fail, health and metrics bodies: the password
/// appears nowhere, raw or percent-encoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_never_appears_even_at_trace_level() {
    let raw_password = "p@ss:w0rd/#?&=%x";
    let encoded: String = url::form_urlencoded::byte_serialize(raw_password.as_bytes()).collect();
    let base = fresh_pg_database().await;
    let mut url = url::Url::parse(&base).expect("URL");
    url.set_password(Some(&encoded)).expect("set password");
    let mut server = Server::spawn(&[
        (
            "DATABASE_URL",
            with_params(url.as_str(), "connection_limit=2&pool_timeout=1"),
        ),
        ("RUST_LOG", "trace".into()),
        ("DBSERVICE_DEMO_DIAGNOSTICS", "true".into()),
    ]);
    let (address, client) = server.ready_client().await;
    let mut bodies = String::new();
    for (method, path, body) in [
        (
            "POST",
            "/api/accounts",
            Some(serde_json::json!({"owner": "a", "balance_cents": 10})),
        ),
        (
            "POST",
            "/api/accounts",
            Some(serde_json::json!({"owner": "b", "balance_cents": 0})),
        ),
        (
            "POST",
            "/api/transfers",
            Some(serde_json::json!({"from_account_id": 1, "to_account_id": 2, "amount_cents": 5})),
        ),
        (
            "POST",
            "/api/transfers",
            Some(
                serde_json::json!({"from_account_id": 1, "to_account_id": 2, "amount_cents": 500}),
            ),
        ),
        (
            "POST",
            "/api/transfers",
            Some(serde_json::json!({"from_account_id": 1})),
        ),
        ("GET", "/api/accounts/999", None),
        ("GET", "/health/ready", None),
        ("GET", "/health/db", None),
        ("GET", "/metrics", None),
    ] {
        let req = match method {
            "POST" => client.post(format!("{address}{path}")).json(&body),
            _ => client.get(format!("{address}{path}")),
        };
        let res = req.send().await.expect("answered");
        bodies.push_str(&res.text().await.expect("body"));
    }
    // A pool timeout and a statement error, at trace level.
    let hogs = futures::future::join_all((0..3).map(|_| {
        client
            .get(format!("{address}/api/diagnostics/sleep?seconds=1.5"))
            .send()
    }))
    .await;
    assert!(
        hogs.iter()
            .any(|r| r.as_ref().is_ok_and(|r| r.status().as_u16() == 503)),
        "one request hit pool_timeout"
    );
    server.signal(Signal::SIGTERM);
    let (code, _) = server.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, 0);
    let out = server.output();
    assert!(out.lines().count() > 50, "trace logging was on:\n{out}");
    for needle in [raw_password, encoded.as_str(), "w0rd"] {
        assert!(!out.contains(needle), "password ({needle}) in the logs");
        assert!(
            !bodies.contains(needle),
            "password ({needle}) in an HTTP body"
        );
    }
}

/// A private cluster where `role` logs in over TCP with `password` (scram-sha-256).
async fn cluster_asking_password(
    role: &'static str,
    password: &'static str,
) -> crate::support::PgCluster {
    tokio::task::spawn_blocking(move || {
        let c = crate::support::PgCluster::start();
        c.require_password(role, password);
        c
    })
    .await
    .expect("cluster")
}

/// Waits for a server whose password is refused (`connect_timeout=2`): it exits 1 within
/// connect_timeout + 1 s (+ start-up), reporting SQLSTATE 28P01; returns its output.
async fn refused_at_once(server: &mut Server) -> String {
    let (code, took) = server.wait_exit(Duration::from_secs(30)).await;
    let out = server.output();
    assert_eq!(code, 1, "{out}");
    assert!(
        took < Duration::from_secs(4),
        "exits within connect_timeout + 1 s (+ start-up): {took:?}"
    );
    assert!(out.contains("28P01"), "the SQLSTATE is reported:\n{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_exits_within_connect_timeout_without_retrying() {
    let cluster = cluster_asking_password("app_user", "right-one").await;
    let url = format!(
        "postgres://app_user:{PASSWORD}@127.0.0.1:{}/postgres?connect_timeout=2&connect_retry_timeout=60",
        cluster.port
    );
    let mut server = Server::spawn(&[("DATABASE_URL", url)]);
    let out = refused_at_once(&mut server).await;
    assert!(
        out.contains("app_user:***@"),
        "the URL is shown redacted:\n{out}"
    );
    assert!(!out.contains(PASSWORD), "password printed:\n{out}");
    assert!(
        !out.contains("retrying"),
        "no retry loop on a non-transient error:\n{out}"
    );
}

/// The same with the password from `DATABASE_PASSWORD_FILE`: exit 1 at once, naming the
/// setting and the file, never what it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_file_exits_within_connect_timeout_naming_the_file() {
    let cluster = cluster_asking_password("file_user", "right-one").await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("db_password");
    std::fs::write(&file, "the-wrong-one\n").expect("write");
    let url = format!(
        "postgres://file_user@127.0.0.1:{}/postgres?connect_timeout=2&connect_retry_timeout=60",
        cluster.port
    );
    let mut server = Server::spawn(&[
        ("DATABASE_URL", url),
        ("DATABASE_PASSWORD_FILE", file.display().to_string()),
    ]);
    let out = refused_at_once(&mut server).await;
    assert!(
        out.contains(&format!("DATABASE_PASSWORD_FILE {}", file.display())),
        "the file is named:\n{out}"
    );
    assert!(!out.contains("the-wrong-one"), "password printed:\n{out}");
    assert!(!out.contains("right-one"), "password printed:\n{out}");
}

#[tokio::test]
async fn sslmode_require_against_a_server_without_tls_fails_at_once_naming_sslmode() {
    let (out, took) =
        fails_with_exit_1("postgres", "sslmode=require&connect_retry_timeout=60").await;
    assert!(took < Duration::from_secs(10), "no retry loop: {took:?}");
    assert!(out.contains("sslmode=require"), "names sslmode:\n{out}");
}

/// A malformed `.env` line is reported by number and key; its text (here a password) is not.
#[tokio::test]
async fn a_malformed_env_file_line_is_named_without_its_contents() {
    let cwd = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        cwd.path().join(".env"),
        "PORT=0\nDATABASE_URL 'postgres://app:hunter2-SECRET@db/app\n",
    )
    .expect("write .env");
    let mut server = Server::spawn_in(cwd, &[]);
    let (code, _) = server.wait_exit(Duration::from_secs(20)).await;
    let out = server.output();
    assert_eq!(code, 2, "{out}");
    assert!(!out.contains("hunter2"), "the line was echoed:\n{out}");
    assert!(
        out.contains(".env") && out.contains("line 2") && out.contains("DATABASE_URL"),
        "{out}"
    );
}

/// The TLS mode in the startup line is the one the driver uses, `PGSSLMODE` included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_startup_line_reports_the_tls_mode_from_pgsslmode() {
    let base = fresh_pg_database().await;
    let server = Server::spawn(&[
        ("DATABASE_URL", base.clone()),
        ("PGSSLMODE", "disable".into()),
    ]);
    let address = server.address().await;
    let line = server
        .output()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "listening")
        .expect("listening line");
    assert_eq!(line["sslmode"], "disable", "{line}");
    assert_eq!(line["sslmode_source"], "PGSSLMODE", "{line}");
    let client = reqwest::Client::new();
    wait_ready(&client, &address).await;
    let details: serde_json::Value = client
        .get(format!("{address}/health/db"))
        .send()
        .await
        .expect("details")
        .json()
        .await
        .expect("JSON");
    assert_eq!(details["config"]["tls"]["mode"], "disable", "{details}");
}

/// SIGTERM while several HTTP workers run transfers: every transfer that got an answer got
/// 201, every one of them is stored, the books balance, and the process exits 0. The
/// transactions' BEGIN/COMMIT run on the service's runtime, which outlives the workers'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_transfer_load_with_several_workers_loses_nothing() {
    let base = fresh_pg_database().await;
    let mut server = Server::spawn(&[
        ("DATABASE_URL", with_params(&base, "connection_limit=6")),
        ("DBSERVICE_HTTP_WORKERS", "3".into()),
        ("DBSERVICE_SHUTDOWN_GRACE", "300ms".into()),
    ]);
    let (address, client) = server.ready_client().await;
    let mut accounts = Vec::new();
    for _ in 0..2 {
        let body: serde_json::Value = client
            .post(format!("{address}/api/accounts"))
            .json(&serde_json::json!({"owner": "w", "balance_cents": 1_000_000}))
            .send()
            .await
            .expect("created")
            .json()
            .await
            .expect("JSON");
        accounts.push(body["id"].as_i64().expect("id"));
    }
    let answered = Arc::new(Mutex::new(Vec::new()));
    let loaders: Vec<_> = (0..12)
        .map(|i| {
            let (client, address, answered) = (client.clone(), address.clone(), answered.clone());
            let (from, to) = (accounts[i % 2], accounts[(i + 1) % 2]);
            tokio::spawn(async move {
                loop {
                    let res = client
                        .post(format!("{address}/api/transfers"))
                        .json(&serde_json::json!({"from_account_id": from, "to_account_id": to, "amount_cents": 1}))
                        .send()
                        .await;
                    match res {
                        Ok(r) => answered.lock().expect("lock").push(r.status().as_u16()),
                        // The listener closed: the drill is over for this client.
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.signal(Signal::SIGTERM);
    let (code, _) = server.wait_exit(Duration::from_secs(30)).await;
    for l in loaders {
        let _ = l.await;
    }
    let out = server.output();
    assert_eq!(code, 0, "{out}");
    let statuses = answered.lock().expect("lock").clone();
    let created = statuses.iter().filter(|s| **s == 201).count();
    assert!(created > 10, "the load ran: {created} transfers");
    assert!(
        statuses.iter().all(|s| *s == 201),
        "every answered transfer committed: {statuses:?}"
    );
    let stored = crate::support::pg_scalar_i64(&base, "SELECT count(*) FROM transfers").await;
    assert!(
        stored as usize >= created,
        "{stored} stored, {created} acknowledged"
    );
    assert_eq!(
        crate::support::pg_scalar_i64(&base, "SELECT sum(balance_cents)::bigint FROM accounts")
            .await,
        2_000_000,
        "the books balance"
    );
}

/// A slow query logged inside a request carries that request's span (id and route), and the
/// request still gets exactly one log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_query_line_carries_its_request() {
    let base = fresh_pg_database().await;
    let server = Server::spawn(&[
        (
            "DATABASE_URL",
            with_params(&base, "slow_query_threshold=100ms"),
        ),
        ("DBSERVICE_DEMO_DIAGNOSTICS", "true".into()),
    ]);
    let (address, client) = server.ready_client().await;
    let res = client
        .get(format!("{address}/api/diagnostics/sleep?seconds=0.3"))
        .send()
        .await
        .expect("answered");
    assert_eq!(res.status().as_u16(), 200);
    let lines = || server.json_lines();
    let found = eventually(Duration::from_secs(5), || async {
        lines().iter().any(|v| v["message"] == "slow query")
    })
    .await;
    assert!(found, "no slow query line:\n{}", server.output());
    let all = lines();
    let slow = all
        .iter()
        .find(|v| v["message"] == "slow query")
        .expect("slow query line");
    assert_eq!(
        slow["span"]["http.route"], "/api/diagnostics/sleep",
        "{slow}"
    );
    let id = slow["span"]["request_id"].as_str().expect("a request id");
    let request_lines: Vec<_> = all
        .iter()
        .filter(|v| v["message"] == "request" && v["path"] == "/api/diagnostics/sleep")
        .collect();
    assert_eq!(request_lines.len(), 1, "{request_lines:?}");
    assert_eq!(request_lines[0]["span"]["request_id"], id);
}

/// Seeds 001 and 003 in one run: the startup line states every effective pool setting
/// (redacted); `log_statements` logs each statement's SQL with placeholders, never a value;
/// a pool held at 100 % raises one ERROR alert line (not one per check), counted in
/// `/metrics`, and one INFO line when it clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_settings_statement_log_and_alert_lines() {
    let base = fresh_pg_database().await;
    let server = Server::spawn(&[
        (
            "DATABASE_URL",
            with_params(&base, "connection_limit=1&log_statements=true"),
        ),
        ("DBSERVICE_DEMO_DIAGNOSTICS", "true".into()),
    ]);
    let (address, client) = server.ready_client().await;
    let lines = || server.json_lines();
    // The startup line.
    let settings = server.startup_settings();
    for key in dbservice::config::POOL_KEYS {
        assert!(
            settings.contains(&format!("\"{key}\"")),
            "{key} missing: {settings}"
        );
    }
    assert!(settings.contains("\"connection_limit\":1"), "{settings}");

    // The statement log: placeholders, not the owner's name.
    let res = client
        .post(format!("{address}/api/accounts"))
        .json(&serde_json::json!({"owner": "owner-value-7731", "balance_cents": 5}))
        .send()
        .await
        .expect("answered");
    assert_eq!(res.status().as_u16(), 201);
    let logged = eventually(Duration::from_secs(5), || async {
        lines().iter().any(|v| {
            v["message"] == "statement"
                && v["statement"]
                    .as_str()
                    .is_some_and(|s| s.contains("INSERT INTO") && s.contains("$1"))
        })
    })
    .await;
    assert!(logged, "no statement line:\n{}", server.output());

    // The single connection held for 2.5 s: utilization 100 % → one critical line.
    let res = client
        .get(format!("{address}/api/diagnostics/sleep?seconds=2.5"))
        .send()
        .await
        .expect("answered");
    assert_eq!(res.status().as_u16(), 200);
    let cleared = eventually(Duration::from_secs(5), || async {
        lines()
            .iter()
            .any(|v| v["alert"] == "utilization" && v["alert_level"] == "ok")
    })
    .await;
    let all = lines();
    let critical: Vec<_> = all
        .iter()
        .filter(|v| v["alert"] == "utilization" && v["alert_level"] == "critical")
        .collect();
    assert!(cleared, "no cleared line:\n{}", server.output());
    assert_eq!(critical.len(), 1, "one line per crossing: {critical:?}");
    assert_eq!(critical[0]["level"], "ERROR", "{:?}", critical[0]);
    let metrics = client
        .get(format!("{address}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains("dbservice_alerts_total{alert=\"utilization\",level=\"critical\"} 1"),
        "{metrics}"
    );
    let health: serde_json::Value = client
        .get(format!("{address}/health/db"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    let utilization = &health["alerts"][0];
    assert_eq!(utilization["alert"], "utilization", "{health}");
    assert_eq!(utilization["level"], "ok", "{health}");
    assert_eq!(utilization["raised"], 1, "{health}");
    let output = server.output();
    assert!(
        !output.contains("owner-value-7731"),
        "a bound value was logged"
    );
    assert!(!output.contains(PASSWORD), "the password was logged");
}

/// Provenance end to end: with `APP_ENV=development`, a `.env` and the environment, the
/// startup line and `/health/db` say where each value came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_the_startup_line_say_where_each_setting_came_from() {
    let base = fresh_pg_database().await;
    let cwd = tempfile::tempdir().expect("temp dir");
    std::fs::write(cwd.path().join(".env"), "DBSERVICE_POOL_TIMEOUT=3s\n").expect("write .env");
    let server = Server::spawn_in(
        cwd,
        &[
            ("DATABASE_URL", with_params(&base, "connection_limit=2")),
            ("APP_ENV", "development".into()),
            ("DBSERVICE_IDLE_TIMEOUT", "5m".into()),
        ],
    );
    let (address, client) = server.ready_client().await;
    let health: serde_json::Value = client
        .get(format!("{address}/health/db"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    let sources = &health["config"]["sources"];
    assert_eq!(sources["pool_timeout"], ".env", "{sources}");
    assert_eq!(sources["idle_timeout"], "environment", "{sources}");
    assert_eq!(sources["connection_limit"], "url", "{sources}");
    assert_eq!(
        sources["log_statements"], "profile:development",
        "{sources}"
    );
    assert_eq!(sources["max_lifetime"], "default", "{sources}");
    assert_eq!(health["config"]["log_statements"], true, "{health}");
    let settings = server.startup_settings();
    assert!(settings.contains("\"pool_timeout\":\".env\""), "{settings}");
    assert!(!server.output().contains(PASSWORD));
}
