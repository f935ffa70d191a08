//! The demo with a streaming replica (`DATABASE_REPLICA_URLS`): GETs read from it, a client's
//! `Db-Position` keeps read-your-writes while replay is paused, and a dead replica costs no
//! request.

use std::time::Duration;

use dbservice::replica::WalPosition;
use serde_json::json;

use crate::support::{TestApp, cluster_with_replica, eventually, spawn_app, with_params};

/// `GET path` with a `Db-Position` header → (status, body).
async fn get_at(app: &TestApp, path: &str, position: &str) -> (u16, serde_json::Value) {
    let res = app
        .client
        .get(format!("{}{path}", app.address))
        .header("Db-Position", position)
        .send()
        .await
        .expect("GET answered");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or_default())
}

fn position_of(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("Db-Position")
        .and_then(|v| v.to_str().ok())
        .expect("a write answers with Db-Position")
        .to_owned()
}

async fn replica_state(app: &TestApp) -> serde_json::Value {
    app.get("/health/db").await.1["replicas"]["replicas"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_read_from_the_replica_and_clients_keep_their_writes() {
    let (primary, replica) = cluster_with_replica().await;
    let replica_url = with_params(&replica.url("postgres"), "connection_limit=3");
    let app = spawn_app(
        &with_params(&primary.url("postgres"), "connection_limit=4"),
        |s| s.core.set_replica_urls(&replica_url),
    )
    .await;
    app.wait_ready(Duration::from_secs(30)).await;
    assert!(
        eventually(Duration::from_secs(15), || async {
            replica_state(&app).await["in_rotation"] == json!(true)
        })
        .await,
        "{}",
        replica_state(&app).await
    );
    let mut ids = Vec::new();
    let mut opened = String::new();
    for owner in ["payer", "payee"] {
        let (status, headers, body) = app
            .post(
                "/api/accounts",
                &json!({"owner": owner, "balance_cents": 1000}),
                None,
            )
            .await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_i64().expect("id"));
        opened = position_of(&headers);
    }
    let opened_at: WalPosition = opened.parse().expect("a WAL position");
    // The replica has replayed the accounts before its replay is paused.
    assert!(
        eventually(Duration::from_secs(10), || async {
            let (status, _) = get_at(&app, &format!("/api/accounts/{}", ids[1]), &opened).await;
            let replayed = replica_state(&app).await["replayed"]
                .as_str()
                .and_then(|p| p.parse::<WalPosition>().ok())
                .unwrap_or_default();
            status == 200 && replayed >= opened_at
        })
        .await
    );
    let pause = replica.clone();
    tokio::task::spawn_blocking(move || pause.pause_replay())
        .await
        .expect("pause");

    let (status, headers, body) = app
        .post(
            "/api/transfers",
            &json!({"from_account_id": ids[0], "to_account_id": ids[1], "amount_cents": 300}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let paid = position_of(&headers);
    assert!(paid.parse::<WalPosition>().expect("position") > opened_at);
    let payee = format!("/api/accounts/{}", ids[1]);
    // The instance's own write, and the client's token: the new balance (from the primary).
    let (status, body) = app.get(&payee).await;
    assert_eq!(
        (status, &body["balance_cents"]),
        (200, &json!(1300)),
        "{body}"
    );
    let (status, body) = get_at(&app, &payee, &paid).await;
    assert_eq!(
        (status, &body["balance_cents"]),
        (200, &json!(1300)),
        "{body}"
    );
    // A client whose last write is older reads from the paused replica: the balance it had.
    let (status, body) = get_at(&app, &payee, &opened).await;
    assert_eq!(
        (status, &body["balance_cents"]),
        (200, &json!(1000)),
        "{body}"
    );
    // A malformed token is the client's error, named.
    let (status, body) = get_at(&app, &payee, "not-a-position").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["code"],
        json!("invalid_db_position"),
        "{body}"
    );
    assert!(body.to_string().contains("Db-Position"), "{body}");
    // So is a token ahead of everything the primary wrote: refused at once, not waited for.
    let started = std::time::Instant::now();
    let (status, body) = get_at(&app, &payee, "FFFFFFFF/FFFFFFFF").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["code"],
        json!("invalid_db_position"),
        "{body}"
    );
    let text = body.to_string();
    assert!(
        text.contains("Db-Position") && text.contains("ahead of the primary"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let text = app.metrics_text().await;
    let served = text
        .lines()
        .find(|l| {
            l.starts_with("dbservice_replica_reads_total{") && l.contains("outcome=\"replica\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(served >= 1.0, "{text}");
    assert!(
        text.contains("dbservice_replica_in_rotation{replica=\"replica_1\"} 1"),
        "{text}"
    );
    assert!(text.contains("pool=\"replica_1\""), "{text}");
    let health = app.get("/health/db").await.1.to_string();
    assert!(!health.contains(dbservice_testkit::PASSWORD), "{health}");

    // The replica dies: GETs keep answering from the primary, readiness stays 200.
    let resume = replica.clone();
    tokio::task::spawn_blocking(move || {
        resume.resume_replay();
        resume.kill();
    })
    .await
    .expect("kill");
    for _ in 0..30 {
        let (status, body) = app.get(&payee).await;
        assert_eq!(
            (status, &body["balance_cents"]),
            (200, &json!(1300)),
            "{body}"
        );
        let (status, _) = app.get("/health/ready").await;
        assert_eq!(status, 200);
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            replica_state(&app).await["in_rotation"] == json!(false)
        })
        .await
    );
    app.stop().await.expect("clean stop");
}
