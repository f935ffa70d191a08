//! The demo ledger server: `cargo run`; `cargo run -- migrate` applies the pending migrations
//! and exits (an init container's or a Job's command).

use std::process::ExitCode;

use dbservice::shutdown;
use dbservice_demo::{Application, DemoSettings, telemetry};

/// What the command line asks for.
enum Mode {
    /// Serve (no arguments).
    Serve,
    /// `migrate`: apply the pending migrations and exit.
    Migrate,
}

const USAGE: &str = "usage: dbservice [migrate]\n  (no argument)  serve the API\n  migrate         apply the pending migrations over DATABASE_URL_DIRECT (else DATABASE_URL) and exit";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => Mode::Serve,
        ["migrate"] => Mode::Migrate,
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => {
            eprintln!("dbservice: unknown arguments {other:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let settings = match DemoSettings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dbservice: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // Traces and metrics to a collector (feature `otel`): off unless an OTLP endpoint is set.
    #[cfg(feature = "otel")]
    let export = match dbservice_demo::otel::ExportSettings::from_env() {
        Ok(None) => None,
        Ok(Some(otel)) => match dbservice_demo::otel::Export::start(&otel) {
            Ok(export) => Some((export, otel)),
            Err(e) => {
                eprintln!("dbservice: configuration error: {e}");
                return ExitCode::from(2);
            }
        },
        Err(e) => {
            eprintln!("dbservice: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    #[cfg(feature = "otel")]
    let layer = export.as_ref().and_then(|(e, _)| e.layer());
    #[cfg(not(feature = "otel"))]
    let layer = None;
    if let Err(e) = telemetry::init_with(settings.core.log_format, layer) {
        eprintln!("dbservice: cannot initialise logging: {e}");
        return ExitCode::from(1);
    }
    #[cfg(feature = "otel")]
    if let Some((_, otel)) = &export {
        let off = || "off".to_owned();
        tracing::info!(
            traces = otel.traces.as_ref().map_or_else(off, ToString::to_string),
            metrics = otel.metrics.as_ref().map_or_else(off, ToString::to_string),
            "exporting traces and metrics over OTLP"
        );
    }
    #[cfg(not(feature = "otel"))]
    if let Some(var) = OTLP_ENDPOINTS
        .iter()
        .find(|v| std::env::var_os(v).is_some())
    {
        tracing::warn!(
            variable = var,
            "an OTLP endpoint is set but this build exports nothing: build with `--features dbservice-demo/otel`"
        );
    }
    #[cfg(feature = "otel")]
    let (export, meter) = match export {
        Some((e, _)) => {
            let meter = e.meter();
            (Some(e), meter)
        }
        None => (None, None),
    };
    #[cfg(not(feature = "otel"))]
    let meter = None;
    let code = run(mode, &settings, meter).await;
    // After the drain: the spans of the last requests are sent, within a bound.
    #[cfg(feature = "otel")]
    if let Some(export) = export {
        export.shutdown(dbservice_demo::otel::SHUTDOWN_BOUND).await;
    }
    code
}

/// The variables that ask for an OTLP export (which needs the `otel` feature).
#[cfg(not(feature = "otel"))]
const OTLP_ENDPOINTS: [&str; 3] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
];

/// The meter of the OTLP export, when it runs (a stand-in type without the `otel` feature).
#[cfg(feature = "otel")]
type OtelMeter = opentelemetry::metrics::Meter;
#[cfg(not(feature = "otel"))]
type OtelMeter = std::convert::Infallible;

/// Serves or migrates, once logging is up; returns the process's exit code.
async fn run(mode: Mode, settings: &DemoSettings, meter: Option<OtelMeter>) -> ExitCode {
    // Read before logging was up, so told now.
    if !settings.core.ignored_variables().is_empty() {
        tracing::debug!(
            variables = settings.core.ignored_variables().join(", "),
            "Kubernetes service-link variables ignored (not settings)"
        );
    }
    for warning in settings.core.warnings() {
        tracing::warn!("{warning}");
    }
    if let Mode::Migrate = mode {
        return match dbservice_demo::schema::migrate_only(settings).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "migrate failed");
                eprintln!("dbservice migrate: {e}");
                ExitCode::from(if matches!(e, dbservice::Error::Config(_)) {
                    2
                } else {
                    1
                })
            }
        };
    }
    let app = match Application::build(settings) {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("dbservice: {e}");
            return ExitCode::from(2);
        }
    };
    // The pools' metrics under the OpenTelemetry names, through the exporting meter provider.
    #[cfg(feature = "otel")]
    if let Some(meter) = &meter {
        dbservice::otel::instrument(app.pools(), meter);
    }
    #[cfg(not(feature = "otel"))]
    let _ = meter;
    let db = app.db();
    tracing::info!(
        address = %format!("{}:{}", settings.host, app.port()),
        url = %db.config().redacted_url(),
        sslmode = db.config().tls().map_or("none", |t| t.mode),
        sslmode_source = db.config().tls().map_or("-", |t| t.source),
        password_source = %db.password_source(),
        pool = ?db.config().pool(),
        shutdown = ?settings.core.shutdown,
        "listening"
    );
    if !settings.core.has_database_url() {
        tracing::info!("DATABASE_URL is unset: using the embedded SQLite file");
    }
    let stop = async {
        let name = shutdown::signal().await;
        tracing::info!(signal = name, "stop requested");
    };
    let force = async {
        let name = shutdown::signal().await;
        tracing::warn!(signal = name, "second stop request: forcing");
    };
    match app.run_until_stopped(stop, force).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "stopped with an error");
            eprintln!("dbservice: {e}");
            ExitCode::from(1)
        }
    }
}
