//! [`HttpMetrics`]: per-route request counters and latency histograms, recorded by whatever
//! serves the requests (the actix wing's `log_request`, or any framework's middleware).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
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
    /// The two series of every (route, method, status) seen so far, shared by the clones:
    /// after a label set's first request, recording it allocates nothing and takes one read
    /// lock (the families' `get_or_create` would copy the route twice and lock and hash twice).
    handles: Arc<RwLock<HashMap<Box<str>, Vec<Handles>>>>,
}

/// One label set's series (`prometheus-client` metrics are `Arc`-backed: a clone is the same
/// series).
#[derive(Debug)]
struct Handles {
    method: &'static str,
    status: u16,
    requests: Counter,
    latency: Histogram,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            handles: Arc::default(),
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
        let seconds = elapsed.as_secs_f64();
        let cached = self.handles.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = cached
            .get(route)
            .and_then(|v| v.iter().find(|h| h.method == method && h.status == status))
        {
            h.requests.inc();
            h.latency.observe(seconds);
            return;
        }
        drop(cached);
        // First request of this label set: create its series and keep them.
        let h = Handles {
            method,
            status,
            requests: self
                .requests
                .get_or_create(&RequestLabels {
                    method,
                    route: route.to_owned(),
                    status,
                })
                .clone(),
            latency: self
                .latency
                .get_or_create(&RouteLabels {
                    method,
                    route: route.to_owned(),
                })
                .clone(),
        };
        h.requests.inc();
        h.latency.observe(seconds);
        let mut cached = self.handles.write().unwrap_or_else(PoisonError::into_inner);
        let same_route = cached.entry(route.into()).or_default();
        // Another thread may have cached it meanwhile: the series are the same either way.
        if !same_route
            .iter()
            .any(|c| c.method == method && c.status == status)
        {
            same_route.push(h);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    fn rendered(http: &HttpMetrics) -> String {
        let mut registry = Registry::default();
        registry.register("t_requests", "", http.requests.clone());
        registry.register("t_latency", "", http.latency.clone());
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    #[test]
    fn cached_series_are_the_registered_ones_and_clones_share_them() {
        let http = HttpMetrics::default();
        let clone = http.clone();
        let ms = Duration::from_millis(1);
        http.record("GET", "/api/accounts/{id}", 200, ms);
        clone.record("GET", "/api/accounts/{id}", 200, ms);
        http.record("GET", "/api/accounts/{id}", 404, ms);
        http.record("BREW", "/api/accounts/{id}", 200, ms);
        http.record("GET", "unmatched", 1000, ms);
        let text = rendered(&http);
        let line = |labels: &str| {
            text.lines()
                .find(|l| l.starts_with("t_requests_total{") && l.contains(labels))
                .map(|l| l.rsplit(' ').next().unwrap_or_default().to_owned())
        };
        let get = "method=\"GET\",route=\"/api/accounts/{id}\"";
        assert_eq!(
            line(&format!("{get},status=\"200\"")),
            Some("2".into()),
            "{text}"
        );
        assert_eq!(
            line(&format!("{get},status=\"404\"")),
            Some("1".into()),
            "{text}"
        );
        assert_eq!(
            line("method=\"other\",route=\"/api/accounts/{id}\",status=\"200\""),
            Some("1".into()),
            "{text}"
        );
        assert_eq!(
            line("method=\"GET\",route=\"unmatched\",status=\"0\""),
            Some("1".into()),
            "{text}"
        );
        assert!(
            text.contains(&format!("t_latency_count{{{get}}} 3")),
            "{text}"
        );
    }
}
