//! Measured pool statistics, `/metrics`, slow-query logs.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use dbservice::{DbService, config::DbConfig};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::support::{eventually, fresh_pg_database, spawn_app, with_params};

/// Parses the text exposition with a strict line grammar; returns `series → value` and the
/// declared metric families. Panics on any line that does not fit.
fn parse_exposition(text: &str) -> (HashMap<String, f64>, Vec<String>) {
    fn is_name(s: &str) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    fn parse_value(v: &str) -> Option<f64> {
        match v {
            "+Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            "NaN" => Some(f64::NAN),
            _ => v.parse().ok(),
        }
    }
    let mut samples = HashMap::new();
    let mut families = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "exposition ends with # EOF");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(
                matches!(kind, "HELP" | "TYPE" | "UNIT"),
                "bad comment line: {line}"
            );
            assert!(is_name(name), "bad metric name in: {line}");
            if kind == "TYPE" {
                let t = parts.next().unwrap_or("");
                assert!(
                    matches!(
                        t,
                        "counter" | "gauge" | "histogram" | "summary" | "info" | "unknown"
                    ),
                    "bad type in: {line}"
                );
                families.push(name.to_owned());
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let name = series.split('{').next().unwrap_or("");
        assert!(is_name(name), "bad sample name: {line}");
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("bad label braces: {line}"));
            for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("bad label: {line}"));
                assert!(is_name(k), "bad label name: {line}");
                assert!(
                    !v.trim_end_matches('"').contains('"'),
                    "unescaped quote: {line}"
                );
            }
        }
        let v = parse_value(value).unwrap_or_else(|| panic!("bad value: {line}"));
        samples.insert(series.to_owned(), v);
    }
    (samples, families)
}

async fn scrape(app: &crate::support::TestApp) -> HashMap<String, f64> {
    let res = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("scrape answered");
    assert_eq!(res.status().as_u16(), 200);
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    parse_exposition(&res.text().await.expect("body")).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_and_waiting_are_measured_and_exported() {
    let base = fresh_pg_database().await;
    let app = spawn_app(&with_params(&base, "connection_limit=2"), |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let before = scrape(&app).await;
    let wait_count = |m: &HashMap<String, f64>| {
        m.get("dbservice_client_queries_wait_seconds_count")
            .copied()
            .unwrap_or(0.0)
    };
    let wait_sum = |m: &HashMap<String, f64>| {
        m.get("dbservice_client_queries_wait_seconds_sum")
            .copied()
            .unwrap_or(0.0)
    };

    let load =
        futures::future::join_all((0..6).map(|_| app.get("/api/diagnostics/sleep?seconds=0.5")));
    let observe = async {
        let seen = eventually(Duration::from_millis(400), || async {
            let s = app.db.stats();
            s.busy == 2 && s.waiting == 4
        })
        .await;
        let m = scrape(&app).await;
        (seen, m)
    };
    let (replies, (seen, during)) = tokio::join!(load, observe);
    assert!(replies.iter().all(|(s, _)| *s == 200));
    assert!(
        seen,
        "stats showed 2 busy and 4 waiting: {:?}",
        app.db.stats()
    );
    assert_eq!(
        during.get("dbservice_pool_connections_busy"),
        Some(&2.0),
        "{during:?}"
    );
    assert_eq!(during.get("dbservice_client_queries_wait"), Some(&4.0));

    let after = scrape(&app).await;
    assert_eq!(after.get("dbservice_client_queries_wait"), Some(&0.0));
    assert_eq!(app.db.stats().waiting, 0);
    assert_eq!(
        wait_count(&after) - wait_count(&before),
        6.0,
        "six waits recorded"
    );
    // The last two callers queued behind two rounds of 0.5 s sleeps: at least ~1 s each.
    let waited = wait_sum(&after) - wait_sum(&before);
    assert!((1.8..=9.0).contains(&waited), "wait sum {waited}");
    let stats = app.db.stats();
    assert!(stats.wait.max_ms >= 900.0, "{:?}", stats.wait);
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_name_everything_in_the_design() {
    let base = fresh_pg_database().await;
    let app = spawn_app(&base, |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let _ = app.get("/api/accounts/1").await;
    let res = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("scrape");
    let text = res.text().await.expect("body");
    let (samples, families) = parse_exposition(&text);
    for name in [
        "dbservice_pool_connections_open",
        "dbservice_pool_connections_busy",
        "dbservice_pool_connections_idle",
        "dbservice_pool_connections_max",
        "dbservice_pool_connections_opened_total",
        "dbservice_pool_connections_closed_total{reason=\"idle\"}",
        "dbservice_pool_connections_closed_total{reason=\"max_uses\"}",
        "dbservice_pool_connection_create_seconds_count",
        "dbservice_pool_connection_hold_seconds_count",
        "dbservice_pool_connection_leaks_total",
        "dbservice_pool_database_down",
        "dbservice_client_queries_active",
        "dbservice_client_queries_wait",
        "dbservice_client_queries_total",
        "dbservice_client_statements_cancelled_total",
        "dbservice_pool_checkout_checks_total{check=\"reset\"}",
        "dbservice_client_queries_duration_seconds_count",
        "dbservice_client_queries_wait_seconds_count",
    ] {
        assert!(samples.contains_key(name), "{name} missing:\n{text}");
    }
    for series in [
        "dbservice_client_errors_total{kind=\"pool_timeout\"}",
        "dbservice_transactions_total{outcome=\"commit\"}",
        "dbservice_transactions_total{outcome=\"rollback\"}",
        "dbservice_transactions_total{outcome=\"timeout\"}",
        "dbservice_transactions_total{outcome=\"retry\"}",
    ] {
        assert!(samples.contains_key(series), "{series} missing:\n{text}");
    }
    assert!(
        families
            .iter()
            .any(|f| f == "dbservice_client_queries_duration_seconds")
    );
    assert!(
        samples
            .keys()
            .any(|k| k.starts_with("dbservice_http_requests_total{")
                && k.contains("route=\"/api/accounts/{id}\"")),
        "per-route HTTP counters:\n{text}"
    );
    assert!(
        samples
            .keys()
            .any(|k| k.starts_with("dbservice_http_request_duration_seconds_count{"))
    );
    assert!(!text.contains(crate::support::PASSWORD));
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_off_removes_the_endpoint_and_keeps_the_api() {
    let base = fresh_pg_database().await;
    let app = spawn_app(&base, |s| s.metrics = false).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let (status, _) = app.get("/api/accounts/1").await;
    assert_eq!(status, 404, "the API answers as usual (no such account)");
    let (status, _) = app.get("/metrics").await;
    assert_eq!(status, 404, "no /metrics with metrics=false");
    let (status, body) = app.get("/health/db").await;
    assert_eq!(status, 200, "the pool's own accounting stays: {body}");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn counters_move_exactly() {
    let base = fresh_pg_database().await;
    let db =
        DbService::new(DbConfig::from_url(&with_params(&base, "idle_timeout=1")).expect("valid"))
            .expect("service");
    db.connect().await.expect("connects");
    db.conn()
        .execute_unprepared("CREATE TABLE k (id int PRIMARY KEY); INSERT INTO k VALUES (1)")
        .await
        .expect("setup");
    let select = || {
        db.conn()
            .query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT 1"))
    };
    let before = db.stats();
    for _ in 0..10 {
        select().await.expect("select");
    }
    let after = db.stats();
    assert_eq!(
        after.queries_total - before.queries_total,
        10,
        "N queries, N counted"
    );

    let err = db
        .conn()
        .execute_raw(Statement::from_string(
            DbBackend::Postgres,
            "INSERT INTO k VALUES (1)",
        ))
        .await
        .expect_err("duplicate");
    assert!(err.to_string().contains("duplicate"));
    let _ = db
        .conn()
        .query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT 1/0"))
        .await
        .expect_err("division by zero");
    let e = db.stats();
    assert_eq!(e.errors.constraint - after.errors.constraint, 1);
    assert_eq!(e.errors.query - after.errors.query, 1);
    assert_eq!(e.queries_failed - after.queries_failed, 2);

    // Open three connections, let them idle past idle_timeout: closed_total grows.
    let txns =
        futures::future::join_all((0..3).map(|_| db.begin(dbservice::TxOptions::default()))).await;
    for t in txns {
        let _ = t.expect("begin").rollback().await;
    }
    let opened = db.stats().opened_total;
    assert!(opened >= 3, "{opened}");
    assert!(
        eventually(Duration::from_secs(6), || async {
            db.stats().closed.idle >= 3
        })
        .await,
        "idle connections closed: {:?}",
        db.stats()
    );
    db.close(Duration::from_secs(5)).await;
}

/// Collects formatted log lines.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    /// Captures this thread's log lines (INFO and above) until the guard is dropped; the
    /// tests run on a current-thread runtime, so the service's tasks log here too.
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        // With a single registered dispatcher, tracing-core computes a callsite's interest from
        // the *registering thread's* default only: a test on another thread that hits the
        // slow-query callsite first would cache "never" and hide our events. A second, live
        // dispatcher makes it consult every registered one (tracing-core's `has_just_one`).
        static SECOND: LazyLock<tracing::Dispatch> =
            LazyLock::new(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
        LazyLock::force(&SECOND);
        let lines = Lines::default();
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .finish();
        (lines, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf-8")
    }
}

#[tokio::test]
async fn a_slow_query_logs_exactly_one_warning_with_its_duration() {
    let base = fresh_pg_database().await;
    let (lines, _guard) = Lines::capture();
    let db = DbService::new(
        DbConfig::from_url(&with_params(&base, "slow_query_threshold=1s")).expect("valid"),
    )
    .expect("service");
    db.connect().await.expect("connects");
    let started = Instant::now();
    db.conn()
        .execute_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_sleep(1.2)",
        ))
        .await
        .expect("slow query");
    assert!(started.elapsed() >= Duration::from_millis(1200));
    db.conn()
        .execute_raw(Statement::from_string(DbBackend::Postgres, "SELECT 1"))
        .await
        .expect("fast query");
    let text = lines.text();
    let slow: Vec<&str> = text.lines().filter(|l| l.contains("slow query")).collect();
    assert_eq!(slow.len(), 1, "{text}");
    assert!(
        slow[0].contains("WARN")
            && slow[0].contains("duration_ms=")
            && slow[0].contains("pg_sleep"),
        "{}",
        slow[0]
    );
    db.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn periodic_summary_is_logged_when_enabled() {
    let base = fresh_pg_database().await;
    let (lines, _guard) = Lines::capture();
    let db = DbService::new(
        DbConfig::from_url(&with_params(&base, "stats_log_interval=200ms")).expect("valid"),
    )
    .expect("service");
    db.connect().await.expect("connects");
    tokio::time::sleep(Duration::from_millis(750)).await;
    db.close(Duration::from_secs(5)).await;
    let text = lines.text();
    let summaries = text.lines().filter(|l| l.contains("pool summary")).count();
    assert!(
        (2..=4).contains(&summaries),
        "{summaries} summaries:\n{text}"
    );
    assert!(
        text.contains("waiting=0") && text.contains("max="),
        "{text}"
    );

    // Off by default.
    drop(_guard);
    let (quiet, _guard) = Lines::capture();
    let db = DbService::new(DbConfig::from_url(&base).expect("valid")).expect("service");
    db.connect().await.expect("connects");
    tokio::time::sleep(Duration::from_millis(300)).await;
    db.close(Duration::from_secs(5)).await;
    let text = quiet.text();
    assert!(!text.contains("pool summary"), "{text}");
}

/// A transaction held past `leak_detection_threshold` logs one WARN naming where it was
/// begun (this file), however long it stays open, and counts one leak; closes are counted by
/// reason.
#[tokio::test]
async fn a_leaked_transaction_is_reported_once_with_where_it_began() {
    let base = fresh_pg_database().await;
    let (lines, _guard) = Lines::capture();
    let db = DbService::new(
        DbConfig::from_url(&with_params(&base, "leak_detection_threshold=200ms")).expect("valid"),
    )
    .expect("service");
    db.connect().await.expect("connects");
    let tx = db
        .begin(dbservice::TxOptions::default().timeout(Duration::from_secs(5)))
        .await
        .expect("begins");
    tokio::time::sleep(Duration::from_millis(900)).await;
    tx.commit().await.expect("commits");
    db.conn()
        .execute_raw(Statement::from_string(DbBackend::Postgres, "SELECT 1"))
        .await
        .expect("a short statement is no leak");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = lines.text();
    let leaks: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("held longer than leak_detection_threshold"))
        .collect();
    assert_eq!(leaks.len(), 1, "{text}");
    // The startup line states this instance's connection budget.
    // It is the guide's formula per instance: the pool + 1 migration + 1 probe.
    let n = db.config().pool().limits.connection_limit;
    let budget = format!(
        "connection budget: at most {} connection(s) through DATABASE_URL ({n} pooled + 1 probe + 1 migration or schema check)",
        n + 2
    );
    assert!(text.contains(&budget), "{text}");
    assert!(
        leaks[0].contains("WARN") && leaks[0].contains("tests/api/metrics.rs:"),
        "{}",
        leaks[0]
    );
    assert_eq!(db.stats().leaks, 1);
    assert!(db.close(Duration::from_secs(5)).await);
    let s = db.stats();
    assert_eq!(s.closed.shutdown, s.opened_total, "{s:?}");
    assert_eq!(s.closed_total, s.opened_total, "{s:?}");
}
