//! Traces and metrics to an OpenTelemetry collector over OTLP/HTTP (cargo feature `otel`).
//!
//! Configured only by the standard `OTEL_*` variables, read from the process environment (as
//! the SDK reads them; a `.env` line is refused, see [`ExportSettings::from_env`]). Off while
//! no endpoint variable is set: then nothing here runs, no provider, no exporter thread, no
//! `tracing` layer.
//!
//! | variable | effect |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | the collector's base URL (`http://127.0.0.1:4318`); `/v1/traces` and `/v1/metrics` are appended |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` | one signal's full URL, used as is; with only one of them set, only that signal is exported |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` (and `_TRACES_`/`_METRICS_PROTOCOL`) | `http/protobuf` (default) or `http/json`; `grpc` is refused: this build has the HTTP exporter only |
//! | `OTEL_EXPORTER_OTLP_HEADERS` (and per signal), `OTEL_EXPORTER_OTLP_TIMEOUT` | read by the exporter; the headers are never logged |
//! | `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` | the resource; the service name defaults to `dbservice` |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | read by the SDK (default `parentbased_always_on`); checked here so a typo is an error |
//! | `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_*`, `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_METRIC_EXPORT_TIMEOUT` | read by the SDK (milliseconds); checked to be numbers here |
//! | `OTEL_SDK_DISABLED=true` | export off whatever else is set |
//!
//! Spans reach the exporter through a `tracing-opentelemetry` layer with a filter of its own
//! (INFO and above, the drivers' spans at WARN): `RUST_LOG` turns the log lines down without
//! thinning the traces. The incoming W3C `traceparent` header is continued by the request's
//! root span (`tracing-actix-web`, with the W3C propagator installed here).

use std::time::Duration;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets, filter_fn};

/// The service name when neither `OTEL_SERVICE_NAME` nor `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES` gives one.
pub const DEFAULT_SERVICE_NAME: &str = "dbservice";

/// How long the shutdown waits for the last spans and metrics to be sent.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(5);

/// The instrumentation scope of the demo's tracer and meter.
const SCOPE: &str = "dbservice";

mod settings;

pub use self::settings::{Endpoint, ExportSettings};

/// The running export: the providers with their exporter threads
/// (`OpenTelemetry.Traces.BatchProcessor`, `OpenTelemetry.Metrics.PeriodicReader`).
#[derive(Debug)]
pub struct Export {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Export {
    /// Builds the exporters and providers (starting their threads) and installs the W3C
    /// `traceparent` propagator. Nothing is sent until spans or metrics are recorded.
    ///
    /// # Errors
    /// The exporter's message when it cannot be built (e.g. an unsupported
    /// `OTEL_EXPORTER_OTLP_COMPRESSION`).
    pub fn start(settings: &ExportSettings) -> Result<Self, String> {
        let mut resource = Resource::builder();
        if let Some(name) = &settings.service_name {
            resource = resource.with_service_name(name.clone());
        }
        let resource = resource.build();
        let tracer = match &settings.traces {
            Some(endpoint) => {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_endpoint(endpoint.url.clone())
                    .with_protocol(protocol_of(endpoint))
                    .build()
                    .map_err(|e| format!("cannot build the OTLP span exporter: {e}"))?;
                Some(
                    SdkTracerProvider::builder()
                        .with_resource(resource.clone())
                        .with_batch_exporter(exporter)
                        .build(),
                )
            }
            None => None,
        };
        let meter = match &settings.metrics {
            Some(endpoint) => {
                let exporter = opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .with_endpoint(endpoint.url.clone())
                    .with_protocol(protocol_of(endpoint))
                    .build()
                    .map_err(|e| format!("cannot build the OTLP metric exporter: {e}"))?;
                Some(
                    SdkMeterProvider::builder()
                        .with_resource(resource)
                        .with_periodic_exporter(exporter)
                        .build(),
                )
            }
            None => None,
        };
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        Ok(Self { tracer, meter })
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans, with its own filter
    /// (INFO and above; the drivers' at WARN), if traces are exported.
    pub fn layer(&self) -> Option<crate::telemetry::ExtraLayer> {
        let tracer = self.tracer.as_ref()?.tracer(SCOPE);
        let levels = Targets::new()
            .with_default(LevelFilter::INFO)
            .with_target("sqlx", LevelFilter::WARN)
            .with_target("sea_orm", LevelFilter::WARN)
            .with_target("sea_orm_migration", LevelFilter::WARN);
        // Spans, and only the library's span events (a transaction's retries): log events
        // (an error's message, a slow query's text) stay in the logs, since a driver's
        // message may quote a value (MySQL's "Duplicate entry 'x'"), which the export must
        // never carry.
        let filter = levels.and(filter_fn(|meta| {
            meta.is_span() || meta.target().starts_with("dbservice::spans::")
        }));
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                // Neither source locations, thread names nor busy/idle times: attributes a
                // collector stores for every span and that cost a clock read on every enter.
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false)
                // Nor an OpenTelemetry context attached on every enter (every poll of an
                // instrumented future): no other OpenTelemetry instrumentation runs in this
                // process to read it; parents and `traceparent` do not need it.
                .with_context_activation(false)
                // Nor the `tracing` target: the conventions' attributes say what a span is.
                .with_target(false)
                .with_filter(filter)
                .boxed(),
        )
    }

    /// A meter of the exporting meter provider (for `dbservice::otel::instrument`), if metrics
    /// are exported.
    pub fn meter(&self) -> Option<Meter> {
        self.meter.as_ref().map(|p| p.meter(SCOPE))
    }

    /// Sends what is buffered and stops the exporters, waiting at most `bound`. Call it after
    /// the server drained, so the spans of the last requests are not lost.
    pub async fn shutdown(self, bound: Duration) {
        // The providers block while they flush (and their HTTP client must not be dropped on
        // a runtime thread): on a thread of their own, detached, so that neither this wait nor
        // the runtime's end waits for it past the bound; one deadline for both providers.
        let (done, finished) = tokio::sync::oneshot::channel();
        let deadline = std::time::Instant::now() + bound;
        let spawned = std::thread::Builder::new()
            .name("otel-shutdown".into())
            .spawn(move || {
                let left = || deadline.saturating_duration_since(std::time::Instant::now());
                let mut errors = Vec::new();
                if let Some(t) = self.tracer
                    && let Err(e) = t.shutdown_with_timeout(left())
                {
                    errors.push(format!("traces: {e}"));
                }
                if let Some(m) = self.meter
                    && let Err(e) = m.shutdown_with_timeout(left())
                {
                    errors.push(format!("metrics: {e}"));
                }
                let _ = done.send(errors);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "telemetry export shutdown could not start");
            return;
        }
        match tokio::time::timeout(bound, finished).await {
            Ok(Ok(errors)) if errors.is_empty() => {
                tracing::debug!("telemetry export flushed and stopped");
            }
            Ok(Ok(errors)) => tracing::warn!(
                errors = errors.join("; "),
                "telemetry export stopped with errors (the last spans or metrics may be lost)"
            ),
            Ok(Err(_)) => tracing::warn!("telemetry export shutdown ended without an answer"),
            Err(_) => tracing::warn!(
                bound = ?bound,
                "telemetry export did not flush within its bound; the last spans or metrics may be lost"
            ),
        }
    }
}

fn protocol_of(endpoint: &Endpoint) -> Protocol {
    if endpoint.json {
        Protocol::HttpJson
    } else {
        Protocol::HttpBinary
    }
}
