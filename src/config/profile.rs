//! Deployment profiles (`APP_ENV` / `DBSERVICE_PROFILE`) and where each setting came from.

use std::collections::BTreeMap;

use serde::Serialize;

use super::error::ConfigError;

/// A documented set of defaults for one kind of deployment, chosen with `DBSERVICE_PROFILE`
/// or `APP_ENV` (`DBSERVICE_PROFILE` wins; a `profile` key in the config file comes last).
/// Every explicit setting (file, `.env`, environment, URL) still wins over the profile.
/// Without a profile the built-in defaults apply, which are meant for production already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// JSON logs, the pool summary line every 60 s (a monitor without Prometheus), no
    /// statement log, a 5 s shutdown grace for the load balancer to notice.
    Production,
    /// Readable logs, every statement logged, slow queries from 200 ms, a small pool, a short
    /// wait for a database that is not up.
    Development,
    /// For test suites: a small pool, short waits, no periodic summary.
    Test,
}

impl Profile {
    /// Every profile's name, as accepted.
    pub const NAMES: [&'static str; 3] = ["production", "development", "test"];

    /// The profile's name.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Production => "production",
            Profile::Development => "development",
            Profile::Test => "test",
        }
    }

    /// The settings this profile changes: (key, value) as they would be written in the file.
    pub fn defaults(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Profile::Production => &[
                ("log_format", "json"),
                ("stats_log_interval", "60s"),
                ("log_statements", "false"),
                ("shutdown_grace", "5s"),
            ],
            Profile::Development => &[
                ("log_format", "pretty"),
                ("log_statements", "true"),
                ("slow_query_threshold", "200ms"),
                ("connection_limit", "5"),
                ("connect_retry_timeout", "10s"),
            ],
            Profile::Test => &[
                ("log_format", "pretty"),
                ("connection_limit", "4"),
                ("connect_retry_timeout", "5s"),
                ("pool_timeout", "5s"),
                ("stats_log_interval", "0"),
            ],
        }
    }

    /// Reads a profile named in `var`.
    pub(crate) fn parse(var: &str, value: &str) -> Result<Self, ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "production" | "prod" => Ok(Profile::Production),
            "development" | "dev" => Ok(Profile::Development),
            "test" => Ok(Profile::Test),
            _ => Err(ConfigError::InvalidValue {
                param: var.into(),
                value: value.into(),
                reason: format!("expected one of {}", Self::NAMES.join(", ")),
            }),
        }
    }
}

/// Where a setting's effective value came from, lowest precedence first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The profile's default.
    Profile(Profile),
    /// The config file (its path).
    File(String),
    /// The `.env` file.
    DotEnv,
    /// The process environment.
    Environment,
    /// The database URL's query string.
    Url,
    /// Set by the application's code (e.g. `Settings::set_pool_param`).
    Code,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Profile(p) => write!(f, "profile:{}", p.name()),
            Source::File(path) => write!(f, "file:{path}"),
            Source::DotEnv => f.write_str(".env"),
            Source::Environment => f.write_str("environment"),
            Source::Url => f.write_str("url"),
            Source::Code => f.write_str("code"),
        }
    }
}

impl Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Setting name → where its value came from.
pub type Sources = BTreeMap<String, Source>;
