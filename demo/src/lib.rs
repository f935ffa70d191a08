//! The dbservice demo: a small ledger backend (accounts and transfers) on top of
//! [`DbService`]. It shows how a backend wires the service in, using only the library's public
//! API; the tests drive it exactly as `cargo run` does.

pub mod entities;
mod listeners;
#[cfg(feature = "otel")]
pub mod otel;
pub mod routes;
pub mod schema;
mod settings;
pub mod telemetry;
mod tenancy;

pub use self::settings::{DEMO_KEYS, DemoSettings, HttpSettings, MigrationSettings};

use actix_web::dev::Server;
use actix_web::http::KeepAlive;
use actix_web::{App, HttpServer, middleware, web};

use dbservice::config::ShutdownSettings;
use dbservice::health::HealthOptions;
use dbservice::http::{
    ApiError, RequestTimeout, bound_request, drain, log_request, request_spans, serve_metrics,
};
use dbservice::metrics::{HttpMetrics, Metrics};
use dbservice::{DbService, Error, Pools, Result};

/// Where the demo keeps its data when `DATABASE_URL` is unset (see the migration crate).
pub use migration::DEMO_DATABASE_URL as DEFAULT_DATABASE_URL;

/// The demo server, bound and ready to run.
pub struct Application {
    port: u16,
    management_port: Option<u16>,
    server: Server,
    db: DbService,
    /// The primary and the named pools (`DATABASE_URL_<NAME>`).
    pools: Pools,
    shutdown: ShutdownSettings,
    migrations: MigrationSettings,
    tenants: web::Data<tenancy::Tenancy>,
}

impl Application {
    /// Validates the settings, creates the (not yet connected) [`DbService`] and binds the
    /// listener (`port` 0 picks a free port). Serves nothing until
    /// [`run_until_stopped`](Self::run_until_stopped). Must be called inside a tokio runtime.
    pub fn build(settings: &DemoSettings) -> Result<Self> {
        let config = settings.core.db_config(Some(DEFAULT_DATABASE_URL))?;
        let db = DbService::new(config)?;
        // Refused before anything is bound: no row-level security, no tenancy.
        let tenants = tenancy::Tenancy::new(settings.tenant_header.as_deref())
            .and_then(|t| {
                let required = db.config().pool().session.require_context;
                t.check_backend(db.backend(), required).map(|()| t)
            })
            .map_err(Error::Startup)?;
        let tenants = web::Data::new(tenants);
        let mut pools = Pools::new(db.clone());
        pools
            .add_from_settings(&settings.core)
            .map_err(|e| Error::Startup(e.to_string()))?;
        let named_pools = (pools.names().len() > 1).then(|| web::Data::new(pools.clone()));
        let http = &settings.http;
        let public = listeners::bind(&settings.host, settings.port, http.backlog)?;
        let port = listeners::port_of(&public)?;
        let management = match http.management_port {
            Some(p) => {
                let host = http.management_host.as_deref().unwrap_or(&settings.host);
                Some(listeners::bind(host, p, http.backlog)?)
            }
            None => None,
        };
        let management_port = management.as_ref().map(listeners::port_of).transpose()?;
        let split = web::Data::new(listeners::Split { management_port });
        let diagnostics = settings.demo_diagnostics;
        let data = web::Data::new(db.clone());
        let health_options = web::Data::new(HealthOptions::with_details(http.health_details));
        let deadline = http
            .request_timeout
            .map(|t| web::Data::new(RequestTimeout(t)));
        // Off (`metrics=false`): no `/metrics` route and no per-request metric work.
        let http_metrics = settings
            .metrics
            .then(|| web::Data::new(HttpMetrics::default()));
        let metrics = http_metrics.as_ref().map(|http| {
            web::Data::new(if named_pools.is_some() {
                Metrics::for_pools(&pools, Some(http))
            } else {
                Metrics::new(&db, Some(http))
            })
        });
        let app_tenants = tenants.clone();
        let mut server = HttpServer::new(move || {
            let mut app = App::new()
                // Outermost first in the log: a request cut off by its deadline is logged and
                // counted with its 504.
                // Only where configured: both run on every request.
                .wrap(middleware::Condition::new(
                    deadline.is_some(),
                    middleware::from_fn(bound_request),
                ))
                .wrap(middleware::Condition::new(
                    management_port.is_some(),
                    middleware::from_fn(listeners::route_by_listener),
                ))
                .wrap(middleware::from_fn(log_request))
                .wrap(request_spans())
                .app_data(data.clone())
                .app_data(app_tenants.clone())
                .app_data(split.clone())
                .app_data(health_options.clone())
                .app_data(json_config())
                .app_data(path_config())
                .app_data(query_config())
                .service(dbservice::http::health::scope())
                .route("/openapi.json", web::get().to(routes::openapi::serve))
                .configure(|cfg| routes::configure(cfg, diagnostics));
            if let Some(d) = &deadline {
                app = app.app_data(d.clone());
            }
            if let Some(p) = &named_pools {
                app = app.app_data(p.clone());
            }
            match (&http_metrics, &metrics) {
                (Some(http), Some(registry)) => app
                    .app_data(http.clone())
                    .app_data(registry.clone())
                    .route("/metrics", web::get().to(serve_metrics)),
                _ => app,
            }
        })
        .workers(settings.effective_http_workers())
        .keep_alive(
            http.keep_alive
                .map_or(KeepAlive::Disabled, KeepAlive::Timeout),
        )
        .client_request_timeout(http.client_request_timeout)
        .client_disconnect_timeout(std::time::Duration::from_secs(1))
        .max_connections(http.max_connections)
        // Signals are ours (crate::shutdown): readiness must fail before the listener closes.
        .disable_signals()
        .shutdown_timeout(settings.core.shutdown.drain_timeout_secs())
        .listen(public)
        .map_err(|e| Error::Startup(format!("cannot serve: {e}")))?;
        if let Some(listener) = management {
            server = server
                .listen(listener)
                .map_err(|e| Error::Startup(format!("cannot serve the management port: {e}")))?;
        }
        let server = server.run();
        Ok(Self {
            port,
            management_port,
            server,
            db,
            pools,
            shutdown: settings.core.shutdown,
            migrations: settings.migrations,
            tenants,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The management listener's bound port, if one was configured (`management_port`).
    pub fn management_port(&self) -> Option<u16> {
        self.management_port
    }

    /// The service behind the server.
    pub fn db(&self) -> &DbService {
        &self.db
    }

    /// The primary and the named pools (for `dbservice::otel::instrument`).
    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// Serves until `stop` resolves (the binary passes the first SIGTERM/SIGINT) or the
    /// startup gives up, then runs the graceful shutdown ([`drain`]); `force`
    /// resolving during it (the binary passes the next signal) cuts it short. Meanwhile the
    /// database is connected with backoff and, in the background, migrated (`migrate=true`) or
    /// checked not to be behind (`migrate=false`); `/health/ready` answers 503 until that is
    /// done.
    ///
    /// Returns an error if the startup failed (the process should exit non-zero).
    pub async fn run_until_stopped(
        self,
        stop: impl Future<Output = ()>,
        force: impl Future<Output = ()>,
    ) -> Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<Error>();
        let db = self.db.clone();
        let pools = self.pools.clone();
        let migrations = self.migrations;
        let tenants = self.tenants.clone();
        let startup = tokio::spawn(async move {
            // Named pools connect in the background; readiness follows the primary.
            if pools.names().len() > 1 {
                let _ = pools.connect_named().await;
            }
            tracing::info!(url = %db.config().redacted_url(), "connecting to the database");
            let result = db
                .start(|db| async move {
                    schema::prepare(&db, &migrations)
                        .await
                        .map_err(|e| e.to_string())?;
                    // After the migrations: the policy must exist for the check to mean much,
                    // and a refused role must not serve a single request.
                    tenants.check_role(&db).await
                })
                .await;
            match result {
                Ok(()) => tracing::info!(migrate = migrations.at_startup, "database ready"),
                Err(e) => {
                    let _ = failed_tx.send(e);
                }
            }
        });

        let outcome = tokio::select! {
            () = stop => Ok(()),
            Ok(err) = failed_rx => Err(err),
            res = &mut server => {
                startup.abort();
                let _ = self.db.close(self.shutdown.pool_close_timeout).await;
                return match res {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(Error::Startup(format!("server failed: {e}"))),
                    Err(e) => Err(Error::Startup(format!("server task failed: {e}"))),
                };
            }
        };
        startup.abort();
        let mut settings = self.shutdown;
        if outcome.is_err() {
            // Not ready, never was: nothing to wait for behind a load balancer.
            settings.grace = std::time::Duration::ZERO;
        }
        drain(&self.db, handle, server, &settings, force).await;
        // The primary is closed by the drain; the named pools within the same bound.
        let _ = self.pools.close_all(settings.pool_close_timeout).await;
        outcome
    }
}

fn json_config() -> web::JsonConfig {
    json_config_limited(16 * 1024)
}

/// The JSON body rules with a body limit of `limit` bytes (the batch route takes more).
pub(crate) fn json_config_limited(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| {
            use actix_web::error::JsonPayloadError;
            let api = match &err {
                JsonPayloadError::ContentType => ApiError {
                    status: actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    ..ApiError::bad_request(
                        "unsupported_media_type",
                        "expected Content-Type: application/json",
                    )
                },
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => ApiError {
                    status: actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                    ..ApiError::bad_request(
                        "payload_too_large",
                        format!("the JSON body is larger than {} KiB", limit / 1024),
                    )
                },
                JsonPayloadError::Deserialize(e) => {
                    ApiError::bad_request("invalid_json", e.to_string())
                }
                other => ApiError::bad_request("invalid_json", other.to_string()),
            };
            api.into()
        })
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|err, _req| ApiError::bad_request("invalid_path", err.to_string()).into())
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err, _req| ApiError::bad_request("invalid_query", err.to_string()).into())
}
