//! The demo app in-process on a random port, exactly as `cargo run` builds it.

use std::collections::HashMap;
use std::time::Duration;

use dbservice::DbService;
use dbservice_demo::{Application, DemoSettings};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running demo app.
pub struct TestApp {
    pub address: String,
    /// The management listener's address, when `management_port` is set.
    pub management: Option<String>,
    pub client: reqwest::Client,
    pub db: DbService,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<dbservice::Result<()>>,
}

/// Settings as a fresh machine would have them (no environment, no file), with `url`.
pub fn test_settings(url: &str) -> DemoSettings {
    let empty = tempfile::tempdir().expect("temp dir");
    let mut s =
        DemoSettings::from_sources(&HashMap::new(), empty.path()).expect("default settings");
    s.core.set_database_url(url);
    s.port = 0;
    s.demo_diagnostics = true;
    s
}

/// The demo app on a fresh PostgreSQL database with `connection_limit=limit` and an
/// `application_name` of its own (to count its backends), ready; returns it with the database
/// URL and that name.
pub async fn spawn_named_app(prefix: &str, limit: u32) -> (TestApp, String, String) {
    let base = dbservice_testkit::fresh_pg_database().await;
    let name = dbservice_testkit::unique_name(prefix);
    let app = spawn_app(
        &dbservice_testkit::with_params(
            &base,
            &format!("connection_limit={limit}&application_name={name}"),
        ),
        |_| {},
    )
    .await;
    app.wait_ready(Duration::from_secs(30)).await;
    (app, base, name)
}

/// Builds and runs the demo app against `url`; `tweak` may change the settings first.
pub async fn spawn_app(url: &str, tweak: impl FnOnce(&mut DemoSettings)) -> TestApp {
    let mut settings = test_settings(url);
    tweak(&mut settings);
    let app = Application::build(&settings).expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let management = app
        .management_port()
        .map(|p| format!("http://127.0.0.1:{p}"));
    let db = app.db().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(
        async {
            let _ = rx.await;
        },
        std::future::pending(),
    ));
    TestApp {
        address,
        management,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client"),
        db,
        stop: Some(tx),
        task,
    }
}

impl TestApp {
    /// `GET path` → (status, JSON body or Null).
    /// `GET /metrics` as text.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body")
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let res = self
            .client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("GET answered");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// `POST path` with a JSON body and optional `Idempotency-Key` → (status, headers, body).
    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
        key: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let mut req = self
            .client
            .post(format!("{}{path}", self.address))
            .json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.expect("POST answered");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        (
            status,
            headers,
            res.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Every stored transfer, walking the keyset pages of `GET /api/transfers`.
    pub async fn all_transfers(&self) -> Vec<serde_json::Value> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let (status, page) = self
                .get(&format!("/api/transfers?limit=200&after={after}"))
                .await;
            assert_eq!(status, 200, "{page}");
            all.extend(page["items"].as_array().expect("items").iter().cloned());
            match page["next_after"].as_i64() {
                Some(next) => after = next,
                None => return all,
            }
        }
    }

    /// Waits until `/health/ready` is 200; panics with the last body after `bound`.
    pub async fn wait_ready(&self, bound: Duration) {
        let mut last = serde_json::Value::Null;
        let deadline = tokio::time::Instant::now() + bound;
        while tokio::time::Instant::now() < deadline {
            let (status, body) = self.get("/health/ready").await;
            if status == 200 {
                return;
            }
            last = body;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("not ready within {bound:?}: {last}");
    }

    /// Runs the graceful shutdown and returns the app's result.
    pub async fn stop(mut self) -> dbservice::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("app stops within 30 s")
            .expect("app task did not panic")
    }
}
