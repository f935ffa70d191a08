//! The process's `tracing` subscriber. Installing it is the application's decision: the
//! library only emits spans and events, and this is how the demo chooses to show them.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::TryInitError;

use dbservice::config::LogFormat;

/// The filter used when `RUST_LOG` is unset: our lines at INFO, the drivers' only when they warn.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn";

/// Installs the process's subscriber (`RUST_LOG` filter, pretty or JSON lines on stdout).
///
/// Call it once, early in `main`; a second call returns an error.
pub fn init(format: LogFormat) -> Result<(), TryInitError> {
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // Colours only for a terminal: a log file or collector gets plain text (and formatting
    // the escape codes costs CPU on every line).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            // The request's span (request id, route) on every line logged inside it.
            .with_current_span(true)
            .with_span_list(false)
            .finish()
            .try_init(),
        LogFormat::Pretty => builder.compact().finish().try_init(),
    }
}
