//! Layered settings: defaults < profile < config file < `.env` < process environment.
//!
//! | source | names |
//! |---|---|
//! | config file | TOML, flat keys: `database_url`, the pool parameters (`connection_limit`, ...), [`LIBRARY_KEYS`], and the application's own keys ([`AppKeys`]). Read from `$DBSERVICE_CONFIG` (must exist) or `./dbservice.toml` (optional). |
//! | environment | `DATABASE_URL`, `LOG_FORMAT`, the application's bare names (e.g. `HOST`, `PORT`), and every other key as `DBSERVICE_<KEY>` (e.g. `DBSERVICE_CONNECTION_LIMIT=5`). |
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

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::DbConfig;
use super::duration::{parse_duration, parse_optional_duration};
use super::error::ConfigError;
use super::params::POOL_KEYS;
use super::parse;
use super::profile::{Profile, Source, Sources};
use super::service_links::is_service_link;
use super::shutdown::ShutdownSettings;
use super::unknown::{self, Unknown};
use crate::replica::{
    DEFAULT_REPLICA_CHECK_INTERVAL, DEFAULT_REPLICA_MAX_LAG, DEFAULT_REPLICA_WAIT, ReplicaConfig,
};

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
const BARE: [(&str, &str); 4] = [
    ("DATABASE_URL", "database_url"),
    ("DATABASE_URL_DIRECT", "database_url_direct"),
    ("DATABASE_REPLICA_URLS", "database_replica_urls"),
    ("LOG_FORMAT", "log_format"),
];

/// Keys an application adds to the layered settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppKeys<'a> {
    /// File keys; in the environment `DBSERVICE_<KEY>`.
    pub keys: &'a [&'a str],
    /// Bare environment names for some of them, e.g. `("HOST", "host")`.
    pub bare: &'a [(&'a str, &'a str)],
}

/// The application's settings as written, with parsers that name the key in their errors.
#[derive(Debug, Clone, Default)]
pub struct AppValues(HashMap<String, String>);

/// One named pool's settings: `[pools.<name>]` in the config file (`url`, `required`, and
/// any pool parameter), or `DATABASE_URL_<NAME>` in the environment (which replaces the file's
/// `url` for the same name). Its own URL query wins over `params`, as for the primary.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NamedPool {
    /// The pool's name, lower case.
    pub name: String,
    /// Its database URL.
    pub url: String,
    /// Pool parameters from the file's table.
    pub params: Vec<(String, String)>,
    /// Whether readiness waits for it and fails while it fails. Default: false.
    pub required: bool,
}

impl std::fmt::Debug for NamedPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedPool")
            .field("name", &self.name)
            .field("url", &"<set, not shown>")
            .field("params", &self.params)
            .field("required", &self.required)
            .finish()
    }
}

impl NamedPool {
    /// The validated configuration: the URL on top of the table's pool parameters. Errors
    /// are the parameter's; [`Pools`](crate::Pools) adds the pool's name.
    pub fn db_config(&self) -> Result<DbConfig, ConfigError> {
        DbConfig::from_parts(&self.url, &self.params)
    }
}

/// A scalar from any source: TOML keeps numbers and booleans typed, the environment does not.
/// Tables appear only under `pools` (`[pools.<name>]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Table(std::collections::BTreeMap<String, Scalar>),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Text(s) => f.write_str(s),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Table(_) => f.write_str("<table>"),
        }
    }
}

impl Settings {
    /// Loads the library's settings from the process environment, `.env` (if present) and the
    /// config file. Reads files; call it before serving.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_with(AppKeys::default()).map(|(s, _)| s)
    }

    /// Like [`from_env`](Self::from_env), and also returns the application's own keys.
    pub fn from_env_with(app: AppKeys<'_>) -> Result<(Self, AppValues), ConfigError> {
        let mut env: HashMap<String, String> = std::env::vars().collect();
        let mut from_dotenv = HashSet::new();
        if let Some(path) = find_dotenv() {
            let iter = dotenvy::from_path_iter(&path)
                .map_err(|e| ConfigError::Source(dotenv_error(&path, &e)))?;
            for item in iter {
                let (k, v) = item.map_err(|e| ConfigError::Source(dotenv_error(&path, &e)))?;
                if DRIVER_VARIABLES.contains(&k.as_str()) && !env.contains_key(&k) {
                    return Err(ConfigError::Source(format!(
                        "{}: `{k}` is read by the PostgreSQL driver from the process environment \
                         only, so this line would be ignored; set it in the environment, or its \
                         equivalent in DATABASE_URL",
                        path.display()
                    )));
                }
                if let std::collections::hash_map::Entry::Vacant(slot) = env.entry(k) {
                    from_dotenv.insert(slot.key().clone());
                    slot.insert(v);
                }
            }
        }
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

    /// The layers merged; `from_dotenv`: the variables of `env` that came from `.env`.
    fn load(
        env: &HashMap<String, String>,
        from_dotenv: &HashSet<String>,
        dir: &Path,
        app: AppKeys<'_>,
    ) -> Result<(Self, AppValues), ConfigError> {
        // Service links are dropped before any layer reads the environment: under our prefix
        // they would be unknown settings, or (`DBSERVICE_PORT=tcp://...`) a bad port.
        let (links, kept): (HashMap<_, _>, HashMap<_, _>) = env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .partition(|(k, v)| k.starts_with("DBSERVICE_") && is_service_link(k, v));
        let env = &kept;
        let mut ignored: Vec<String> = links.into_keys().collect();
        ignored.sort();
        let source_err = |e: config::ConfigError| ConfigError::Source(e.to_string());
        let file = match env.get("DBSERVICE_CONFIG").filter(|p| !p.is_empty()) {
            Some(path) => config::File::from(PathBuf::from(path)).required(true),
            None => config::File::from(dir.join("dbservice.toml")).required(false),
        };
        let file_label = env
            .get("DBSERVICE_CONFIG")
            .filter(|p| !p.is_empty())
            .cloned()
            .unwrap_or_else(|| "dbservice.toml".into());
        // The file alone, to tell its keys from the environment's.
        let in_file: HashMap<String, Scalar> = config::Config::builder()
            .add_source(file.clone())
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(source_err)?;
        let mut builder = config::Config::builder().add_source(file);
        builder = builder.add_source(
            config::Environment::with_prefix("DBSERVICE")
                .prefix_separator("_")
                .ignore_empty(true)
                .source(Some(env.clone().into_iter().collect())),
        );
        for (var, key) in BARE.iter().chain(app.bare) {
            if let Some(v) = env.get(*var).filter(|v| !v.is_empty()) {
                builder = builder.set_override(*key, v.clone()).map_err(source_err)?;
            }
        }
        let mut raw: HashMap<String, Scalar> = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(source_err)?;
        // The profile: DBSERVICE_PROFILE, else APP_ENV, else the file's `profile`.
        let named = |var: &str| env.get(var).filter(|v| !v.trim().is_empty());
        // A value naming none of our profiles is an error either way: silently running without
        // the profile an operator meant (production's JSON logs, its required DATABASE_URL) is
        // worse than not starting. APP_ENV is shared with the rest of a deployment, which may
        // use values of its own (`staging`); DBSERVICE_PROFILE wins over it for that case.
        let profile = match (named("DBSERVICE_PROFILE"), named("APP_ENV")) {
            (Some(v), _) => Some(Profile::parse("DBSERVICE_PROFILE", v)?),
            (None, Some(v)) => Some(Profile::parse("APP_ENV", v).map_err(|e| match e {
                ConfigError::InvalidValue {
                    param,
                    value,
                    reason,
                } => ConfigError::InvalidValue {
                    param,
                    value,
                    reason: format!("{reason}; or set DBSERVICE_PROFILE, which wins over APP_ENV"),
                },
                other => other,
            })?),
            (None, None) => match raw.get("profile") {
                Some(v) => Some(Profile::parse("profile", &v.to_string())?),
                None => None,
            },
        };
        // Where each key came from; the profile fills what nothing else set.
        let mut sources = Sources::new();
        let keys: Vec<&str> = LIBRARY_KEYS
            .iter()
            .chain(POOL_KEYS)
            .chain(app.keys)
            .copied()
            .collect();
        for key in keys {
            // A bare name (DATABASE_URL) and its prefixed form (DBSERVICE_DATABASE_URL) both
            // count as the environment.
            let prefixed = format!("DBSERVICE_{}", key.to_ascii_uppercase());
            let bare = BARE
                .iter()
                .chain(app.bare)
                .find(|(_, k)| *k == key)
                .map(|(var, _)| (*var).to_owned());
            let set_as = bare
                .into_iter()
                .chain([prefixed])
                .find(|var| env.get(var).is_some_and(|v| !v.is_empty()));
            let source = if let Some(var) = set_as {
                if from_dotenv.contains(&var) {
                    Source::DotEnv
                } else {
                    Source::Environment
                }
            } else if in_file.contains_key(key) {
                Source::File(file_label.clone())
            } else if let Some(p) = profile
                && let Some((_, value)) = p.defaults().iter().find(|(k, _)| *k == key)
            {
                raw.insert(key.to_owned(), Scalar::Text((*value).to_owned()));
                Source::Profile(p)
            } else {
                Source::Default
            };
            sources.insert(key.to_owned(), source);
        }
        if profile.is_some() && named("DBSERVICE_PROFILE").is_none() && named("APP_ENV").is_some() {
            let source = if from_dotenv.contains("APP_ENV") {
                Source::DotEnv
            } else {
                Source::Environment
            };
            sources.insert("profile".into(), source);
        }
        let (mut settings, values, strangers) = Self::from_raw(raw, app)?;
        let known: Vec<&str> = LIBRARY_KEYS
            .iter()
            .chain(app.keys)
            .chain(POOL_KEYS)
            .copied()
            .collect();
        let messages = strangers
            .iter()
            .map(|key| {
                let var = format!("DBSERVICE_{}", key.to_ascii_uppercase());
                let variable =
                    (env.contains_key(&var) || !in_file.contains_key(key)).then_some(var);
                unknown::describe(&Unknown { key, variable }, &known, &file_label)
            })
            .collect();
        settings.warnings = unknown::judge(messages, profile)?;
        settings.ignored = ignored;
        settings.profile = profile;
        settings.sources = sources;
        for (k, v) in env {
            let Some(name) = k.strip_prefix("DATABASE_URL_") else {
                continue;
            };
            if name != "DIRECT" && !name.is_empty() && !v.is_empty() {
                settings.set_named_pool(name, v.clone());
            }
        }
        Ok((settings, values))
    }

    /// The merged layers split into ours, the application's and the unknown keys (sorted).
    fn from_raw(
        raw: HashMap<String, Scalar>,
        app: AppKeys<'_>,
    ) -> Result<(Self, AppValues, Vec<String>), ConfigError> {
        let mut strangers = Vec::new();
        let mut ours = AppValues::default();
        let mut theirs = AppValues::default();
        let mut pool: Vec<(String, String)> = Vec::new();
        let mut named = Vec::new();
        for (key, value) in raw {
            if key == "config" {
                continue;
            }
            if key == "pools" {
                named = named_pools(value)?;
            } else if let Scalar::Table(_) = value {
                return Err(ConfigError::Source(format!(
                    "`{key}` is a table; only `pools` holds tables (`[pools.<name>]`)"
                )));
            } else if LIBRARY_KEYS.contains(&key.as_str()) {
                ours.0.insert(key, value.to_string());
            } else if POOL_KEYS.contains(&key.as_str()) {
                pool.push((key, value.to_string()));
            } else if app.keys.contains(&key.as_str()) {
                theirs.0.insert(key, value.to_string());
            } else {
                strangers.push(key);
            }
        }
        strangers.sort();
        pool.sort();
        let defaults = ShutdownSettings::default();
        let log_format = match ours.text("log_format") {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::InvalidValue {
                    param: "log_format".into(),
                    value: other.into(),
                    reason: "expected `pretty` or `json`".into(),
                });
            }
        };
        let settings = Self {
            database_url: ours.text("database_url").map(str::to_owned),
            database_url_direct: ours.text("database_url_direct").map(str::to_owned),
            replica_urls: ours.text("database_replica_urls").map(str::to_owned),
            replica_bounds: (
                ours.duration("replica_wait", DEFAULT_REPLICA_WAIT)?,
                ours.positive_duration("replica_max_lag", DEFAULT_REPLICA_MAX_LAG)?,
                ours.positive_duration("replica_check_interval", DEFAULT_REPLICA_CHECK_INTERVAL)?,
            ),
            named,
            pool,
            log_format,
            profile: None,
            sources: Sources::new(),
            ignored: Vec::new(),
            warnings: Vec::new(),
            shutdown: ShutdownSettings {
                grace: ours.duration("shutdown_grace", defaults.grace)?,
                drain_timeout: ours.duration("drain_timeout", defaults.drain_timeout)?,
                pool_close_timeout: ours
                    .duration("pool_close_timeout", defaults.pool_close_timeout)?,
            },
        };
        Ok((settings, theirs, strangers))
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
                });
                self.named.sort_by(|a, b| a.name.cmp(&b.name));
            }
        }
    }

    /// Sets `DATABASE_URL_DIRECT` (see [`DbConfig::with_direct_url`]), replacing any configured.
    pub fn set_database_url_direct(&mut self, url: impl Into<String>) {
        self.database_url_direct = Some(url.into());
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
            (None, Some(direct)) => DbConfig::from_parts(direct, &self.pool),
            _ => self.db_config(default_url),
        }
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
        let mut config = DbConfig::from_parts(url, &self.pool)?;
        config.note_sources(&self.sources, self.database_url.is_some());
        if let Some(direct) = &self.database_url_direct {
            config = config.with_direct_url(direct)?;
        }
        if let Some(urls) = &self.replica_urls {
            let (wait, max_lag, every) = self.replica_bounds;
            // The file's and environment's pool parameters apply to the replicas too (each
            // replica's own URL query wins), so they are sized like the primary by default.
            let replicas = ReplicaConfig::from_urls(urls, &self.pool)?
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

/// `[pools.<name>]` tables: `url` (required), `required`, and pool parameters.
fn named_pools(value: Scalar) -> Result<Vec<NamedPool>, ConfigError> {
    let Scalar::Table(tables) = value else {
        return Err(ConfigError::Source(
            "`pools` must be a table of named pools (`[pools.<name>]` with `url = ...`)".into(),
        ));
    };
    let mut named = Vec::new();
    for (name, table) in tables {
        let name = name.to_ascii_lowercase();
        let in_pool = |reason: String| ConfigError::Source(format!("[pools.{name}]: {reason}"));
        let Scalar::Table(entries) = table else {
            return Err(in_pool("expected a table (`url = ...`)".into()));
        };
        let mut url = None;
        let mut required = false;
        let mut params = Vec::new();
        for (key, value) in entries {
            match (key.as_str(), value) {
                ("url", Scalar::Text(u)) => url = Some(u),
                ("url", _) => return Err(in_pool("`url` must be a string".into())),
                ("required", Scalar::Bool(b)) => required = b,
                ("required", other) => {
                    required = parse::switch("required", &other.to_string())
                        .map_err(|e| in_pool(e.to_string()))?;
                }
                (_, Scalar::Table(_)) => {
                    return Err(in_pool(format!("`{key}` must be a value, not a table")));
                }
                (k, v) if POOL_KEYS.contains(&k) => params.push((k.to_owned(), v.to_string())),
                _ => {
                    return Err(in_pool(format!(
                        "unknown setting `{key}`; known: url, required, {}",
                        POOL_KEYS.join(", ")
                    )));
                }
            }
        }
        let Some(url) = url.filter(|u| !u.is_empty()) else {
            return Err(in_pool("`url` is missing".into()));
        };
        params.sort();
        named.push(NamedPool {
            name,
            url,
            params,
            required,
        });
    }
    Ok(named)
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        param: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

impl AppValues {
    /// The value of `key` as written, trimmed; `None` when unset or empty.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// A duration (bare numbers are seconds); `default` when unset.
    pub fn duration(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        self.text(key)
            .map_or(Ok(default), |v| parse_duration(key, v))
    }

    /// A duration above zero; `default` when unset.
    pub fn positive_duration(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        self.text(key)
            .map_or(Ok(default), |v| parse::positive(key, v))
    }

    /// A duration where `0` means "none"; `default` when unset.
    pub fn optional_duration(
        &self,
        key: &str,
        default: Option<Duration>,
    ) -> Result<Option<Duration>, ConfigError> {
        self.text(key)
            .map_or(Ok(default), |v| parse_optional_duration(key, v))
    }

    /// A switch: `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`; `default` when unset.
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.text(key) {
            None => Ok(default),
            Some(v) => parse::switch(key, v),
        }
    }

    /// A whole number of at least `min`; `default` when unset.
    pub fn number<T>(&self, key: &str, default: T, min: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        let Some(v) = self.text(key) else {
            return Ok(default);
        };
        match v.parse::<T>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(invalid(
                key,
                v,
                format!("expected a whole number of at least {min}"),
            )),
        }
    }

    /// A TCP port (0 to 65535); `None` when unset.
    pub fn port(&self, key: &str) -> Result<Option<u16>, ConfigError> {
        self.text(key)
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| invalid(key, p, "expected a port number from 0 to 65535"))
            })
            .transpose()
    }
}

/// The variables the PostgreSQL driver reads from the process environment itself (sqlx's
/// `PgConnectOptions`). `.env` is read into our settings, never into the process environment
/// (changing it under running threads is unsound), so the driver would not see them there.
const DRIVER_VARIABLES: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGAPPNAME",
    "PGOPTIONS",
];

/// `.env` in the working directory. Not in its parents (dotenvy's `dotenv()` walks up): a
/// `.env` left in `/` or a home directory would otherwise configure every server started below
/// it, unseen by whoever reads the deployment.
fn find_dotenv() -> Option<PathBuf> {
    let candidate = std::env::current_dir().ok()?.join(".env");
    candidate.is_file().then_some(candidate)
}

/// A `.env` problem, told without the file's contents: dotenvy's own message repeats the whole
/// malformed line, which may be `DATABASE_URL` with its password. Only the line number and the
/// key (when the line has one) are named.
fn dotenv_error(path: &Path, err: &dotenvy::Error) -> String {
    match err {
        dotenvy::Error::LineParse(line, _) => {
            let first = line.lines().next().unwrap_or_default();
            let number = std::fs::read_to_string(path).ok().and_then(|text| {
                text.lines()
                    .position(|l| l == first)
                    .map(|i| format!(" {}", i + 1))
            });
            let key = first
                .trim_start()
                .trim_start_matches("export ")
                .split(['=', ' ', '\t'])
                .next()
                .filter(|k| {
                    !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                })
                .map(|k| format!(" (key `{k}`)"))
                .unwrap_or_default();
            format!(
                "{}: cannot parse line{}{key}; the line is not shown, it may hold a secret",
                path.display(),
                number.unwrap_or_default()
            )
        }
        dotenvy::Error::Io(e) => format!("{}: {e}", path.display()),
        // Other variants name a variable, never a value.
        other => format!("{}: {other}", path.display()),
    }
}
