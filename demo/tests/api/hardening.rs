//! What a hung database, a flood of probes, a hostile client or a slow COMMIT can no longer do:
//! hang a request, exhaust the database, grow the metrics without bound, re-run a write, or
//! answer "retry" for a transfer that may have committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::pg_cluster::free_port;
use crate::support::{
    TestApp, backends_named, eventually, private_cluster, spawn_app, spawn_named_app, sqlite_url,
    with_params,
};

async fn new_account(app: &TestApp, balance: i64) -> i64 {
    let (status, _, body) = app
        .post(
            "/api/accounts",
            &json!({"owner": "h", "balance_cents": balance}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().expect("id")
}

/// With the server frozen and no `statement_timeout`, reads that already hold a connection
/// answer 504 `query_timeout` within `query_timeout` instead of hanging, the others 503, and
/// the abandoned connections are closed rather than handed out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_database_cannot_hang_a_read_without_statement_timeout() {
    let cluster = private_cluster().await;
    let app = spawn_app(
        &with_params(
            &cluster.url("postgres"),
            "connection_limit=3&query_timeout=2&pool_timeout=2&health_check_timeout=1&ping_timeout=1",
        ),
        |_| {},
    )
    .await;
    app.wait_ready(Duration::from_secs(30)).await;
    let id = new_account(&app, 5).await;
    // Three connections open and fresh (not pinged at checkout).
    let path = format!("/api/accounts/{id}");
    let warm = futures::future::join_all((0..3).map(|_| app.get(&path))).await;
    assert!(warm.iter().all(|(s, _)| *s == 200));
    let closed_before = app.db.stats().closed_total;

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.pause())
        .await
        .expect("pause");
    let started = Instant::now();
    let reads = futures::future::join_all((0..6).map(|_| async {
        let t = Instant::now();
        let (status, body) = app.get(&format!("/api/accounts/{id}")).await;
        (status, body, t.elapsed())
    }))
    .await;
    let everything = started.elapsed();
    // The abandoned connections' release checks get no answer while the server is frozen,
    // so they are closed; wait for that before thawing it.
    let closed = eventually(Duration::from_secs(5), || async {
        app.db.stats().closed_total > closed_before
    })
    .await;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.resume())
        .await
        .expect("resume");

    for (status, body, took) in &reads {
        assert!(matches!(status, 503 | 504), "{status} {body}");
        assert!(*took < Duration::from_secs(7), "a read took {took:?}");
    }
    assert!(everything < Duration::from_secs(8), "{everything:?}");
    let timed_out = reads
        .iter()
        .filter(|(s, b, _)| *s == 504 && b["error"]["code"] == "query_timeout")
        .count();
    assert!(
        timed_out >= 1,
        "reads holding a connection answer 504: {reads:?}"
    );
    assert!(
        app.db.stats().errors.query_timeout >= 1,
        "{:?}",
        app.db.stats()
    );
    assert!(
        closed,
        "the connections whose statements went unanswered were closed"
    );
    app.wait_ready(Duration::from_secs(15)).await;
    assert_eq!(app.get(&format!("/api/accounts/{id}")).await.0, 200);
    app.stop().await.expect("clean shutdown");
}

/// 120 probe loops against `connection_limit=3`: never more than limit + 1 backends of ours,
/// every probe answers 200, and API traffic meanwhile succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_readiness_probes_takes_at_most_one_connection() {
    let (app, base, name) = spawn_named_app("probes", 3).await;
    let a = new_account(&app, 1_000_000).await;
    let b = new_account(&app, 1_000_000).await;
    let running = Arc::new(AtomicBool::new(true));
    let probes_done = Arc::new(AtomicU64::new(0));
    let probes = (0..120).map(|_| {
        let (running, done) = (running.clone(), probes_done.clone());
        let (client, address) = (app.client.clone(), app.address.clone());
        async move {
            while running.load(Ordering::Relaxed) {
                let res = client
                    .get(format!("{address}/health/ready"))
                    .send()
                    .await
                    .expect("probe answered");
                assert_eq!(res.status().as_u16(), 200, "a probe failed");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let api = (0..6).map(|i| {
        let running = running.clone();
        let app = &app;
        async move {
            let mut n = 0u32;
            while running.load(Ordering::Relaxed) {
                n += 1;
                if n.is_multiple_of(2) {
                    let (status, body) = app.get(&format!("/api/accounts/{a}")).await;
                    assert_eq!(status, 200, "{body}");
                } else {
                    let (from, to) = if i % 2 == 0 { (a, b) } else { (b, a) };
                    let (status, _, body) = app
                        .post(
                            "/api/transfers",
                            &json!({"from_account_id": from, "to_account_id": to, "amount_cents": 1}),
                            None,
                        )
                        .await;
                    assert_eq!(status, 201, "{body}");
                }
            }
        }
    });
    let peak = async {
        let mut peak = 0;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(4) {
            peak = peak.max(backends_named(&base, &name).await);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        running.store(false, Ordering::Relaxed);
        peak
    };
    let (peak, _, _) = tokio::join!(
        peak,
        futures::future::join_all(probes),
        futures::future::join_all(api)
    );
    assert!(peak <= 4, "{peak} backends of ours for connection_limit=3");
    assert!(
        probes_done.load(Ordering::Relaxed) > 120,
        "the probes kept answering"
    );
    app.stop().await.expect("clean shutdown");
}

/// Made-up methods and paths fold into bounded label values: 400 of them add a handful of
/// series, not 800 KB; and no HELP text ends in two full stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_methods_and_paths_do_not_grow_the_metrics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_app(&sqlite_url(&dir), |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("dbservice_http_"))
            .count()
    };
    let scrape = async || app.metrics_text().await;
    for method in ["X0", "X1"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let _ = app
            .client
            .request(m, format!("{}/nope/0", app.address))
            .send()
            .await
            .expect("answered");
    }
    let before = scrape().await;
    for i in 0..400 {
        let m = reqwest::Method::from_bytes(format!("M{i}").as_bytes()).expect("method");
        let path = if i % 2 == 0 {
            format!("/nope/{i}")
        } else {
            "/api/accounts".into()
        };
        let _ = app
            .client
            .request(m, format!("{}{path}", app.address))
            .send()
            .await
            .expect("answered");
    }
    let after = scrape().await;
    assert!(
        series(&after) <= series(&before) + 40,
        "{} series before, {} after",
        series(&before),
        series(&after)
    );
    assert!(
        after.len() < before.len() + 20_000,
        "metrics grew by {} bytes",
        after.len() - before.len()
    );
    assert!(after.contains("method=\"other\""), "{after}");
    assert!(!after.contains("M399"));
    for help in after.lines().filter(|l| l.starts_with("# HELP")) {
        assert!(!help.ends_with(".."), "{help}");
    }
    app.stop().await.expect("clean shutdown");
}

/// Reads the whole response a raw connection gets, at most `bound`.
async fn raw_response(stream: &mut tokio::net::TcpStream, bound: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(bound, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A client that trickles its body cannot hold a request past `request_timeout`; one that
/// trickles its head is cut off by `http_client_request_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_at_their_deadlines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_app(&sqlite_url(&dir), |s| {
        s.http.request_timeout = Some(Duration::from_secs(1));
        s.http.client_request_timeout = Duration::from_secs(1);
    })
    .await;
    app.wait_ready(Duration::from_secs(30)).await;
    let host = app.address.trim_start_matches("http://").to_owned();

    let mut stream = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /api/transfers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 200\r\nConnection: close\r\n\r\n{",
        )
        .await
        .expect("head sent");
    let started = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if writer.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut out)).await;
    let response = String::from_utf8_lossy(&out).into_owned();
    let took = started.elapsed();
    trickle.abort();
    assert!(response.starts_with("HTTP/1.1 504"), "{response:?}");
    assert!(response.contains("request_timeout"), "{response}");
    assert!(took < Duration::from_secs(3), "cut off after {took:?}");

    let mut stream = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("partial head sent");
    let started = Instant::now();
    let response = raw_response(&mut stream, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a partial head held the connection for {:?}: {response:?}",
        started.elapsed()
    );
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 408"),
        "{response:?}"
    );
    app.stop().await.expect("clean shutdown");
}

/// With a management port, `/metrics` and `/health/db` live there only; the probes stay on
/// the public listener, and the API is not on the management one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_listener_keeps_metrics_and_details_off_the_public_port() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_app(&sqlite_url(&dir), |s| s.http.management_port = Some(0)).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let management = app.management.clone().expect("a management listener");
    let status = async |path: &str| {
        app.client
            .get(format!("{management}{path}"))
            .send()
            .await
            .expect("answered")
            .status()
            .as_u16()
    };
    assert_eq!(status("/metrics").await, 200);
    assert_eq!(status("/health/db").await, 200);
    assert_eq!(status("/health/live").await, 200);
    assert_eq!(status("/api/accounts").await, 404);
    assert_eq!(app.get("/metrics").await.0, 404);
    assert_eq!(app.get("/health/db").await.0, 404);
    assert_eq!(app.get("/health/ready").await.0, 200);
    assert_eq!(app.get("/health/live").await.0, 200);
    assert_eq!(app.get("/api/accounts").await.0, 200);
    app.stop().await.expect("clean shutdown");
}

/// `/health/ready` says "fail" without the error's text (host, port, user and database names)
/// unless `health_details` is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reveals_no_error_text_unless_details_are_on() {
    let port = free_port();
    let url = format!(
        "postgres://hidden_user@127.0.0.1:{port}/hidden_db?connect_timeout=1&connect_retry_timeout=60"
    );
    for details in [false, true] {
        let app = spawn_app(&url, |s| s.http.health_details = details).await;
        let mut last = Value::Null;
        for _ in 0..40 {
            let (status, body) = app.get("/health/ready").await;
            assert_eq!(status, 503);
            last = body;
            if app.db.last_error().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_, last_body) = app.get("/health/ready").await;
        let text = last_body.to_string();
        assert_eq!(last_body["status"], "fail", "{last}");
        if details {
            assert!(text.contains(&port.to_string()), "details on: {text}");
        } else {
            for secret in ["hidden_user", "hidden_db", &port.to_string(), "127.0.0.1"] {
                assert!(!text.contains(secret), "{secret} revealed: {text}");
            }
        }
        app.stop().await.ok();
    }
}
