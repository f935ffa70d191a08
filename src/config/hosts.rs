//! The hosts of a PostgreSQL URL and how a connection chooses among them: libpq's
//! `target_session_attrs` (PostgreSQL 14+) and `load_balance_hosts` (libpq 16).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;

use super::error::ConfigError;
use super::parse::invalid;

/// The port a host without one takes, as in libpq.
pub const DEFAULT_PORT: u16 = 5432;

/// What a socket directory keeps unencoded in a URL's authority (RFC 3986's unreserved).
const SOCKET_DIR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One candidate host of a PostgreSQL URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostSpec {
    /// A name, an IP address (IPv6 without brackets), or a Unix-socket directory (starting
    /// with `/`).
    pub host: String,
    /// Its port (the socket's number for a directory).
    pub port: u16,
}

impl HostSpec {
    /// Whether this names a Unix-socket directory.
    pub fn is_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    /// How logs, errors and `/health/db` name it: `db1:5432`, `[::1]:5433`, `/run/pg:5432`.
    pub fn label(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl HostSpec {
    /// How the host is written in a URL's authority, without the port: `db1`, `[::1]`, and a
    /// socket directory percent-encoded (`%2Frun%2Fpg`), which sqlx reads back as a socket.
    pub fn url_host(&self) -> String {
        if self.is_socket() {
            utf8_percent_encode(&self.host, SOCKET_DIR).to_string()
        } else if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// [`url_host`](Self::url_host) with the port: `db1:5432`, `[::1]:5433`.
    pub fn url_authority(&self) -> String {
        format!("{}:{}", self.url_host(), self.port)
    }
}

impl std::fmt::Display for HostSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// Which session a new connection keeps (libpq 14+'s `target_session_attrs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetSessionAttrs {
    /// The first host that accepts the connection.
    #[default]
    Any,
    /// A session that accepts writes (`transaction_read_only` is off).
    ReadWrite,
    /// A session that does not accept writes (a standby, or `default_transaction_read_only`).
    ReadOnly,
    /// A server that is not in recovery.
    Primary,
    /// A server in recovery (a hot standby).
    Standby,
    /// A standby if any answers, else any host.
    PreferStandby,
}

impl TargetSessionAttrs {
    /// Every value, in libpq's order.
    pub const ALL: [Self; 6] = [
        Self::Any,
        Self::ReadWrite,
        Self::ReadOnly,
        Self::Primary,
        Self::Standby,
        Self::PreferStandby,
    ];

    /// libpq's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::ReadWrite => "read-write",
            Self::ReadOnly => "read-only",
            Self::Primary => "primary",
            Self::Standby => "standby",
            Self::PreferStandby => "prefer-standby",
        }
    }

    /// Whether a pool with this setting is there to write: the primary's pool unless told to
    /// look for a read-only session or a standby.
    pub fn wants_writes(self) -> bool {
        matches!(self, Self::Any | Self::ReadWrite | Self::Primary)
    }
}

impl std::fmt::Display for TargetSessionAttrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The order in which a new connection tries the hosts (libpq 16's `load_balance_hosts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalanceHosts {
    /// In the order written.
    #[default]
    Disable,
    /// Shuffled for every new connection.
    Random,
}

impl LoadBalanceHosts {
    /// libpq's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Random => "random",
        }
    }
}

impl std::fmt::Display for LoadBalanceHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses `target_session_attrs`.
pub(crate) fn target_session_attrs(
    param: &str,
    value: &str,
) -> Result<TargetSessionAttrs, ConfigError> {
    let v = value.trim();
    TargetSessionAttrs::ALL
        .into_iter()
        .find(|a| a.as_str() == v)
        .ok_or_else(|| {
            invalid(
                param,
                value,
                "expected any, read-write, read-only, primary, standby or prefer-standby",
            )
        })
}

/// Parses `load_balance_hosts`.
pub(crate) fn load_balance_hosts(
    param: &str,
    value: &str,
) -> Result<LoadBalanceHosts, ConfigError> {
    match value.trim() {
        "disable" => Ok(LoadBalanceHosts::Disable),
        "random" => Ok(LoadBalanceHosts::Random),
        _ => Err(invalid(param, value, "expected disable or random")),
    }
}
