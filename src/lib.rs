//! # dbservice
//!
//! One process-wide database pool service for Rust web backends: Prisma's `PrismaService`,
//! on SeaORM 2 (sqlx) and tokio, with an actix-web 4 wing.
//!
//! ## A tour
//!
//! - [`DbService`]: owns the pool (its own, under SeaORM); lazy creation, connect with
//!   backoff, readiness, statistics, close. [`DbService::conn`] takes any SeaORM call.
//! - [`config`]: `DATABASE_URL` and its pool parameters (`connection_limit`, `pool_timeout`,
//!   ...), layered settings ([`config::Settings`]: environment, `.env`, config file),
//!   redaction, and the tuning defaults.
//! - [`Transaction`]: `db.transaction(async |tx| ...)` with the configured defaults, and
//!   `db.transaction_with(`[`TxOptions`]`, ...)` with `max_wait`, `timeout`, [`Isolation`],
//!   read-only and retries; [`savepoint`] nests.
//! - [`Pools`]: the primary pool and named ones (`DATABASE_URL_<NAME>`), by name.
//! - [`replica`]: read replicas (`DATABASE_REPLICA_URLS`) with read-your-writes, `db.read()`.
//! - [`batch`]: many rows in one bounded transaction: chunked `INSERT`s or `COPY`.
//! - [`context`]: `db.with_context(ctx)` ([`WithContext`]): `app.*` settings carried as
//!   `SET LOCAL` by every statement, for row-level security; `require_context` fails closed.
//! - [`migrate`]: sea-orm-migration behind a cross-process lock with a bounded wait, and the
//!   check that a database is not behind a build that does not migrate.
//! - [`classify`]: what a database error means (SQLSTATE, kind, retryable).
//! - [`health`] and [`metrics`]: the health answers and the Prometheus text, free of any web
//!   framework; [`alerts`]: the alerts the service raises.
//! - [`shutdown`]: SIGTERM/SIGINT, then readiness first, drain, close.
//! - `http` (feature `actix`): the actix-web wing: health handlers, `ApiError` (database errors
//!   as HTTP answers), a request deadline, request spans and log line, `/metrics`, the server's drain.
//!
//! The library emits `tracing` spans and events; installing a subscriber is the
//! application's choice.
//!
//! ## Features
//!
//! - `postgres` (default), `mysql`, `sqlite`: the database drivers compiled in.
//! - `actix` (default): the `http` module.
//!
//! The defaults fit the common case, a PostgreSQL backend on actix-web. Another framework
//! takes `default-features = false, features = ["postgres"]` (see `examples/axum_minimal.rs`).
//!
//! ## Example
//!
//! A complete actix-web backend: configuration from the environment, the service in the app
//! data, the health probes, a handler with a transaction, the graceful shutdown.
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
//! use dbservice::config::Settings;
//! use dbservice::http::{ApiError, drain, health};
//! use dbservice::{DbService, shutdown};
//! use sea_orm::ConnectionTrait;
//!
//! async fn reset(db: web::Data<DbService>) -> Result<String, ApiError> {
//!     let done = db
//!         .transaction(async |tx| tx.execute_unprepared("UPDATE counters SET hits = 0").await)
//!         .await?;
//!     Ok(format!("{} counters reset\n", done.rows_affected()))
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let settings = Settings::from_env()?;
//!     let db = DbService::new(settings.db_config(None)?)?;
//!     db.connect().await?;
//!     let data = web::Data::new(db.clone());
//!     let server = HttpServer::new(move || {
//!         App::new()
//!             .app_data(data.clone())
//!             .service(health::scope())
//!             .route("/counters/reset", web::post().to(reset))
//!     })
//!     .disable_signals()
//!     .shutdown_timeout(settings.shutdown.drain_timeout_secs())
//!     .bind(("0.0.0.0", 8080))?
//!     .run();
//!     let handle = server.handle();
//!     let server = tokio::spawn(server);
//!     shutdown::signal().await;
//!     let force = async {
//!         shutdown::signal().await;
//!     };
//!     drain(&db, handle, server, &settings.shutdown, force).await;
//!     Ok(())
//! }
//! ```

#![deny(missing_docs)]

#[cfg(not(any(feature = "postgres", feature = "mysql", feature = "sqlite")))]
compile_error!(
    "dbservice needs at least one database driver: enable the feature `postgres`, `mysql` or `sqlite`"
);

pub mod alerts;
pub mod batch;
pub mod classify;
pub mod config;
pub mod context;
mod endpoint;
mod error;
pub mod health;
#[cfg(feature = "actix")]
pub mod http;
pub mod metrics;
pub mod migrate;
mod named;
mod observe;
#[cfg(feature = "opentelemetry")]
pub mod otel;
mod pool;
mod reads;
pub mod replica;
mod scoped;
mod secrets;
mod service;
pub mod shutdown;
mod sql_text;
mod stats;
mod tasks;
mod time;
pub mod trace;
mod transaction;

// What `main` and a handler use, at the root; everything else has one path, in its module.
pub use endpoint::{DbConn, DbStream, Endpoint, LastError, Phase, PingError};
pub use error::{Error, Result};
pub use named::{Pools, PoolsError};
pub use scoped::WithContext;
pub use service::{DbService, Readiness};
pub use stats::CloseReason;
pub use stats::{
    ClosedCounts, Distribution, ErrorCounts, HostReport, HostsReport, PoolStats, TxStats,
};
pub use transaction::{Isolation, Transaction, TxError, TxOptions, savepoint};
