//! Reading pool parameters into [`PoolOptions`] through the table, and the checks that involve
//! more than one parameter (or the backend), which no single entry can make.

use std::time::Duration;

use super::backend::Backend;
use super::error::ConfigError;
use super::params::{PARAMS, POOL_KEYS, PoolOptions};

/// How much later than `statement_timeout` the client gives up when only the server bound is
/// set: the server's cancel (which keeps the connection usable) arrives first.
const CLIENT_AFTER_SERVER: Duration = Duration::from_secs(1);

/// The parameters `pairs` set (later pairs win), on top of the defaults, checked together for
/// `backend`.
pub(super) fn pool_options(
    pairs: &[&(String, String)],
    backend: Backend,
) -> Result<PoolOptions, ConfigError> {
    let mut pool = PoolOptions::default();
    let mut explicit = Vec::new();
    for (key, value) in pairs {
        apply(&mut pool, key, value)?;
        explicit.push(key.as_str());
    }
    validate(&pool, backend, &explicit)?;
    if let Some(server) = pool.deadlines.statement_timeout
        && !explicit.contains(&"query_timeout")
    {
        pool.deadlines.query_timeout = Some(server.saturating_add(CLIENT_AFTER_SERVER));
    }
    Ok(pool)
}

/// Sets one parameter; `key` must be one of [`POOL_KEYS`].
fn apply(pool: &mut PoolOptions, key: &str, value: &str) -> Result<(), ConfigError> {
    match PARAMS.iter().find(|p| p.key == key) {
        Some(param) => (param.set)(pool, value),
        None => Err(ConfigError::UnknownParameter {
            param: key.to_owned(),
            hint: format!("; known parameters are {}", POOL_KEYS.join(", ")),
        }),
    }
}

fn validate(pool: &PoolOptions, backend: Backend, explicit: &[&str]) -> Result<(), ConfigError> {
    let (limits, monitoring) = (&pool.limits, &pool.monitoring);
    if limits.min_connections > limits.connection_limit {
        return Err(ConfigError::MinAboveLimit {
            min: limits.min_connections,
            max: limits.connection_limit,
        });
    }
    if monitoring.utilization_warn_percent > monitoring.utilization_critical_percent {
        return Err(ConfigError::Conflict {
            first: "utilization_warn_percent".into(),
            second: "utilization_critical_percent".into(),
            reason: format!(
                "the warning level ({}) must not be above the critical level ({})",
                monitoring.utilization_warn_percent, monitoring.utilization_critical_percent
            ),
        });
    }
    if let (Some(server), Some(client)) = (
        pool.deadlines.statement_timeout,
        pool.deadlines.query_timeout,
    ) && explicit.contains(&"query_timeout")
        && client <= server
    {
        return Err(ConfigError::Conflict {
            first: "query_timeout".into(),
            second: "statement_timeout".into(),
            reason: format!(
                "the client deadline ({}) must be longer than the server's ({}), so the \
                 server cancels a slow statement first and the connection stays usable; \
                 raise query_timeout or set it to 0",
                humantime::format_duration(client),
                humantime::format_duration(server)
            ),
        });
    }
    for param in PARAMS {
        if let Some(only) = &param.only
            && !only.on.contains(&backend)
            && explicit.contains(&param.key)
        {
            return Err(ConfigError::UnsupportedOnBackend {
                param: param.key.to_owned(),
                supported: only.named,
                backend: backend.name(),
            });
        }
    }
    let session = &pool.session;
    if session.pgbouncer && session.statement_cache_size.is_some_and(|n| n > 0) {
        return Err(ConfigError::Conflict {
            first: "pgbouncer".into(),
            second: "statement_cache_size".into(),
            reason: "pgbouncer=true sends no prepared statements (PgBouncer's transaction mode \
                     would split them across server connections); drop statement_cache_size, \
                     or with PgBouncer >= 1.21 and max_prepared_statements set pgbouncer=false"
                .into(),
        });
    }
    Ok(())
}
