//! [`ConfigError`]: everything that can be wrong with the settings before any I/O happens.

use super::RedactedUrl;

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
    /// The URL's database is supported, but this build leaves its driver out.
    #[error(
        "`{scheme}` URLs need dbservice's cargo feature `{feature}`, which this build does not \
         enable (features = [\"{feature}\"] on the dbservice dependency)"
    )]
    BackendNotCompiled {
        /// The scheme as written.
        scheme: String,
        /// The cargo feature to enable.
        feature: &'static str,
    },
    /// `DATABASE_URL` is not a URL at all. The URL itself is not repeated: it may hold a password.
    #[error("DATABASE_URL is not a valid URL: {reason}")]
    InvalidUrl {
        /// What the URL parser objected to.
        reason: String,
    },
    /// The host list of a PostgreSQL URL (`db1:5432,db2:5432` in the authority, or the
    /// query's `host` and `port`) is malformed. The message names the part by position and
    /// never quotes the URL, whose text could be a mis-encoded password.
    #[error("DATABASE_URL {part}: {reason}")]
    InvalidHosts {
        /// Which part: `host 2 of 3`, `host`, `port`, `hostaddr` or `user info`.
        part: String,
        /// What is wrong, and what would be accepted.
        reason: String,
    },
    /// No database URL was configured.
    #[error("DATABASE_URL is not set (nor `database_url` in the config file)")]
    MissingUrl,
    /// No database URL was configured, and the profile does not allow a default one.
    #[error(
        "DATABASE_URL is not set (nor `database_url` in the config file); the {profile} profile \
         does not fall back to a default database, whose writes would be lost with the instance: \
         set DATABASE_URL, or choose the development or test profile"
    )]
    MissingUrlInProfile {
        /// The profile's name.
        profile: &'static str,
    },
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
    /// One of the `DATABASE_REPLICA_URLS` is invalid (counted from 1, in the order given).
    #[error("replica {replica} in DATABASE_REPLICA_URLS: {source}")]
    Replica {
        /// Which replica, from 1.
        replica: usize,
        /// What is wrong with it.
        source: Box<ConfigError>,
    },
    /// The layered configuration (config file, environment, `.env`) could not be read.
    #[error("could not load settings: {0}")]
    Source(String),
}
