//! A PostgreSQL endpoint's hosts as the pool's topology: one set of connect options per host
//! of the URL, and whether the pool writes.

use std::str::FromStr;

use sea_orm::sqlx::{self, ConnectOptions, postgres::PgConnectOptions};

use crate::config::{ConfigError, HostSpec, PoolOptions, TargetSessionAttrs};
use crate::pool::login::Login;
use crate::pool::session_sql;
use crate::pool::{Host, Topology};

/// Who connects through a topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// A primary's pool: writes unless told to look for a standby or a read-only session.
    Writer,
    /// A replica's pool: never writes.
    Reader,
    /// Migrations: always a writable server.
    Migrations,
}

/// The hosts of the driver URL `url` (with `hosts` as the configuration read them). One host
/// keeps the driver's options exactly as it read the URL (its `PGPORT` and `PGHOST` defaults
/// included), as before hosts were lists. Several hosts each get the options of the URL with
/// that host alone in it, so that a socket directory, a `.pgpass` line and a TLS server name
/// are each host's own.
pub(super) fn topology(
    url: &str,
    hosts: &[HostSpec],
    attrs: TargetSessionAttrs,
    p: &PoolOptions,
    role: Role,
    login: Login,
    driver_err: &dyn Fn(sqlx::Error) -> ConfigError,
) -> Result<Topology, ConfigError> {
    let stand_in = stand_in_password(url, &login);
    let url = stand_in.as_deref().unwrap_or(url);
    let list = if hosts.len() <= 1 {
        let opts = postgres_options(PgConnectOptions::from_str(url).map_err(driver_err)?, p);
        let host = hosts
            .first()
            .map_or_else(|| opts.get_host().to_owned(), |h| h.host.clone());
        let opts = bare_ipv6(opts, &host);
        let spec = HostSpec {
            host,
            port: opts.get_port(),
        };
        vec![Host::new(spec, opts)]
    } else {
        let base = url::Url::parse(url).map_err(|e| ConfigError::InvalidUrl {
            reason: e.to_string(),
        })?;
        hosts
            .iter()
            .map(|h| {
                let mut one = base.clone();
                one.set_host(Some(&h.url_host()))
                    .and_then(|()| {
                        one.set_port(Some(h.port))
                            .map_err(|()| url::ParseError::InvalidPort)
                    })
                    .map_err(|e| ConfigError::InvalidHosts {
                        part: format!("host {}", h.label()),
                        reason: e.to_string(),
                    })?;
                let opts = postgres_options(
                    PgConnectOptions::from_str(one.as_str()).map_err(driver_err)?,
                    p,
                );
                Ok(Host::new(h.clone(), bare_ipv6(opts, &h.host)))
            })
            .collect::<Result<_, ConfigError>>()?
    };
    let wants_writes = match role {
        Role::Migrations => true,
        Role::Writer => attrs.wants_writes(),
        Role::Reader => false,
    };
    Ok(Topology::new(
        list,
        attrs,
        p.session.load_balance_hosts,
        wants_writes,
        login,
    ))
}

/// The URL with a stand-in password when it has none and the credentials come from our
/// sources: sqlx would otherwise read `~/.pgpass` itself when parsing it, once, and log a
/// malformed line's text (which may hold a password). Every connection's options get the
/// password read for it (or none) in place of the stand-in.
fn stand_in_password(url: &str, login: &Login) -> Option<String> {
    if !login.replaces_password() {
        return None;
    }
    let mut u = url::Url::parse(url).ok()?;
    if !u.password().unwrap_or_default().is_empty() || u.query_pairs().any(|(k, _)| k == "password")
    {
        return None;
    }
    // A query parameter, not the user info: it works for a URL without a host (a socket).
    u.query_pairs_mut().append_pair("password", "stand-in");
    Some(u.into())
}

/// An IPv6 address without its brackets: sqlx's tokio connect does not strip them, and TLS
/// checks the name against this same value.
fn bare_ipv6(opts: PgConnectOptions, host: &str) -> PgConnectOptions {
    if host.contains(':') && !host.starts_with('/') {
        opts.host(host)
    } else {
        opts
    }
}

/// The connect options every PostgreSQL connection of the pool carries.
fn postgres_options(mut opts: PgConnectOptions, p: &PoolOptions) -> PgConnectOptions {
    opts = opts
        .application_name(&p.session.application_name)
        .disable_statement_logging();
    if let Some(n) = p.session.statement_cache_size {
        opts = opts.statement_cache_capacity(n);
    }
    if p.session.pgbouncer {
        // PgBouncer (transaction mode) hands each transaction to any server connection, so a
        // cached prepared statement may not exist there; and it rejects unknown startup
        // parameters such as sqlx's `extra_float_digits`.
        opts = opts.statement_cache_capacity(0).extra_float_digits(None);
    }
    // Session settings travel in the startup packet: no extra round trip per connection.
    let session = session_sql::postgres_startup(p);
    if !session.is_empty() {
        opts = opts.options(session);
    }
    opts
}
