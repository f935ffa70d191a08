//! The pool's bounds as an HTTP client sees them: `connection_limit` caps the backends under
//! concurrent requests, and `pool_timeout`, `transaction_max_wait` and `statement_timeout`
//! answer 503 + Retry-After and 504.

use std::time::{Duration, Instant};

use crate::support::{backends_named, fresh_pg_database, spawn_app, spawn_named_app, with_params};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_caps_backends_under_concurrent_requests() {
    let (app, base, name) = spawn_named_app("cap", 3).await;

    let load =
        futures::future::join_all((0..20).map(|_| app.get("/api/diagnostics/sleep?seconds=0.3")));
    let sampler = async {
        let mut max = 0;
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            max = max.max(backends_named(&base, &name).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        max
    };
    let (replies, max_backends) = tokio::join!(load, sampler);
    assert!(
        replies.iter().all(|(s, _)| *s == 200),
        "every request is served: {replies:?}"
    );
    assert_eq!(
        max_backends, 3,
        "the pool used all 3 connections and never more"
    );
    assert!(app.db.stats().open <= 3);
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_timeout_is_a_503_with_retry_after() {
    let base = fresh_pg_database().await;
    let app = spawn_app(
        &with_params(&base, "connection_limit=1&pool_timeout=300ms"),
        |_| {},
    )
    .await;
    app.wait_ready(Duration::from_secs(30)).await;
    let slow = app.get("/api/diagnostics/sleep?seconds=2");
    let blocked = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let res = app
            .client
            .get(format!("{}/api/accounts/1", app.address))
            .send()
            .await
            .expect("answered");
        (
            res.status().as_u16(),
            res.headers().get("retry-after").cloned(),
            started.elapsed(),
            res.json::<serde_json::Value>().await.ok(),
        )
    };
    let ((slow_status, _), (status, retry_after, waited, body)) = tokio::join!(slow, blocked);
    assert_eq!(slow_status, 200);
    assert_eq!(status, 503, "{body:?}");
    assert!(retry_after.is_some(), "Retry-After is set");
    assert_eq!(
        body.as_ref().map(|b| b["error"]["code"].clone()),
        Some(serde_json::json!("pool_saturated"))
    );
    assert!(
        waited < Duration::from_secs(2),
        "refused within pool_timeout + slack: {waited:?}"
    );
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_is_a_504() {
    let base = fresh_pg_database().await;
    let app = spawn_app(&with_params(&base, "statement_timeout=200ms"), |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let (status, body) = app.get("/api/diagnostics/sleep?seconds=3").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (504, Some("statement_timeout")),
        "{body}"
    );
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_past_max_wait_is_a_503_with_retry_after() {
    let base = fresh_pg_database().await;
    let app = crate::support::spawn_app(
        &with_params(&base, "connection_limit=1&transaction_max_wait=200ms"),
        |_| {},
    )
    .await;
    app.wait_ready(Duration::from_secs(30)).await;
    let mut ids = Vec::new();
    for owner in ["a", "b"] {
        let (status, _, body) = app
            .post(
                "/api/accounts",
                &serde_json::json!({"owner": owner, "balance_cents": 100}),
                None,
            )
            .await;
        assert_eq!(status, 201);
        ids.push(body["id"].as_i64().expect("id"));
    }
    let hog = app.get("/api/diagnostics/sleep?seconds=2");
    let transfer = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let res = app
            .client
            .post(format!("{}/api/transfers", app.address))
            .json(&serde_json::json!({"from_account_id": ids[0], "to_account_id": ids[1], "amount_cents": 5}))
            .send()
            .await
            .expect("answered");
        let retry_after = res.headers().get("retry-after").is_some();
        (
            res.status().as_u16(),
            retry_after,
            started.elapsed(),
            res.json::<serde_json::Value>().await.ok(),
        )
    };
    let (_, (status, retry_after, took, body)) = tokio::join!(hog, transfer);
    assert_eq!(status, 503, "{body:?}");
    assert!(retry_after);
    assert_eq!(
        body.map(|b| b["error"]["code"].clone()),
        Some(serde_json::json!("transaction_max_wait"))
    );
    assert!(
        took < Duration::from_secs(1),
        "refused within max_wait + slack: {took:?}"
    );
    let (_, balance) = app.get(&format!("/api/accounts/{}", ids[0])).await;
    assert_eq!(balance["balance_cents"], 100, "nothing moved");
    app.stop().await.expect("clean shutdown");
}

/// A named pool (`DATABASE_URL_ANALYTICS`) beside the primary: its series carry
/// `pool="analytics"` in `/metrics`, `/health/db` lists it, and shutdown closes it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_pool_is_served_measured_and_closed() {
    let analytics_db = fresh_pg_database().await;
    let name = crate::support::unique_name("analytics");
    let url = with_params(
        &analytics_db,
        &format!("connection_limit=2&application_name={name}"),
    );
    let app = spawn_app(&fresh_pg_database().await, |s| {
        s.core.set_named_pool("analytics", &url)
    })
    .await;
    app.wait_ready(Duration::from_secs(30)).await;
    assert!(
        crate::support::eventually(Duration::from_secs(10), || async {
            let (_, db) = app.get("/health/db").await;
            db["pools"]["analytics"]["phase"] == "ready"
        })
        .await,
        "the named pool connects in the background"
    );
    let (_, db) = app.get("/health/db").await;
    assert_eq!(db["pools"]["analytics"]["pool"]["max"], 2, "{db}");
    let text = app.metrics_text().await;
    assert!(
        text.contains("dbservice_pool_connections_max{pool=\"analytics\"} 2")
            && text.contains("dbservice_pool_connections_open{pool=\"primary\"}"),
        "{text}"
    );
    assert!(backends_named(&analytics_db, &name).await >= 1);
    app.stop().await.expect("clean shutdown");
    assert!(
        crate::support::eventually(Duration::from_secs(5), || async {
            backends_named(&analytics_db, &name).await == 0
        })
        .await,
        "shutdown closed the named pool"
    );
}
