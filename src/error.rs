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

use crate::config::RedactedUrl;

/// A `Result` whose error defaults to the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A setting that is missing, malformed or contradicts another one.
///
/// Every variant names the parameter and, where there is one, the offending value, so the
/// message alone tells an operator what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A parameter has a value that cannot be parsed or is out of range.
    #[error("invalid value for `{param}`: `{value}` ({reason})")]
    InvalidValue {
        /// The parameter's name, as written in the URL query or settings.
        param: String,
        /// The rejected value, verbatim.
        value: String,
        /// Why it was rejected, including what would be accepted.
        reason: String,
    },
    /// A query parameter in `DATABASE_URL` that is neither ours nor the driver's.
    #[error("unknown parameter `{param}` in DATABASE_URL{hint}")]
    UnknownParameter {
        /// The parameter's name.
        param: String,
        /// A "did you mean" suggestion or the list of accepted names, with a leading separator.
        hint: String,
    },
    /// `min_connections` is larger than `connection_limit`.
    #[error(
        "`min_connections` ({min}) is greater than `connection_limit` ({max}); lower \
         min_connections or raise connection_limit"
    )]
    MinAboveLimit {
        /// The configured `min_connections`.
        min: u32,
        /// The configured `connection_limit`.
        max: u32,
    },
    /// The URL's scheme names no supported database.
    #[error(
        "unsupported scheme `{scheme}` in DATABASE_URL (expected postgres://, postgresql://, \
         mysql://, mariadb:// or sqlite:)"
    )]
    UnsupportedScheme {
        /// The scheme as written.
        scheme: String,
    },
    /// `DATABASE_URL` is not a URL at all. The URL itself is not repeated: it may hold a password.
    #[error("DATABASE_URL is not a valid URL: {reason}")]
    InvalidUrl {
        /// What the URL parser objected to.
        reason: String,
    },
    /// No database URL was configured.
    #[error("DATABASE_URL is not set (nor `database_url` in the config file)")]
    MissingUrl,
    /// A parameter that only one backend understands was given for another.
    #[error("`{param}` is only supported on {supported}, but DATABASE_URL is a {backend} URL")]
    UnsupportedOnBackend {
        /// The parameter's name.
        param: String,
        /// The backend(s) that support it.
        supported: &'static str,
        /// The backend of the configured URL.
        backend: &'static str,
    },
    /// Two settings that cannot be used together.
    #[error("`{first}` cannot be combined with `{second}`: {reason}")]
    Conflict {
        /// The first parameter.
        first: String,
        /// The second parameter.
        second: String,
        /// Why they conflict.
        reason: String,
    },
    /// The driver rejected the URL (after our parameters were stripped).
    #[error("the database driver rejected {url}: {message}")]
    Driver {
        /// The redacted URL handed to the driver.
        url: RedactedUrl,
        /// The driver's message, scrubbed of the password.
        message: String,
    },
    /// The layered configuration (config file, environment, `.env`) could not be read.
    #[error("could not load settings: {0}")]
    Source(String),
}

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
    /// A database operation failed.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// The process-wide instance was already installed.
    #[error("the process-wide DbService is already initialised")]
    AlreadyInitialized,
}
