//! Databases that move, over HTTP: a switchover (the primary stopped, its standby promoted)
//! under load from two instances on a multi-host URL, and a host that turns read-only in
//! place. What a user notices: 503 with Retry-After meanwhile (never 500), writes back by
//! themselves, every acknowledged transfer kept, the money conserved.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::drill::*;
use crate::support::{PgCluster, eventually, spawn_app, unique_name};

/// `postgres://…@127.0.0.1:p1,127.0.0.1:p2/postgres?query`, hosts in the order given.
fn hosts_url(clusters: &[&PgCluster], query: &str) -> String {
    let first = url::Url::parse(&clusters[0].url("postgres")).expect("cluster URL");
    let hosts: Vec<String> = clusters
        .iter()
        .map(|c| format!("127.0.0.1:{}", c.port))
        .collect();
    format!(
        "postgres://{}:{}@{}/postgres?{query}",
        first.username(),
        first.password().unwrap_or_default(),
        hosts.join(",")
    )
}

/// A transfer with a fresh key: its status, whether Retry-After came with it, and its id when
/// acknowledged.
async fn one_transfer(
    app: &crate::support::TestApp,
    from: i64,
    to: i64,
    key: &str,
) -> (u16, bool, Option<i64>) {
    let (status, headers, body) = app
        .post(
            "/api/transfers",
            &json!({"from_account_id": from, "to_account_id": to, "amount_cents": 1}),
            Some(key),
        )
        .await;
    (
        status,
        headers.get("retry-after").is_some(),
        body["id"].as_i64().filter(|_| status == 201),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_under_load_loses_nothing_and_writes_resume_by_themselves() {
    let primary = Arc::new(
        tokio::task::spawn_blocking(PgCluster::start)
            .await
            .expect("primary"),
    );
    let p = primary.clone();
    let standby = Arc::new(
        tokio::task::spawn_blocking(move || p.replica())
            .await
            .expect("standby"),
    );
    // The standby listed first: `read-write` must find the primary anyway.
    let url = hosts_url(
        &[&standby, &primary],
        &format!(
            "target_session_attrs=read-write&connection_limit=4&pool_timeout=2&connect_timeout=2&application_name={}",
            unique_name("switch")
        ),
    );
    let first = spawn_app(&url, |_| {}).await;
    first.wait_ready(Duration::from_secs(30)).await;
    let second = spawn_app(&url, |_| {}).await;
    second.wait_ready(Duration::from_secs(30)).await;
    let ledger = open_accounts(&first, 4, 100_000).await;
    let (_, db) = first.get("/health/db").await;
    assert_eq!(
        db["hosts"]["current"],
        format!("127.0.0.1:{}", primary.port),
        "{db}"
    );

    let running = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU32::new(0));
    let load = |app: &'static crate::support::TestApp, tag: &'static str| {
        let (running, sent) = (running.clone(), sent.clone());
        let accounts = ledger.accounts.clone();
        async move {
            let mut acknowledged = Vec::new();
            let mut n = 0usize;
            while running.load(Ordering::Relaxed) {
                let batch: Vec<_> = (0..3)
                    .map(|i| {
                        n += 1;
                        let body = json!({
                            "from_account_id": accounts[(n + i) % 4],
                            "to_account_id": accounts[(n + i + 1) % 4],
                            "amount_cents": 3,
                        });
                        transfer_with_retries(app, body, format!("{tag}-{n}"))
                    })
                    .collect();
                acknowledged.extend(futures::future::join_all(batch).await.into_iter().flatten());
                sent.fetch_add(3, Ordering::Relaxed);
            }
            acknowledged
        }
    };
    // The apps live until the end of the test; the load borrows them for good.
    let first: &'static _ = Box::leak(Box::new(first));
    let second: &'static _ = Box::leak(Box::new(second));
    let switchover = {
        let (primary, standby, running) = (primary.clone(), standby.clone(), running.clone());
        let ledger_from = ledger.accounts[0];
        let ledger_to = ledger.accounts[1];
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let p = primary.clone();
            tokio::task::spawn_blocking(move || p.stop_server())
                .await
                .expect("primary stops");
            let s = standby.clone();
            tokio::task::spawn_blocking(move || s.promote())
                .await
                .expect("standby promoted");
            let promoted = Instant::now();
            // Time to the first write acknowledged on the new primary, from a fresh client.
            let mut n = 0;
            let (back, id) = loop {
                n += 1;
                let (status, _, id) =
                    one_transfer(first, ledger_from, ledger_to, &format!("probe-{n}")).await;
                assert_ne!(status, 500, "never 500 during a switchover");
                if let Some(id) = id {
                    break (promoted.elapsed(), id);
                }
                assert!(
                    promoted.elapsed() < Duration::from_secs(30),
                    "writes never came back"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            tokio::time::sleep(Duration::from_secs(1)).await;
            running.store(false, Ordering::Relaxed);
            (back, n, id)
        }
    };
    let (a, b, (back, probes, probe_id)) =
        tokio::join!(load(first, "a"), load(second, "b"), switchover);
    eprintln!("writes back {back:?} after promotion ({probes} probe transfers)");
    assert!(sent.load(Ordering::Relaxed) > 12, "load kept running");
    assert!(back < Duration::from_secs(15), "writes back after {back:?}");
    let mut acknowledged = a;
    acknowledged.extend(b);
    // Only the last probe was acknowledged; the ones before it answered 503 and wrote nothing.
    acknowledged.push(probe_id);
    check_books(first, &ledger, &acknowledged).await;
    for app in [first, second] {
        let (_, db) = app.get("/health/db").await;
        assert_eq!(
            db["hosts"]["current"],
            format!("127.0.0.1:{}", standby.port),
            "{db}"
        );
        let (status, body) = app.get("/health/ready").await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_turned_read_only_answers_503_then_writes_come_back() {
    let cluster = Arc::new(
        tokio::task::spawn_blocking(PgCluster::start)
            .await
            .expect("cluster"),
    );
    let url = format!(
        "{}?connection_limit=3&pool_timeout=2&connect_timeout=2",
        cluster.url("postgres")
    );
    let app = spawn_app(&url, |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let ledger = open_accounts(&app, 2, 1_000).await;
    let (from, to) = (ledger.accounts[0], ledger.accounts[1]);
    assert_eq!(one_transfer(&app, from, to, "before").await.0, 201);

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.set_read_only(true))
        .await
        .expect("read-only");
    let mut n = 0;
    let turned = eventually(Duration::from_secs(10), || {
        n += 1;
        let key = format!("ro-{n}");
        let app = &app;
        async move {
            let (status, retry_after, _) = one_transfer(app, from, to, &key).await;
            assert_ne!(status, 500, "never 500 for a read-only server");
            if status == 503 {
                assert!(retry_after, "503 without Retry-After");
            }
            status == 503 && app.get("/health/ready").await.0 == 503
        }
    })
    .await;
    assert!(turned, "writes answer 503 and readiness fails");
    let (_, db) = app.get("/health/db").await;
    assert!(
        db["pool"]["closed"]["host_mismatch"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "connections to the read-only host closed: {db}"
    );
    assert_eq!(db["hosts"]["hosts"][0]["state"], "mismatch", "{db}");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("dbservice_pool_connections_closed_total{reason=\"host_mismatch\"")
            && metrics.contains("dbservice_pool_topology_changes_total"),
        "{metrics}"
    );

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.set_read_only(false))
        .await
        .expect("writable");
    let mut m = 0;
    assert!(
        eventually(Duration::from_secs(15), || {
            m += 1;
            let key = format!("rw-{m}");
            let app = &app;
            async move { one_transfer(app, from, to, &key).await.0 == 201 }
        })
        .await,
        "writes come back with no restart"
    );
    let (status, body) = app.get("/health/ready").await;
    assert_eq!(status, 200, "{body}");
    app.stop().await.expect("clean shutdown");
}
