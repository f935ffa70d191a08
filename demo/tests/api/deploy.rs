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

/// The application container's part of the manifest: from `containers:` to the pod's
/// `volumes:` (the init container comes before it and has an environment of its own).
fn app_container(yaml: &str) -> &str {
    let from = yaml.find("\n      containers:").expect("containers:");
    let to = yaml[from..]
        .find("\n      volumes:")
        .map_or(yaml.len(), |i| from + i);
    &yaml[from..to]
}

/// `- name: X` followed by `value: "v"` in the application container's env list.
fn manifest_env(yaml: &str) -> HashMap<String, String> {
    let lines: Vec<&str> = app_container(yaml).lines().map(str::trim).collect();
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
    // The init container migrates; the application must not.
    assert!(
        !settings.migrations.at_startup,
        "DBSERVICE_MIGRATE on the application container"
    );
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
    let health = dbservice::config::PoolOptions::default()
        .limits
        .health_check_timeout;
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

/// The value of `key` in the first flow mapping line starting with `line_start` in `text`
/// (`limits: { cpu: "2", memory: 256Mi }` → `cpu` → `2`).
fn flow_value<'a>(text: &'a str, line_start: &str, key: &str) -> &'a str {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(line_start))
        .unwrap_or_else(|| panic!("no {line_start}"));
    line.split([',', '{', '}'])
        .find_map(|part| part.trim().strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .trim()
        .trim_matches('"')
}

/// Kubernetes CPU quantity in cores (`2`, `1500m`).
fn cores(quantity: &str) -> f64 {
    match quantity.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().expect(quantity) / 1000.0,
        None => quantity.parse().expect(quantity),
    }
}

#[test]
fn kubernetes_manifest_is_hardened() {
    let yaml = repo_file("deploy/kubernetes/dbservice.yaml");
    // Kubernetes' service links would hand every pod DBSERVICE_SERVICE_HOST & co.
    for needed in [
        "enableServiceLinks: false",
        "automountServiceAccountToken: false",
        "runAsNonRoot: true",
        "seccompProfile: { type: RuntimeDefault }",
        "kind: PodDisruptionBudget",
        "topologySpreadConstraints:",
        "kind: NetworkPolicy",
    ] {
        assert!(yaml.contains(needed), "the manifest lacks {needed}");
    }
    for id in ["runAsUser:", "runAsGroup:"] {
        let n = number_after(&yaml, "securityContext:", id);
        assert!(n >= 1000.0, "{id} {n} is numeric and not root");
    }
    // Both containers are locked down, not just the application.
    for needed in [
        "allowPrivilegeEscalation: false",
        "readOnlyRootFilesystem: true",
        "capabilities: { drop: [ALL] }",
    ] {
        assert_eq!(
            yaml.matches(needed).count(),
            2,
            "{needed} on both containers"
        );
    }
    // No password in the repository: the URLs come from a Secret the operator creates.
    assert!(!yaml.contains("change-me") && !yaml.contains("stringData"));
    assert!(
        !yaml.contains("kind: Secret"),
        "no Secret with a literal is shipped"
    );
    let app = app_container(&yaml);
    assert!(
        app.contains("- name: DATABASE_URL\n              valueFrom:\n                secretKeyRef: { name: dbservice-database, key: DATABASE_URL }"),
        "DATABASE_URL from the Secret"
    );
    assert!(yaml.contains("kubectl create secret generic dbservice-database"));
    // The example URLs verify the server's certificate against the mounted CA.
    let urls: Vec<&str> = yaml.lines().filter(|l| l.contains("postgres://")).collect();
    assert!(urls.len() >= 2);
    for url in urls {
        assert!(
            url.contains("sslmode=verify-full&sslrootcert=/etc/dbservice/tls/ca.crt"),
            "{url}"
        );
    }
    assert!(yaml.contains("mountPath: /etc/dbservice/tls"));
    // Migrations: once, before the application, over the direct URL.
    let init = &yaml[yaml.find("initContainers:").expect("an init container")
        ..yaml.find("\n      containers:").expect("containers")];
    assert!(
        init.contains("command: [\"dbservice\", \"migrate\"]"),
        "{init}"
    );
    assert!(init.contains("key: DATABASE_URL_DIRECT"), "{init}");
    assert_eq!(
        manifest_env(&yaml)
            .get("DBSERVICE_MIGRATE")
            .map(String::as_str),
        Some("false")
    );
    // The management port is open to the monitoring namespace only, the API to the ingress.
    let policy = &yaml[yaml.find("kind: NetworkPolicy").expect("policy")..];
    let monitoring = policy
        .find("name: monitoring")
        .expect("monitoring namespace");
    let ingress = policy
        .find("name: ingress-nginx")
        .expect("ingress namespace");
    assert!(policy[monitoring..].contains("port: 9090"));
    assert!(policy[ingress..monitoring].contains("port: 8080"));
    assert!(!policy[ingress..monitoring].contains("9090"));
    assert_eq!(policy.matches("port: 9090").count(), 1);

    // The Prometheus Operator scrapes the same port the annotations name.
    let monitor = repo_file("deploy/kubernetes/podmonitor.yaml");
    for needed in [
        "apiVersion: monitoring.coreos.com/v1",
        "kind: PodMonitor",
        "matchLabels: { app: dbservice }",
        "- port: management",
        "path: /metrics",
    ] {
        assert!(monitor.contains(needed), "podmonitor.yaml lacks {needed}");
    }
    assert!(yaml.contains("{ name: management, containerPort: 9090 }"));
}

#[test]
fn kubernetes_pool_and_workers_follow_the_cpu_limit_and_fit_the_budget() {
    let yaml = repo_file("deploy/kubernetes/dbservice.yaml");
    let app = app_container(&yaml);
    let cpu = cores(flow_value(app, "limits:", "cpu"));
    let env = manifest_env(&yaml);
    let mut vars = env.clone();
    vars.insert("DATABASE_URL".into(), "postgres://app@127.0.0.1/app".into());
    let dir = tempfile::tempdir().expect("dir");
    let settings =
        dbservice_demo::DemoSettings::from_sources(&vars, dir.path()).expect("manifest env loads");
    // Set, not left to the node's cores: the same rules as the defaults, over the pod's CPU.
    assert!(
        env.contains_key("DBSERVICE_HTTP_WORKERS")
            && env.contains_key("DBSERVICE_CONNECTION_LIMIT")
    );
    let whole = cpu.floor().max(1.0) as usize;
    assert_eq!(
        settings.effective_http_workers(),
        whole.div_ceil(2),
        "http_workers vs cpu {cpu}"
    );
    let limit = settings
        .core
        .db_config(None)
        .expect("config")
        .pool()
        .limits
        .connection_limit;
    assert_eq!(
        limit as usize,
        whole * 2 + 1,
        "connection_limit vs cpu {cpu}"
    );
    // CONNECTION_POOLING.md's budget: (replicas + maxSurge) x (pool + migration + probe)
    // <= max_connections - superuser_reserved_connections (PostgreSQL's defaults: 100, 3).
    let replicas = number_after(&yaml, "kind: Deployment", "replicas:");
    let surge: f64 = flow_value(&yaml, "rollingUpdate:", "maxSurge")
        .parse()
        .expect("maxSurge as a number");
    let peak = (replicas + surge) * (f64::from(limit) + 2.0);
    assert!(peak <= 100.0 - 3.0, "{peak} connections at peak");
    assert!(
        yaml.contains(&format!("= {peak} <= max_connections (100)")),
        "the header states the budget"
    );
}

/// Where alerts.yml's `runbook_url`s point: CONNECTION_POOLING.md as published. Operators
/// rewrite this prefix to where they host the guide (CONNECTION_POOLING.md, "Runbooks").
const RUNBOOK_BASE: &str = "https://runbooks.example.com/dbservice/CONNECTION_POOLING.md#";

/// GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The `### ` headings under `## Runbooks` in the guide, as anchors.
fn runbook_anchors(guide: &str) -> BTreeSet<String> {
    let section = guide
        .split("\n## ")
        .find(|s| s.starts_with("Runbooks"))
        .expect("CONNECTION_POOLING.md has a \"## Runbooks\" section");
    section
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(anchor)
        .collect()
}

/// Each alert rule of alerts.yml: its name and its lines.
fn alert_rules(rules: &str) -> Vec<(String, String)> {
    rules
        .split("- alert: ")
        .skip(1)
        .map(|block| {
            let (name, body) = block.split_once('\n').expect("a rule body");
            // The block runs to the next group (`- name:`) at most.
            let body = body.split("\n  - name: ").next().unwrap_or(body);
            (name.trim().to_owned(), body.to_owned())
        })
        .collect()
}

#[test]
fn every_alert_waits_groups_by_target_and_links_a_runbook_in_the_guide() {
    let rules = repo_file("deploy/prometheus/alerts.yml");
    let guide = repo_file("CONNECTION_POOLING.md");
    let all_anchors: BTreeSet<String> = guide
        .lines()
        .filter(|l| l.starts_with('#') && !l.starts_with("#!"))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    let runbooks = runbook_anchors(&guide);
    let alerts = alert_rules(&rules);
    assert!(alerts.len() >= 15, "{} alerts", alerts.len());
    let mut linked = BTreeSet::new();
    for (name, body) in &alerts {
        assert!(body.contains("\n        for: "), "{name} has no for:");
        let url = body
            .lines()
            .find_map(|l| l.trim().strip_prefix("runbook_url: "))
            .unwrap_or_else(|| panic!("{name} has no runbook_url"))
            .trim_matches('"');
        let target = url
            .strip_prefix(RUNBOOK_BASE)
            .unwrap_or_else(|| panic!("{name}: {url} is not under {RUNBOOK_BASE}"));
        assert!(
            all_anchors.contains(target),
            "{name}: no heading #{target} in the guide"
        );
        assert!(
            runbooks.contains(target),
            "{name}: #{target} is not under \"Runbooks\""
        );
        assert_eq!(target, name.to_lowercase(), "{name} links its own runbook");
        linked.insert(target.to_owned());
        // Aggregations keep the labels that tell the targets apart (absent() has none).
        for by in body.split("by (").skip(1) {
            let labels = by.split(')').next().unwrap_or_default();
            assert!(
                labels.contains("namespace")
                    && labels.contains("job")
                    && labels.contains("instance"),
                "{name} groups by ({labels})"
            );
        }
    }
    // The guide has a runbook for every alert, and one for the 504 commit_outcome_unknown.
    let extra: Vec<&String> = runbooks.difference(&linked).collect();
    assert_eq!(
        extra.len(),
        1,
        "runbooks without an alert besides commit_outcome_unknown: {extra:?}"
    );
    assert!(extra[0].contains("commit_outcome_unknown"), "{extra:?}");
    // Rollouts close pools: pool_closed is not a database error.
    let errors = &alerts
        .iter()
        .find(|(n, _)| n == "DbserviceDatabaseErrors")
        .expect("DbserviceDatabaseErrors")
        .1;
    assert!(
        errors.contains("kind!~\"constraint|pool_closed\""),
        "{errors}"
    );
    // The leak alert says what it needs to ever fire.
    let leaks = &alerts
        .iter()
        .find(|(n, _)| n == "DbserviceConnectionLeaks")
        .expect("DbserviceConnectionLeaks")
        .1;
    assert!(leaks.contains("leak_detection_threshold"), "{leaks}");
}

#[test]
fn dashboard_selects_namespace_job_instance_and_pool_and_shows_quantiles_per_pool() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("deploy/grafana/dbservice.json")).expect("JSON");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for name in ["namespace", "job", "instance", "pool"] {
        assert!(
            variables.contains(&name),
            "no ${name} variable: {variables:?}"
        );
    }
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            // Every query follows the namespace and job chosen, not just the instance.
            for selector in [
                "namespace=~\"$namespace\"",
                "job=~\"$job\"",
                "instance=~\"$instance\"",
            ] {
                assert!(
                    expr.contains(selector),
                    "{}: {expr} lacks {selector}",
                    panel["title"]
                );
            }
            // A pool-level quantile is per pool: one pool's slow waits are not averaged away.
            let pool_level = ["dbservice_client_", "dbservice_pool_"]
                .iter()
                .any(|m| expr.contains(m));
            if expr.contains("histogram_quantile") && pool_level {
                assert!(expr.contains("by (pool, le)"), "{}: {expr}", panel["title"]);
            }
            if pool_level {
                assert!(
                    expr.contains("pool=~\"$pool\""),
                    "{}: {expr}",
                    panel["title"]
                );
            }
        }
    }
}

/// The Dockerfile's instructions, comments and blank lines left out, continuation lines
/// joined, each as (INSTRUCTION in upper case, its arguments).
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && pending.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(line);
                let (op, args) = pending.split_once(' ').unwrap_or((pending.as_str(), ""));
                out.push((
                    op.to_uppercase(),
                    args.split_whitespace().collect::<Vec<_>>().join(" "),
                ));
                pending.clear();
            }
        }
    }
    out
}

#[test]
fn the_image_recipe_builds_what_the_manifest_runs() {
    let docker = dockerfile_instructions(&repo_file("Dockerfile"));
    let args = |op: &str| -> Vec<&str> {
        docker
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    let yaml = repo_file("deploy/kubernetes/dbservice.yaml");
    let demo = repo_file("demo/Cargo.toml");
    // The manifest's image is the demo at its released version, in both containers, and the
    // kustomization that points it at a registry names that image.
    let version = demo
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .expect("demo/Cargo.toml has a version")
        .trim_matches('"');
    let image = format!("dbservice:{version}");
    let images: Vec<&str> = yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image: "))
        .collect();
    assert_eq!(
        images,
        [image.as_str(), image.as_str()],
        "init and app containers"
    );
    let kustomization = repo_file("deploy/kubernetes/kustomization.yaml");
    assert!(kustomization.contains("  - dbservice.yaml\n"));
    assert!(kustomization.contains("  - name: dbservice\n"));
    assert!(kustomization.contains(&format!("    newTag: \"{version}\"\n")));
    // Two stages on the same Debian release: the binary needs the builder's glibc or newer.
    let stages = args("FROM");
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(stages[0].contains("-slim-bookworm AS build"), "{stages:?}");
    assert!(stages[1].ends_with("-debian12"), "{stages:?}");
    // It builds the binary the demo declares, and puts it on PATH under the name both
    // containers run (the init container by `command`, the application by the image's CMD).
    assert!(demo.contains("name = \"dbservice\"\npath = \"src/main.rs\""));
    let run = args("RUN").join(" ");
    assert!(
        run.contains("cargo build --release --locked -p dbservice-demo --bin dbservice"),
        "{run}"
    );
    assert!(
        run.contains("install -D -m 0755 target/release/dbservice /out/dbservice"),
        "{run}"
    );
    assert_eq!(
        args("COPY").last().copied(),
        Some("--from=build /out/dbservice /usr/local/bin/dbservice")
    );
    assert_eq!(args("CMD"), ["[\"dbservice\"]"]);
    assert!(
        args("ENTRYPOINT").is_empty(),
        "an ENTRYPOINT would take `migrate` as its argument"
    );
    assert!(yaml.contains("command: [\"dbservice\", \"migrate\"]"));
    // The user the image runs as is the one the securityContext demands.
    let user = format!(
        "{}:{}",
        number_after(&yaml, "securityContext:", "runAsUser:"),
        number_after(&yaml, "securityContext:", "runAsGroup:")
    );
    assert_eq!(args("USER"), [user.as_str()]);
    // The ports it exposes are the containerPorts; it listens beyond loopback; a missing
    // DATABASE_URL fails the start rather than writing to a read-only root.
    let container = app_container(&yaml);
    for port in [8080, 9090] {
        assert!(
            container.contains(&format!("containerPort: {port}")),
            "{port}"
        );
    }
    assert_eq!(args("EXPOSE"), ["8080 9090"]);
    let env = args("ENV").join(" ");
    for setting in ["HOST=0.0.0.0", "PORT=8080", "APP_ENV=production"] {
        assert!(
            env.split(' ').any(|e| e == setting),
            "ENV lacks {setting}: {env}"
        );
    }
    // The build context leaves out the target directory and local secrets.
    let ignore = repo_file(".dockerignore");
    for entry in ["target/", ".git/", "**/.env", "**/.env.*"] {
        assert!(
            ignore.lines().any(|l| l == entry),
            ".dockerignore lacks {entry}"
        );
    }
}
