//! Layered settings: defaults < config file < `.env` < process environment.
//!
//! | source | names |
//! |---|---|
//! | config file | TOML, flat keys: `database_url`, the pool parameters (`connection_limit`, ...), and the [`SERVER_KEYS`] (`host`, `port`, `http_workers`, `request_timeout`, ...). Read from `$DBSERVICE_CONFIG` (must exist) or `./dbservice.toml` (optional). |
//! | environment | `DATABASE_URL`, `HOST`, `PORT`, `LOG_FORMAT`, and every other key as `DBSERVICE_<KEY>` (e.g. `DBSERVICE_CONNECTION_LIMIT=5`). |
//! | `.env` | same names as the environment; a variable already set in the environment wins. |
//!
//! Pool parameters in the `DATABASE_URL` query override all of these (see
//! [`DbConfig::from_parts`]). Unknown `DBSERVICE_*` variables and unknown file keys are errors,
//! so a typo is reported rather than ignored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::DbConfig;
use super::duration::{parse_duration, parse_optional_duration};
use super::url::POOL_KEYS;
use crate::error::ConfigError;
use crate::shutdown::ShutdownSettings;

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

/// Everything a backend built on dbservice reads at startup.
#[derive(Clone)]
pub struct Settings {
    database_url: Option<String>,
    pool: Vec<(String, String)>,
    /// Address the HTTP server binds (`HOST`). Default: `127.0.0.1`.
    pub host: String,
    /// Port the HTTP server binds (`PORT`); 0 picks a free one. Default: 8080.
    pub port: u16,
    /// HTTP worker threads (`http_workers`), each with its own single-threaded runtime.
    /// 0 (the default) means half the CPU cores, at least one; see
    /// [`effective_http_workers`](Self::effective_http_workers).
    pub http_workers: usize,
    /// Log line format (`LOG_FORMAT=pretty|json`). Default: pretty.
    pub log_format: LogFormat,
    /// The shutdown sequence's bounds.
    pub shutdown: ShutdownSettings,
    /// Demo only: enables `GET /api/diagnostics/sleep` (holds a connection for a while; for
    /// shutdown and load tests). Default: false.
    pub demo_diagnostics: bool,
    /// Demo: serves `GET /metrics` and records per-route HTTP metrics (`metrics`). Default:
    /// true. Off, there is no `/metrics` route and no per-request metric work; the pool's own
    /// accounting stays (readiness and `/health/db` use it).
    pub metrics: bool,
    /// The HTTP server's deadlines, limits and listeners.
    pub http: HttpSettings,
}

/// The HTTP server's deadlines, limits and listeners (see CONNECTION_POOLING.md, "Deadlines"
/// and "Security").
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpSettings {
    /// Bound on a whole request after its head: body read and handler (`request_timeout`);
    /// past it the answer is 504 `request_timeout`. `None` (written `0`): no bound. Default:
    /// 35 s, above the default `query_timeout` (30 s) so a statement's own deadline answers
    /// first.
    pub request_timeout: Option<Duration>,
    /// How long an idle keep-alive connection stays open (`http_keep_alive`). `None` (written
    /// `0`): no keep-alive. Default: 5 s.
    pub keep_alive: Option<Duration>,
    /// Bound on receiving a request's head (`http_client_request_timeout`); a slower client
    /// gets 408. Must be above zero. Default: 5 s.
    pub client_request_timeout: Duration,
    /// Open connections per HTTP worker (`http_max_connections`); further clients wait in the
    /// listen backlog. Default: 10 000.
    pub max_connections: usize,
    /// The listen backlog (`http_backlog`): connections the kernel queues before they are
    /// accepted. Default: 1024.
    pub backlog: u32,
    /// Host of the management listener (`management_host`). Default: `host`.
    pub management_host: Option<String>,
    /// Port of the management listener (`management_port`): when set, `/metrics` and
    /// `/health/db` are served there and no longer on the public listener (0 picks a free
    /// port). Default: unset (one listener for everything).
    pub management_port: Option<u16>,
    /// `/health/ready` includes the last error's text (`health_details`). Default: false.
    pub health_details: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            request_timeout: Some(Duration::from_secs(35)),
            keep_alive: Some(Duration::from_secs(5)),
            client_request_timeout: Duration::from_secs(5),
            max_connections: 10_000,
            backlog: 1024,
            management_host: None,
            management_port: None,
            health_details: false,
        }
    }
}

/// The settings that are not pool parameters, by their file key (`DBSERVICE_<KEY>` in the
/// environment, except `HOST`, `PORT` and `LOG_FORMAT`, which are read bare too).
pub const SERVER_KEYS: &[&str] = &[
    "database_url",
    "host",
    "port",
    "http_workers",
    "log_format",
    "shutdown_grace",
    "drain_timeout",
    "pool_close_timeout",
    "demo_diagnostics",
    "metrics",
    "request_timeout",
    "http_keep_alive",
    "http_client_request_timeout",
    "http_max_connections",
    "http_backlog",
    "management_host",
    "management_port",
    "health_details",
];

#[derive(Debug, Default, Deserialize)]
struct Raw {
    database_url: Option<String>,
    config: Option<String>,
    host: Option<String>,
    port: Option<String>,
    http_workers: Option<String>,
    log_format: Option<String>,
    shutdown_grace: Option<String>,
    drain_timeout: Option<String>,
    pool_close_timeout: Option<String>,
    demo_diagnostics: Option<String>,
    metrics: Option<String>,
    request_timeout: Option<String>,
    http_keep_alive: Option<String>,
    http_client_request_timeout: Option<String>,
    http_max_connections: Option<String>,
    http_backlog: Option<String>,
    management_host: Option<String>,
    management_port: Option<String>,
    health_details: Option<String>,
    /// Everything else: must be a pool parameter (checked in `from_raw`, so that a typo is an
    /// error naming the key).
    #[serde(flatten)]
    pool: HashMap<String, Scalar>,
}

/// A scalar from any source: TOML keeps numbers and booleans typed, the environment does not.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Text(s) => f.write_str(s),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl Settings {
    /// Loads the settings from the process environment, `.env` (if present) and the config
    /// file. Reads files; call it before serving.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut env: HashMap<String, String> = std::env::vars().collect();
        if let Some(path) = find_dotenv() {
            let iter = dotenvy::from_path_iter(&path)
                .map_err(|e| ConfigError::Source(dotenv_error(&path, &e)))?;
            for item in iter {
                let (k, v) = item.map_err(|e| ConfigError::Source(dotenv_error(&path, &e)))?;
                env.entry(k).or_insert(v);
            }
        }
        Self::from_sources(&env, Path::new("."))
    }

    /// Loads the settings from `env` (variable name to value) and the config file it points
    /// at, resolving a relative `./dbservice.toml` against `dir`. Touches no process state, so
    /// tests can call it freely.
    pub fn from_sources(env: &HashMap<String, String>, dir: &Path) -> Result<Self, ConfigError> {
        let source_err = |e: config::ConfigError| ConfigError::Source(e.to_string());
        let mut builder = config::Config::builder();
        match env.get("DBSERVICE_CONFIG").filter(|p| !p.is_empty()) {
            Some(path) => {
                builder =
                    builder.add_source(config::File::from(PathBuf::from(path)).required(true));
            }
            None => {
                builder = builder
                    .add_source(config::File::from(dir.join("dbservice.toml")).required(false));
            }
        }
        builder = builder.add_source(
            config::Environment::with_prefix("DBSERVICE")
                .prefix_separator("_")
                .ignore_empty(true)
                .source(Some(env.clone().into_iter().collect())),
        );
        for (var, key) in [
            ("DATABASE_URL", "database_url"),
            ("HOST", "host"),
            ("PORT", "port"),
            ("LOG_FORMAT", "log_format"),
        ] {
            if let Some(v) = env.get(var).filter(|v| !v.is_empty()) {
                builder = builder.set_override(key, v.clone()).map_err(source_err)?;
            }
        }
        let raw: Raw = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(source_err)?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: Raw) -> Result<Self, ConfigError> {
        let http = http_settings(&raw)?;
        let mut pool: Vec<(String, String)> = Vec::new();
        for (key, value) in raw.pool {
            if !POOL_KEYS.contains(&key.as_str()) {
                return Err(ConfigError::Source(format!(
                    "unknown setting `{key}` (DBSERVICE_{}); known settings are {}, {}",
                    key.to_ascii_uppercase(),
                    SERVER_KEYS.join(", "),
                    POOL_KEYS.join(", ")
                )));
            }
            pool.push((key, value.to_string()));
        }
        pool.sort();
        let duration_or = |param: &str, v: Option<String>, default: Duration| {
            v.map_or(Ok(default), |v| parse_duration(param, &v))
        };
        let defaults = ShutdownSettings::default();
        let port = parse_port("port", raw.port)?.unwrap_or(8080);
        let http_workers = match raw.http_workers.as_deref().map(str::trim) {
            None | Some("") => 0,
            Some(w) => w.parse::<u16>().map_err(|_| ConfigError::InvalidValue {
                param: "http_workers".into(),
                value: w.into(),
                reason: "expected a whole number of threads (0: half the CPU cores)".into(),
            })? as usize,
        };
        let log_format = match raw.log_format.as_deref().map(str::trim) {
            None | Some("pretty") | Some("") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::InvalidValue {
                    param: "log_format".into(),
                    value: other.into(),
                    reason: "expected `pretty` or `json`".into(),
                });
            }
        };
        let demo_diagnostics = parse_bool("demo_diagnostics", raw.demo_diagnostics, false)?;
        let metrics = parse_bool("metrics", raw.metrics, true)?;
        let _ = raw.config;
        Ok(Self {
            database_url: raw.database_url.filter(|u| !u.trim().is_empty()),
            pool,
            host: raw.host.unwrap_or_else(|| "127.0.0.1".to_owned()),
            port,
            http_workers,
            log_format,
            shutdown: ShutdownSettings {
                grace: duration_or("shutdown_grace", raw.shutdown_grace, defaults.grace)?,
                drain_timeout: duration_or(
                    "drain_timeout",
                    raw.drain_timeout,
                    defaults.drain_timeout,
                )?,
                pool_close_timeout: duration_or(
                    "pool_close_timeout",
                    raw.pool_close_timeout,
                    defaults.pool_close_timeout,
                )?,
            },
            demo_diagnostics,
            metrics,
            http,
        })
    }

    /// The HTTP worker count to run: `http_workers`, or for 0 half the CPU cores (at least
    /// one). Not actix-web's one per core: every worker shares the one pool, and a connection
    /// released on one worker wakes a request waiting on another across threads. Measured on
    /// 2 cores (BENCHMARKS.md), one worker served 1.09-1.32x the reads per second of two, at
    /// about 11-15 % less CPU per request; a database-bound worker is rarely short of CPU.
    pub fn effective_http_workers(&self) -> usize {
        match self.http_workers {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .div_ceil(2),
            n => n,
        }
    }

    /// Whether a database URL was configured.
    pub fn has_database_url(&self) -> bool {
        self.database_url.is_some()
    }

    /// Replaces the database URL (e.g. with a test database).
    pub fn set_database_url(&mut self, url: impl Into<String>) {
        self.database_url = Some(url.into());
    }

    /// Sets one pool parameter as if it came from the environment; validated by
    /// [`Settings::db_config`].
    pub fn set_pool_param(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        self.pool.retain(|(k, _)| *k != key);
        self.pool.push((key, value.into()));
    }

    /// The validated pool configuration: the configured URL, or `default_url` when none is
    /// set, on top of the pool parameters from the file and environment.
    pub fn db_config(&self, default_url: Option<&str>) -> Result<DbConfig, ConfigError> {
        let url = self
            .database_url
            .as_deref()
            .or(default_url)
            .ok_or(ConfigError::MissingUrl)?;
        DbConfig::from_parts(url, &self.pool)
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "<set, not shown>"),
            )
            .field("pool", &self.pool)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("http_workers", &self.http_workers)
            .field("log_format", &self.log_format)
            .field("shutdown", &self.shutdown)
            .field("demo_diagnostics", &self.demo_diagnostics)
            .field("metrics", &self.metrics)
            .field("http", &self.http)
            .finish()
    }
}

/// The `.env` file dotenvy would read: in the working directory or the nearest parent.
fn find_dotenv() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|dir| dir.join(".env"))
        .find(|candidate| candidate.is_file())
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

fn parse_port(param: &str, value: Option<String>) -> Result<Option<u16>, ConfigError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(p) => p
            .parse::<u16>()
            .map(Some)
            .map_err(|_| ConfigError::InvalidValue {
                param: param.into(),
                value: p.into(),
                reason: "expected a port number from 0 to 65535".into(),
            }),
    }
}

fn parse_number<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    param: &str,
    value: Option<&String>,
    default: T,
    min: T,
) -> Result<T, ConfigError> {
    let Some(v) = value.map(|v| v.trim()).filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    match v.parse::<T>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(ConfigError::InvalidValue {
            param: param.into(),
            value: v.into(),
            reason: format!("expected a whole number of at least {min}"),
        }),
    }
}

fn http_settings(raw: &Raw) -> Result<HttpSettings, ConfigError> {
    let d = HttpSettings::default();
    let optional = |param: &str, v: &Option<String>, default: Option<Duration>| match v {
        Some(v) if !v.trim().is_empty() => parse_optional_duration(param, v),
        _ => Ok(default),
    };
    let client_request_timeout = match &raw.http_client_request_timeout {
        Some(v) if !v.trim().is_empty() => {
            let t = parse_duration("http_client_request_timeout", v)?;
            if t.is_zero() {
                return Err(ConfigError::InvalidValue {
                    param: "http_client_request_timeout".into(),
                    value: v.clone(),
                    reason: "must be greater than 0: a client could otherwise hold a \
                             connection forever without sending a request"
                        .into(),
                });
            }
            t
        }
        _ => d.client_request_timeout,
    };
    Ok(HttpSettings {
        request_timeout: optional("request_timeout", &raw.request_timeout, d.request_timeout)?,
        keep_alive: optional("http_keep_alive", &raw.http_keep_alive, d.keep_alive)?,
        client_request_timeout,
        max_connections: parse_number(
            "http_max_connections",
            raw.http_max_connections.as_ref(),
            d.max_connections,
            1,
        )?,
        backlog: parse_number("http_backlog", raw.http_backlog.as_ref(), d.backlog, 1)?,
        management_host: raw
            .management_host
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned),
        management_port: parse_port("management_port", raw.management_port.clone())?,
        health_details: parse_bool("health_details", raw.health_details.clone(), false)?,
    })
}

/// A switch: `true`/`1` or `false`/`0`; unset or empty means `default`.
fn parse_bool(param: &str, value: Option<String>, default: bool) -> Result<bool, ConfigError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(ConfigError::InvalidValue {
            param: param.into(),
            value: other.into(),
            reason: "expected true or false".into(),
        }),
    }
}
