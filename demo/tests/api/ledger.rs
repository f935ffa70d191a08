//! The ledger API end to end, on PostgreSQL and SQLite (MariaDB in `mysql.rs`): the same
//! suite against each backend.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TestApp, fresh_pg_database, spawn_app, sqlite_url, with_params};

async fn create_account(app: &TestApp, owner: &str, balance: i64) -> i64 {
    let (status, _, body) = app
        .post(
            "/api/accounts",
            &json!({"owner": owner, "balance_cents": balance}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().expect("account id")
}

async fn balance(app: &TestApp, id: i64) -> i64 {
    let (status, body) = app.get(&format!("/api/accounts/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body["balance_cents"].as_i64().expect("balance")
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// Create, read, paginate.
async fn accounts_crud_and_pagination(app: &TestApp) {
    let ids = {
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(create_account(app, &format!("owner-{i}"), 100 * i).await);
        }
        ids
    };
    let (status, body) = app.get(&format!("/api/accounts/{}", ids[2])).await;
    assert_eq!(status, 200);
    assert_eq!(body["owner"], "owner-2");
    assert_eq!(body["balance_cents"], 200);

    let (status, body) = app.get("/api/accounts/999999").await;
    assert_eq!((status, error_code(&body)), (404, "account_not_found"));
    let (status, body) = app.get("/api/accounts/abc").await;
    assert_eq!((status, error_code(&body)), (400, "invalid_path"));

    // Keyset pagination walks every account exactly once.
    let mut seen = Vec::new();
    let mut after: Option<i64> = None;
    for _ in 0..10 {
        let path = match after {
            Some(a) => format!("/api/accounts?limit=2&after={a}"),
            None => "/api/accounts?limit=2".to_owned(),
        };
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().expect("items") {
            seen.push(item["id"].as_i64().expect("id"));
        }
        match page["next_after"].as_i64() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.sort_unstable();
    assert_eq!(seen, expected);
    let (status, body) = app.get("/api/accounts?limit=0").await;
    assert_eq!((status, error_code(&body)), (400, "invalid_limit"));
}

/// Bad input gets a 4xx with a clear code and moves nothing.
async fn bad_input_is_rejected(app: &TestApp) {
    let a = create_account(app, "alice", 1_000).await;
    let b = create_account(app, "bob", 0).await;
    let cases = [
        (json!({"owner": "x"}), "/api/accounts", 400, "invalid_json"),
        (
            json!({"owner": "x", "balance_cents": -5}),
            "/api/accounts",
            400,
            "invalid_balance",
        ),
        (
            json!({"owner": "  ", "balance_cents": 5}),
            "/api/accounts",
            400,
            "invalid_owner",
        ),
        (
            json!({"from_account_id": a, "to_account_id": b}),
            "/api/transfers",
            400,
            "invalid_json",
        ),
        (
            json!({"from_account_id": a, "to_account_id": b, "amount_cents": -1}),
            "/api/transfers",
            400,
            "invalid_amount",
        ),
        (
            json!({"from_account_id": a, "to_account_id": b, "amount_cents": 0}),
            "/api/transfers",
            400,
            "invalid_amount",
        ),
        (
            json!({"from_account_id": a, "to_account_id": a, "amount_cents": 1}),
            "/api/transfers",
            422,
            "same_account",
        ),
        (
            json!({"from_account_id": a, "to_account_id": 987654, "amount_cents": 1}),
            "/api/transfers",
            404,
            "account_not_found",
        ),
        (
            json!({"from_account_id": a, "to_account_id": b, "amount_cents": 1001}),
            "/api/transfers",
            422,
            "insufficient_funds",
        ),
    ];
    for (body, path, status, code) in cases {
        let (got, _, res) = app.post(path, &body, None).await;
        assert_eq!((got, error_code(&res)), (status, code), "{body} -> {res}");
        assert!(
            res["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // Not JSON at all.
    let res = app
        .client
        .post(format!("{}/api/transfers", app.address))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("answered");
    assert_eq!(res.status().as_u16(), 400);
    assert_eq!(
        balance(app, a).await,
        1_000,
        "rejected transfers moved no money"
    );
    assert_eq!(balance(app, b).await, 0);
}

/// The largest balance the ledger holds (the demo's `MAX_BALANCE_CENTS`).
const MAX_BALANCE: i64 = 1_000_000_000_000_000;

/// Balances cannot overflow: a credit past the cap is a 422 that moves nothing, the capped
/// account still reads, and the schema refuses the overflow even from raw SQL. Bodies must be
/// JSON objects (an array used to move money), and names hold no control characters.
async fn money_limits_and_body_shapes(app: &TestApp) {
    use sea_orm::ConnectionTrait;
    let rich = create_account(app, "rich", MAX_BALANCE).await;
    let small = create_account(app, "small", 10).await;
    let (status, _, body) = app
        .post(
            "/api/transfers",
            &json!({"from_account_id": small, "to_account_id": rich, "amount_cents": 10}),
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (422, "balance_limit_exceeded"),
        "{body}"
    );
    assert_eq!(
        balance(app, rich).await,
        MAX_BALANCE,
        "the capped account still reads"
    );
    assert_eq!(balance(app, small).await, 10, "nothing moved");

    let raw = app
        .db
        .conn()
        .execute_unprepared(&format!(
            "UPDATE accounts SET balance_cents = balance_cents + 1 WHERE id = {rich}"
        ))
        .await;
    assert!(raw.is_err(), "the schema refuses a balance above the cap");
    assert_eq!(balance(app, rich).await, MAX_BALANCE);

    for (body, path, code) in [
        (json!([small, rich, 5]), "/api/transfers", "invalid_json"),
        (json!([rich, small, 5]), "/api/transfers", "invalid_json"),
        (json!(["x", 5]), "/api/accounts", "invalid_json"),
        (json!("transfer"), "/api/transfers", "invalid_json"),
        (
            json!({"owner": "a\u{0}b", "balance_cents": 1}),
            "/api/accounts",
            "invalid_owner",
        ),
        (
            json!({"owner": "tab\there", "balance_cents": 1}),
            "/api/accounts",
            "invalid_owner",
        ),
        (
            json!({"owner": "too rich", "balance_cents": MAX_BALANCE + 1}),
            "/api/accounts",
            "invalid_balance",
        ),
        (
            json!({"from_account_id": rich, "to_account_id": small, "amount_cents": i64::MAX}),
            "/api/transfers",
            "invalid_amount",
        ),
    ] {
        let (status, _, res) = app.post(path, &body, None).await;
        assert_eq!((status, error_code(&res)), (400, code), "{body} -> {res}");
    }
    assert_eq!(balance(app, rich).await, MAX_BALANCE, "no body moved money");
    assert_eq!(balance(app, small).await, 10);
}

/// A transfer moves money once; a retry with the same key returns the original.
async fn transfers_and_idempotency(app: &TestApp) {
    let a = create_account(app, "payer", 1_000).await;
    let b = create_account(app, "payee", 50).await;
    let body = json!({"from_account_id": a, "to_account_id": b, "amount_cents": 300});
    let (status, headers, first) = app.post("/api/transfers", &body, Some("order-42")).await;
    assert_eq!(status, 201, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    let (status, headers, again) = app.post("/api/transfers", &body, Some("order-42")).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(
        headers.get("idempotent-replayed").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    assert_eq!(first, again, "the replay returns the original transfer");
    assert_eq!(balance(app, a).await, 700);
    assert_eq!(balance(app, b).await, 350);

    // The same key for a different transfer is a conflict, and moves nothing.
    let other = json!({"from_account_id": a, "to_account_id": b, "amount_cents": 5});
    let (status, _, res) = app.post("/api/transfers", &other, Some("order-42")).await;
    assert_eq!((status, error_code(&res)), (409, "idempotency_key_reused"));
    assert_eq!(balance(app, a).await, 700);

    // Listing by account.
    let (status, page) = app.get(&format!("/api/transfers?account_id={b}")).await;
    assert_eq!(status, 200);
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["idempotency_key"], "order-42");
    let (status, res) = app.get("/api/transfers?account_id=424242").await;
    assert_eq!((status, error_code(&res)), (404, "account_not_found"));

    // Concurrent duplicates of one key: exactly one transfer is stored.
    let c = create_account(app, "dup", 10_000).await;
    let dup = json!({"from_account_id": c, "to_account_id": b, "amount_cents": 10});
    let replies = futures::future::join_all(
        (0..10).map(|_| app.post("/api/transfers", &dup, Some("dup-key"))),
    )
    .await;
    let ids: std::collections::HashSet<i64> = replies
        .iter()
        .map(|(status, _, body)| {
            assert_eq!(*status, 201, "{body}");
            body["id"].as_i64().expect("id")
        })
        .collect();
    assert_eq!(ids.len(), 1, "all duplicates got the same transfer");
    assert_eq!(balance(app, c).await, 9_990, "money moved once");
}

/// 200 random concurrent transfers among 10 accounts: nothing lost, nothing negative, and the
/// stored transfers explain every balance.
async fn concurrent_transfers_keep_the_books(app: &TestApp) {
    const ACCOUNTS: usize = 10;
    const START: i64 = 10_000;
    let mut ids = Vec::new();
    for i in 0..ACCOUNTS {
        ids.push(create_account(app, &format!("c{i}"), START).await);
    }
    let mut rng = fastrand::Rng::with_seed(7);
    let requests: Vec<Value> = (0..200)
        .map(|_| {
            let from = ids[rng.usize(..ACCOUNTS)];
            let mut to = ids[rng.usize(..ACCOUNTS)];
            while to == from {
                to = ids[rng.usize(..ACCOUNTS)];
            }
            json!({"from_account_id": from, "to_account_id": to, "amount_cents": rng.i64(1..=4_000)})
        })
        .collect();
    let replies =
        futures::future::join_all(requests.iter().map(|r| app.post("/api/transfers", r, None)))
            .await;
    let mut committed = 0;
    for (status, _, body) in &replies {
        match status {
            201 => committed += 1,
            422 => assert_eq!(error_code(body), "insufficient_funds"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        committed > 100,
        "most transfers should succeed, got {committed}"
    );

    let mut balances = std::collections::HashMap::new();
    for id in &ids {
        let b = balance(app, *id).await;
        assert!(b >= 0, "account {id} went negative: {b}");
        balances.insert(*id, b);
    }
    assert_eq!(
        balances.values().sum::<i64>(),
        START * ACCOUNTS as i64,
        "money was created or lost"
    );

    // Replay the stored transfers: they must explain every balance exactly.
    let mut expected: std::collections::HashMap<i64, i64> =
        ids.iter().map(|id| (*id, START)).collect();
    let mut stored = 0;
    for t in app.all_transfers().await {
        let (from, to, amount) = (
            t["from_account_id"].as_i64().expect("from"),
            t["to_account_id"].as_i64().expect("to"),
            t["amount_cents"].as_i64().expect("amount"),
        );
        if expected.contains_key(&from) {
            stored += 1;
            *expected.entry(from).or_default() -= amount;
            *expected.entry(to).or_default() += amount;
        }
    }
    assert_eq!(
        stored, committed,
        "every acknowledged transfer is stored exactly once"
    );
    assert_eq!(expected, balances);
}

/// `POST /api/accounts/batch`: many accounts in one transaction (by `COPY` on PostgreSQL from
/// 1000 rows, chunked `INSERT`s otherwise); a bad row names its index and opens nothing.
async fn batch_of_accounts(app: &TestApp) {
    let (_, before) = app.get("/api/accounts?limit=200").await;
    let count_before = before["items"].as_array().map_or(0, Vec::len);
    let accounts: Vec<Value> = (0..1500)
        .map(|i| json!({"owner": format!("batch-{i}"), "balance_cents": i}))
        .collect();
    let (status, _, body) = app
        .post(
            "/api/accounts/batch",
            &json!({ "accounts": accounts }),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["inserted"], 1500, "{body}");
    let expected = if app.db.backend() == dbservice::config::Backend::Postgres {
        "copy"
    } else {
        "insert"
    };
    assert_eq!(body["method"], expected, "{body}");
    // The last one is readable like any account.
    let (_, page) = app.get("/api/accounts?limit=200&after=0").await;
    assert!(
        page["items"]
            .as_array()
            .is_some_and(|a| a.len() >= count_before.min(200))
    );

    let mut bad: Vec<Value> = (0..5)
        .map(|i| json!({"owner": format!("bad-{i}"), "balance_cents": 1}))
        .collect();
    bad[3] = json!({"owner": "bad-3", "balance_cents": -5});
    let (status, _, body) = app
        .post("/api/accounts/batch", &json!({ "accounts": bad }), None)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_balance", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("accounts[3]")),
        "{body}"
    );
    let (status, _, body) = app
        .post("/api/accounts/batch", &json!({ "accounts": [] }), None)
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_batch")),
        "{body}"
    );
    let (status, _, body) = app.post("/api/accounts/batch", &json!([1, 2]), None).await;
    assert_eq!(status, 400, "{body}");
}

/// The whole suite against one database URL.
pub async fn ledger_suite(url: &str) {
    let app = spawn_app(url, |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;
    accounts_crud_and_pagination(&app).await;
    bad_input_is_rejected(&app).await;
    money_limits_and_body_shapes(&app).await;
    transfers_and_idempotency(&app).await;
    concurrent_transfers_keep_the_books(&app).await;
    batch_of_accounts(&app).await;
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_on_postgres() {
    let url = with_params(&fresh_pg_database().await, "connection_limit=5");
    ledger_suite(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    ledger_suite(&with_params(&sqlite_url(&dir), "connection_limit=5")).await;
}
