//! The library's error types.
//!
//! [`ConfigError`] is everything that can be wrong with the settings before any I/O happens;
//! [`Error`] is everything the service itself can report. Neither knows about HTTP: the demo
//! backend maps them to statuses at its edge (`demo::error`), and the health handlers do their
//! own mapping.
//!
//! Every message here is safe to log or return: URLs inside them are [`RedactedUrl`]s and
//! driver messages are scrubbed of the password before they are stored.

use std::time::Duration;

use crate::config::{ConfigError, RedactedUrl};

/// A `Result` whose error defaults to the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the service can report at run time.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The settings are invalid; see [`ConfigError`].
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database refused the connection for a reason that retrying will not fix
    /// (bad credentials, unknown database, TLS required, ...).
    #[error("cannot connect to {url}: {message}")]
    ConnectRejected {
        /// The redacted URL.
        url: RedactedUrl,
        /// The driver's message (scrubbed), including the SQLSTATE when there is one.
        message: String,
    },
    /// The database stayed unreachable for the whole connect bound (`connect_retry_timeout`).
    #[error(
        "gave up connecting to {url} after {elapsed:?} and {attempts} attempt(s) \
         (connect_retry_timeout); last error: {last_error}"
    )]
    ConnectTimedOut {
        /// The redacted URL.
        url: RedactedUrl,
        /// How long we tried.
        elapsed: Duration,
        /// How many connection attempts were made.
        attempts: u32,
        /// The last attempt's error (scrubbed).
        last_error: String,
    },
    /// Preparing the database after connecting (e.g. migrations) failed.
    #[error("startup step failed: {0}")]
    Startup(String),
    /// Migrating, or checking the schema, failed; see [`MigrateError`](crate::migrate::MigrateError).
    #[error(transparent)]
    Migrate(#[from] crate::migrate::MigrateError),
    /// A database operation failed.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// The process-wide instance was already installed.
    #[error("the process-wide DbService is already initialised")]
    AlreadyInitialized,
}
