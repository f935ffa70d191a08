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
    /// Migrating, or checking the schema, failed; see [`MigrateError`].
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// A database operation failed.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// The process-wide instance was already installed.
    #[error("the process-wide DbService is already initialised")]
    AlreadyInitialized,
}

/// Why migrating, or checking the schema, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// Another session kept the migration lock for the whole bound.
    #[error(
        "the migration lock ({lock}) was still held by {holder} after {waited:?} \
         (migrate_lock_timeout = {bound:?}); nothing was migrated"
    )]
    LockTimeout {
        /// Which lock: the advisory key or the `GET_LOCK` name.
        lock: String,
        /// Who holds it, as far as the server tells (pid, application name, client).
        holder: String,
        /// How long we waited.
        waited: Duration,
        /// The configured bound.
        bound: Duration,
    },
    /// The database lacks a migration this build knows (checked with migrations off).
    #[error(
        "the database is behind this build: migration `{missing}` is not applied \
         ({applied} of {known} applied)"
    )]
    Behind {
        /// The first migration, in order, that is not applied.
        missing: String,
        /// How many of this build's migrations are applied.
        applied: usize,
        /// How many migrations this build knows.
        known: usize,
    },
    /// The migration table's name is not a plain identifier, so it cannot be read safely.
    #[error("the migration table name `{0}` is not a plain identifier")]
    TableName(String),
    /// A statement failed (the message scrubbed of the password).
    #[error("migrating or checking the schema failed: {0}")]
    Database(String),
}
