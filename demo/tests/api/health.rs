//! Health probes against a private cluster we can stop and start: liveness never depends on
//! the database; readiness follows it, answers within its bound, and reports a busy pool as
//! `warn`, not `fail`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{PASSWORD, PgCluster, fresh_pg_database, spawn_app, with_params};

fn check<'a>(body: &'a Value, name: &str) -> &'a Value {
    &body["checks"][name][0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_reports_pool_statistics_and_details_are_redacted() {
    let base = fresh_pg_database().await;
    let app = spawn_app(&with_params(&base, "connection_limit=4"), |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;

    let (status, body) = app.get("/health/ready").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "pass");
    let pool = &check(&body, "database:connections")["observedValue"];
    assert_eq!(pool["max"], 4);
    for key in ["open", "idle", "busy"] {
        assert!(pool[key].is_u64(), "{key} in {pool}");
    }
    assert!(check(&body, "database:responseTime")["observedValue"].is_f64());

    let res = app
        .client
        .get(format!("{}/health/db", app.address))
        .send()
        .await
        .expect("answered");
    assert_eq!(res.status().as_u16(), 200);
    let text = res.text().await.expect("body");
    assert!(!text.contains(PASSWORD), "password leaked: {text}");
    let details: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(details["phase"], "ready");
    assert_eq!(details["config"]["connection_limit"], 4);
    assert!(
        details["config"]["url"]
            .as_str()
            .is_some_and(|u| u.contains(":***@")),
        "{details}"
    );
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_pool_is_warn_within_the_probe_bound() {
    let base = fresh_pg_database().await;
    let app = spawn_app(
        &with_params(&base, "connection_limit=2&health_check_timeout=500ms"),
        |_| {},
    )
    .await;
    app.wait_ready(Duration::from_secs(30)).await;
    let hogs =
        futures::future::join_all((0..2).map(|_| app.get("/api/diagnostics/sleep?seconds=3")));
    let probe = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        let reply = app.get("/health/ready").await;
        (reply, started.elapsed())
    };
    let (_, ((status, body), took)) = tokio::join!(hogs, probe);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "warn", "{body}");
    assert!(took < Duration::from_secs(2), "probe answered in {took:?}");
    app.stop().await.expect("clean shutdown");
}

/// The backend starts before its database, waits for it, and turns ready without a restart;
/// when the database goes away, readiness fails (within its bound) and liveness does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_database_then_outage_then_recovery() {
    let cluster = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .expect("cluster");
    let url = with_params(
        &cluster.url("postgres"),
        "connect_timeout=1&health_check_timeout=1",
    );
    let cluster = std::sync::Arc::new(cluster);
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop_server())
        .await
        .expect("stopped");

    // The cause in words is shown only with details on (see `hardening` for the default).
    let app = spawn_app(&url, |s| s.http.health_details = true).await;
    for _ in 0..3 {
        let (live, _) = app.get("/health/live").await;
        let (ready, body) = app.get("/health/ready").await;
        assert_eq!((live, ready), (200, 503), "{body}");
        assert_eq!(body["status"], "fail");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (_, body) = app.get("/health/ready").await;
    let output = body["output"].as_str().unwrap_or_default().to_owned();
    assert!(
        output.contains(&format!("cannot reach 127.0.0.1:{}", cluster.port))
            && output.contains("refused"),
        "readiness says why, in words: {output}"
    );
    assert!(!output.contains(crate::support::PASSWORD));
    let (_, details) = app.get("/health/db").await;
    assert_eq!(details["phase"], "starting");
    assert!(
        details["last_error"]["message"].is_string(),
        "the connect failure is reported: {details}"
    );

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start_server())
        .await
        .expect("started");
    app.wait_ready(Duration::from_secs(20)).await;
    let (status, _, body) = app
        .post(
            "/api/accounts",
            &serde_json::json!({"owner": "late", "balance_cents": 1}),
            None,
        )
        .await;
    assert_eq!(status, 201, "migrations ran after the late connect: {body}");

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop_server())
        .await
        .expect("stopped");
    // Probes share one check whose answer is reused for up to a second (READY_CACHE).
    let started = Instant::now();
    let mut ready = (0, serde_json::Value::Null);
    while started.elapsed() < Duration::from_secs(3) {
        ready = app.get("/health/ready").await;
        if ready.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready.0, 503, "{}", ready.1);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "readiness failed after {:?}",
        started.elapsed()
    );
    let (live, _) = app.get("/health/live").await;
    assert_eq!(live, 200, "liveness ignores the database");

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start_server())
        .await
        .expect("started");
    app.wait_ready(Duration::from_secs(10)).await;
    app.stop().await.expect("clean shutdown");
}
