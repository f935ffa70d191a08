//! Tenancy (`DBSERVICE_TENANT_HEADER`) on real PostgreSQL: each request names its tenant, and
//! row-level security shows it only its own accounts and transfers, directly, through
//! PgBouncer in transaction mode and on a streaming replica. The demo connects as `tenant_app`,
//! a role that is neither superuser nor BYPASSRLS and owns its database (so it runs the
//! migrations, and FORCE ROW LEVEL SECURITY binds it as the tables' owner).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::{self, Connection};
use serde_json::{Value, json};

use crate::binary::Server;
use crate::support::pgbouncer::PgBouncer;
use crate::support::{
    PASSWORD, PgCluster, TestApp, cluster_with_replica, env_of, eventually, fresh_pg_database,
    private_cluster, spawn_app, sqlite_url, with_params,
};

const HEADER: &str = "X-Tenant-Id";
const ROLE: &str = "tenant_app";
const DATABASE: &str = "tenants";

/// Creates the role and a database it owns on `cluster` (trust auth: no password needed).
async fn tenant_database(cluster: &Arc<PgCluster>) {
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || {
        c.admin(&format!(
            "CREATE ROLE {ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
        ));
        c.admin(&format!("CREATE DATABASE {DATABASE} OWNER {ROLE}"));
    })
    .await
    .expect("role and database");
}

/// `tenant_app`'s URL for `port` (the password is ignored under trust, and must never show).
fn role_url(port: u16) -> String {
    format!("postgres://{ROLE}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}")
}

/// The demo with tenancy on, as `tenant_app` on `url`, ready.
async fn tenant_app(url: &str, tweak: impl FnOnce(&mut dbservice_demo::DemoSettings)) -> TestApp {
    let app = spawn_app(url, |s| {
        s.tenant_header = Some(HEADER.to_owned());
        tweak(s);
    })
    .await;
    app.wait_ready(Duration::from_secs(30)).await;
    app
}

/// One tenant's view of an app: every request carries its header.
#[derive(Clone, Copy)]
struct Tenant<'a> {
    app: &'a TestApp,
    id: i64,
}

impl Tenant<'_> {
    async fn get(&self, path: &str) -> (u16, Value) {
        let res = self
            .app
            .client
            .get(format!("{}{path}", self.app.address))
            .header(HEADER, self.id.to_string())
            .send()
            .await
            .expect("GET answered");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let res = self
            .app
            .client
            .post(format!("{}{path}", self.app.address))
            .header(HEADER, self.id.to_string())
            .json(body)
            .send()
            .await
            .expect("POST answered");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Opens `n` accounts of `balance` cents each.
    async fn open(&self, n: usize, balance: i64) -> Vec<i64> {
        let mut ids = Vec::new();
        for i in 0..n {
            let (status, body) = self
                .post(
                    "/api/accounts",
                    &json!({"owner": format!("t{}-{i}", self.id), "balance_cents": balance}),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            ids.push(body["id"].as_i64().expect("id"));
        }
        ids
    }

    /// Every account id the tenant can list, walking pages of `limit`.
    async fn listed(&self, limit: u32) -> Vec<i64> {
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let (status, page) = self
                .get(&format!("/api/accounts?limit={limit}&after={after}"))
                .await;
            assert_eq!(status, 200, "{page}");
            seen.extend(ids_of(&page));
            match page["next_after"].as_i64() {
                Some(next) => after = next,
                None => return seen,
            }
        }
    }

    async fn transfer(&self, from: i64, to: i64, amount: i64) -> (u16, Value) {
        self.post(
            "/api/transfers",
            &json!({"from_account_id": from, "to_account_id": to, "amount_cents": amount}),
        )
        .await
    }

    /// A transfer with an `Idempotency-Key`: (status, replayed, body), `replayed` from the
    /// `Idempotent-Replayed` header.
    async fn keyed_transfer(
        &self,
        from: i64,
        to: i64,
        amount: i64,
        key: &str,
    ) -> (u16, bool, Value) {
        let res = self
            .app
            .client
            .post(format!("{}/api/transfers", self.app.address))
            .header(HEADER, self.id.to_string())
            .header("Idempotency-Key", key)
            .json(&json!({"from_account_id": from, "to_account_id": to, "amount_cents": amount}))
            .send()
            .await
            .expect("POST answered");
        let status = res.status().as_u16();
        let replayed = res
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v.as_bytes() == b"true");
        (status, replayed, res.json().await.unwrap_or(Value::Null))
    }

    /// The balance of one of the tenant's accounts.
    async fn balance(&self, id: i64) -> i64 {
        let (status, body) = self.get(&format!("/api/accounts/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body["balance_cents"].as_i64().expect("balance")
    }
}

fn ids_of(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|a| a["id"].as_i64().expect("id"))
        .collect()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// A superuser's scalar on `cluster`'s tenant database: the superuser bypasses the policy and
/// sees every tenant's rows.
async fn superuser_scalar(cluster: &PgCluster, sql: &str) -> i64 {
    crate::support::pg_scalar_i64(&cluster.url(DATABASE), sql).await
}

/// No transfer joins accounts of another tenant than its own, and each tenant's transfers and
/// money are where they should be, seen by a superuser past the policy.
async fn assert_no_transfer_crossed_tenants(cluster: &PgCluster) {
    let crossed = superuser_scalar(
        cluster,
        "SELECT count(*) FROM transfers t \
         JOIN accounts f ON f.id = t.from_account_id \
         JOIN accounts o ON o.id = t.to_account_id \
         WHERE t.tenant_id <> f.tenant_id OR t.tenant_id <> o.tenant_id",
    )
    .await;
    assert_eq!(crossed, 0, "transfers that crossed tenants");
    let untenanted = superuser_scalar(
        cluster,
        "SELECT (SELECT count(*) FROM transfers WHERE tenant_id = 0) \
         + (SELECT count(*) FROM accounts WHERE tenant_id = 0)",
    )
    .await;
    assert_eq!(untenanted, 0, "rows written for no tenant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_see_and_move_only_their_own_money() {
    let cluster = private_cluster().await;
    tenant_database(&cluster).await;
    // require_context: a statement of any route that forgot the tenant would be refused.
    let app = tenant_app(
        &with_params(
            &role_url(cluster.port),
            "connection_limit=8&require_context=true",
        ),
        |_| {},
    )
    .await;
    let (one, two) = (Tenant { app: &app, id: 1 }, Tenant { app: &app, id: 2 });
    let mut accounts = HashMap::new();
    for t in [one, two] {
        let opened = t.open(4, 10_000).await;
        // A batch too: its transaction carries the tenant like every other statement.
        let batch: Vec<Value> = (0..3)
            .map(|i| json!({"owner": format!("batch-{}-{i}", t.id), "balance_cents": 10_000}))
            .collect();
        let (status, body) = t
            .post("/api/accounts/batch", &json!({ "accounts": batch }))
            .await;
        assert_eq!((status, &body["inserted"]), (201, &json!(3)), "{body}");
        let ids = t.listed(200).await;
        assert_eq!(
            ids.len(),
            7,
            "tenant {} lists its 7 accounts: {ids:?}",
            t.id
        );
        assert!(opened.iter().all(|id| ids.contains(id)), "{ids:?}");
        accounts.insert(t.id, ids);
    }
    let (mine, theirs) = (&accounts[&1], &accounts[&2]);

    // Reading, listing, paging: only one's own.
    for (t, own, other) in [(one, mine, theirs), (two, theirs, mine)] {
        let (status, body) = t.get(&format!("/api/accounts/{}", own[0])).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = t.get(&format!("/api/accounts/{}", other[0])).await;
        assert_eq!((status, code(&body)), (404, "account_not_found"), "{body}");
        assert_eq!(
            &t.listed(2).await,
            own,
            "pages of 2 walk exactly the tenant's accounts"
        );
        let (status, body) = t
            .get(&format!("/api/transfers?account_id={}", other[0]))
            .await;
        assert_eq!((status, code(&body)), (404, "account_not_found"), "{body}");
        // Money never moves across tenants, either way: the other's account does not exist.
        for (from, to) in [(own[0], other[0]), (other[0], own[0]), (other[0], other[1])] {
            let (status, body) = t.transfer(from, to, 1).await;
            assert_eq!((status, code(&body)), (404, "account_not_found"), "{body}");
        }
    }

    // 200 concurrent transfers, the tenants interleaved.
    let moves: Vec<(Tenant, i64, i64)> = (0..200)
        .map(|i| {
            let (t, ids) = if i % 2 == 0 {
                (one, mine)
            } else {
                (two, theirs)
            };
            (t, ids[(i / 2) % ids.len()], ids[(i / 2 + 3) % ids.len()])
        })
        .collect();
    let results = futures::future::join_all(
        moves
            .iter()
            .map(|&(t, from, to)| async move { t.transfer(from, to, 7).await }),
    )
    .await;
    let mut expected: HashMap<i64, i64> =
        mine.iter().chain(theirs).map(|&id| (id, 10_000)).collect();
    for ((_, from, to), (status, body)) in moves.iter().zip(&results) {
        assert_eq!(*status, 201, "{body}");
        *expected.entry(*from).or_default() -= 7;
        *expected.entry(*to).or_default() += 7;
    }
    for (t, own) in [(one, mine), (two, theirs)] {
        let mut total = 0;
        for id in own {
            let (status, body) = t.get(&format!("/api/accounts/{id}")).await;
            assert_eq!(status, 200, "{body}");
            let balance = body["balance_cents"].as_i64().expect("balance");
            assert_eq!(balance, expected[id], "account {id} of tenant {}", t.id);
            total += balance;
        }
        assert_eq!(total, 70_000, "tenant {}'s money is conserved", t.id);
        let (status, page) = t.get("/api/transfers?limit=200").await;
        assert_eq!(status, 200, "{page}");
        let listed = page["items"].as_array().expect("items");
        assert_eq!(
            listed.len(),
            100,
            "tenant {} sees its own 100 transfers",
            t.id
        );
        assert!(
            listed.iter().all(|tr| {
                own.contains(&tr["from_account_id"].as_i64().unwrap_or(-1))
                    && own.contains(&tr["to_account_id"].as_i64().unwrap_or(-1))
            }),
            "tenant {} sees only transfers between its accounts",
            t.id
        );
    }
    assert_no_transfer_crossed_tenants(&cluster).await;
    for tenant in [1, 2] {
        let stored = superuser_scalar(
            &cluster,
            &format!("SELECT count(*) FROM transfers WHERE tenant_id = {tenant}"),
        )
        .await;
        assert_eq!(
            stored, 100,
            "tenant {tenant}'s transfers are stored as its own"
        );
    }
    app.stop().await.expect("clean stop");
}

/// An `Idempotency-Key` is the tenant's own: another tenant using the same one gets its own
/// transfer (not a 409 from a key it cannot see), and each tenant's replay returns its original,
/// moving no money twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_using_the_same_idempotency_key_each_get_their_own_transfer() {
    let cluster = private_cluster().await;
    tenant_database(&cluster).await;
    let app = tenant_app(
        &with_params(&role_url(cluster.port), "connection_limit=8"),
        |_| {},
    )
    .await;
    let (one, two) = (Tenant { app: &app, id: 1 }, Tenant { app: &app, id: 2 });
    let mut accounts = HashMap::new();
    for t in [one, two] {
        accounts.insert(t.id, t.open(3, 1_000).await);
    }
    // Different amounts, so that each tenant's transfer is told apart from the other's.
    let amount = |t: Tenant| 100 * t.id;

    let mut originals = HashMap::new();
    for t in [one, two] {
        let own = &accounts[&t.id];
        let (status, replayed, body) = t.keyed_transfer(own[0], own[1], amount(t), "order-1").await;
        assert_eq!(status, 201, "tenant {}: {body}", t.id);
        assert!(!replayed, "tenant {}'s first use of the key: {body}", t.id);
        assert_eq!(
            (&body["from_account_id"], &body["amount_cents"]),
            (&json!(own[0]), &json!(amount(t))),
            "tenant {}'s own transfer: {body}",
            t.id
        );
        originals.insert(t.id, body);
    }
    assert_ne!(
        originals[&1]["id"], originals[&2]["id"],
        "two transfers, one per tenant"
    );

    // Each tenant's replay, twice, returns its own original and moves nothing.
    for _ in 0..2 {
        for t in [one, two] {
            let own = &accounts[&t.id];
            let (status, replayed, body) =
                t.keyed_transfer(own[0], own[1], amount(t), "order-1").await;
            assert_eq!((status, replayed), (201, true), "tenant {}: {body}", t.id);
            assert_eq!(body, originals[&t.id], "tenant {}'s own original", t.id);
        }
    }
    // The key names the tenant's own transfer: another transfer under it is still refused.
    let (status, _, body) = two
        .keyed_transfer(accounts[&2][1], accounts[&2][2], 5, "order-1")
        .await;
    assert_eq!(
        (status, code(&body)),
        (409, "idempotency_key_reused"),
        "{body}"
    );

    // Concurrent duplicates of a key both tenants use: one transfer per tenant, every reply
    // the tenant's own (a duplicate that loses the race hits the per-tenant unique index and
    // is answered with the winner).
    let requests = (0..16).map(|i| {
        let t = if i % 2 == 0 { one } else { two };
        let own = accounts[&t.id].clone();
        async move {
            let (status, _, body) = t.keyed_transfer(own[2], own[0], 10, "dup-key").await;
            assert_eq!(status, 201, "tenant {}: {body}", t.id);
            (t.id, body["id"].as_i64().expect("id"))
        }
    });
    let mut dup_ids: HashMap<i64, BTreeSet<i64>> = HashMap::new();
    for (tenant, id) in futures::future::join_all(requests).await {
        dup_ids.entry(tenant).or_default().insert(id);
    }
    assert_eq!(dup_ids[&1].len(), 1, "tenant 1's duplicates: {dup_ids:?}");
    assert_eq!(dup_ids[&2].len(), 1, "tenant 2's duplicates: {dup_ids:?}");
    assert_ne!(dup_ids[&1], dup_ids[&2], "one transfer per tenant");

    // Money moved once per tenant and key.
    for t in [one, two] {
        let own = &accounts[&t.id];
        let mut balances = Vec::new();
        for &id in own {
            balances.push(t.balance(id).await);
        }
        assert_eq!(
            balances,
            vec![1_000 - amount(t) + 10, 1_000 + amount(t), 1_000 - 10],
            "tenant {}'s balances",
            t.id
        );
        let (status, page) = t.get("/api/transfers?limit=200").await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(
            page["items"].as_array().map(Vec::len),
            Some(2),
            "tenant {}: {page}",
            t.id
        );
    }
    for key in ["order-1", "dup-key"] {
        let stored = superuser_scalar(
            &cluster,
            &format!(
                "SELECT count(DISTINCT tenant_id) FROM transfers \
                 WHERE idempotency_key = '{key}' AND tenant_id IN (1, 2)"
            ),
        )
        .await;
        assert_eq!(stored, 2, "{key}: one row per tenant");
    }
    assert_eq!(
        superuser_scalar(&cluster, "SELECT count(*) FROM transfers").await,
        4
    );
    assert_no_transfer_crossed_tenants(&cluster).await;
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_tenant_header_are_refused_naming_it() {
    let cluster = private_cluster().await;
    tenant_database(&cluster).await;
    let app = tenant_app(&role_url(cluster.port), |_| {}).await;
    let account = Tenant { app: &app, id: 1 }.open(1, 100).await[0];
    let huge = "9".repeat(4000);
    let routes = [
        ("GET", "/api/accounts".to_owned()),
        ("GET", format!("/api/accounts/{account}")),
        ("POST", "/api/accounts".to_owned()),
        ("POST", "/api/transfers".to_owned()),
        ("GET", "/api/transfers".to_owned()),
    ];
    let send = |method: &str, path: &str, value: Option<reqwest::header::HeaderValue>| {
        let url = format!("{}{path}", app.address);
        let mut req = match method {
            "POST" => app
                .client
                .post(url)
                .json(&json!({"owner": "x", "balance_cents": 1})),
            _ => app.client.get(url),
        };
        if let Some(v) = value {
            req = req.header(HEADER, v);
        }
        async move {
            let res = req.send().await.expect("answered");
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for (method, path) in &routes {
        let (status, body) = send(method, path, None).await;
        assert_eq!(
            (status, code(&body)),
            (400, "missing_tenant"),
            "{method} {path}: {body}"
        );
        assert!(body.to_string().contains(HEADER), "{body}");
        let mut values: Vec<reqwest::header::HeaderValue> = [
            "abc",
            "0",
            "-1",
            "99999999999999999999",
            "+5",
            "1.5",
            " ",
            &huge,
        ]
        .iter()
        .map(|v| reqwest::header::HeaderValue::from_str(v).expect("header value"))
        .collect();
        values.push(reqwest::header::HeaderValue::from_bytes(b"\xff\xfe").expect("opaque bytes"));
        for value in values {
            let shown = String::from_utf8_lossy(value.as_bytes())
                .chars()
                .take(20)
                .collect::<String>();
            let (status, body) = send(method, path, Some(value)).await;
            assert_eq!(
                (status, code(&body)),
                (400, "invalid_tenant"),
                "{method} {path} with {shown:?}: {body}"
            );
            let text = body.to_string();
            assert!(text.contains(HEADER), "{text}");
            assert!(
                text.len() < 400 && !text.contains("99999999999999999999"),
                "the value is not echoed: {text}"
            );
        }
    }
    // Health and metrics are no tenant's: they answer without the header.
    for path in ["/health/ready", "/health/db", "/metrics"] {
        let (status, _) = app.get(path).await;
        assert_eq!(status, 200, "{path}");
    }
    // Nothing was written for the refused requests.
    assert_eq!(
        superuser_scalar(&cluster, "SELECT count(*) FROM accounts").await,
        1
    );
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_header_name_that_is_not_one_is_a_configuration_error_naming_the_variable() {
    let dir = tempfile::tempdir().expect("temp dir");
    for bad in ["X Tenant", "X-Tenant:Id", "Tenant\u{e9}"] {
        let err = dbservice_demo::DemoSettings::from_sources(
            &env_of(&[("DBSERVICE_TENANT_HEADER", bad)]),
            dir.path(),
        )
        .expect_err("refused");
        let msg = err.to_string();
        assert!(msg.contains("DBSERVICE_TENANT_HEADER"), "{msg}");
    }
    let off = dbservice_demo::DemoSettings::from_sources(
        &env_of(&[("DBSERVICE_TENANT_HEADER", "")]),
        dir.path(),
    )
    .expect("empty: tenancy off");
    assert_eq!(off.tenant_header, None);
}

#[tokio::test]
async fn tenancy_on_sqlite_is_refused_at_startup_naming_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::spawn(&[
        ("DATABASE_URL", sqlite_url(&dir)),
        ("DBSERVICE_TENANT_HEADER", HEADER.to_owned()),
    ]);
    let (exit, _) = server.wait_exit(Duration::from_secs(20)).await;
    let out = server.output();
    assert_eq!(exit, 2, "{out}");
    assert!(
        out.contains("DBSERVICE_TENANT_HEADER")
            && out.contains("SQLite")
            && out.contains("row-level security"),
        "{out}"
    );
}

/// `require_context=true` without tenancy would refuse every route: refused at startup.
#[tokio::test]
async fn require_context_without_tenancy_is_refused_at_startup() {
    let url = fresh_pg_database().await;
    let mut server = Server::spawn(&[
        ("DATABASE_URL", url),
        ("DBSERVICE_REQUIRE_CONTEXT", "true".to_owned()),
    ]);
    let (exit, _) = server.wait_exit(Duration::from_secs(20)).await;
    let out = server.output();
    assert_eq!(exit, 2, "{out}");
    assert!(
        out.contains("require_context is on but tenancy is off")
            && out.contains("DBSERVICE_TENANT_HEADER"),
        "{out}"
    );
}

#[tokio::test]
async fn tenancy_as_a_superuser_is_refused_at_startup_naming_the_role() {
    let url = fresh_pg_database().await;
    let mut server = Server::spawn(&[
        ("DATABASE_URL", url),
        ("DBSERVICE_TENANT_HEADER", HEADER.to_owned()),
    ]);
    let (exit, _) = server.wait_exit(Duration::from_secs(30)).await;
    let out = server.output();
    assert_eq!(exit, 1, "{out}");
    assert!(
        out.contains("role postgres bypasses row-level security (superuser or BYPASSRLS)")
            && out.contains("connect as a role without them"),
        "{out}"
    );
    assert!(!out.contains(PASSWORD), "{out}");
}

/// PgBouncer's user list, with `tenant_app` beside `postgres` (trust: the names must be
/// listed, no password is checked), readable by the `postgres` OS user PgBouncer runs as.
fn bouncer_users(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("users.txt");
    std::fs::write(&path, format!("\"postgres\" \"\"\n\"{ROLE}\" \"\"\n")).expect("user list");
    if nix::unistd::Uid::effective().is_root() {
        let pg = nix::unistd::User::from_name("postgres")
            .expect("look up user postgres")
            .expect("a `postgres` OS user");
        for p in [dir.path(), path.as_path()] {
            nix::unistd::chown(p, Some(pg.uid), Some(pg.gid)).expect("chown to postgres");
        }
    }
    format!("auth_file = {}", path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_pgbouncer_one_server_connection_never_shows_a_tenant_another_ones_accounts() {
    if crate::support::pgbouncer::binary().is_none() {
        eprintln!(
            "SKIPPED: no pgbouncer binary (install Debian's `pgbouncer` or set PGBOUNCER_BIN)"
        );
        return;
    }
    let cluster = private_cluster().await;
    tenant_database(&cluster).await;
    let users = tempfile::tempdir().expect("temp dir");
    let extra = bouncer_users(&users);
    let c = cluster.clone();
    // One server connection: every transaction of both tenants and both instances runs on it,
    // one after another.
    let bouncer = tokio::task::spawn_blocking(move || PgBouncer::start(&c, 1, &extra))
        .await
        .expect("start pgbouncer")
        .expect("pgbouncer installed");
    let url = with_params(
        &format!("postgres://{ROLE}@127.0.0.1:{}/{DATABASE}", bouncer.port),
        "pgbouncer=true&connection_limit=4&pool_timeout=10s",
    );
    let direct = role_url(cluster.port);
    let a = tenant_app(&url, |s| s.core.set_database_url_direct(&direct)).await;
    let b = tenant_app(&url, |s| s.core.set_database_url_direct(&direct)).await;
    let mut owned: HashMap<i64, Vec<i64>> = HashMap::new();
    for (app, id) in [(&a, 1), (&b, 2)] {
        owned.insert(id, Tenant { app, id }.open(3, 1_000).await);
    }
    // 160 requests in rounds of 16 at once: the tenants alternate, and so do the instances.
    for round in 0..10 {
        let requests = (0..16u32).map(|i| {
            let id = 1 + i64::from(i % 2);
            let app = if (i / 2 + round) % 2 == 0 { &a } else { &b };
            let t = Tenant { app, id };
            let own = owned[&id].clone();
            let other = owned[&(3 - id)].clone();
            async move {
                match (i / 2) % 4 {
                    0 | 1 => {
                        let (status, page) = t.get("/api/accounts?limit=200").await;
                        assert_eq!(status, 200, "{page}");
                        let seen: BTreeSet<i64> = ids_of(&page).into_iter().collect();
                        assert_eq!(seen, own.iter().copied().collect(), "tenant {id}: {page}");
                    }
                    2 => {
                        let (status, body) = t.get(&format!("/api/accounts/{}", other[0])).await;
                        assert_eq!((status, code(&body)), (404, "account_not_found"), "{body}");
                        let (status, body) = t.get(&format!("/api/accounts/{}", own[0])).await;
                        assert_eq!(status, 200, "{body}");
                    }
                    _ => {
                        let (status, body) = t.transfer(own[0], own[1], 1).await;
                        assert_eq!(status, 201, "{body}");
                        let (status, body) = t.transfer(own[1], other[1], 1).await;
                        assert_eq!((status, code(&body)), (404, "account_not_found"), "{body}");
                    }
                }
            }
        });
        futures::future::join_all(requests).await;
    }
    for (id, own) in &owned {
        let (status, page) = Tenant { app: &a, id: *id }
            .get("/api/transfers?limit=200")
            .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["items"].as_array().map(Vec::len), Some(20), "{page}");
        let total: i64 = {
            let (_, page) = Tenant { app: &b, id: *id }
                .get("/api/accounts?limit=200")
                .await;
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|acc| acc["balance_cents"].as_i64().expect("balance"))
                .sum()
        };
        assert_eq!(
            total,
            1_000 * own.len() as i64,
            "tenant {id}'s money is conserved"
        );
    }
    assert_no_transfer_crossed_tenants(&cluster).await;
    a.stop().await.expect("clean stop");
    b.stop().await.expect("clean stop");
}

/// `dbservice_replica_reads_total{outcome="replica"}` from `/metrics`.
async fn replica_reads(app: &TestApp) -> f64 {
    app.metrics_text()
        .await
        .lines()
        .find(|l| {
            l.starts_with("dbservice_replica_reads_total{") && l.contains("outcome=\"replica\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_reads_on_a_replica_see_only_the_tenants_rows() {
    let (primary, replica) = cluster_with_replica().await;
    // The role and the database reach the replica by replication.
    tenant_database(&primary).await;
    let replica_url = with_params(&role_url(replica.port), "connection_limit=3");
    let app = tenant_app(
        &with_params(&role_url(primary.port), "connection_limit=4"),
        |s| s.core.set_replica_urls(&replica_url),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            app.get("/health/db").await.1["replicas"]["replicas"][0]["in_rotation"] == json!(true)
        })
        .await,
        "{}",
        app.get("/health/db").await.1
    );
    let (one, two) = (Tenant { app: &app, id: 1 }, Tenant { app: &app, id: 2 });
    let mine = one.open(3, 500).await;
    let theirs = two.open(2, 500).await;
    let before = replica_reads(&app).await;
    // Once the replica has replayed the accounts, reads are served there, with the tenant.
    for (t, own) in [(one, &mine), (two, &theirs)] {
        let want: BTreeSet<i64> = own.iter().copied().collect();
        assert!(
            eventually(Duration::from_secs(10), || async {
                let (status, page) = t.get("/api/accounts?limit=200").await;
                status == 200 && ids_of(&page).into_iter().collect::<BTreeSet<_>>() == want
            })
            .await,
            "tenant {} never listed its accounts",
            t.id
        );
    }
    for _ in 0..10 {
        for (t, own, other) in [(one, &mine, &theirs), (two, &theirs, &mine)] {
            let (status, page) = t.get("/api/accounts?limit=200").await;
            assert_eq!(status, 200, "{page}");
            assert_eq!(&ids_of(&page), own, "tenant {}: {page}", t.id);
            let (status, body) = t.get(&format!("/api/accounts/{}", other[0])).await;
            assert_eq!((status, code(&body)), (404, "account_not_found"), "{body}");
        }
    }
    let after = replica_reads(&app).await;
    assert!(
        after >= before + 40.0,
        "the replica served the reads: {before} -> {after}"
    );
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenancy_off_an_owner_role_bound_by_the_policy_works_as_before() {
    let cluster = private_cluster().await;
    tenant_database(&cluster).await;
    let app = spawn_app(&role_url(cluster.port), |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let mut ids = Vec::new();
    for owner in ["alice", "bob"] {
        let (status, _, body) = app
            .post(
                "/api/accounts",
                &json!({"owner": owner, "balance_cents": 1000}),
                None,
            )
            .await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_i64().expect("id"));
    }
    let (status, _, body) = app
        .post(
            "/api/transfers",
            &json!({"from_account_id": ids[0], "to_account_id": ids[1], "amount_cents": 250}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // A large batch: COPY FROM is refused under row-level security, so INSERTs carry it.
    let batch: Vec<Value> = (0..1500)
        .map(|i| json!({"owner": format!("batch-{i}"), "balance_cents": 1}))
        .collect();
    let (status, _, body) = app
        .post("/api/accounts/batch", &json!({ "accounts": batch }), None)
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (&body["inserted"], &body["method"]),
        (&json!(1500), &json!("insert")),
        "{body}"
    );
    let (status, page) = app.get("/api/accounts?limit=2").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids_of(&page), ids, "{page}");
    let (_, payee) = app.get(&format!("/api/accounts/{}", ids[1])).await;
    assert_eq!(payee["balance_cents"], json!(1250), "{payee}");
    // Every row is tenant 0's, the policy's "no tenant".
    let mut conn = sqlx::PgConnection::connect(&cluster.url(DATABASE))
        .await
        .expect("superuser connection");
    let tenants: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT tenant_id FROM accounts UNION SELECT DISTINCT tenant_id FROM transfers",
    )
    .fetch_all(&mut conn)
    .await
    .expect("tenants");
    assert_eq!(tenants, vec![0]);
    let _ = conn.close().await;
    app.stop().await.expect("clean stop");
}
