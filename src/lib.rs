//! # dbservice
//!
//! One process-wide database pool service for Rust web backends: Prisma's `PrismaService`,
//! on SeaORM 2 (sqlx), tokio and actix-web 4.
//!
//! - [`config`]: `DATABASE_URL` and its pool parameters (`connection_limit`, `pool_timeout`,
//!   ...), layered settings, redaction.
//! - [`DbService`]: owns the pool (its own, under SeaORM: see `src/pool`); lazy creation,
//!   connect with backoff, readiness, close.
//! - [`pools`]: the primary pool and named ones (`DATABASE_URL_<NAME>`), by name.
//! - [`batch`]: many rows in one bounded transaction: chunked `INSERT`s or `COPY`.
//! - [`replica`]: read replicas (`DATABASE_REPLICA_URLS`) with read-your-writes, `db.read()`.
//! - [`transaction`]: `db.transaction(async |tx| ...)` (configured defaults) and
//!   `db.transaction_with(opts, async |tx| ...)` with `max_wait`, `timeout`, isolation,
//!   read-only and retries; savepoints.
//! - [`metrics`]: `GET /metrics` (Prometheus/OpenMetrics) for the pool, queries, errors,
//!   transactions and HTTP routes.
//! - [`health`]: `/health/live`, `/health/ready`, `/health/db` for actix-web.
//! - [`http`]: a deadline for whole HTTP requests (body read and handler).
//! - [`shutdown`]: SIGTERM/SIGINT handling: readiness first, then drain, then close.
//! - [`migrate`]: sea-orm-migration behind a cross-process lock with a bounded wait, and the
//!   check that a database is not behind a build that does not migrate.
//! - [`classify`]: what a database error means (SQLSTATE, kind, retryable).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use dbservice::{DbConfig, DbService};
//! let db = DbService::new(DbConfig::from_url("postgres://app@localhost/app?connection_limit=5")?)?;
//! db.connect().await?;
//! let ready = db.ping().await.is_ok();
//! # Ok(()) }
//! ```

pub mod alerts;
pub mod batch;
pub mod classify;
pub mod config;
mod conn;
mod error;
pub mod health;
#[cfg(feature = "actix")]
pub mod http;
pub mod metrics;
pub mod migrate;
mod observe;
mod pool;
pub mod pools;
pub mod replica;
mod service;
pub mod shutdown;
mod sql_text;
mod stats;
mod time;
pub mod transaction;

pub use classify::AcquireError;
pub use config::{Backend, ConfigError, DbConfig, PoolOptions, RedactedUrl, Settings};
pub use conn::{DbConn, DbStream};
pub use error::{Error, Result};
pub use pool::CloseReason;
pub use pools::{Pools, PoolsError};
pub use service::{DbService, LastError, Phase, PingError, READY_CACHE, Readiness};
pub use stats::{ClosedCounts, Distribution, ErrorCounts, PoolStats, TxStats};
pub use transaction::{Isolation, Transaction, TxError, TxOptions};
