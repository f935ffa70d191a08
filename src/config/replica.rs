//! [`ReplicaConfig`]: the read replicas of a primary and how reads use them.

use std::time::Duration;

use serde::Serialize;

use super::{Backend, ConfigError, DbConfig};

/// Default of `replica_wait`: long enough for a replica on the same network to replay a
/// commit (typically well under 10 ms), short enough that a lagging replica costs a read
/// little before it goes to the primary.
pub const DEFAULT_REPLICA_WAIT: Duration = Duration::from_millis(100);

/// Default of `replica_max_lag`.
pub const DEFAULT_REPLICA_MAX_LAG: Duration = Duration::from_secs(5);

/// Default of `replica_check_interval`.
pub const DEFAULT_REPLICA_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The read replicas of a primary (`DATABASE_REPLICA_URLS`) and the bounds of reading from
/// them. Attach to the primary's configuration with [`DbConfig::with_replicas`].
#[derive(Clone, Serialize)]
#[non_exhaustive]
pub struct ReplicaConfig {
    /// One configuration per replica, in the order given (`replica_1`, `replica_2`, ...).
    #[serde(serialize_with = "urls")]
    pub(crate) replicas: Vec<DbConfig>,
    /// `replica_wait`: longest a read waits for a replica (to replay the writes it must see,
    /// and for a free connection) before it goes to the primary. `0`: never wait.
    #[serde(rename = "replica_wait", with = "crate::config::duration::human")]
    pub wait: Duration,
    /// `replica_max_lag`: a replica further behind the primary than this is out of rotation
    /// until it catches up.
    #[serde(rename = "replica_max_lag", with = "crate::config::duration::human")]
    pub max_lag: Duration,
    /// `replica_check_interval`: how often each replica is checked in the background (state,
    /// replay position, lag); a replica out of rotation rejoins at the first passing check.
    #[serde(
        rename = "replica_check_interval",
        with = "crate::config::duration::human"
    )]
    pub check_interval: Duration,
}

fn urls<S: serde::Serializer>(replicas: &[DbConfig], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(replicas.iter().map(DbConfig::redacted_url))
}

impl std::fmt::Debug for ReplicaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaConfig")
            .field(
                "urls",
                &self
                    .replicas
                    .iter()
                    .map(DbConfig::redacted_url)
                    .collect::<Vec<_>>(),
            )
            .field("wait", &self.wait)
            .field("max_lag", &self.max_lag)
            .field("check_interval", &self.check_interval)
            .finish()
    }
}

impl ReplicaConfig {
    /// Replicas from `urls` (separated by whitespace, or by a comma before the next
    /// `scheme://`), each with the pool parameters `params` under its own URL query (as for
    /// the primary), and the default bounds. An entry may list several hosts
    /// (`postgres://u@r1,r2/app?target_session_attrs=standby`).
    ///
    /// ```
    /// let r = dbservice::replica::ReplicaConfig::from_urls(
    ///     "postgres://app:s@replica-a/app, postgres://app:s@replica-b/app?connection_limit=4",
    ///     &[],
    /// )?;
    /// assert_eq!(r.len(), 2);
    /// # Ok::<(), dbservice::config::ConfigError>(())
    /// ```
    pub fn from_urls(urls: &str, params: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut replicas = Vec::new();
        for (i, url) in split_urls(urls).into_iter().enumerate() {
            let in_replica = |e| ConfigError::Replica {
                replica: i + 1,
                source: Box::new(e),
            };
            let config = DbConfig::from_parts(url, params).map_err(in_replica)?;
            super::password::passfile_elsewhere("DATABASE_REPLICA_URLS", &config.url)
                .map_err(in_replica)?;
            replicas.push(config);
        }
        if replicas.is_empty() {
            return Err(ConfigError::InvalidValue {
                param: "DATABASE_REPLICA_URLS".into(),
                value: urls.into(),
                reason: "expected one or more URLs separated by whitespace or commas".into(),
            });
        }
        Ok(Self {
            replicas,
            wait: DEFAULT_REPLICA_WAIT,
            max_lag: DEFAULT_REPLICA_MAX_LAG,
            check_interval: DEFAULT_REPLICA_CHECK_INTERVAL,
        })
    }

    /// Sets `replica_wait`.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Sets `replica_max_lag` (above zero).
    pub fn max_lag(mut self, max_lag: Duration) -> Self {
        self.max_lag = max_lag;
        self
    }

    /// Sets `replica_check_interval` (above zero).
    pub fn check_interval(mut self, every: Duration) -> Self {
        self.check_interval = every;
        self
    }

    /// How many replicas.
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// Whether there are none (never, once built).
    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    /// Every replica must be PostgreSQL like its primary (read-your-writes compares WAL
    /// positions), and the background bounds above zero.
    pub(crate) fn validate(&self, primary: Backend) -> Result<(), ConfigError> {
        let unsupported = |backend: Backend| ConfigError::UnsupportedOnBackend {
            param: "DATABASE_REPLICA_URLS".into(),
            supported: "PostgreSQL",
            backend: backend.name(),
        };
        if primary != Backend::Postgres {
            return Err(unsupported(primary));
        }
        if let Some(other) = self
            .replicas
            .iter()
            .map(DbConfig::backend)
            .find(|b| *b != Backend::Postgres)
        {
            return Err(unsupported(other));
        }
        for (param, value) in [
            ("replica_max_lag", self.max_lag),
            ("replica_check_interval", self.check_interval),
        ] {
            if value.is_zero() {
                return Err(ConfigError::InvalidValue {
                    param: param.into(),
                    value: "0".into(),
                    reason: "must be above zero".into(),
                });
            }
        }
        Ok(())
    }
}

/// The URLs of a list: split on whitespace, and on a comma only where the next URL starts
/// (`scheme://`) or at an end, since a comma inside a URL separates its hosts
/// (`postgres://u@r1:5432,r2:5432/app`) or the values of `host=` and `port=`.
fn split_urls(list: &str) -> Vec<&str> {
    let mut urls = Vec::new();
    for word in list.split_whitespace() {
        let mut start = 0;
        for (i, _) in word.match_indices(',') {
            if starts_a_url(&word[i + 1..]) {
                urls.push(&word[start..i]);
                start = i + 1;
            }
        }
        urls.push(&word[start..]);
    }
    // A comma before whitespace, at either end, or doubled leaves an empty piece or a comma.
    urls.into_iter()
        .map(|u| u.trim_matches(','))
        .filter(|u| !u.is_empty())
        .collect()
}

/// Whether `text` starts with `scheme://` (RFC 3986: a letter, then letters, digits, `+`, `-`
/// or `.`).
fn starts_a_url(text: &str) -> bool {
    let Some((scheme, _)) = text.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
#[path = "tests/replica.rs"]
mod tests;
