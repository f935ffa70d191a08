//! `GET /openapi.json` describes exactly the routes the demo serves, with the JSON error shape.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{spawn_app, sqlite_url};

/// The routes the library mounts in the demo besides `/api` (probes, metrics, this document).
const LIBRARY_ROUTES: [(&str, &str); 5] = [
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/health/db"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_routes_served() {
    let dir = tempfile::tempdir().expect("dir");
    let app = spawn_app(&sqlite_url(&dir), |_| {}).await;
    app.wait_ready(Duration::from_secs(30)).await;
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );

    let mut described = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            described.insert((method.to_ascii_uppercase(), path.clone()));
            if path.starts_with("/api/") {
                // Every API operation documents its errors with the one error shape.
                let refs_error = operation["responses"]
                    .as_object()
                    .expect("responses")
                    .iter()
                    .any(|(code, r)| {
                        code.starts_with('4')
                            && r["content"]["application/json"]["schema"]["$ref"]
                                == json!("#/components/schemas/ApiErrorBody")
                    });
                assert!(refs_error, "{method} {path} documents no error body");
            }
        }
    }
    let served: BTreeSet<(String, String)> = dbservice_demo::routes::served(true)
        .into_iter()
        .chain(
            LIBRARY_ROUTES
                .iter()
                .map(|(m, p)| ((*m).to_owned(), (*p).to_owned())),
        )
        .collect();
    let undocumented: Vec<_> = served.difference(&described).collect();
    let phantom: Vec<_> = described.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not described: {undocumented:?}"
    );
    assert!(phantom.is_empty(), "described but not served: {phantom:?}");

    // Every described route is answered by a handler (a routing miss is an empty 404).
    for (method, path) in &described {
        let url = format!("{}{}", app.address, path.replace("{id}", "1"));
        let req = match method.as_str() {
            "GET" => app.client.get(&url),
            "POST" => app.client.post(&url).json(&json!({})),
            other => panic!("unexpected method {other}"),
        };
        let res = req.send().await.expect("answered");
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or_default();
        assert!(
            status != 404 && status != 405 || body["error"]["code"].is_string(),
            "{method} {path}: {status} {body}"
        );
        // Error answers have the documented shape.
        if status >= 400 {
            assert!(
                body["error"]["code"].is_string() && body["error"]["message"].is_string(),
                "{method} {path}: {body}"
            );
        }
    }
    let schemas = &doc["components"]["schemas"];
    let detail = &schemas["ApiErrorDetail"]["properties"];
    assert!(
        detail["code"].is_object() && detail["message"].is_object(),
        "{schemas}"
    );
    assert!(
        schemas["Account"]["properties"]["balance_cents"].is_object(),
        "{schemas}"
    );
    app.stop().await.expect("stops");
}
