//! Layered settings: defaults < profile < config file < `.env` < process environment.
//!
//! | source | names |
//! |---|---|
//! | config file | TOML, flat keys: `database_url`, the pool parameters (`connection_limit`, ...), [`LIBRARY_KEYS`], and the application's own keys ([`AppKeys`]). Read from `$DBSERVICE_CONFIG` (must exist) or `./dbservice.toml` (optional). |
//! | environment | `DATABASE_URL`, `DATABASE_URL_DIRECT`, `DATABASE_REPLICA_URLS`, `DATABASE_PASSWORD_FILE`, `LOG_FORMAT`, the named pools' `DATABASE_URL_<NAME>` and `DATABASE_PASSWORD_FILE_<NAME>`, the application's bare names (e.g. `HOST`, `PORT`), and every other key as `DBSERVICE_<KEY>` (e.g. `DBSERVICE_CONNECTION_LIMIT=5`). |
//! | `.env` | same names as the environment; a variable already set in the environment wins. |
//!
//! Pool parameters in the `DATABASE_URL` query override all of these (see
//! [`DbConfig::from_parts`]). Unknown `DBSERVICE_*` variables and unknown file keys are errors
//! (with a suggestion), so a typo is reported rather than ignored; under the production profile
//! they are [warnings](Settings::warnings) instead, so an image rolled back under a newer
//! setting still starts. Kubernetes' service-link variables (`DBSERVICE_SERVICE_HOST`, ...) are
//! recognised and left out ([`Settings::ignored_variables`]). An application adds its own keys (HTTP server
//! settings, feature switches) with [`Settings::from_env_with`] and reads them, validated with
//! the same rules and messages, from the [`AppValues`] it gets back.

mod app;
mod dotenv;
mod layers;
mod named;
mod scalar;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::app::{AppKeys, AppValues};
pub use self::named::NamedPool;
use super::DbConfig;
use super::error::ConfigError;
use super::password::PASSWORD_FILE_KEY;
use super::profile::{Profile, Source, Sources};
use super::replica::ReplicaConfig;
use super::shutdown::ShutdownSettings;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured when writing to a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// What the library reads at startup: the database URL and pool parameters, the log format,
/// and the shutdown bounds.
#[derive(Clone)]
pub struct Settings {
    database_url: Option<String>,
    database_url_direct: Option<String>,
    /// `DATABASE_PASSWORD_FILE`: the password of the primary's URLs (and its replicas'),
    /// re-read when it changes.
    password_file: Option<PathBuf>,
    /// `DATABASE_REPLICA_URLS` as written.
    replica_urls: Option<String>,
    /// `replica_wait`, `replica_max_lag`, `replica_check_interval`.
    replica_bounds: (Duration, Duration, Duration),
    /// Named pools (`[pools.<name>]` in the file, `DATABASE_URL_<NAME>`), sorted by name.
    named: Vec<NamedPool>,
    pool: Vec<(String, String)>,
    /// Log line format (`LOG_FORMAT=pretty|json`). Default: pretty.
    pub log_format: LogFormat,
    /// The deployment profile (`DBSERVICE_PROFILE`, `APP_ENV`), if one is set.
    profile: Option<Profile>,
    /// Where each setting came from.
    sources: Sources,
    /// Kubernetes service-link variables under our prefix, left out (sorted).
    ignored: Vec<String>,
    /// Unknown settings tolerated by the production profile, one message each.
    warnings: Vec<String>,
    /// The shutdown sequence's bounds.
    pub shutdown: ShutdownSettings,
}

/// The library's own keys besides the pool parameters (file keys; `DBSERVICE_<KEY>` in the
/// environment, `DATABASE_URL` and `LOG_FORMAT` bare).
pub const LIBRARY_KEYS: &[&str] = &[
    "profile",
    "database_url",
    "database_url_direct",
    "database_password_file",
    "database_replica_urls",
    "replica_wait",
    "replica_max_lag",
    "replica_check_interval",
    "log_format",
    "shutdown_grace",
    "drain_timeout",
    "pool_close_timeout",
];

/// The library's keys read from the environment under a bare name: (variable, key).
const BARE: [(&str, &str); 5] = [
    ("DATABASE_URL", "database_url"),
    ("DATABASE_URL_DIRECT", "database_url_direct"),
    ("DATABASE_PASSWORD_FILE", "database_password_file"),
    ("DATABASE_REPLICA_URLS", "database_replica_urls"),
    ("LOG_FORMAT", "log_format"),
];
impl Settings {
    /// Loads the library's settings from the process environment, `.env` (if present) and the
    /// config file. Reads files; call it before serving.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_with(AppKeys::default()).map(|(s, _)| s)
    }

    /// Like [`from_env`](Self::from_env), and also returns the application's own keys.
    pub fn from_env_with(app: AppKeys<'_>) -> Result<(Self, AppValues), ConfigError> {
        let mut env: HashMap<String, String> = std::env::vars().collect();
        let from_dotenv = dotenv::read_into(&mut env)?;
        Self::load(&env, &from_dotenv, Path::new("."), app)
    }
    /// Loads the library's settings from `env` (variable name to value) and the config file it
    /// points at, resolving a relative `./dbservice.toml` against `dir`. Touches no process
    /// state, so tests can call it freely.
    pub fn from_sources(env: &HashMap<String, String>, dir: &Path) -> Result<Self, ConfigError> {
        Self::from_sources_with(env, dir, AppKeys::default()).map(|(s, _)| s)
    }

    /// Like [`from_sources`](Self::from_sources), and also returns the application's own keys.
    pub fn from_sources_with(
        env: &HashMap<String, String>,
        dir: &Path,
        app: AppKeys<'_>,
    ) -> Result<(Self, AppValues), ConfigError> {
        Self::load(env, &HashSet::new(), dir, app)
    }
    /// The deployment profile in effect, if any (see [`Profile`]).
    pub fn profile(&self) -> Option<Profile> {
        self.profile
    }

    /// Kubernetes service-link variables found under the `DBSERVICE_` prefix
    /// (`DBSERVICE_SERVICE_HOST`, `DBSERVICE_PORT=tcp://...`, ...), sorted: recognised and not
    /// read as settings. For the application's one DEBUG line once logging is up.
    pub fn ignored_variables(&self) -> &[String] {
        &self.ignored
    }

    /// Unknown settings the production profile started despite, one message each naming the
    /// variable or file key (with a suggestion when one is close). Outside production they are
    /// errors instead. For the application to log at WARN once logging is up.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Where each setting (library, pool and application keys) came from: `default`,
    /// `profile:<name>`, `file:<path>`, `.env` or `environment` (the URL's query is known to
    /// [`DbConfig::sources`] only).
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Whether a database URL was configured.
    pub fn has_database_url(&self) -> bool {
        self.database_url.is_some()
    }

    /// Replaces the database URL (e.g. with a test database).
    pub fn set_database_url(&mut self, url: impl Into<String>) {
        self.sources.insert("database_url".into(), Source::Code);
        self.database_url = Some(url.into());
    }

    /// The named pools (`[pools.<name>]`, `DATABASE_URL_<NAME>`), sorted by name.
    pub fn named_pools(&self) -> &[NamedPool] {
        &self.named
    }

    /// Sets a named pool's URL as if `DATABASE_URL_<NAME>` were set: replaces the URL of a
    /// pool of that name from the file (keeping its parameters), or adds an optional pool.
    pub fn set_named_pool(&mut self, name: impl Into<String>, url: impl Into<String>) {
        let name = name.into().to_ascii_lowercase();
        let url = url.into();
        match self.named.iter_mut().find(|p| p.name == name) {
            Some(pool) => pool.url = url,
            None => {
                self.named.push(NamedPool {
                    name,
                    url,
                    params: Vec::new(),
                    required: false,
                    password_file: None,
                    password_file_from: None,
                });
                self.named.sort_by(|a, b| a.name.cmp(&b.name));
            }
        }
    }

    /// Sets `DATABASE_URL_DIRECT` (see [`DbConfig::with_direct_url`]), replacing any configured.
    pub fn set_database_url_direct(&mut self, url: impl Into<String>) {
        self.database_url_direct = Some(url.into());
    }

    /// Sets `DATABASE_PASSWORD_FILE` (see [`DbConfig::with_password_file`]), replacing any
    /// configured: for a test that writes its own secret, or an application that knows where
    /// its platform mounts it.
    pub fn set_password_file(&mut self, path: impl Into<PathBuf>) {
        self.sources.insert(PASSWORD_FILE_KEY.into(), Source::Code);
        self.password_file = Some(path.into());
    }

    /// Sets one pool parameter as if it came from the environment; validated by
    /// [`Settings::db_config`].
    pub fn set_pool_param(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        self.sources.insert(key.clone(), Source::Code);
        self.pool.retain(|(k, _)| *k != key);
        self.pool.push((key, value.into()));
    }

    /// What a migration run connects with: `DATABASE_URL_DIRECT` alone suffices (a migration
    /// Job need not hold the application's URL); otherwise as [`db_config`](Self::db_config).
    pub fn migration_db_config(&self, default_url: Option<&str>) -> Result<DbConfig, ConfigError> {
        match (&self.database_url, &self.database_url_direct) {
            (None, Some(direct)) => {
                self.with_password_file(DbConfig::from_parts(direct, &self.pool)?)
            }
            _ => self.db_config(default_url),
        }
    }

    /// `config` with `DATABASE_PASSWORD_FILE`, if set, and its provenance.
    fn with_password_file(&self, config: DbConfig) -> Result<DbConfig, ConfigError> {
        let Some(path) = &self.password_file else {
            return Ok(config);
        };
        let mut config = config.with_password_file(path.clone())?;
        let source = self.sources.get(PASSWORD_FILE_KEY).cloned();
        config.note_password_file_source(source.unwrap_or(Source::Code));
        Ok(config)
    }

    /// The validated pool configuration: the configured URL, or `default_url` when none is
    /// set (never in the `production` profile), on top of the pool parameters from the file
    /// and environment.
    pub fn db_config(&self, default_url: Option<&str>) -> Result<DbConfig, ConfigError> {
        let url = match (self.database_url.as_deref(), self.profile) {
            (Some(url), _) => url,
            // Production never falls back: a default database (the demo's SQLite file) would
            // accept writes that vanish with the pod.
            (None, Some(Profile::Production)) => {
                return Err(ConfigError::MissingUrlInProfile {
                    profile: Profile::Production.name(),
                });
            }
            (None, _) => default_url.ok_or(ConfigError::MissingUrl)?,
        };
        let mut base = DbConfig::from_parts(url, &self.pool)?;
        base.note_sources(&self.sources, self.database_url.is_some());
        let mut config = self.with_password_file(base)?;
        if let Some(direct) = &self.database_url_direct {
            config = config.with_direct_url(direct)?;
        }
        if let Some(urls) = &self.replica_urls {
            let (wait, max_lag, every) = self.replica_bounds;
            // The file's and environment's pool parameters apply to the replicas too (each
            // replica's own URL query wins), so they are sized like the primary by default;
            // but which host a primary looks for (`read-write`) is not what a replica's pool
            // looks for: that comes from each replica's own URL only.
            let inherited: Vec<(String, String)> = self
                .pool
                .iter()
                .filter(|(k, _)| {
                    !super::params::PARAMS
                        .iter()
                        .any(|p| p.key == k && p.primary_only())
                })
                .cloned()
                .collect();
            let replicas = ReplicaConfig::from_urls(urls, &inherited)?
                .wait(wait)
                .max_lag(max_lag)
                .check_interval(every);
            config = config.with_replicas(replicas)?;
        }
        Ok(config)
    }

    /// Sets `DATABASE_REPLICA_URLS` (see [`DbConfig::with_replicas`]).
    pub fn set_replica_urls(&mut self, urls: impl Into<String>) {
        self.replica_urls = Some(urls.into());
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "<set, not shown>"),
            )
            .field(
                "database_url_direct",
                &self
                    .database_url_direct
                    .as_ref()
                    .map(|_| "<set, not shown>"),
            )
            .field("password_file", &self.password_file)
            .field(
                "database_replica_urls",
                &self.replica_urls.as_ref().map(|_| "<set, not shown>"),
            )
            .field("replica_bounds", &self.replica_bounds)
            .field("pool", &self.pool)
            .field("log_format", &self.log_format)
            .field("shutdown", &self.shutdown)
            .finish()
    }
}
