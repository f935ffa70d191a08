//! Secrets that rotate, over HTTP: the demo runs with its password in `DATABASE_PASSWORD_FILE`
//! (a cluster that asks for it, scram-sha-256); transfers and reads go on while the file is
//! rewritten the kubelet's way and the role's password changed; a soft eviction then leaves only
//! connections opened with the new password, and nothing failed or went missing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::support::drill::{check_books, open_accounts};
use crate::support::{PgCluster, eventually, pg_scalar_i64, spawn_app};

/// Writes `text` to `path` as the kubelet does: a new file renamed over the old one.
fn write_atomically(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_go_on_while_the_password_file_rotates() {
    let cluster = Arc::new(
        tokio::task::spawn_blocking(|| {
            let c = PgCluster::start();
            c.require_password("ledger_app", "ledger-old-1");
            c.admin("CREATE DATABASE ledger OWNER ledger_app");
            c
        })
        .await
        .expect("cluster"),
    );
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("password");
    write_atomically(&file, "ledger-old-1\n");
    let url = format!(
        "postgres://ledger_app@127.0.0.1:{}/ledger?connection_limit=4&min_connections=4",
        cluster.port
    );
    let app = spawn_app(&url, |s| s.core.set_password_file(&file)).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let ledger = open_accounts(&app, 4, 1_000_000).await;

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU32::new(0));
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let (client, base) = (app.client.clone(), app.address.clone());
            let (stop, failed, acknowledged) = (stop.clone(), failed.clone(), acknowledged.clone());
            let (from, to) = (
                ledger.accounts[i % 4],
                ledger.accounts[(i + 1) % 4],
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let res = client
                        .post(format!("{base}/api/transfers"))
                        .json(&json!({"from_account_id": from, "to_account_id": to, "amount_cents": 1}))
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status().as_u16() == 201 => {
                            let body: serde_json::Value = r.json().await.unwrap_or_default();
                            if let (Some(id), Ok(mut acked)) =
                                (body["id"].as_i64(), acknowledged.lock())
                            {
                                acked.push(id);
                            }
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let read = client.get(format!("{base}/api/accounts/{from}")).send().await;
                    if !read.is_ok_and(|r| r.status().as_u16() == 200) {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Transfers acknowledged so far, then awaited to grow by `more` (the load is running).
    let acked_now = |acknowledged: &std::sync::Mutex<Vec<i64>>| {
        acknowledged.lock().map(|a| a.len()).unwrap_or(0)
    };
    let moved_on = |more: usize| {
        let acknowledged = acknowledged.clone();
        let from = acked_now(&acknowledged);
        async move {
            eventually(Duration::from_secs(15), || async {
                acked_now(&acknowledged) >= from + more
            })
            .await
        }
    };
    assert!(moved_on(20).await, "transfers are under way");

    write_atomically(&file, "ledger-new-2\n");
    {
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || {
            c.admin("ALTER ROLE ledger_app PASSWORD 'ledger-new-2'")
        })
        .await
        .expect("rotate");
    }
    let rotated = pg_scalar_i64(
        &cluster.url("postgres"),
        "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint",
    )
    .await;
    assert!(
        moved_on(10).await,
        "connections opened with the old password go on serving after the rotation"
    );
    app.db.soft_evict();
    let old_sessions = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'ledger_app' \
         AND (extract(epoch FROM backend_start) * 1000000)::bigint < {rotated}"
    );
    let admin_url = cluster.url("postgres");
    assert!(
        eventually(Duration::from_secs(15), || async {
            pg_scalar_i64(&admin_url, &old_sessions).await == 0
        })
        .await,
        "every connection opened with the old password closed after soft_evict"
    );
    assert!(
        moved_on(20).await,
        "transfers go on over connections opened with the new password"
    );
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed");
    let acked = acknowledged.lock().map(|a| a.clone()).unwrap_or_default();
    assert!(acked.len() > 20, "transfers went on: {}", acked.len());
    check_books(&app, &ledger, &acked).await;

    let (_, health) = app.get("/health/db").await;
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("reason=\"evicted\""),
        "evictions are counted"
    );
    for shown in [health.to_string(), metrics] {
        for secret in ["ledger-old-1", "ledger-new-2"] {
            assert!(
                !shown.contains(secret),
                "a password in /health/db or /metrics"
            );
        }
    }
    app.stop().await.expect("clean shutdown");
}
