//! The fault drills' common parts: a ledger to move money in, transfers that retry like a
//! careful client, the books check, timed requests, and the drill itself (load, a fault, and
//! what a user would notice).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{TestApp, eventually, unique_name};

pub struct Ledger {
    pub accounts: Vec<i64>,
    pub start_total: i64,
}

pub async fn open_accounts(app: &TestApp, n: usize, balance: i64) -> Ledger {
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
pub async fn transfer_with_retries(
    app: &TestApp,
    body: serde_json::Value,
    key: String,
) -> Option<i64> {
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

pub async fn check_books(app: &TestApp, ledger: &Ledger, acknowledged: &[i64]) {
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

/// One client request with its latency: (status or 0 for a client-side failure, seconds).
pub async fn timed_get(client: &reqwest::Client, url: String) -> (u16, Duration) {
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
pub const DRILL_PARAMS: &str = "connection_limit=4&pool_timeout=2&statement_timeout=2&transaction_max_wait=2\
     &transaction_timeout=3&health_check_timeout=1&ping_timeout=1&connect_timeout=2";

/// Runs transfer and read load against `app`, applies a fault for `fault_for` (`inject`, then
/// `restore`), and checks what a user would notice: no request outlives its deadline (+ slack),
/// readiness fails within 2 s while liveness stays 200, readiness returns within 5 s of the
/// fault's end, then full capacity and balanced books.
///
/// `tolerated_stuck` is how many pool slots the fault may leave taken: 0, except where data is
/// silently discarded forever (see the blackhole test).
pub async fn fault_drill(
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
