//! From configuration to connections: the connect options of each backend for an endpoint's
//! pool, and the one-connection SeaORM `DatabaseConnection` kept for migrations and for
//! code that needs SeaORM's own connection type.

#[cfg(any(feature = "mysql", feature = "sqlite"))]
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
#[cfg(feature = "postgres")]
use std::time::Instant;

use sea_orm::DatabaseConnection;
#[cfg(feature = "mysql")]
use sea_orm::SqlxMySqlConnector;
#[cfg(feature = "postgres")]
use sea_orm::SqlxPostgresConnector;
#[cfg(feature = "sqlite")]
use sea_orm::SqlxSqliteConnector;
#[cfg(any(feature = "mysql", feature = "sqlite"))]
use sea_orm::sqlx::ConnectOptions;
#[cfg(feature = "mysql")]
use sea_orm::sqlx::mysql::MySqlConnectOptions;
#[cfg(feature = "sqlite")]
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sea_orm::sqlx::{self, pool::PoolOptions as SqlxPoolOptions};

#[cfg(feature = "postgres")]
use super::hosts::{self, Role};
#[cfg(feature = "postgres")]
use crate::config::TargetSessionAttrs;
use crate::config::{Backend, ConfigError, DbConfig, PoolOptions};
use crate::observe::Instruments;
#[cfg(any(feature = "postgres", feature = "mysql"))]
use crate::pool::login::Login;
#[cfg(feature = "mysql")]
use crate::pool::login::LoginOptions;
#[cfg(feature = "mysql")]
use crate::pool::session_sql;
use crate::pool::{Connector, Pool};
use crate::secrets::Secrets;
use crate::tasks::Tasks;

/// How long the migration connection stays open after its last use.
const RAW_IDLE: Duration = Duration::from_secs(10);

/// Builds the service's pool and the lazy one-connection SeaORM connection. No I/O.
pub(crate) fn build(
    config: &DbConfig,
    instruments: &Arc<Instruments>,
    tasks: &Arc<Tasks>,
    writes: bool,
    secrets: &Arc<Secrets>,
) -> Result<(Pool, DatabaseConnection), ConfigError> {
    #[cfg(not(feature = "postgres"))]
    let _ = writes;
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    let login = || Login::new(secrets.clone(), config.url_has_password());
    #[cfg(not(any(feature = "postgres", feature = "mysql")))]
    let _ = secrets;
    let url = config.driver_url();
    let p = config.pool();
    let driver_err = |e: sqlx::Error| ConfigError::Driver {
        url: config.redacted_url(),
        message: config.scrub(&e.to_string()),
    };
    let connector = match config.backend() {
        #[cfg(feature = "postgres")]
        Backend::Postgres => Connector::Postgres(Arc::new(hosts::topology(
            url,
            config.hosts(),
            p.session.target_session_attrs,
            p,
            if writes { Role::Writer } else { Role::Reader },
            login(),
            &driver_err,
        )?)),
        #[cfg(feature = "mysql")]
        Backend::MySql => {
            let mut opts = MySqlConnectOptions::from_str(url)
                .map_err(driver_err)?
                .disable_statement_logging();
            if let Some(n) = p.session.statement_cache_size {
                opts = opts.statement_cache_capacity(n);
            }
            Connector::MySql(opts, session_sql::mysql_session(p), Arc::new(login()))
        }
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => {
            let mut opts = SqliteConnectOptions::from_str(url)
                .map_err(driver_err)?
                .disable_statement_logging();
            let in_memory = opts.get_filename().to_string_lossy().contains("memory");
            if !in_memory {
                // Readers and one writer at a time without blocking each other: what a pool of
                // several connections to one file needs.
                opts = opts.journal_mode(SqliteJournalMode::Wal);
            }
            Connector::Sqlite(opts)
        }
        // Refused earlier, when the URL was read (`ConfigError::BackendNotCompiled`).
        #[allow(unreachable_patterns)]
        other => return Err(other.not_compiled()),
    };
    let raw = seaorm_connection(&connector, p, Retire::WhenIdle);
    let node = if writes {
        crate::trace::spans::Node::Primary
    } else {
        crate::trace::spans::Node::Replica
    };
    let pool = Pool::new(config, connector, instruments.clone(), tasks.clone(), node)?;
    Ok((pool, raw))
}

/// How migrations connect: over `DATABASE_URL_DIRECT` when set (a real session, not through
/// PgBouncer), else like the pool.
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql")),
    allow(unused_variables)
)]
pub(crate) fn migration_connector(
    config: &DbConfig,
    pool: &Connector,
    secrets: &Arc<Secrets>,
) -> Result<Connector, ConfigError> {
    #[cfg(not(any(feature = "postgres", feature = "mysql")))]
    let _ = secrets;
    let Some(url) = config.direct_driver_url() else {
        // PostgreSQL: the pool's hosts, but always looking for the writable one.
        #[cfg(feature = "postgres")]
        #[allow(irrefutable_let_patterns)] // the only variant in a PostgreSQL-only build
        if let Connector::Postgres(_) = pool {
            let driver_err = |e: sqlx::Error| ConfigError::Driver {
                url: config.redacted_url(),
                message: config.scrub(&e.to_string()),
            };
            return Ok(Connector::Postgres(Arc::new(hosts::topology(
                config.driver_url(),
                config.hosts(),
                TargetSessionAttrs::ReadWrite,
                config.pool(),
                Role::Migrations,
                Login::new(secrets.clone(), config.url_has_password()),
                &driver_err,
            )?)));
        }
        return Ok(pool.clone());
    };
    let driver_err = |e: sqlx::Error| ConfigError::Driver {
        url: config
            .redacted_direct_url()
            .unwrap_or_else(|| config.redacted_url()),
        message: config.scrub(&e.to_string()),
    };
    let mut direct = config.pool().clone();
    direct.session.pgbouncer = false;
    Ok(match pool {
        #[cfg(feature = "postgres")]
        // Migrations write: whatever the pool looks for, they need the primary.
        Connector::Postgres(_) => Connector::Postgres(Arc::new(hosts::topology(
            url,
            config.direct_hosts().unwrap_or_default(),
            TargetSessionAttrs::ReadWrite,
            &direct,
            Role::Migrations,
            Login::new(secrets.clone(), config.direct_url_has_password()),
            &driver_err,
        )?)),
        #[cfg(feature = "mysql")]
        Connector::MySql(_, session, _) => Connector::MySql(
            MySqlConnectOptions::from_str(url)
                .map_err(driver_err)?
                .disable_statement_logging(),
            session.clone(),
            Arc::new(Login::new(
                secrets.clone(),
                config.direct_url_has_password(),
            )),
        ),
        #[cfg(feature = "sqlite")]
        Connector::Sqlite(o) => Connector::Sqlite(o.clone()),
    })
}

/// Before a connection that must stay on one host (migrations): on PostgreSQL with several
/// hosts, opens one connection the topology's way (each host within `connect_timeout`), so
/// that [`seaorm_connection`] starts on the host it found; with credentials from files or a
/// provider, so that it logs in with the ones read now. A failure is left for that
/// connection to report.
pub(crate) async fn find_writable(
    connector: &Connector,
    connect_timeout: Duration,
    config: &DbConfig,
) {
    let needed = match connector {
        #[cfg(feature = "postgres")]
        Connector::Postgres(t) => t.hosts.len() > 1 || t.login.replaces_password(),
        #[cfg(feature = "mysql")]
        Connector::MySql(_, _, login) => login.replaces_password(),
        #[allow(unreachable_patterns)]
        _ => false,
    };
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    if needed {
        let bound = connector.connect_bound(connect_timeout);
        let scrub = |e: &sqlx::Error| crate::pool::describe(config, e);
        if let Ok(Ok(opened)) =
            tokio::time::timeout(bound, connector.connect(connect_timeout, false, &scrub)).await
        {
            crate::pool::close_raw(opened.raw, Duration::from_secs(1)).await;
        }
    }
    let _ = (connector, connect_timeout, config, needed);
}

/// A lazy SeaORM connection of one connection with the pool's connect options (for an
/// in-memory SQLite database, the same database).
/// When the one connection of [`seaorm_connection`] is retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retire {
    /// After idling `RAW_IDLE`, or at `max_lifetime`.
    WhenIdle,
    /// Only when closed: migrations hold a session-level lock on it, which a reaped
    /// connection would silently lose halfway.
    Never,
}

pub(crate) fn seaorm_connection(
    connector: &Connector,
    p: &PoolOptions,
    retire: Retire,
) -> DatabaseConnection {
    match connector {
        #[cfg(feature = "postgres")]
        Connector::Postgres(t) => {
            let mut options = raw_pool(p, retire);
            // `DbConn::raw()` follows the pool to the host it moves to: new connections go
            // there, and the one opened before the move is closed instead of handed out.
            let moved: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
            if retire == Retire::WhenIdle {
                let seen = moved.clone();
                options = options.before_acquire(move |_, meta| {
                    let keep = seen
                        .lock()
                        .map(|m| m.is_none_or(|at| meta.age < at.elapsed()))
                        .unwrap_or(true);
                    Box::pin(async move { Ok(keep) })
                });
            }
            let pool = options.connect_lazy_with(t.preferred());
            if retire == Retire::WhenIdle {
                let follower = pool.clone();
                t.follow(Box::new(move |o| {
                    follower.set_connect_options(o.clone());
                    if let Ok(mut m) = moved.lock() {
                        *m = Some(Instant::now());
                    }
                }));
            }
            SqlxPostgresConnector::from_sqlx_postgres_pool(pool)
        }
        #[cfg(feature = "mysql")]
        Connector::MySql(o, _, login) => {
            let pool = raw_pool(p, retire).connect_lazy_with(login.current(o));
            // New credentials (a rotation) reach its next connection.
            let (follower, base) = (pool.clone(), o.clone());
            login.on_change(Box::new(move |r| {
                follower.set_connect_options(base.logged_in(r));
            }));
            SqlxMySqlConnector::from_sqlx_mysql_pool(pool)
        }
        #[cfg(feature = "sqlite")]
        Connector::Sqlite(o) => SqlxSqliteConnector::from_sqlx_sqlite_pool(
            raw_pool(p, retire).connect_lazy_with(o.clone()),
        ),
    }
}

/// The one connection behind `DbConn::raw()`: lazy, closed when idle.
fn raw_pool<DB: sqlx::Database>(p: &PoolOptions, retire: Retire) -> SqlxPoolOptions<DB> {
    let opts = SqlxPoolOptions::<DB>::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(p.limits.pool_timeout.unwrap_or(crate::config::MAX_DURATION));
    match retire {
        Retire::WhenIdle => opts
            .idle_timeout(RAW_IDLE)
            .max_lifetime(p.limits.max_lifetime),
        Retire::Never => opts
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false),
    }
}
