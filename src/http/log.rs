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
use tracing::Span;
use tracing_actix_web::{RootSpanBuilder, TracingLogger};

/// actix middleware: a span per request (`request_id`, `http.method`, `http.route`, ...).
/// Wrap it outermost (last `.wrap`), so the request log line and everything the handler logs
/// happen inside it.
pub fn request_spans() -> TracingLogger<RequestSpan> {
    TracingLogger::new()
}

/// The request's span: `tracing-actix-web`'s `root_span!` (its fields, and an incoming
/// `traceparent` continued when its OpenTelemetry feature is on), ended with the status only:
/// `http.status_code`, and `otel.status_code=error` for a 5xx answer (OpenTelemetry's HTTP
/// server conventions: a 4xx is the client's error, not the server span's). The error's text
/// is not recorded (the default builder records it as `exception.message`/`exception.details`):
/// an answer such as `invalid_json` quotes the client's input, which a collector must not get.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        tracing_actix_web::root_span!(request)
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        let status = match outcome {
            Ok(r) => r.status(),
            Err(e) => e.as_response_error().status_code(),
        };
        span.record("http.status_code", i32::from(status.as_u16()));
        if status.is_server_error() {
            span.record("otel.status_code", "error");
        }
    }
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
