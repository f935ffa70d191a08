//! The demo ledger server: `cargo run`.

use std::process::ExitCode;

use dbservice::{shutdown, telemetry};
use dbservice_demo::{Application, DemoSettings};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match DemoSettings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dbservice: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = telemetry::init(settings.core.log_format) {
        eprintln!("dbservice: cannot initialise logging: {e}");
        return ExitCode::from(1);
    }
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
    let app = match Application::build(&settings) {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("dbservice: {e}");
            return ExitCode::from(2);
        }
    };
    let db = app.db();
    tracing::info!(
        address = %format!("{}:{}", settings.host, app.port()),
        url = %db.config().redacted_url(),
        sslmode = db.config().tls().map_or("none", |t| t.mode),
        sslmode_source = db.config().tls().map_or("-", |t| t.source),
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
