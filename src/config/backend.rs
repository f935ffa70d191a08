//! The database engines, and which of them this build compiled in.

use super::error::ConfigError;

/// The database engine a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// PostgreSQL (`postgres://`, `postgresql://`).
    Postgres,
    /// MySQL or MariaDB (`mysql://`, `mariadb://`).
    MySql,
    /// SQLite (`sqlite:`).
    Sqlite,
}

impl Backend {
    /// The backend's human name, as used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "PostgreSQL",
            Backend::MySql => "MySQL/MariaDB",
            Backend::Sqlite => "SQLite",
        }
    }

    /// SeaORM's name for the backend's SQL dialect.
    pub fn dialect(self) -> sea_orm::DbBackend {
        match self {
            Backend::Postgres => sea_orm::DbBackend::Postgres,
            Backend::MySql => sea_orm::DbBackend::MySql,
            Backend::Sqlite => sea_orm::DbBackend::Sqlite,
        }
    }

    /// The system's name in OpenTelemetry's conventions (`db.system.name`).
    pub fn otel_system(self) -> &'static str {
        match self {
            Backend::Postgres => "postgresql",
            Backend::MySql => "mysql",
            Backend::Sqlite => "sqlite",
        }
    }

    /// The port a URL naming no port means (none for SQLite, a file).
    pub fn default_port(self) -> Option<u16> {
        match self {
            Backend::Postgres => Some(super::hosts::DEFAULT_PORT),
            Backend::MySql => Some(3306),
            Backend::Sqlite => None,
        }
    }

    /// The cargo feature of `dbservice` that compiles this backend's driver in.
    pub fn feature(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::MySql => "mysql",
            Backend::Sqlite => "sqlite",
        }
    }

    /// Whether this build has the backend's driver (its cargo feature is on).
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::Postgres => cfg!(feature = "postgres"),
            Backend::MySql => cfg!(feature = "mysql"),
            Backend::Sqlite => cfg!(feature = "sqlite"),
        }
    }

    /// The error for a URL of this backend in a build without its driver.
    pub(crate) fn not_compiled(self) -> ConfigError {
        ConfigError::BackendNotCompiled {
            scheme: self.feature().to_owned(),
            feature: self.feature(),
        }
    }

    /// Query keys the driver itself understands; they are passed through untouched.
    pub(super) fn driver_keys(self) -> &'static [&'static str] {
        match self {
            Backend::Postgres => &[
                "sslmode",
                "ssl-mode",
                "sslrootcert",
                "ssl-root-cert",
                "ssl-ca",
                "sslcert",
                "ssl-cert",
                "sslkey",
                "ssl-key",
                "host",
                "hostaddr",
                "port",
                "dbname",
                "user",
                "password",
                "options",
            ],
            Backend::MySql => &[
                "sslmode",
                "ssl-mode",
                "sslca",
                "ssl-ca",
                "charset",
                "collation",
                "sslcert",
                "ssl-cert",
                "sslkey",
                "ssl-key",
                "socket",
                "timezone",
                "time-zone",
            ],
            Backend::Sqlite => &["mode", "cache", "immutable", "vfs"],
        }
    }
}
