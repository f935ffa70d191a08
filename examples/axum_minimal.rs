//! The core without actix: readiness, liveness and metrics served by axum's own handlers
//! through the framework-free [`dbservice::health`] answers and
//! [`Metrics::exposition`](dbservice::metrics::Metrics::exposition). Build the library with
//! `default-features = false, features = ["postgres"]` in such a backend: no actix is compiled.
//!
//! `DATABASE_URL=postgres://app:secret@localhost/app cargo run --example axum_minimal`

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Router, serve};
use dbservice::health::{self, HealthOptions, HealthReport};
use dbservice::metrics::Metrics;
use dbservice::shutdown::{drain_with, signal};
use dbservice::{DbService, config::Settings};

#[derive(Clone)]
struct AppState {
    db: DbService,
    metrics: Arc<Metrics>,
}

/// A [`HealthReport`] as an axum response: its status, headers and JSON body.
fn reply(report: HealthReport) -> impl IntoResponse {
    let status = StatusCode::from_u16(report.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = HeaderMap::new();
    for (name, value) in report.headers() {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    (status, headers, report.body.to_string())
}

async fn live() -> impl IntoResponse {
    reply(health::live())
}

async fn ready(State(app): State<AppState>) -> impl IntoResponse {
    reply(health::ready(&app.db, None, HealthOptions::default()).await)
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let scrape = app.metrics.exposition();
    ([(CONTENT_TYPE, scrape.content_type)], scrape.body)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();
    let settings = Settings::from_env()?;
    let db = DbService::new(settings.db_config(None)?)?;
    db.connect().await?;

    let state = AppState {
        metrics: Arc::new(Metrics::new(&db, None)),
        db: db.clone(),
    };
    let app = Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
    let (closing, mut closed) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move {
        let until = async move {
            let _ = closed.changed().await;
        };
        serve(listener, app).with_graceful_shutdown(until).await
    });
    let abort = server.abort_handle();
    // The library's order: readiness fails, a grace for load balancers to notice, then the
    // listener closes and in-flight requests finish, then the pool closes. A second signal
    // stops at once.
    let stop = |graceful: bool| {
        if graceful {
            closing.send_replace(true);
        } else {
            abort.abort();
        }
        std::future::ready(())
    };
    signal().await;
    drain_with(&db, stop, server, &settings.shutdown, async {
        signal().await;
    })
    .await;
    Ok(())
}
