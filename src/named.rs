//! Several databases in one process: the primary pool and any number of named ones, each a
//! full [`DbService`] (statistics, transactions, deadlines, health) with its own parameters.
//!
//! Configure named pools with `DATABASE_URL_<NAME>` (e.g. `DATABASE_URL_ANALYTICS`; the pool
//! is `analytics`), each with its own pool parameters in its URL query, or in the config file
//! as `[pools.<name>]` (`url`, `required`, pool parameters); build them with
//! [`Pools::from_settings`], or add services yourself with [`Pools::add`]. Hold the registry
//! once (in `web::Data`, or beside the process-wide instance) and ask it by name.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;

use crate::config::{ConfigError, Settings};
use crate::endpoint::PRIMARY;
use crate::service::DbService;

/// Why a pool could not be had or built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolsError {
    /// No pool of that name is configured.
    #[error("no pool named `{name}`; configured pools: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The configured names, comma-separated.
        known: String,
    },
    /// A pool name that is not lower-case letters, digits and `_`, or is taken.
    #[error("invalid pool name `{name}`: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A pool's configuration is invalid.
    #[error("pool `{pool}`: {source}")]
    Config {
        /// The pool.
        pool: String,
        /// What is wrong.
        #[source]
        source: ConfigError,
    },
    /// A pool could not be created or connected.
    #[error("pool `{pool}`: {source}")]
    Service {
        /// The pool.
        pool: String,
        /// What went wrong.
        #[source]
        source: crate::error::Error,
    },
}

#[derive(Debug, Clone)]
struct Named {
    db: DbService,
    required: bool,
}

/// The primary pool and the named ones; cheap to clone.
#[derive(Debug, Clone)]
pub struct Pools {
    primary: DbService,
    named: BTreeMap<String, Named>,
}

impl Pools {
    /// The primary pool's name (`"primary"`): what [`Pools::get`] and the `pool` label of
    /// the metrics call the pool of `DATABASE_URL`.
    pub const PRIMARY: &'static str = PRIMARY;

    /// A registry with the primary pool only.
    pub fn new(primary: DbService) -> Self {
        Self {
            primary,
            named: BTreeMap::new(),
        }
    }

    /// Builds the primary pool from `settings` (as [`Settings::db_config`] does) and one pool
    /// per named pool ([`Settings::named_pools`]: `[pools.<name>]`, `DATABASE_URL_<NAME>`),
    /// each configured by its own URL and table. Must be called inside a tokio runtime (see
    /// [`DbService::new`]).
    pub fn from_settings(
        settings: &Settings,
        default_url: Option<&str>,
    ) -> Result<Self, PoolsError> {
        let config = settings
            .db_config(default_url)
            .map_err(|source| PoolsError::Config {
                pool: PRIMARY.into(),
                source,
            })?;
        let primary = DbService::new(config).map_err(|source| PoolsError::Service {
            pool: PRIMARY.into(),
            source,
        })?;
        let mut pools = Self::new(primary);
        pools.add_from_settings(settings)?;
        Ok(pools)
    }

    /// Adds the named pools of `settings` ([`Settings::named_pools`]) to this registry; the
    /// first error names its pool.
    pub fn add_from_settings(&mut self, settings: &Settings) -> Result<(), PoolsError> {
        for named in settings.named_pools() {
            let pool = || named.name.clone();
            let config = named.db_config().map_err(|source| PoolsError::Config {
                pool: pool(),
                source,
            })?;
            let db = DbService::new(config).map_err(|source| PoolsError::Service {
                pool: pool(),
                source,
            })?;
            self.add(&named.name, db, named.required)?;
        }
        Ok(())
    }

    /// Adds a named pool; `required`: readiness fails while it is unreachable, and
    /// [`connect`](Self::connect) waits for it.
    pub fn add(&mut self, name: &str, db: DbService, required: bool) -> Result<(), PoolsError> {
        let bad = |reason| PoolsError::BadName {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(bad("use lower-case letters, digits and `_`"));
        }
        if name == PRIMARY || self.named.contains_key(name) {
            return Err(bad("a pool of that name exists already"));
        }
        db.set_name(name);
        self.named.insert(name.to_owned(), Named { db, required });
        Ok(())
    }

    /// The primary pool (`DATABASE_URL`).
    pub fn primary(&self) -> &DbService {
        &self.primary
    }

    /// The pool called `name` (`primary` is the primary).
    pub fn get(&self, name: &str) -> Result<&DbService, PoolsError> {
        if name == PRIMARY {
            return Ok(&self.primary);
        }
        self.named
            .get(name)
            .map(|n| &n.db)
            .ok_or_else(|| PoolsError::Unknown {
                name: name.to_owned(),
                known: self.names().join(", "),
            })
    }

    /// Every pool's name, the primary first.
    pub fn names(&self) -> Vec<&str> {
        std::iter::once(PRIMARY)
            .chain(self.named.keys().map(String::as_str))
            .collect()
    }

    /// Every pool: name, service, and whether readiness depends on it (the primary always).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &DbService, bool)> {
        std::iter::once((PRIMARY, &self.primary, true)).chain(
            self.named
                .iter()
                .map(|(name, n)| (name.as_str(), &n.db, n.required)),
        )
    }

    /// Connects every pool at once: waits for the primary and the required ones (the first
    /// failure is returned, naming its pool); the others connect in the background and log
    /// a failure.
    pub async fn connect(&self) -> Result<(), PoolsError> {
        self.connect_some(self.iter()).await
    }

    async fn connect_some<'a>(
        &'a self,
        which: impl Iterator<Item = (&'a str, &'a DbService, bool)>,
    ) -> Result<(), PoolsError> {
        let mut waited = Vec::new();
        for (name, db, required) in which {
            if required {
                waited.push(async move {
                    db.connect().await.map_err(|source| PoolsError::Service {
                        pool: name.to_owned(),
                        source,
                    })
                });
            } else {
                let (db, name) = (db.clone(), name.to_owned());
                tokio::spawn(async move {
                    if let Err(e) = db.connect().await {
                        tracing::warn!(pool = %name, error = %e, "optional pool not connected");
                    }
                });
            }
        }
        for result in join_all(waited).await {
            result?;
        }
        Ok(())
    }

    /// Connects the named pools only (the primary is connected by its own startup, e.g.
    /// [`DbService::start`] with migrations): like [`connect`](Self::connect) otherwise.
    pub async fn connect_named(&self) -> Result<(), PoolsError> {
        self.connect_some(self.iter().skip(1)).await
    }

    /// Closes every pool concurrently within one `bound` in all; returns whether all closed
    /// in time.
    pub async fn close_all(&self, bound: Duration) -> bool {
        let closes = self.iter().map(|(_, db, _)| db.close(bound));
        join_all(closes).await.into_iter().all(|closed| closed)
    }
}
