//! The files an operator deploys with (`deploy/`) agree with the code: the alert rules and the
//! dashboard use only metrics `/metrics` serves, and the Kubernetes manifest's probes, shutdown
//! budget and memory agree with the defaults and the benchmark.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::json;

use crate::support::{TestApp, cluster_with_replica, eventually, spawn_app};

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `dbservice_...` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("dbservice_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The sample names of an OpenMetrics text (`name{...} value` or `name value`).
fn served(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

async fn scrape_with_everything(app: &TestApp) -> String {
    // HTTP families have samples once requests were served.
    let (status, _, body) = app
        .post(
            "/api/accounts",
            &json!({"owner": "ops", "balance_cents": 5}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let _ = app.get("/api/accounts/1").await;
    app.metrics_text().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rules_and_dashboard_use_only_metrics_we_serve() {
    let (primary, replica) = cluster_with_replica().await;
    let replica_url = replica.url("postgres");
    let app = spawn_app(&primary.url("postgres"), |s| {
        s.core.set_replica_urls(&replica_url)
    })
    .await;
    app.wait_ready(Duration::from_secs(30)).await;
    // The lag gauge has a sample once the replica has been checked.
    assert!(
        eventually(Duration::from_secs(15), || async {
            app.metrics_text()
                .await
                .contains("dbservice_replica_lag_seconds{")
        })
        .await
    );
    let names = served(&scrape_with_everything(&app).await);

    let rules = repo_file("deploy/prometheus/alerts.yml");
    let dashboard = repo_file("deploy/grafana/dbservice.json");
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    let panels = parsed["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for panel in panels {
        assert!(
            panel["targets"].as_array().is_some_and(|t| !t.is_empty()),
            "{}",
            panel["title"]
        );
    }
    let used: BTreeSet<String> = metric_names(&rules)
        .into_iter()
        .chain(metric_names(&dashboard))
        .collect();
    // The topics the issue names are all covered.
    for needed in [
        "dbservice_pool_utilization_ratio",
        "dbservice_client_queries_wait",
        "dbservice_client_queries_wait_seconds_bucket",
        "dbservice_client_queries_duration_seconds_bucket",
        "dbservice_client_errors_total",
        "dbservice_transactions_total",
        "dbservice_http_requests_total",
    ] {
        assert!(used.contains(needed), "deploy/ does not use {needed}");
    }
    let unknown: Vec<&String> = used.iter().filter(|n| !names.contains(*n)).collect();
    assert!(unknown.is_empty(), "not served by /metrics: {unknown:?}");
    app.stop().await.expect("stops");
}

/// `- name: X` followed by `value: "v"` in the manifest's env lists.
fn manifest_env(yaml: &str) -> HashMap<String, String> {
    let lines: Vec<&str> = yaml.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter_map(|w| {
            let name = w[0].strip_prefix("- name: ")?;
            let value = w[1].strip_prefix("value: ")?;
            Some((name.to_owned(), value.trim_matches('"').to_owned()))
        })
        .collect()
}

/// The number after `key:` on its first line in `text`, in the block after `after`.
fn number_after(text: &str, after: &str, key: &str) -> f64 {
    let from = text.find(after).unwrap_or_else(|| panic!("no {after}"));
    let line = text[from..]
        .lines()
        .find(|l| l.trim_start().starts_with(key))
        .unwrap_or_else(|| panic!("no {key} after {after}"));
    line.trim_start()[key.len()..]
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{line}"))
}

#[tokio::test]
async fn kubernetes_manifest_agrees_with_the_code() {
    let yaml = repo_file("deploy/kubernetes/dbservice.yaml");
    let env = manifest_env(&yaml);
    let dir = tempfile::tempdir().expect("dir");
    let mut vars = env.clone();
    vars.insert("DATABASE_URL".into(), "postgres://app@127.0.0.1/app".into());
    let settings =
        dbservice_demo::DemoSettings::from_sources(&vars, dir.path()).expect("manifest env loads");
    let shutdown = settings.core.shutdown;
    let budget = shutdown.grace + shutdown.drain_timeout + shutdown.pool_close_timeout;
    let termination = number_after(&yaml, "template:", "terminationGracePeriodSeconds:");
    assert!(
        Duration::from_secs_f64(termination) >= budget + Duration::from_secs(5),
        "terminationGracePeriodSeconds {termination} vs shutdown budget {budget:?}"
    );
    assert!(
        shutdown.grace >= Duration::from_secs(5),
        "endpoints need time to drop the pod"
    );
    // The readiness probe's timeout outlasts the service's own bound on the check.
    let health = dbservice::PoolOptions::default().health_check_timeout;
    let timeout = number_after(&yaml, "readinessProbe:", "timeoutSeconds:");
    assert!(
        Duration::from_secs_f64(timeout) > health,
        "{timeout} s vs {health:?}"
    );
    // The management port is where Prometheus is told to scrape.
    assert_eq!(
        settings.http.management_port,
        Some(9090),
        "DBSERVICE_MANAGEMENT_PORT"
    );
    assert!(yaml.contains("prometheus.io/port: \"9090\"") && yaml.contains("containerPort: 9090"));
    // Memory: at least 3x the demo's peak RSS under load, as measured by the benchmark.
    let bench = repo_file("BENCHMARKS.md");
    let rss: f64 = bench
        .lines()
        .find(|l| l.starts_with("| demo peak RSS under HTTP load |"))
        .and_then(|l| {
            l.split('|')
                .nth(2)?
                .trim()
                .trim_end_matches(" MiB")
                .parse()
                .ok()
        })
        .expect("BENCHMARKS.md states the demo's peak RSS");
    let requested: f64 = yaml
        .lines()
        .find(|l| l.trim_start().starts_with("requests:"))
        .and_then(|l| l.split("memory:").nth(1))
        .and_then(|m| m.trim().split("Mi").next()?.trim().parse().ok())
        .expect("a memory request in Mi");
    assert!(
        requested >= 3.0 * rss,
        "memory request {requested} Mi vs RSS {rss} MiB"
    );

    // The probe paths are the demo's: live without a database, ready with one.
    let sqlite = tempfile::tempdir().expect("dir");
    let app = spawn_app(&dbservice_testkit::sqlite_url(&sqlite), |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;
    for path in ["/health/live", "/health/ready"] {
        assert!(yaml.contains(&format!("path: {path}")), "{path}");
        assert_eq!(app.get(path).await.0, 200, "{path}");
    }
    app.stop().await.expect("stops");
}
