//! The database's bad days: killed backends, restarts, overload. Each test checks what a user
//! would notice: errors only where unavoidable, money invariants, clean connections, capacity.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dbservice::{DbConfig, DbService};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;

use crate::support::{
    PgCluster, TestApp, backends_named, eventually, fresh_pg_database, pg_scalar_i64, spawn_app,
    unique_name, with_params,
};

async fn select_one(db: &DbService) -> Result<(), sea_orm::DbErr> {
    db.conn()
        .query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT 1"))
        .await
        .map(|_| ())
}

/// Backends killed with `pg_terminate_backend` while the pool idles: no request fails (a
/// statement that meets a killed connection never ran and is run again on another; the
/// connection's peers are pinged before use), and `min_connections` is refilled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backends_cost_no_errors_and_are_refilled() {
    let base = fresh_pg_database().await;
    let app = unique_name("kill");
    let db = DbService::new(
        DbConfig::from_url(&with_params(
            &base,
            &format!("connection_limit=5&min_connections=3&application_name={app}"),
        ))
        .expect("valid"),
    )
    .expect("service");
    db.connect().await.expect("connects");
    // Warm the pool: five connections open and idle.
    warm(&db, 5).await;
    assert_eq!(backends_named(&base, &app).await, 5);

    let killed = pg_scalar_i64(
        &base,
        &format!(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = '{app}') t"
        ),
    )
    .await;
    assert_eq!(killed, 5);
    assert!(
        eventually(Duration::from_secs(2), || async {
            backends_named(&base, &app).await == 0
        })
        .await
    );

    let mut errors = 0;
    for _ in 0..20 {
        if select_one(&db).await.is_err() {
            errors += 1;
        }
    }
    assert!(
        errors <= 1,
        "{errors} requests failed; only the first one to meet a dead connection may"
    );
    let burst = futures::future::join_all((0..5).map(|_| select_one(&db))).await;
    assert!(
        burst.iter().all(Result::is_ok),
        "full capacity back: {burst:?}"
    );
    assert!(
        eventually(Duration::from_secs(2), || async {
            backends_named(&base, &app).await >= 3
        })
        .await,
        "min_connections refilled"
    );
    db.close(Duration::from_secs(5)).await;
}

/// Opens `n` connections at once (concurrent short sleeps) and leaves them idle in the pool.
async fn warm(db: &DbService, n: usize) {
    let all = futures::future::join_all((0..n).map(|_| async {
        db.conn()
            .execute_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT pg_sleep(0.05)",
            ))
            .await
    }))
    .await;
    assert!(all.iter().all(Result::is_ok), "{all:?}");
}

struct Ledger {
    accounts: Vec<i64>,
    start_total: i64,
}

async fn open_accounts(app: &TestApp, n: usize, balance: i64) -> Ledger {
    let mut accounts = Vec::new();
    for i in 0..n {
        let (status, _, body) = app
            .post(
                "/api/accounts",
                &json!({"owner": format!("f{i}"), "balance_cents": balance}),
                None,
            )
            .await;
        assert_eq!(status, 201, "{body}");
        accounts.push(body["id"].as_i64().expect("id"));
    }
    Ledger {
        accounts,
        start_total: balance * n as i64,
    }
}

/// A client that retries a transfer with the same Idempotency-Key until it is acknowledged
/// (201) or refused for a business reason (422), as a careful client would.
async fn transfer_with_retries(app: &TestApp, body: serde_json::Value, key: String) -> Option<i64> {
    for _ in 0..100 {
        let res = app
            .client
            .post(format!("{}/api/transfers", app.address))
            .header("Idempotency-Key", &key)
            .timeout(Duration::from_secs(15))
            .json(&body)
            .send()
            .await;
        match res {
            Ok(r) if r.status().as_u16() == 201 => {
                let v: serde_json::Value = r.json().await.ok()?;
                return v["id"].as_i64();
            }
            Ok(r) if r.status().as_u16() == 422 => return None,
            Ok(r) => {
                let status = r.status().as_u16();
                assert!(
                    matches!(status, 503 | 504),
                    "unexpected {status} under faults"
                );
                if status == 503 {
                    assert!(
                        r.headers().get("retry-after").is_some(),
                        "503 without Retry-After"
                    );
                }
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("transfer {key} never acknowledged");
}

async fn check_books(app: &TestApp, ledger: &Ledger, acknowledged: &[i64]) {
    let mut total = 0;
    for id in &ledger.accounts {
        let (status, body) = app.get(&format!("/api/accounts/{id}")).await;
        assert_eq!(status, 200, "{body}");
        let b = body["balance_cents"].as_i64().expect("balance");
        assert!(b >= 0, "negative balance {b}");
        total += b;
    }
    assert_eq!(total, ledger.start_total, "money created or lost");
    let stored: Vec<i64> = app
        .all_transfers()
        .await
        .iter()
        .filter_map(|t| t["id"].as_i64())
        .collect();
    let mut acked = acknowledged.to_vec();
    acked.sort_unstable();
    acked.dedup();
    assert_eq!(
        acked.len(),
        acknowledged.len(),
        "one acknowledgement per transfer"
    );
    let missing: Vec<_> = acked.iter().filter(|id| !stored.contains(id)).collect();
    let extra: Vec<_> = stored.iter().filter(|id| !acked.contains(id)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "acknowledged but not stored: {missing:?}; stored but never acknowledged: {extra:?}"
    );
}

/// Clean (`-m fast`) and crash (`-m immediate`) restarts, twice each, under transfer load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_under_load_keep_the_books_and_recover_fully() {
    let cluster = Arc::new(
        tokio::task::spawn_blocking(PgCluster::start)
            .await
            .expect("cluster"),
    );
    let app_name = unique_name("restart");
    let url = with_params(
        &cluster.url("postgres"),
        &format!("connection_limit=4&application_name={app_name}&pool_timeout=2&connect_timeout=2"),
    );
    let app = spawn_app(&url, |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let ledger = open_accounts(&app, 4, 100_000).await;

    let running = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU32::new(0));
    let load = {
        let (running, sent) = (running.clone(), sent.clone());
        let accounts = ledger.accounts.clone();
        let app = &app;
        async move {
            let mut acknowledged = Vec::new();
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                let batch: Vec<_> = (0..4)
                    .map(|i| {
                        n += 1;
                        let from = accounts[(n as usize + i) % 4];
                        let to = accounts[(n as usize + i + 1) % 4];
                        let body = json!({"from_account_id": from, "to_account_id": to, "amount_cents": 7});
                        transfer_with_retries(app, body, format!("k-{n}"))
                    })
                    .collect();
                for id in futures::future::join_all(batch).await.into_iter().flatten() {
                    acknowledged.push(id);
                }
                sent.fetch_add(4, Ordering::Relaxed);
            }
            acknowledged
        }
    };
    let faults = {
        let cluster = cluster.clone();
        let running = running.clone();
        async move {
            for mode in ["fast", "immediate", "fast", "immediate"] {
                tokio::time::sleep(Duration::from_millis(700)).await;
                let c = cluster.clone();
                let mode = mode.to_owned();
                tokio::task::spawn_blocking(move || c.restart_server(&mode))
                    .await
                    .expect("restart");
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
            running.store(false, Ordering::Relaxed);
        }
    };
    let (acknowledged, ()) = tokio::join!(load, faults);
    assert!(sent.load(Ordering::Relaxed) > 20, "load kept running");
    check_books(&app, &ledger, &acknowledged).await;

    // From 2 s after recovery: no errors, dead connections are not handed out again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..100 {
        let (status, body) = app
            .get(&format!("/api/accounts/{}", ledger.accounts[i % 4]))
            .await;
        assert_eq!(status, 200, "request {i} after recovery: {body}");
    }
    let full =
        futures::future::join_all((0..4).map(|_| app.get("/api/diagnostics/sleep?seconds=0.2")))
            .await;
    assert!(
        full.iter().all(|(s, _)| *s == 200),
        "connection_limit concurrent requests succeed: {full:?}"
    );
    let observer = cluster.url("postgres");
    assert_eq!(
        pg_scalar_i64(
            &observer,
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app_name}' \
                 AND state LIKE 'idle in transaction%'"
            )
        )
        .await,
        0
    );
    assert!(
        backends_named(&observer, &app_name).await <= 4,
        "never above connection_limit"
    );
    app.stop().await.expect("clean shutdown");
}

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

/// One client request with its latency: (status or 0 for a client-side failure, seconds).
async fn timed_get(client: &reqwest::Client, url: String) -> (u16, Duration) {
    let started = Instant::now();
    let status = match client
        .get(url)
        .timeout(Duration::from_secs(30))
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(e) => {
            eprintln!("request failed after {:?}: {e:?}", started.elapsed());
            0
        }
    };
    (status, started.elapsed())
}

/// Settings for the drills: every wait bounded by a couple of seconds.
const DRILL_PARAMS: &str = "connection_limit=4&pool_timeout=2&statement_timeout=2&transaction_max_wait=2\
     &transaction_timeout=3&health_check_timeout=1&ping_timeout=1&connect_timeout=2";

/// Runs transfer and read load against `app`, applies a fault for `fault_for` (`inject`, then
/// `restore`), and checks what a user would notice: no request outlives its deadline (+ slack),
/// readiness fails within 2 s while liveness stays 200, readiness returns within 5 s of the
/// fault's end, then full capacity and balanced books.
///
/// `tolerated_stuck` is how many pool slots the fault may leave taken: 0, except where data is
/// silently discarded forever (see the blackhole test).
async fn fault_drill(
    app: &TestApp,
    fault_for: Duration,
    tolerated_stuck: u32,
    inject: impl FnOnce() + Send + 'static,
    restore: impl FnOnce() + Send + 'static,
) {
    let ledger = open_accounts(app, 2, 1_000_000).await;
    let drill = unique_name("drill");
    // Longest legitimate request with DRILL_PARAMS: timeout 3 (max_wait included) + the COMMIT
    // bound, timeout + 1 = 4 (transfers); pool_timeout 2 + query_timeout (statement_timeout
    // 2 + 1) (reads). Plus 1 s of slack, plus 1 s for a loaded CI machine.
    let limit = Duration::from_secs(9);
    let running = Arc::new(AtomicBool::new(true));
    let worst = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let loaders = (0..6).map(|i| {
        let (running, worst) = (running.clone(), worst.clone());
        let (client, address) = (app.client.clone(), app.address.clone());
        let drill = drill.clone();
        let account = ledger.accounts[i % 2];
        let other = ledger.accounts[(i + 1) % 2];
        async move {
            let mut n = 0;
            while running.load(Ordering::Relaxed) {
                n += 1;
                let (status, took) = if n % 2 == 0 {
                    timed_get(&client, format!("{address}/api/accounts/{account}")).await
                } else {
                    let started = Instant::now();
                    let res = client
                        .post(format!("{address}/api/transfers"))
                        .header("Idempotency-Key", format!("{drill}-{i}-{n}"))
                        .json(&json!({"from_account_id": account, "to_account_id": other, "amount_cents": 1}))
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await;
                    let status = match res {
                        Ok(r) => r.status().as_u16(),
                        Err(e) => {
                            eprintln!("transfer failed after {:?}: {e:?}", started.elapsed());
                            0
                        }
                    };
                    (status, started.elapsed())
                };
                assert!(matches!(status, 200 | 201 | 503 | 504), "unexpected status {status}");
                if let Ok(mut w) = worst.lock() {
                    *w = (*w).max(took);
                }
                if status >= 500 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    let load = futures::future::join_all(loaders);
    let probe = {
        let running = running.clone();
        let (client, address) = (app.client.clone(), app.address.clone());
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            tokio::task::spawn_blocking(inject)
                .await
                .expect("inject the fault");
            let since = Instant::now();
            let mut first_503 = None;
            while since.elapsed() < fault_for {
                let (ready, took) = timed_get(&client, format!("{address}/health/ready")).await;
                assert!(took < Duration::from_secs(2), "readiness took {took:?}");
                if ready == 503 && first_503.is_none() {
                    first_503 = Some(since.elapsed());
                }
                let (live, _) = timed_get(&client, format!("{address}/health/live")).await;
                assert_eq!(live, 200, "liveness must not depend on the database");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            tokio::task::spawn_blocking(restore).await.expect("restore");
            let restored = Instant::now();
            let mut ready_again = None;
            while restored.elapsed() < Duration::from_secs(10) {
                let (ready, _) = timed_get(&client, format!("{address}/health/ready")).await;
                if ready == 200 {
                    ready_again = Some(restored.elapsed());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            running.store(false, Ordering::Relaxed);
            (first_503, ready_again)
        }
    };
    let (_, (first_503, ready_again)) = tokio::join!(load, probe);
    let first_503 = first_503.expect("readiness never failed during the fault");
    assert!(
        first_503 <= Duration::from_millis(2500),
        "readiness failed after {first_503:?}"
    );
    let ready_again = ready_again.expect("not ready within 10 s of the fault's end");
    assert!(
        ready_again <= Duration::from_secs(5),
        "ready again after {ready_again:?}"
    );
    let worst = worst.lock().map(|w| *w).unwrap_or_default();
    assert!(worst <= limit, "a request took {worst:?} (limit {limit:?})");

    // Full capacity back: connection_limit concurrent requests succeed (no slot lost to a
    // dead socket).
    // An abandoned operation lets go of its connection within its own bound (at most
    // max_wait + ping_timeout = 3 s for a BEGIN) plus the release check (ping_timeout).
    let settled = eventually(Duration::from_secs(6), || async {
        app.db.stats().busy <= tolerated_stuck
    })
    .await;
    let stuck = app.db.stats().busy;
    assert!(
        settled,
        "connections nobody uses still hold pool slots: {:?}",
        app.db.stats()
    );
    let usable = 4 - stuck as usize;
    let started = Instant::now();
    let full =
        futures::future::join_all((0..usable).map(|_| app.get("/api/diagnostics/sleep?seconds=1")))
            .await;
    assert!(full.iter().all(|(s, _)| *s == 200), "{full:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "the {usable} requests ran side by side: {:?}",
        started.elapsed()
    );
    let mut total = 0;
    for id in &ledger.accounts {
        let (_, body) = app.get(&format!("/api/accounts/{id}")).await;
        total += body["balance_cents"].as_i64().expect("balance");
    }
    assert_eq!(total, ledger.start_total, "money created or lost");
}

/// The whole server frozen (SIGSTOP) for 20 s under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_database_never_hangs_a_request() {
    let cluster = Arc::new(
        tokio::task::spawn_blocking(PgCluster::start)
            .await
            .expect("cluster"),
    );
    let app = spawn_app(&with_params(&cluster.url("postgres"), DRILL_PARAMS), |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let (a, b) = (cluster.clone(), cluster.clone());
    fault_drill(
        &app,
        Duration::from_secs(20),
        0,
        move || a.pause(),
        move || b.resume(),
    )
    .await;
    app.stop().await.expect("clean shutdown");
}

/// A network blackhole (data silently dropped, sockets left open) between the service and the
/// database for 8 s: the blackholed connections would hold their pool slots forever without
/// the bounded release check (sqlx#4349; without it this test fails). One slot may still be
/// lost: after our check, sqlx pings once more without a bound, and if the blackhole starts
/// in between, that ping waits forever on a link that discards data forever (a real
/// blackhole ends in a TCP timeout). CONNECTION_POOLING.md, "Failure modes", names this limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_blackhole_never_hangs_or_leaks() {
    let base = fresh_pg_database().await;
    let proxy = Arc::new(crate::support::proxy::FaultProxy::start(&base, Duration::ZERO).await);
    let app = spawn_app(&with_params(&proxy.url, DRILL_PARAMS), |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let (a, b) = (proxy.clone(), proxy.clone());
    fault_drill(
        &app,
        Duration::from_secs(8),
        1,
        move || a.blackhole(true),
        move || b.blackhole(false),
    )
    .await;
    app.stop().await.expect("clean shutdown");
}

/// Every connection reset (RST) and the link dead for 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_resets_never_hang_or_leak() {
    let base = fresh_pg_database().await;
    let proxy = Arc::new(crate::support::proxy::FaultProxy::start(&base, Duration::ZERO).await);
    let app = spawn_app(&with_params(&proxy.url, DRILL_PARAMS), |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let (a, b) = (proxy.clone(), proxy.clone());
    let inject = move || {
        a.blackhole(true);
        a.reset_all();
    };
    fault_drill(&app, Duration::from_secs(3), 0, inject, move || {
        b.blackhole(false)
    })
    .await;
    app.stop().await.expect("clean shutdown");
}

/// Thousands of HTTP clients that give up mid-transfer: each transfer is applied once or not
/// at all, the books balance, and no connection is left dirty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_disconnect_mid_transfer_leave_no_trace() {
    let base = fresh_pg_database().await;
    let app_name = unique_name("hangup");
    let app = spawn_app(
        &with_params(
            &base,
            &format!("connection_limit=4&application_name={app_name}"),
        ),
        |_| {},
    )
    .await;
    app.wait_ready(Duration::from_secs(30)).await;
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
    // Whatever was stored is exactly what moved the money.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stored = app.all_transfers().await;
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

/// 100 ms of latency each way: slower, but no errors, and the queue shows in the statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_alone_causes_no_errors_and_the_queue_is_visible() {
    let base = fresh_pg_database().await;
    let proxy = crate::support::proxy::DelayProxy::start(&base, Duration::from_millis(100)).await;
    let db = DbService::new(
        DbConfig::from_url(&with_params(&proxy.url, "connection_limit=2")).expect("valid"),
    )
    .expect("service");
    db.connect().await.expect("connects through the slow link");
    let before = db.stats();
    let results = futures::future::join_all((0..8).map(|_| select_one(&db))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let after = db.stats();
    assert_eq!(after.errors, before.errors, "no errors from latency alone");
    assert!(
        after.wait.max_ms >= 300.0,
        "callers queued behind the slow link: {:?}",
        after.wait
    );
    assert!(
        after.query.p50_ms >= 150.0,
        "statements took a round trip each: {:?}",
        after.query
    );
    db.close(Duration::from_secs(5)).await;
}

/// The server ends idle sessions (`idle_session_timeout`) while the pool idles, with the
/// default `ping_after_idle` (10 s, so these connections are not pinged): the next burst sees
/// no error. A statement that meets such a connection never ran, and is run again on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_killed_by_the_server_cost_nothing() {
    let base = fresh_pg_database().await;
    let name = url::Url::parse(&base)
        .expect("URL")
        .path()
        .trim_start_matches('/')
        .to_owned();
    {
        use sea_orm::sqlx::{self, Connection};
        let mut admin = sqlx::PgConnection::connect(&base)
            .await
            .expect("admin connection");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {name} SET idle_session_timeout = '1s'"
        )))
        .execute(&mut admin)
        .await
        .expect("set idle_session_timeout");
        let _ = admin.close().await;
    }
    let db = DbService::new(
        DbConfig::from_url(&with_params(&base, "connection_limit=4")).expect("valid"),
    )
    .expect("service");
    db.connect().await.expect("connects");
    warm(&db, 4).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let burst = futures::future::join_all((0..12).map(|_| select_one(&db))).await;
    assert!(burst.iter().all(Result::is_ok), "{burst:?}");
    db.close(Duration::from_secs(5)).await;
}

/// `max_lifetime` recycling under load: no errors, and connections opened together retire
/// at different moments (jitter), not all at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_lifetime_recycles_without_errors_and_spreads_closures() {
    let base = fresh_pg_database().await;
    let db = DbService::new(
        DbConfig::from_url(&with_params(&base, "connection_limit=4&max_lifetime=2"))
            .expect("valid"),
    )
    .expect("service");
    db.connect().await.expect("connects");
    warm(&db, 4).await;
    let opened_before = db.stats().opened_total;
    let running = AtomicBool::new(true);
    let errors = AtomicU32::new(0);
    let load = futures::future::join_all((0..4).map(|_| async {
        while running.load(Ordering::Relaxed) {
            if select_one(&db).await.is_err() {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }));
    let watch = async {
        // When did each new connection appear? (A replacement is opened per retirement.)
        let mut moments = Vec::new();
        let started = Instant::now();
        let mut seen = opened_before;
        while started.elapsed() < Duration::from_millis(2600) {
            let opened = db.stats().opened_total;
            for _ in seen..opened {
                moments.push(started.elapsed());
            }
            seen = opened;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        running.store(false, Ordering::Relaxed);
        moments
    };
    let (_, moments) = tokio::join!(load, watch);
    assert_eq!(errors.load(Ordering::Relaxed), 0, "recycling caused errors");
    assert!(
        moments.len() >= 4,
        "every connection was recycled: {moments:?}"
    );
    let first_wave = &moments[..4];
    let spread = first_wave[3] - first_wave[0];
    assert!(
        spread >= Duration::from_millis(50),
        "connections retired all at once: {first_wave:?}"
    );
    db.close(Duration::from_secs(5)).await;
}

/// TLS with a throwaway CA: `verify-full` connects to the name on the certificate and refuses
/// another name, at once and naming `sslmode`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verify_full_checks_the_server_name() {
    let (cluster, ca) = tokio::task::spawn_blocking(|| {
        let c = PgCluster::start();
        let ca = c.enable_tls();
        (c, ca)
    })
    .await
    .expect("cluster with TLS");
    let params = format!(
        "sslmode=verify-full&sslrootcert={}&connect_retry_timeout=0",
        ca.display()
    );
    let good = DbService::new(
        DbConfig::from_url(&with_params(&cluster.url("postgres"), &params)).expect("valid"),
    )
    .expect("service");
    good.connect()
        .await
        .expect("verify-full against the certificate's address connects");
    let row = good
        .conn()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ))
        .await
        .expect("query")
        .expect("row");
    assert!(
        row.try_get_by_index::<bool>(0).expect("bool"),
        "the session is encrypted"
    );
    good.close(Duration::from_secs(5)).await;

    let mut wrong = url::Url::parse(&cluster.url("postgres")).expect("URL");
    wrong.set_host(Some("localhost")).expect("host");
    let bad =
        DbService::new(DbConfig::from_url(&with_params(wrong.as_str(), &params)).expect("valid"))
            .expect("service");
    let started = Instant::now();
    let err = bad
        .connect()
        .await
        .expect_err("a name not on the certificate is refused");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once: {:?}",
        started.elapsed()
    );
    let msg = err.to_string();
    assert!(msg.contains("sslmode=verify-full"), "{msg}");
    assert!(!msg.contains(crate::support::PASSWORD));
}
