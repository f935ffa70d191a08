//! [`HttpMetrics`]: per-route request counters and latency histograms, recorded by whatever
//! serves the requests (the actix wing's `log_request`, or any framework's middleware).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteLabels {
    method: &'static str,
    route: String,
}

/// Per-route HTTP request counters and latency histograms. With actix, put one in the app
/// data (`web::Data<HttpMetrics>`) and wrap the app in `middleware::from_fn(log_request)`
/// (`dbservice::http::log_request`); elsewhere, call [`record`](Self::record) per request.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    pub(super) requests: Family<RequestLabels, Counter>,
    pub(super) latency: Family<RouteLabels, Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
        }
    }
}

impl HttpMetrics {
    /// Records one request. Every label has a bounded set of values, so no client can grow
    /// the series without limit: `method` is one of the standard methods or `other` (any token
    /// is a valid method), `route` is the matched pattern (`/api/accounts/{id}`, never the raw
    /// path) or whatever the caller folds unmatched requests into, and `status` outside
    /// 100-599 is recorded as 0.
    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = standard_method(method);
        let status = if (100..=599).contains(&status) {
            status
        } else {
            0
        };
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method,
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

/// The method's label: a standard method as written, anything else `other`.
fn standard_method(method: &str) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    STANDARD
        .into_iter()
        .find(|m| *m == method)
        .unwrap_or("other")
}
