//! Faults from the callers: overload, clients that disconnect mid-transfer, storms of
//! cancelled calls.

use std::time::{Duration, Instant};

use dbservice::{DbService, config::DbConfig};
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::support::drill::*;
use crate::support::select_one;
use crate::support::{fresh_pg_database, pg_scalar_i64, spawn_app, spawn_named_app, with_params};

/// Sustained load at 8x the pool: only 503 + Retry-After refusals while overloaded, then
/// 100 consecutive successes once the load is back under capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_refuses_cleanly_then_recovers() {
    let base = fresh_pg_database().await;
    let app = spawn_app(
        &with_params(&base, "connection_limit=2&pool_timeout=300ms"),
        |_| {},
    )
    .await;
    app.wait_ready(Duration::from_secs(30)).await;
    let started = Instant::now();
    let mut served = 0;
    let mut refused = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let wave = futures::future::join_all((0..16).map(|_| async {
            let res = app
                .client
                .get(format!("{}/api/diagnostics/sleep?seconds=0.2", app.address))
                .send()
                .await
                .expect("answered");
            (
                res.status().as_u16(),
                res.headers().get("retry-after").is_some(),
            )
        }))
        .await;
        for (status, retry_after) in wave {
            match status {
                200 => served += 1,
                503 => {
                    assert!(retry_after, "503 without Retry-After");
                    refused += 1;
                }
                other => panic!("unexpected {other} under overload"),
            }
        }
    }
    assert!(
        served > 0 && refused > 0,
        "served {served}, refused {refused}"
    );
    for i in 0..100 {
        let (status, body) = app.get("/api/accounts?limit=1").await;
        assert_eq!(status, 200, "request {i} after the overload: {body}");
    }
    app.stop().await.expect("clean shutdown");
}

/// Thousands of HTTP clients that give up mid-transfer: each transfer is applied once or not
/// at all, the books balance, and no connection is left dirty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_disconnect_mid_transfer_leave_no_trace() {
    let (app, base, app_name) = spawn_named_app("hangup", 4).await;
    let ledger = open_accounts(&app, 4, 1_000_000).await;
    let mut rng = fastrand::Rng::with_seed(8);
    let mut given_up = 0;
    for wave in 0..25 {
        let requests: Vec<_> = (0..80)
            .map(|i| {
                let from = ledger.accounts[rng.usize(..4)];
                let to = ledger
                    .accounts
                    .iter()
                    .copied()
                    .find(|a| *a != from)
                    .expect("another account");
                let patience = Duration::from_micros(rng.u64(200..20_000));
                app.client
                    .post(format!("{}/api/transfers", app.address))
                    .header("Idempotency-Key", format!("h-{wave}-{i}"))
                    .json(&json!({"from_account_id": from, "to_account_id": to, "amount_cents": 3}))
                    .timeout(patience)
                    .send()
            })
            .collect();
        given_up += futures::future::join_all(requests)
            .await
            .iter()
            .filter(|r| r.is_err())
            .count();
    }
    assert!(
        given_up > 500,
        "most clients gave up mid-request ({given_up})"
    );
    // Whatever was stored is exactly what moved the money. The server keeps working on
    // requests whose clients left (actix notices a gone client only when it answers), so wait
    // until it is quiet: nobody holds or waits for a connection and the count of transfers
    // has stopped moving.
    let mut last = usize::MAX;
    let until = Instant::now() + Duration::from_secs(60);
    let stored = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = app.db.stats();
        let stored = app.all_transfers().await;
        if s.active == 0 && s.waiting == 0 && stored.len() == last {
            break stored;
        }
        assert!(Instant::now() < until, "the server never went quiet: {s:?}");
        last = stored.len();
    };
    let mut expected: std::collections::HashMap<i64, i64> =
        ledger.accounts.iter().map(|a| (*a, 1_000_000)).collect();
    for t in &stored {
        *expected
            .entry(t["from_account_id"].as_i64().expect("from"))
            .or_default() -= 3;
        *expected
            .entry(t["to_account_id"].as_i64().expect("to"))
            .or_default() += 3;
    }
    for id in &ledger.accounts {
        let (_, body) = app.get(&format!("/api/accounts/{id}")).await;
        assert_eq!(
            body["balance_cents"].as_i64(),
            expected.get(id).copied(),
            "account {id}"
        );
    }
    let keys: std::collections::HashSet<&str> = stored
        .iter()
        .filter_map(|t| t["idempotency_key"].as_str())
        .collect();
    assert_eq!(keys.len(), stored.len(), "no transfer applied twice");
    assert_eq!(
        pg_scalar_i64(
            &base,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app_name}' AND state LIKE 'idle in transaction%'")
        )
        .await,
        0,
        "dirty connections left behind"
    );
    let full =
        futures::future::join_all((0..4).map(|_| app.get("/api/diagnostics/sleep?seconds=0.1")))
            .await;
    assert!(full.iter().all(|(s, _)| *s == 200));
    app.stop().await.expect("clean shutdown");
}

/// A storm of queries and transactions dropped at random points: afterwards every
/// connection can be checked out, one by one and all at once, and close() is prompt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_cancelled_calls_loses_no_capacity() {
    let base = fresh_pg_database().await;
    let db = DbService::new(
        DbConfig::from_url(&with_params(&base, "connection_limit=3")).expect("valid"),
    )
    .expect("service");
    db.connect().await.expect("connects");
    let mut rng = fastrand::Rng::with_seed(9);
    for round in 0..300 {
        let patience = Duration::from_micros(rng.u64(0..3_000));
        let db = db.clone();
        let call = async move {
            if round % 2 == 0 {
                let _ = select_one(&db).await;
            } else {
                let _ = db
                    .transaction_with(dbservice::TxOptions::default(), async |tx| {
                        tx.execute_unprepared("SELECT pg_sleep(0.001)").await
                    })
                    .await;
            }
        };
        let _ = tokio::time::timeout(patience, call).await;
    }
    for _ in 0..3 {
        select_one(&db).await.expect("sequential checkout");
    }
    let held =
        futures::future::join_all((0..3).map(|_| db.begin(dbservice::TxOptions::default()))).await;
    assert!(
        held.iter().all(Result::is_ok),
        "all connections can be held at once"
    );
    for tx in held.into_iter().flatten() {
        tx.rollback().await.expect("rollback");
    }
    assert_eq!(db.stats().waiting, 0);
    let started = Instant::now();
    assert!(db.close(Duration::from_secs(5)).await, "close() finished");
    assert!(started.elapsed() < Duration::from_secs(5));
}
