//! OTLP export of the demo binary (feature `otel`, on in the tests through the demo's
//! self dev-dependency) to an in-process receiver: the caller's trace continued, the database
//! spans under the request's, the pool metrics under their OpenTelemetry names, no bound
//! value anywhere, and nothing at all (not even a thread) while no endpoint is set.

use std::time::Duration;

use dbservice_testkit::otlp::{OtlpReceiver, ReceivedSpan};
use nix::sys::signal::Signal;
use serde_json::json;

use crate::binary::Server;
use crate::support::{fresh_pg_database, with_params};

/// The caller's trace: a trace id and a parent span id of our own.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{PARENT_ID}-01")
}

/// Exports fast, so the tests wait little: spans every 100 ms, metrics every 200 ms.
fn exporting_to(receiver: &OtlpReceiver, url: String) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", url),
        ("DBSERVICE_DEMO_DIAGNOSTICS", "true".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200".into()),
    ]
}

/// The names of the process's threads (`/proc/<pid>/task/*/comm`, at most 15 characters).
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the server's threads")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect()
}

/// The SDK's export threads: `OpenTelemetry.Traces.BatchProcessor` and
/// `OpenTelemetry.Metrics.PeriodicReader`, cut to 15 characters by the kernel.
fn export_threads(pid: u32) -> Vec<String> {
    thread_names(pid)
        .into_iter()
        .filter(|n| n.starts_with("OpenTelemetry"))
        .collect()
}

/// Runs `sql` on `url` over a connection of its own.
async fn execute(url: &str, sql: &str) {
    use sea_orm::sqlx::{Connection, Executor};
    let mut conn = sea_orm::sqlx::PgConnection::connect(url)
        .await
        .expect("connect");
    conn.execute(sea_orm::sqlx::AssertSqlSafe(sql.to_owned()))
        .await
        .expect("statement runs");
    let _ = conn.close().await;
}

async fn create_account(client: &reqwest::Client, address: &str, owner: &str, cents: i64) -> i64 {
    let res = client
        .post(format!("{address}/api/accounts"))
        .json(&json!({"owner": owner, "balance_cents": cents}))
        .send()
        .await
        .expect("POST /api/accounts");
    assert_eq!(res.status().as_u16(), 201);
    let body: serde_json::Value = res.json().await.expect("account JSON");
    body["id"].as_i64().expect("account id")
}

async fn transfer(
    client: &reqwest::Client,
    address: &str,
    from: i64,
    to: i64,
    cents: i64,
) -> reqwest::Response {
    client
        .post(format!("{address}/api/transfers"))
        .header("traceparent", traceparent())
        .json(&json!({"from_account_id": from, "to_account_id": to, "amount_cents": cents}))
        .send()
        .await
        .expect("POST /api/transfers")
}

/// The spans of the caller's trace.
fn our_trace(receiver: &OtlpReceiver) -> Vec<ReceivedSpan> {
    receiver
        .spans()
        .into_iter()
        .filter(|s| s.trace_id() == TRACE_ID)
        .collect()
}

fn server_span_of(spans: &[ReceivedSpan]) -> Option<&ReceivedSpan> {
    spans.iter().find(|s| s.kind() == "SPAN_KIND_SERVER")
}

/// Every text the export carries (span and event names and attributes, status messages,
/// resource and metric attributes), for the "no bound value" check. Numbers are compared as
/// whole attribute values, never searched inside timestamps or ids.
fn exported_texts(receiver: &OtlpReceiver) -> Vec<String> {
    let mut texts = Vec::new();
    for s in receiver.spans() {
        texts.push(s.name().to_owned());
        texts.extend(s.resource.values().cloned());
        texts.extend(s.attributes().into_values());
        if let Some(status) = &s.span.status {
            texts.push(status.message.clone());
        }
        for e in &s.span.events {
            texts.push(e.name.clone());
            texts.extend(e.attributes.iter().map(|kv| format!("{:?}", kv.value)));
        }
    }
    for m in receiver.metrics() {
        texts.push(m.name().to_owned());
        for p in m.number_points() {
            texts.extend(p.attributes.into_values());
        }
        for p in m.histogram_points() {
            texts.extend(p.attributes.into_values());
        }
    }
    texts
}

fn assert_absent(texts: &[String], value: &str) {
    let hits: Vec<&String> = texts.iter().filter(|t| t.contains(value)).collect();
    assert!(hits.is_empty(), "`{value}` exported: {hits:?}");
}

#[tokio::test]
async fn traceparent_is_continued_by_the_server_span_over_http_json() {
    let receiver = OtlpReceiver::start();
    let url = fresh_pg_database().await;
    let mut env = exporting_to(&receiver, url);
    env.push(("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".into()));
    env.push(("OTEL_SERVICE_NAME", "ledger-under-test".into()));
    let server = Server::spawn(&env);
    let (address, client) = server.ready_client().await;

    let res = client
        .get(format!("{address}/api/accounts?limit=1"))
        .header("traceparent", traceparent())
        .send()
        .await
        .expect("GET /api/accounts");
    assert_eq!(res.status().as_u16(), 200);

    let arrived = receiver
        .wait_for(
            |r| server_span_of(&our_trace(r)).is_some(),
            Duration::from_secs(10),
        )
        .await;
    assert!(arrived, "no server span in our trace:\n{}", server.output());
    let spans = our_trace(&receiver);
    let root = server_span_of(&spans).expect("server span");
    assert_eq!(
        root.parent_span_id(),
        PARENT_ID,
        "child of the caller's span"
    );
    assert_eq!(root.name(), "GET /api/accounts");
    assert_eq!(root.attr("http.route").as_deref(), Some("/api/accounts"));
    assert_eq!(
        root.resource.get("service.name").map(String::as_str),
        Some("ledger-under-test")
    );
    assert_eq!(receiver.rejected(), 0, "every export decoded as JSON");

    let pid = server.pid();
    let threads = export_threads(pid);
    assert!(
        threads.iter().any(|t| t.starts_with("OpenTelemetry.T"))
            && threads.iter().any(|t| t.starts_with("OpenTelemetry.M")),
        "the export threads run while exporting: {:?}",
        thread_names(pid)
    );
}

#[tokio::test]
async fn a_transfer_is_one_trace_server_transaction_statements_without_bound_values() {
    let receiver = OtlpReceiver::start();
    let url = fresh_pg_database().await;
    let server = Server::spawn(&exporting_to(&receiver, url.clone()));
    let (address, client) = server.ready_client().await;

    // Distinctive values: none may appear in any span, event or metric.
    let owner_a = "Zebulon Quistgaard-7731";
    let owner_b = "Philippa Thornbury-4410";
    let amount = 91_827;
    let refused = 77_331;
    let a = create_account(&client, &address, owner_a, 5_000_000).await;
    let b = create_account(&client, &address, owner_b, 0).await;
    // A statement the database refuses (SQLSTATE 23514, check_violation): the transfer's
    // INSERT of this amount. Not named after the value, which must not leak either.
    execute(
        &url,
        &format!(
            "ALTER TABLE transfers ADD CONSTRAINT refused_amount CHECK (amount_cents <> {refused})"
        ),
    )
    .await;

    let res = transfer(&client, &address, a, b, amount).await;
    assert_eq!(res.status().as_u16(), 201);

    let complete = |r: &OtlpReceiver| {
        let spans = our_trace(r);
        spans.iter().any(|s| s.kind() == "SPAN_KIND_SERVER")
            && spans.iter().any(|s| s.name() == "transaction")
            && spans
                .iter()
                .filter(|s| s.kind() == "SPAN_KIND_CLIENT")
                .count()
                >= 4
    };
    let arrived = receiver.wait_for(complete, Duration::from_secs(10)).await;
    let spans = our_trace(&receiver);
    let names: Vec<(&str, &str)> = spans.iter().map(|s| (s.name(), s.kind())).collect();
    assert!(arrived, "incomplete trace: {names:?}\n{}", server.output());

    let root = server_span_of(&spans).expect("server span");
    assert_eq!(root.parent_span_id(), PARENT_ID);
    assert_eq!(root.name(), "POST /api/transfers");
    let tx: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name() == "transaction").collect();
    assert_eq!(tx.len(), 1, "one transaction: {names:?}");
    let tx = tx[0];
    assert_eq!(tx.parent_span_id(), root.span_id(), "under the request");
    assert_eq!(tx.attr("db.system.name").as_deref(), Some("postgresql"));
    assert_eq!(
        tx.attr("dbservice.transaction.outcome").as_deref(),
        Some("committed")
    );
    let statements: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.kind() == "SPAN_KIND_CLIENT")
        .collect();
    for s in &statements {
        assert_eq!(
            s.parent_span_id(),
            tx.span_id(),
            "{} under the transaction",
            s.name()
        );
        assert_eq!(s.attr("db.system.name").as_deref(), Some("postgresql"));
        assert!(s.attr("db.namespace").is_some(), "{:?}", s.attributes());
        let text = s.attr("db.query.text").unwrap_or_default();
        assert!(!text.is_empty(), "{:?}", s.attributes());
    }
    let on_accounts: Vec<&&ReceivedSpan> = statements
        .iter()
        .filter(|s| s.attr("db.collection.name").as_deref() == Some("accounts"))
        .collect();
    assert!(
        on_accounts.len() >= 3,
        "the lock and the two balance updates: {names:?}"
    );
    assert!(
        on_accounts
            .iter()
            .any(|s| s.attr("db.query.text").is_some_and(|t| t.contains("$1"))),
        "placeholders in the text: {:?}",
        on_accounts
            .iter()
            .map(|s| s.attr("db.query.text"))
            .collect::<Vec<_>>()
    );
    assert!(
        on_accounts
            .iter()
            .any(|s| s.name().starts_with("SELECT") || s.name().starts_with("UPDATE")),
        "named `{{operation}} {{collection}}`: {names:?}"
    );

    // The refused statement: its span says why, by SQLSTATE.
    let res = transfer(&client, &address, a, b, refused).await;
    assert!(res.status().is_client_error() || res.status().is_server_error());
    let failed = receiver
        .wait_for(
            |r| {
                r.spans()
                    .iter()
                    .any(|s| s.attr("db.response.status_code").as_deref() == Some("23514"))
            },
            Duration::from_secs(10),
        )
        .await;
    assert!(failed, "no span with SQLSTATE 23514");
    let spans = receiver.spans();
    let refused_span = spans
        .iter()
        .find(|s| s.attr("db.response.status_code").as_deref() == Some("23514"))
        .expect("failed statement span");
    assert_eq!(refused_span.kind(), "SPAN_KIND_CLIENT");
    assert_eq!(refused_span.status(), "STATUS_CODE_ERROR");
    assert!(refused_span.attr("error.type").is_some());
    assert_eq!(
        refused_span.attr("db.collection.name").as_deref(),
        Some("transfers")
    );

    let texts = exported_texts(&receiver);
    for value in [owner_a, owner_b, "Quistgaard", "Thornbury"] {
        assert_absent(&texts, value);
    }
    for value in [amount, refused] {
        assert_absent(&texts, &value.to_string());
    }
    assert_eq!(receiver.rejected(), 0);
}

#[tokio::test]
async fn pool_metrics_arrive_under_their_otel_names_and_move_with_load() {
    let receiver = OtlpReceiver::start();
    let url = with_params(&fresh_pg_database().await, "connection_limit=2");
    let server = Server::spawn(&exporting_to(&receiver, url));
    let (address, client) = server.ready_client().await;

    // Four sleepers on two connections: two hold them, two wait.
    let sleeps = (0..4).map(|_| {
        let client = client.clone();
        let address = address.clone();
        async move {
            client
                .get(format!("{address}/api/diagnostics/sleep?seconds=0.8"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    let sleeping = tokio::spawn(futures::future::join_all(sleeps));

    let used = receiver
        .wait_for(
            |r| {
                r.metrics()
                    .iter()
                    .filter(|m| m.name() == "db.client.connection.count")
                    .flat_map(|m| m.number_points())
                    .any(|p| {
                        p.attributes
                            .get("db.client.connection.state")
                            .map(String::as_str)
                            == Some("used")
                            && p.value > 0.0
                    })
            },
            Duration::from_secs(10),
        )
        .await;
    let statuses = sleeping.await.expect("sleepers");
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(200))),
        "{statuses:?}"
    );
    let names: std::collections::BTreeSet<String> = receiver
        .metrics()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    assert!(used, "no used connections reported; metrics: {names:?}");
    let count = receiver
        .metrics()
        .into_iter()
        .find(|m| m.name() == "db.client.connection.count")
        .expect("connection count");
    assert!(
        count
            .number_points()
            .iter()
            .all(|p| p.attributes.contains_key("db.client.connection.pool.name")),
        "{:?}",
        count.number_points()
    );

    let waited = receiver
        .wait_for(
            |r| {
                r.metrics()
                    .iter()
                    .filter(|m| m.name() == "db.client.connection.wait_time")
                    .flat_map(|m| m.histogram_points())
                    .any(|p| p.count > 0)
            },
            Duration::from_secs(10),
        )
        .await;
    assert!(
        waited,
        "no wait recorded on a saturated pool; metrics: {names:?}"
    );
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_and_no_export_thread_runs() {
    let receiver = OtlpReceiver::start();
    let url = fresh_pg_database().await;
    // Everything but an endpoint, set to export at once if anything were exporting.
    let server = Server::spawn(&[
        ("DATABASE_URL", url),
        ("OTEL_SERVICE_NAME", "ledger-under-test".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50".into()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "100".into()),
    ]);
    let (address, client) = server.ready_client().await;
    let a = create_account(&client, &address, "a", 100).await;
    let b = create_account(&client, &address, "b", 0).await;
    let res = transfer(&client, &address, a, b, 10).await;
    assert_eq!(res.status().as_u16(), 201);

    let pid = server.pid();
    assert_eq!(
        export_threads(pid),
        Vec::<String>::new(),
        "{:?}",
        thread_names(pid)
    );
    assert!(
        !thread_names(pid).iter().any(|t| t.starts_with("reqwest")),
        "no exporter HTTP client either: {:?}",
        thread_names(pid)
    );
    // An absence cannot be awaited: ten export intervals (50 ms spans, 100 ms metrics) pass
    // and nothing may arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests() + receiver.rejected(), 0);
    assert!(
        !server.output().contains("exporting traces"),
        "{}",
        server.output()
    );
}

#[tokio::test]
async fn the_last_spans_are_flushed_at_shutdown() {
    let receiver = OtlpReceiver::start();
    let url = fresh_pg_database().await;
    let mut env = exporting_to(&receiver, url);
    // Batches would wait a minute: only the shutdown's flush can deliver them in time.
    env.retain(|(k, _)| *k != "OTEL_BSP_SCHEDULE_DELAY");
    env.push(("OTEL_BSP_SCHEDULE_DELAY", "60000".into()));
    let mut server = Server::spawn(&env);
    let (address, client) = server.ready_client().await;
    let res = client
        .get(format!("{address}/api/accounts?limit=1"))
        .header("traceparent", traceparent())
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status().as_u16(), 200);
    assert!(our_trace(&receiver).is_empty(), "not sent before the stop");

    server.signal(Signal::SIGTERM);
    let (code, took) = server.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{}", server.output());
    assert!(
        server_span_of(&our_trace(&receiver)).is_some(),
        "the last request's span was flushed at shutdown (took {took:?}):\n{}",
        server.output()
    );
}

#[tokio::test]
async fn grpc_or_a_malformed_endpoint_exits_2_naming_the_variable() {
    for (var, value, expected) in [
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "grpc",
            "OTEL_EXPORTER_OTLP_PROTOCOL=`grpc`",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "localhost:4318",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (
            "OTEL_TRACES_SAMPLER",
            "sometimes",
            "OTEL_TRACES_SAMPLER=`sometimes`",
        ),
    ] {
        let mut env = vec![
            ("DATABASE_URL", "postgres://app@127.0.0.1:1/db".to_owned()),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://127.0.0.1:4318".into(),
            ),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-api-key=hdr-SECRET-99".into(),
            ),
        ];
        env.retain(|(k, _)| *k != var);
        env.push((var, value.to_owned()));
        let mut server = Server::spawn(&env);
        let (code, _) = server.wait_exit(Duration::from_secs(20)).await;
        let out = server.output();
        assert_eq!(code, 2, "{var}={value}: {out}");
        assert!(out.contains(expected), "{var}={value}: {out}");
        assert!(!out.contains("hdr-SECRET-99"), "headers printed: {out}");
    }
    // `.env` is not where the SDK looks: a line there would be ignored, so it is refused.
    let cwd = tempfile::tempdir().expect("temp dir");
    std::fs::write(cwd.path().join(".env"), "OTEL_SERVICE_NAME=from-dotenv\n").expect(".env");
    let mut server = Server::spawn_in(
        cwd,
        &[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4318".into(),
        )],
    );
    let (code, _) = server.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, 2, "{}", server.output());
    assert!(
        server.output().contains("OTEL_SERVICE_NAME"),
        "{}",
        server.output()
    );

    // The HTTP exporter is what this build has: said so for grpc.
    let mut server = Server::spawn(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4317".into(),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
    ]);
    let (code, _) = server.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, 2);
    assert!(server.output().contains("HTTP"), "{}", server.output());
}

/// The `OTEL_*` examples of `.env.example` are all valid together.
#[test]
fn env_example_otel_values_are_valid() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.env.example"))
        .expect(".env.example exists");
    let vars: std::collections::HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.trim_start_matches('#').trim().split_once('='))
        .filter(|(k, _)| k.starts_with("OTEL_"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_SERVICE_NAME",
        "OTEL_TRACES_SAMPLER",
        "OTEL_SDK_DISABLED",
    ] {
        assert!(vars.contains_key(var), ".env.example lacks {var}");
    }
    let settings = dbservice_demo::otel::ExportSettings::from_map(&vars)
        .expect("the examples are valid")
        .expect("an endpoint is set");
    assert!(settings.traces.is_some() && settings.metrics.is_some());
}
