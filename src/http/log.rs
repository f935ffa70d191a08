//! Request logging with `tracing`: the per-request span ([`request_spans`], from
//! `tracing-actix-web`: request id, method, route), and one log line per request
//! ([`log_request`]). Everything a handler logs (a slow query, a failed connection) happens
//! inside its request's span, so it carries the request id and route. Installing a subscriber
//! that shows them is the application's choice (the demo's `telemetry` module is one).

use std::time::Instant;

use crate::metrics::HttpMetrics;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

/// actix middleware: a span per request (`request_id`, `http.method`, `http.route`, ...).
/// Wrap it outermost (last `.wrap`), so the request log line and everything the handler logs
/// happen inside it.
pub fn request_spans() -> tracing_actix_web::TracingLogger<tracing_actix_web::DefaultRootSpanBuilder>
{
    tracing_actix_web::TracingLogger::default()
}

/// actix middleware (use with `middleware::from_fn`): one INFO line per request with method,
/// path, status and latency, and, if the app data holds a [`HttpMetrics`], the request's
/// per-route metrics. Query strings are left out: they may carry personal data.
pub async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let http_metrics = req.app_data::<web::Data<HttpMetrics>>().cloned();
    let res = next.call(req).await;
    let (status, route) = match &res {
        Ok(r) => (r.status().as_u16(), r.request().match_pattern()),
        Err(e) => (e.as_response_error().status_code().as_u16(), None),
    };
    if let Some(m) = http_metrics {
        m.record(
            method.as_str(),
            route.as_deref().unwrap_or("unmatched"),
            status,
            started.elapsed(),
        );
    }
    tracing::info!(
        target: "dbservice::http",
        method = %method,
        path = %path,
        status,
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    res
}
