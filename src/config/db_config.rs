//! [`DbConfig`]: the validated configuration of one pool, built from a URL whose query holds
//! the pool parameters, on top of the layered settings' values.

use serde::Serialize;

use super::backend::Backend;
use super::credentials::CredentialSources;
use super::error::ConfigError;
use super::params::{POOL_KEYS, PoolOptions};
use super::password::{self, EnvLookup};
use super::profile::{Source, Sources};
use super::redact::{self, RedactedUrl};
use super::tls::{self, TlsMode};
use super::url::{SplitUrl, split};
use super::validate::pool_options;

/// The validated pool configuration of one [`DbService`](crate::DbService).
///
/// `Debug` and `Serialize` show the URL redacted; there is no way to print the password.
#[derive(Clone)]
pub struct DbConfig {
    pub(super) url: SplitUrl,
    /// `DATABASE_URL_DIRECT`: a real session for migrations and their lock (behind PgBouncer).
    pub(super) direct: Option<SplitUrl>,
    /// `DATABASE_REPLICA_URLS` and the replica bounds.
    pub(super) replicas: Option<Box<super::replica::ReplicaConfig>>,
    /// Where each pool parameter (and the URL) came from.
    pub(super) sources: Sources,
    pub(super) secrets: Vec<String>,
    pub(super) pool: PoolOptions,
    pub(super) tls: Option<TlsMode>,
    /// Where passwords come from besides the URLs (see [`super::password`]).
    pub(super) credentials: CredentialSources,
}

impl DbConfig {
    /// Builds the configuration from a URL alone; unset parameters take their defaults.
    ///
    /// ```
    /// let cfg = dbservice::config::DbConfig::from_url("postgres://app:secret@db/app?connection_limit=5&pool_timeout=2s")?;
    /// assert_eq!(cfg.pool().limits.connection_limit, 5);
    /// assert_eq!(cfg.redacted_url().to_string(), "postgres://app:***@db/app");
    /// # Ok::<(), dbservice::config::ConfigError>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        Self::from_parts(url, &[])
    }

    /// Builds the configuration from `url` on top of `settings` (pairs of parameter name and
    /// value, e.g. from a config file or the environment). A parameter in the URL query
    /// overrides the same parameter in `settings`.
    ///
    /// The password sources the driver would use are noted here, for the runtime to read at
    /// each connect: `PGPASSWORD` / `MYSQL_PWD`, and on PostgreSQL the URL's `passfile`
    /// parameter (taken out of the driver's URL), else `PGPASSFILE`, else `~/.pgpass`.
    pub fn from_parts(url: &str, settings: &[(String, String)]) -> Result<Self, ConfigError> {
        Self::from_parts_in(url, settings, &|name| std::env::var(name).ok())
    }

    /// [`from_parts`](Self::from_parts) reading the environment through `env`, so tests need
    /// not set process variables.
    pub(crate) fn from_parts_in(
        url: &str,
        settings: &[(String, String)],
        env: EnvLookup<'_>,
    ) -> Result<Self, ConfigError> {
        let split = split(url)?;
        let pairs: Vec<&(String, String)> = settings.iter().chain(split.params.iter()).collect();
        let pool = pool_options(&pairs, split.backend)?;
        let credentials = password::sources_of(&split, env);
        let env_password = credentials.env_password.as_ref().map(|(_, v)| v.as_str());
        let secrets = redact::secrets_of(&split.driver_url, url, env_password);
        let mut sources: Sources = POOL_KEYS
            .iter()
            .map(|k| ((*k).to_owned(), Source::Default))
            .collect();
        for (key, _) in &split.params {
            sources.insert(key.clone(), Source::Url);
        }
        let mut config = Self {
            sources,
            tls: tls::resolve(&split),
            url: split,
            direct: None,
            replicas: None,
            secrets,
            pool,
            credentials,
        };
        config.note_password();
        Ok(config)
    }

    /// Adds `DATABASE_URL_DIRECT`: a URL straight to the database (not through PgBouncer) for
    /// what needs a real session: migrations and their lock. Same engine as the main URL; it
    /// takes the driver's parameters only (the pool's come from the main URL).
    ///
    /// ```
    /// let cfg = dbservice::config::DbConfig::from_url("postgres://app:s@bouncer:6432/app?pgbouncer=true")?
    ///     .with_direct_url("postgres://app:s@db:5432/app")?;
    /// assert_eq!(cfg.redacted_direct_url().map(|u| u.to_string()).as_deref(), Some("postgres://app:***@db:5432/app"));
    /// # Ok::<(), dbservice::config::ConfigError>(())
    /// ```
    pub fn with_direct_url(mut self, url: &str) -> Result<Self, ConfigError> {
        let direct = split(url).map_err(|e| ConfigError::InvalidValue {
            param: "DATABASE_URL_DIRECT".into(),
            value: "<not shown>".into(),
            reason: e.to_string(),
        })?;
        if direct.backend != self.url.backend {
            return Err(ConfigError::Conflict {
                first: "DATABASE_URL_DIRECT".into(),
                second: "DATABASE_URL".into(),
                reason: format!(
                    "the direct URL is a {} URL, the main one a {} URL",
                    direct.backend.name(),
                    self.url.backend.name()
                ),
            });
        }
        if let Some((key, _)) = direct.params.first() {
            return Err(ConfigError::InvalidValue {
                param: "DATABASE_URL_DIRECT".into(),
                value: key.clone(),
                reason: "the direct URL takes no pool parameters; set them on DATABASE_URL".into(),
            });
        }
        password::passfile_elsewhere("DATABASE_URL_DIRECT", &direct)?;
        self.secrets
            .extend(redact::secrets_of(&direct.driver_url, url, None));
        self.direct = Some(direct);
        Ok(self)
    }

    /// Adds read replicas of this (PostgreSQL) database: reads through
    /// [`DbService::read`](crate::DbService::read) go to them (see [`crate::replica`]).
    ///
    /// ```
    /// use dbservice::{config::DbConfig, replica::ReplicaConfig};
    /// let cfg = DbConfig::from_url("postgres://app:s@primary/app")?
    ///     .with_replicas(ReplicaConfig::from_urls("postgres://app:s@replica/app", &[])?)?;
    /// assert_eq!(cfg.replicas().map(|r| r.len()), Some(1));
    /// assert!(DbConfig::from_url("sqlite::memory:")?
    ///     .with_replicas(ReplicaConfig::from_urls("postgres://app:s@replica/app", &[])?)
    ///     .is_err());
    /// # Ok::<(), dbservice::config::ConfigError>(())
    /// ```
    pub fn with_replicas(
        mut self,
        replicas: super::replica::ReplicaConfig,
    ) -> Result<Self, ConfigError> {
        replicas.validate(self.url.backend)?;
        for r in &replicas.replicas {
            self.secrets.extend(r.secrets.iter().cloned());
        }
        self.replicas = Some(Box::new(replicas));
        Ok(self)
    }

    /// Where each pool parameter came from (`default`, `profile:<name>`, `file:<path>`,
    /// `.env`, `environment`, `url`, `code`), `database_url` where the URL did, and `password`
    /// where the password in effect does (`url`; the password file's setting, also under
    /// `database_password_file`; `url` or `environment` for a passfile; `environment` for
    /// `PGPASSWORD`/`MYSQL_PWD`; `code` for a provider; `default` for `~/.pgpass` or none),
    /// so an operator can tell which of several configured sources is used.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Takes the settings' sources for what the URL did not set.
    pub(crate) fn note_sources(&mut self, settings: &Sources, url_configured: bool) {
        for (key, source) in self.sources.iter_mut() {
            // The password's provenance is the URL's and the credentials' (an application
            // key of that name is not it).
            if *source == Source::Default
                && key != password::PASSWORD_KEY
                && let Some(from) = settings.get(key)
            {
                *source = from.clone();
            }
        }
        let url = settings
            .get("database_url")
            .filter(|_| url_configured)
            .cloned()
            .unwrap_or(Source::Default);
        self.sources.insert("database_url".into(), url);
    }

    /// The read replicas, if any.
    pub fn replicas(&self) -> Option<&super::replica::ReplicaConfig> {
        self.replicas.as_deref()
    }

    /// `DATABASE_URL_DIRECT`, password masked, if set.
    pub fn redacted_direct_url(&self) -> Option<RedactedUrl> {
        self.direct.as_ref().map(SplitUrl::redacted)
    }

    /// The direct URL for the driver, password included. Crate-internal on purpose.
    pub(crate) fn direct_driver_url(&self) -> Option<&str> {
        self.direct.as_ref().map(|d| d.driver_url.as_str())
    }

    /// PostgreSQL: the hosts `DATABASE_URL` names, in the order written; empty when it names
    /// none (the driver's default socket) and for the other backends.
    pub fn hosts(&self) -> &[super::HostSpec] {
        &self.url.hosts
    }

    /// The hosts of `DATABASE_URL_DIRECT`, if set (see [`hosts`](Self::hosts)).
    pub fn direct_hosts(&self) -> Option<&[super::HostSpec]> {
        self.direct.as_ref().map(|d| d.hosts.as_slice())
    }

    /// The pool parameters in effect.
    pub fn pool(&self) -> &PoolOptions {
        &self.pool
    }

    /// The database engine.
    pub fn backend(&self) -> Backend {
        self.url.backend
    }

    /// The URL handed to the driver (our parameters stripped), password masked.
    pub fn redacted_url(&self) -> RedactedUrl {
        self.url.redacted()
    }

    /// The URL handed to the driver, password included. Crate-internal on purpose.
    pub(crate) fn driver_url(&self) -> &str {
        self.url.driver_url.as_str()
    }

    /// The database's name (`db.namespace` in telemetry): the URL's path, or PostgreSQL's
    /// `dbname` parameter; `None` for SQLite and when the URL names none.
    pub(crate) fn database_name(&self) -> Option<String> {
        if self.url.backend == Backend::Sqlite {
            return None;
        }
        let url = &self.url.driver_url;
        let from_query = url
            .query_pairs()
            .find(|(k, _)| k == "dbname")
            .map(|(_, v)| v.into_owned());
        let from_path = percent_encoding::percent_decode_str(url.path().trim_start_matches('/'))
            .decode_utf8()
            .ok()
            .map(|p| p.into_owned());
        from_query.or(from_path).filter(|n| !n.is_empty())
    }

    /// The first server the URL names (`server.address`, `server.port` in telemetry).
    pub(crate) fn first_server(&self) -> Option<(String, u16)> {
        // A SQLite URL's "host" is a file name, not a server: no default port.
        let default = self.url.backend.default_port()?;
        if let Some(h) = self.url.hosts.first() {
            return Some((h.host.clone(), h.port));
        }
        let url = &self.url.driver_url;
        let host = url.host_str().filter(|h| !h.is_empty())?;
        Some((
            host.trim_matches(['[', ']']).to_owned(),
            url.port().unwrap_or(default),
        ))
    }

    /// Removes this URL's password from `text` (for driver messages we did not write).
    pub(crate) fn scrub(&self, text: &str) -> String {
        redact::scrub(text, &self.secrets)
    }
}

impl std::fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConfig")
            .field("url", &self.redacted_url())
            .field("direct_url", &self.redacted_direct_url())
            .field("backend", &self.url.backend)
            .field("pool", &self.pool)
            .field("replicas", &self.replicas)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl Serialize for DbConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            url: RedactedUrl,
            #[serde(skip_serializing_if = "Option::is_none")]
            direct_url: Option<RedactedUrl>,
            backend: Backend,
            tls: Option<&'a TlsMode>,
            #[serde(flatten)]
            pool: &'a PoolOptions,
            #[serde(skip_serializing_if = "Option::is_none")]
            replicas: Option<&'a super::replica::ReplicaConfig>,
            sources: &'a Sources,
        }
        Shown {
            url: self.redacted_url(),
            direct_url: self.redacted_direct_url(),
            backend: self.url.backend,
            tls: self.tls(),
            pool: &self.pool,
            replicas: self.replicas(),
            sources: &self.sources,
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
#[path = "tests/config.rs"]
mod tests;
