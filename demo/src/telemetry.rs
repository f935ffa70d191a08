//! The process's `tracing` subscriber. Installing it is the application's decision: the
//! library only emits spans and events, and this is how the demo chooses to show them.
//!
//! One [`Registry`] with the log lines' layer (pretty or JSON on stdout, filtered by
//! `RUST_LOG`) and, when traces are exported (feature `otel`), the OpenTelemetry layer with a
//! filter of its own: turning the log lines down with `RUST_LOG` does not thin the traces.

use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use tracing_subscriber::{EnvFilter, Layer, Registry};

use dbservice::config::LogFormat;

/// The filter used when `RUST_LOG` is unset: our lines at INFO, the drivers' only when they
/// warn, and the library's database spans (`dbservice::spans::*`, one per statement) not
/// formatted: each log line already carries the request's span, and the exporter has its own
/// filter.
pub const DEFAULT_FILTER: &str =
    "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,dbservice::spans=warn";

/// A layer to add beside the log lines (the OpenTelemetry one), with its own filter.
pub type ExtraLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the process's subscriber (`RUST_LOG` filter, pretty or JSON lines on stdout).
///
/// Call it once, early in `main`; a second call returns an error.
pub fn init(format: LogFormat) -> Result<(), TryInitError> {
    init_with(format, None)
}

/// Like [`init`], with `extra` beside the log lines. Without it the `RUST_LOG` filter is the
/// subscriber's global filter (a span no line wants is never created); with it each layer
/// filters for itself.
pub fn init_with(format: LogFormat, extra: Option<ExtraLayer>) -> Result<(), TryInitError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    match (format, extra) {
        (LogFormat::Json, None) => Registry::default().with(filter).with(json()).try_init(),
        (LogFormat::Pretty, None) => Registry::default().with(filter).with(pretty()).try_init(),
        (LogFormat::Json, Some(extra)) => Registry::default()
            .with(extra)
            .with(json().with_filter(filter))
            .try_init(),
        (LogFormat::Pretty, Some(extra)) => Registry::default()
            .with(extra)
            .with(pretty().with_filter(filter))
            .try_init(),
    }
}

/// Colours only for a terminal: a log file or collector gets plain text (and formatting the
/// escape codes costs CPU on every line).
fn ansi() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdout())
}

/// One JSON object per line.
fn json<S>() -> impl Layer<S> + Send + Sync
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(ansi())
        .json()
        .flatten_event(true)
        // The request's span (request id, route) on every line logged inside it.
        .with_current_span(true)
        .with_span_list(false)
}

/// Compact human-readable lines.
fn pretty<S>() -> impl Layer<S> + Send + Sync
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer().with_ansi(ansi()).compact()
}
