//! Prometheus metrics in the OpenMetrics text format, produced by the `prometheus-client`
//! crate, free of any web framework: [`Metrics::exposition`] gives the text and its content
//! type for whatever serves `GET /metrics` (the actix wing's `serve_metrics`, or an axum or
//! hyper handler).
//!
//! Database metrics come from the [`DbService`] (or every pool of a [`Pools`]) the registry is
//! built for; HTTP metrics (requests by route and status, latency by route) from an
//! [`HttpMetrics`], fed per request. [`Metrics`] is the registry, built once per app; the
//! service's figures are read at each scrape by a `prometheus-client` collector. Nothing is
//! global, so tests can run several services.

use prometheus_client::registry::Registry;

use crate::named::Pools;
use crate::service::DbService;

mod collector;
mod requests;

use self::collector::ServiceCollector;
pub use self::requests::HttpMetrics;

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One scrape's answer: the text and the content type to serve it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposition {
    /// The `Content-Type` header's value ([`CONTENT_TYPE_OPENMETRICS`]).
    pub content_type: &'static str,
    /// Every metric in the OpenMetrics text format.
    pub body: String,
}

/// The registry served at `GET /metrics`, built once: the service's figures through a
/// collector that reads them at each scrape, and the HTTP families (if given), which are live
/// already. Serve [`exposition`](Self::exposition) at `GET /metrics` (with actix: put it in
/// the app data, `web::Data<Metrics>`, and route `dbservice::http::serve_metrics`).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// The metrics of `db` and, if given, `http`.
    pub fn new(db: &DbService, http: Option<&HttpMetrics>) -> Self {
        Self::build(ServiceCollector::One(db.clone()), http)
    }

    /// The metrics of every pool in `pools`, each series with a `pool` label (`primary` and
    /// the named pools), and, if given, `http`.
    pub fn for_pools(pools: &Pools, http: Option<&HttpMetrics>) -> Self {
        Self::build(ServiceCollector::Pools(pools.clone()), http)
    }

    fn build(collector: ServiceCollector, http: Option<&HttpMetrics>) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector));
        if let Some(http) = http {
            registry.register(
                "dbservice_http_requests",
                "HTTP requests by route and status",
                http.requests.clone(),
            );
            registry.register(
                "dbservice_http_request_duration_seconds",
                "HTTP request latency by route",
                http.latency.clone(),
            );
        }
        Self { registry }
    }

    /// Every metric in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// [`render`](Self::render) with its content type: what a `GET /metrics` handler answers.
    pub fn exposition(&self) -> Exposition {
        Exposition {
            content_type: CONTENT_TYPE_OPENMETRICS,
            body: self.render(),
        }
    }
}
