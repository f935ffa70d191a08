//! The demo behind a real PgBouncer (Debian's 1.18) in transaction mode, two instances at
//! once, with a production-style URL: `pgbouncer=true` plus session settings, migrations over
//! `DATABASE_URL_DIRECT`.

use std::time::Duration;

use serde_json::json;

use crate::support::drill::*;
use crate::support::{cluster_with_pgbouncer, spawn_app, with_params};

const PGBOUNCER_PARAMS: &str = "pgbouncer=true&statement_timeout=5s&idle_in_transaction_session_timeout=10s&schema=public&connection_limit=4&pool_timeout=5s";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_demo_instances_through_pgbouncer_keep_the_books() {
    let Some((cluster, mut bouncer)) = cluster_with_pgbouncer(3, "").await else {
        return;
    };
    let url = with_params(&bouncer.url("postgres"), PGBOUNCER_PARAMS);
    let direct = cluster.url("postgres");
    let a = spawn_app(&url, |s| s.core.set_database_url_direct(&direct)).await;
    let b = spawn_app(&url, |s| s.core.set_database_url_direct(&direct)).await;
    a.wait_ready(Duration::from_secs(30)).await;
    b.wait_ready(Duration::from_secs(30)).await;
    let (_, health) = a.get("/health/db").await;
    let shown = health.to_string();
    assert!(
        shown.contains(&format!(":{}/postgres", bouncer.port))
            && shown.contains(&format!(":{}/postgres", cluster.port)),
        "/health/db shows both URLs: {shown}"
    );
    let ledger = open_accounts(&a, 4, 100_000).await;

    // 200 concurrent transfers, alternating between the instances.
    let transfers = (0..200).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        let from = ledger.accounts[i % 4];
        let to = ledger.accounts[(i + 1) % 4];
        async move {
            let (status, _, body) = app
                .post(
                    "/api/transfers",
                    &json!({"from_account_id": from, "to_account_id": to, "amount_cents": 7}),
                    None,
                )
                .await;
            (status, body)
        }
    });
    let results = futures::future::join_all(transfers).await;
    let bad: Vec<_> = results.iter().filter(|(s, _)| *s != 201).collect();
    assert!(
        bad.is_empty(),
        "{} not created: {:?}",
        bad.len(),
        &bad[..bad.len().min(3)]
    );
    let acknowledged: Vec<i64> = results
        .iter()
        .filter_map(|(_, b)| b["id"].as_i64())
        .collect();
    check_books(&b, &ledger, &acknowledged).await;

    // A PgBouncer restart under load is survived like a database restart.
    let load = {
        let (a, accounts) = (&a, ledger.accounts.clone());
        async move {
            let mut acked = Vec::new();
            for n in 0..60u64 {
                let body = json!({"from_account_id": accounts[0], "to_account_id": accounts[2], "amount_cents": 1});
                if let Some(id) = transfer_with_retries(a, body, format!("pgb-{n}")).await {
                    acked.push(id);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            acked
        }
    };
    let restart = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::task::block_in_place(|| bouncer.restart());
    };
    let (more, ()) = tokio::join!(load, restart);
    assert_eq!(more.len(), 60, "every transfer eventually acknowledged");
    let all: Vec<i64> = acknowledged.iter().chain(&more).copied().collect();
    check_books(&a, &ledger, &all).await;
    a.stop().await.expect("clean shutdown");
    b.stop().await.expect("clean shutdown");
}

/// The whole ledger suite (CRUD, bad input, money limits, idempotency, 200 concurrent
/// transfers with the books replayed) through PgBouncer with a production-style URL, migrations
/// included (transaction-scoped lock, through PgBouncer too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_suite_through_pgbouncer() {
    let Some((_cluster, bouncer)) = cluster_with_pgbouncer(3, "").await else {
        return;
    };
    crate::ledger::ledger_suite(&with_params(&bouncer.url("postgres"), PGBOUNCER_PARAMS)).await;
}
