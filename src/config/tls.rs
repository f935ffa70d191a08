//! Which TLS mode the driver will really use, and where that came from: the URL's `sslmode`
//! (`ssl-mode`), PostgreSQL's `PGSSLMODE` environment variable, or the driver's default. The
//! driver reads `PGSSLMODE` itself, so showing only the URL's parameter would misreport it.

#[cfg(any(feature = "postgres", feature = "mysql"))]
use std::str::FromStr;

#[cfg(feature = "mysql")]
use sea_orm::sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
#[cfg(feature = "postgres")]
use sea_orm::sqlx::postgres::{PgConnectOptions, PgSslMode};
use serde::Serialize;

use super::url::SplitUrl;
use super::{Backend, DbConfig};

/// The TLS mode of a configuration (not of a live connection: `prefer` may end up in either).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TlsMode {
    /// The mode as the database names it (`disable`, `prefer`, `require`, `verify-ca`,
    /// `verify-full`; MySQL: `disabled`, `preferred`, `required`, `verify_ca`,
    /// `verify_identity`).
    pub mode: &'static str,
    /// Where it was set: `url`, `PGSSLMODE` or `default`.
    pub source: &'static str,
    /// Whether the server's certificate is checked against a trusted CA (and, for
    /// `verify-full`/`verify_identity`, its name): without that, TLS does not stop a
    /// man in the middle.
    pub verifies_server: bool,
}

/// The TLS mode the driver will use for `url`, read once when the configuration is built
/// (`PGSSLMODE` as the environment has it then); `None` for SQLite.
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql")),
    allow(unused_variables)
)]
pub(super) fn resolve(url: &SplitUrl) -> Option<TlsMode> {
    let in_url = url
        .driver_url
        .query_pairs()
        .any(|(k, _)| k == "sslmode" || k == "ssl-mode");
    match url.backend {
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
            // With a stand-in password: sqlx would otherwise read (and, on a malformed line,
            // log) the passfile while parsing, only to learn the TLS mode.
            let mut probe = url.driver_url.clone();
            probe.query_pairs_mut().append_pair("password", "stand-in");
            let mode = PgConnectOptions::from_str(probe.as_str())
                .map(|o| o.get_ssl_mode())
                .unwrap_or_default();
            let source = if in_url {
                "url"
            } else if std::env::var_os("PGSSLMODE").is_some_and(|v| !v.is_empty()) {
                "PGSSLMODE"
            } else {
                "default"
            };
            let (mode, verifies_server) = match mode {
                PgSslMode::Disable => ("disable", false),
                PgSslMode::Allow => ("allow", false),
                PgSslMode::Prefer => ("prefer", false),
                PgSslMode::Require => ("require", false),
                PgSslMode::VerifyCa => ("verify-ca", true),
                PgSslMode::VerifyFull => ("verify-full", true),
            };
            Some(TlsMode {
                mode,
                source,
                verifies_server,
            })
        }
        #[cfg(feature = "mysql")]
        Backend::MySql => {
            let mode = MySqlConnectOptions::from_str(url.driver_url.as_str())
                .map(|o| o.get_ssl_mode())
                .unwrap_or_default();
            let (mode, verifies_server) = match mode {
                MySqlSslMode::Disabled => ("disabled", false),
                MySqlSslMode::Preferred => ("preferred", false),
                MySqlSslMode::Required => ("required", false),
                MySqlSslMode::VerifyCa => ("verify_ca", true),
                MySqlSslMode::VerifyIdentity => ("verify_identity", true),
            };
            Some(TlsMode {
                mode,
                source: if in_url { "url" } else { "default" },
                verifies_server,
            })
        }
        Backend::Sqlite => None,
        // Refused when the URL was split (`ConfigError::BackendNotCompiled`).
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

impl DbConfig {
    /// The TLS mode the driver will use (URL, `PGSSLMODE` or default); `None` for SQLite.
    pub fn tls(&self) -> Option<&TlsMode> {
        self.tls.as_ref()
    }

    /// Whether the database host is this machine (loopback, or a Unix socket), where TLS
    /// without verification costs nothing in safety.
    pub fn is_local(&self) -> bool {
        match self.url.driver_url.host() {
            None => true,
            // `postgres://` is not a "special" scheme to the URL parser, so an IP address
            // arrives as an opaque host name.
            Some(url::Host::Domain(d)) => {
                let d = d.trim_start_matches('[').trim_end_matches(']');
                d.is_empty()
                    || d.eq_ignore_ascii_case("localhost")
                    || d.parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        }
    }

    /// A warning for the startup log when a remote database is reached without certificate
    /// verification, or `None`.
    pub fn tls_warning(&self) -> Option<String> {
        let tls = self.tls()?;
        if tls.verifies_server || self.is_local() {
            return None;
        }
        Some(format!(
            "the database at {} is reached without certificate verification (sslmode={}, from \
             {}): traffic may be unencrypted or open to a man in the middle; use \
             sslmode=verify-full with sslrootcert",
            self.url.driver_url.host_str().unwrap_or("?"),
            tls.mode,
            tls.source
        ))
    }
}
