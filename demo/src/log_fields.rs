//! [`LeanFields`]: the compact log lines' field formatter, `tracing-subscriber`'s
//! [`DefaultFields`](tracing_subscriber::fmt::format::DefaultFields) without the request
//! span's fields that only an OpenTelemetry backend wants (`otel.*`) or that repeat what every
//! line of a request already says (the HTTP version, scheme, host, client address and user
//! agent). The span keeps them all (an exporter still sees them); the text line does not
//! format them, once per request when the span opens, nor copy them into every line logged
//! inside it.
//!
//! Not wired yet: `telemetry::pretty()` would use it with
//! `tracing_subscriber::fmt::layer().fmt_fields(LeanFields)`.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// Fields left out of the text lines (they stay on the span).
pub const LEFT_OUT: [&str; 8] = [
    "http.flavor",
    "http.scheme",
    "http.host",
    "http.client_ip",
    "http.user_agent",
    "otel.name",
    "otel.kind",
    "otel.status_code",
];

/// `DefaultFields` minus [`LEFT_OUT`]; see the [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct LeanFields;

impl<'a> MakeVisitor<Writer<'a>> for LeanFields {
    type Visitor = Lean<DefaultVisitor<'a>>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        Lean(DefaultVisitor::new(target, true))
    }
}

/// A visitor passing every field but [`LEFT_OUT`] to the one it wraps.
#[derive(Debug)]
pub struct Lean<V>(V);

fn kept(field: &Field) -> bool {
    !LEFT_OUT.contains(&field.name())
}

impl<V: Visit> Visit for Lean<V> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if kept(field) {
            self.0.record_f64(field, value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if kept(field) {
            self.0.record_i64(field, value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if kept(field) {
            self.0.record_u64(field, value);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if kept(field) {
            self.0.record_bool(field, value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if kept(field) {
            self.0.record_str(field, value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if kept(field) {
            self.0.record_error(field, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if kept(field) {
            self.0.record_debug(field, value);
        }
    }
}

impl<V: VisitOutput<fmt::Result>> VisitOutput<fmt::Result> for Lean<V> {
    fn finish(self) -> fmt::Result {
        self.0.finish()
    }
}

impl<V: VisitFmt> VisitFmt for Lean<V> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        self.0.writer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer into a shared buffer, for one subscriber's output.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_keep_the_request_fields_and_leave_out_the_otel_and_connection_ones() {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .compact()
            .with_ansi(false)
            .fmt_fields(LeanFields)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "HTTP request",
                http.method = "GET",
                http.route = "/api/accounts/{id}",
                http.host = "localhost:8080",
                http.user_agent = "curl",
                otel.kind = "server",
                request_id = "abc",
                http.status_code = tracing::field::Empty,
            );
            span.record("http.status_code", 200);
            span.in_scope(|| tracing::info!(status = 200u16, latency_ms = 1.5, "request"));
        });
        let line = String::from_utf8(buf.0.lock().map(|b| b.clone()).unwrap_or_default())
            .unwrap_or_default();
        for kept in [
            "request",
            "status=200",
            "latency_ms=1.5",
            "http.method=\"GET\"",
            "http.route=\"/api/accounts/{id}\"",
            "request_id=\"abc\"",
            "http.status_code=200",
        ] {
            assert!(line.contains(kept), "{kept} missing from {line}");
        }
        for left_out in ["http.host", "http.user_agent", "otel.kind"] {
            assert!(!line.contains(left_out), "{left_out} in {line}");
        }
    }
}
