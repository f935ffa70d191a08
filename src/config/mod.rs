//! Configuration: `DATABASE_URL`, its pool parameters, and the layered settings.
//!
//! - [`DbConfig`] is the validated pool configuration. It is built from a URL whose query holds
//!   the pool parameters (Prisma's convention), optionally on top of values from the layered
//!   settings; the URL wins where both set a parameter.
//! - [`Settings`] loads everything a backend needs from defaults < config file < environment
//!   (`.env` included); see its docs for the exact names.
//! - [`RedactedUrl`] is the only form in which a URL is ever shown.

pub(crate) mod duration;
mod error;
mod profile;
mod redact;
mod schema;
mod service_links;
mod settings;
mod shutdown;
mod tls;
mod unknown;
mod url;

use std::time::Duration;

use serde::Serialize;

pub use self::duration::MAX_DURATION;
use self::duration::{parse_duration, parse_optional_duration};
pub use self::error::ConfigError;
pub use self::profile::{Profile, Source, Sources};
pub use self::redact::RedactedUrl;
pub use self::settings::{AppKeys, AppValues, LIBRARY_KEYS, LogFormat, NamedPool, Settings};
pub use self::shutdown::ShutdownSettings;
pub use self::tls::TlsMode;
pub use self::url::Backend;
pub use self::url::POOL_KEYS;
use self::url::{SplitUrl, split};

/// The validated pool configuration of one [`DbService`](crate::DbService).
///
/// `Debug` and `Serialize` show the URL redacted; there is no way to print the password.
#[derive(Clone)]
pub struct DbConfig {
    url: SplitUrl,
    /// `DATABASE_URL_DIRECT`: a real session for migrations and their lock (behind PgBouncer).
    direct: Option<SplitUrl>,
    /// `DATABASE_REPLICA_URLS` and the replica bounds.
    replicas: Option<Box<crate::replica::ReplicaConfig>>,
    /// Where each pool parameter (and the URL) came from.
    sources: Sources,
    secrets: Vec<String>,
    pool: PoolOptions,
    tls: Option<TlsMode>,
}

/// The pool parameters, with their effective values. Every field can be set in the URL query
/// under the same name. Durations written as bare numbers are seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PoolOptions {
    /// Maximum connections in the pool. Default: `available cores * 2 + 1` (Prisma's rule).
    pub connection_limit: u32,
    /// Connections kept open while idle; maintained in the background. Default: 0.
    pub min_connections: u32,
    /// Longest wait for a free connection before the caller gets a "pool timed out" error.
    /// `None` (written `0`) waits without limit. Default: 10 s.
    #[serde(with = "duration::human_opt")]
    pub pool_timeout: Option<Duration>,
    /// Bound on opening one connection: every connection the pool opens, each attempt of
    /// [`DbService::connect`](crate::DbService::connect), the readiness probe's own connection.
    /// Must be above zero. Default: 5 s.
    #[serde(with = "duration::human")]
    pub connect_timeout: Duration,
    /// Total time the initial connect keeps retrying a database that is not reachable yet, with
    /// exponential backoff and jitter. `0` tries once. Default: 60 s.
    #[serde(with = "duration::human")]
    pub connect_retry_timeout: Duration,
    /// Connections idle longer than this are closed (down to `min_connections`). `None`
    /// (written `0`) keeps them. Default: 10 min.
    #[serde(with = "duration::human_opt")]
    pub idle_timeout: Option<Duration>,
    /// Connections older than this are closed and replaced. `None` (written `0`) keeps them
    /// forever. Default: 30 min.
    #[serde(with = "duration::human_opt")]
    pub max_lifetime: Option<Duration>,
    /// A connection is retired after serving this many checkouts (jittered per connection:
    /// somewhere in the last 20 %, so connections opened together do not retire together).
    /// `None` (written `0`) keeps it. Default: off.
    pub max_uses: Option<u64>,
    /// A connection or transaction held longer than this logs one WARN with the caller's
    /// source location and counts in `dbservice_pool_connection_leaks_total`. `None` (written
    /// `0`) turns it off. Default: off.
    #[serde(with = "duration::human_opt")]
    pub leak_detection_threshold: Option<Duration>,
    /// After this many failed connection attempts in a row the database counts as down:
    /// callers that find no idle connection get the cause at once instead of waiting
    /// `pool_timeout`, until a background probe (with backoff) connects again. `0` turns it
    /// off. Default: 3.
    pub fail_fast_after: u32,
    /// Longest time a row stream ([`StreamTrait`](sea_orm::StreamTrait) on
    /// [`DbConn`](crate::DbConn)) may hold its connection; the stream then ends with an error
    /// and the connection is checked before reuse. `None` (written `0`) waits without limit.
    /// Default: 60 s.
    #[serde(with = "duration::human_opt")]
    pub stream_timeout: Option<Duration>,
    /// A connection that has been idle at least this long is pinged before it is handed out;
    /// fresher ones are handed out without the extra round trip. `0` pings on every checkout
    /// (sqlx's default). Default: 10 s.
    #[serde(with = "duration::human")]
    pub ping_after_idle: Duration,
    /// Keepalive on both sides of every connection (`keepalive_idle` sets when): the
    /// background task pings connections that have been quiet that long, so a connection a
    /// NAT, firewall or failover dropped silently is found and replaced while idle, not by the
    /// next request; and on PostgreSQL the server is asked for TCP keepalives on the session
    /// (`tcp_keepalives_idle`/`_interval`/`_count` in the startup packet), so it frees the
    /// backend of a client that vanished. Default: true.
    pub keepalive: bool,
    /// How long a connection may be quiet (idle, not pinged) before the keepalive pings it, and
    /// the server's `tcp_keepalives_idle`. Must be above zero. Default: 60 s.
    #[serde(with = "duration::human")]
    pub keepalive_idle: Duration,
    /// Bound on every check of a pooled connection before it is handed out: the ping after
    /// `ping_after_idle`, and the round trip that proves a suspect connection (one whose
    /// statement was abandoned or whose transaction did not end cleanly) is outside a
    /// transaction. A connection that does not answer in time is closed without further I/O,
    /// so a dead socket cannot hold a pool slot (sqlx#4349). Also bounds a polite close and a
    /// ROLLBACK. Must be above zero. Default: 1 s.
    #[serde(with = "duration::human")]
    pub ping_timeout: Duration,
    /// Bound on the readiness probe's database check. Must be above zero. Default: 1 s.
    #[serde(with = "duration::human")]
    pub health_check_timeout: Duration,
    /// Client-side deadline of every statement run through [`DbConn`](crate::DbConn) (Prisma's
    /// `socket_timeout`, accepted as an alias in the URL). When it passes the caller gets a
    /// query-timeout error (HTTP 504 in the demo) and the connection is not handed out again
    /// until a bounded check proves it clean; a server that does not answer that check within
    /// `ping_timeout` has its connection closed. It is the backstop for a server that cannot
    /// answer at all (frozen, unreachable); `statement_timeout` (server side) should fire
    /// first, and must be below it. `None` (written `0`) waits without limit. Default: 30 s;
    /// `statement_timeout` + 1 s when that is set.
    #[serde(with = "duration::human_opt")]
    pub query_timeout: Option<Duration>,
    /// Statements taking at least this long are logged at WARN with their duration and SQL
    /// (placeholders, never the bound values). `None` (written `0`) turns it off. Default: 1 s.
    #[serde(with = "duration::human_opt")]
    pub slow_query_threshold: Option<Duration>,
    /// Logs every statement at INFO (target `dbservice::statements`) with its duration and
    /// whether it failed: the SQL text with placeholders, never the bound values (seed 001's
    /// `enableQueryLogging`). Default: false.
    pub log_statements: bool,
    /// `/health/db` reports `warn` when busy/max reaches this percentage. Default: 80.
    pub utilization_warn_percent: u32,
    /// `/health/db` reports `critical` when busy/max reaches this percentage. Default: 90.
    pub utilization_critical_percent: u32,
    /// The `waiting` alert is raised (a WARN line, `dbservice_alerts_total`) when more than this
    /// many callers wait for a connection (seed 002's "waiting > 5"); `0` turns it off.
    /// Default: 5.
    pub alert_waiting: u32,
    /// The `errors` alert is raised when more than this many database errors (constraint
    /// violations excepted) happened in the last hour (seed 002's "errors > 10/hour"); `0`
    /// turns it off. Default: 10.
    pub alert_errors_per_hour: u32,
    /// Interval of the periodic pool summary log line; `None` (written `0`) turns it off.
    /// Default: off.
    #[serde(with = "duration::human_opt")]
    pub stats_log_interval: Option<Duration>,
    /// Default `max_wait` of [`DbService::tx_options`](crate::DbService::tx_options): longest
    /// wait for a connection and `BEGIN`. Must be above zero. Default: 2 s (Prisma's).
    #[serde(with = "duration::human")]
    pub transaction_max_wait: Duration,
    /// Default `timeout` of [`DbService::tx_options`](crate::DbService::tx_options): longest
    /// time from `BEGIN` to `COMMIT`. Must be above zero. Default: 5 s (Prisma's).
    #[serde(with = "duration::human")]
    pub transaction_timeout: Duration,
    /// PostgreSQL `statement_timeout` for every session, applied by the server. Default: none.
    #[serde(with = "duration::human_opt")]
    pub statement_timeout: Option<Duration>,
    /// PostgreSQL `idle_in_transaction_session_timeout` for every session. Default: none.
    #[serde(with = "duration::human_opt")]
    pub idle_in_transaction_session_timeout: Option<Duration>,
    /// `true` when connecting through PgBouncer (≤ 1.20, or without `max_prepared_statements`)
    /// in transaction mode: every statement is one simple-protocol message with its values
    /// inlined (no prepared statement, nothing split across server connections), and the
    /// session settings (`statement_timeout`, `idle_in_transaction_session_timeout`, `schema`)
    /// travel as `SET LOCAL` in each message instead of the startup packet. Default: false.
    pub pgbouncer: bool,
    /// Prepared statements cached per connection. `None`: the driver's default (100).
    pub statement_cache_size: Option<usize>,
    /// PostgreSQL `search_path` for every session. Default: the server's.
    pub schema: Option<String>,
    /// Name shown in PostgreSQL's `pg_stat_activity`. Default: `dbservice`.
    pub application_name: String,
}

/// The default client-side statement deadline: long enough for any statement a web request
/// should run, short enough that a hung database frees the request well before a load
/// balancer's or a user's patience runs out.
const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// How much later than the client the server gives up: the client's timeout fires first and
/// reports `Timeout`; the server's is the backstop that frees the connection and the locks
/// (sqlx cannot cancel a running statement) and guards against a stalled client.
pub(crate) const SERVER_GRACE: Duration = Duration::from_millis(250);

/// How much later than `statement_timeout` the client gives up when only the server bound is
/// set: the server's cancel (which keeps the connection usable) arrives first.
const CLIENT_AFTER_SERVER: Duration = Duration::from_secs(1);

impl Default for PoolOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            connection_limit: u32::try_from(cores * 2 + 1).unwrap_or(u32::MAX),
            min_connections: 0,
            pool_timeout: Some(Duration::from_secs(10)),
            connect_timeout: Duration::from_secs(5),
            connect_retry_timeout: Duration::from_secs(60),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            ping_after_idle: Duration::from_secs(10),
            keepalive: true,
            keepalive_idle: Duration::from_secs(60),
            max_uses: None,
            leak_detection_threshold: None,
            fail_fast_after: 3,
            stream_timeout: Some(Duration::from_secs(60)),
            ping_timeout: Duration::from_secs(1),
            health_check_timeout: Duration::from_secs(1),
            query_timeout: Some(DEFAULT_QUERY_TIMEOUT),
            slow_query_threshold: Some(Duration::from_secs(1)),
            log_statements: false,
            utilization_warn_percent: 80,
            utilization_critical_percent: 90,
            alert_waiting: 5,
            alert_errors_per_hour: 10,
            stats_log_interval: None,
            transaction_max_wait: Duration::from_secs(2),
            transaction_timeout: Duration::from_secs(5),
            statement_timeout: None,
            idle_in_transaction_session_timeout: None,
            pgbouncer: false,
            statement_cache_size: None,
            schema: None,
            application_name: "dbservice".to_owned(),
        }
    }
}

impl DbConfig {
    /// Builds the configuration from a URL alone; unset parameters take their defaults.
    ///
    /// ```
    /// let cfg = dbservice::config::DbConfig::from_url("postgres://app:secret@db/app?connection_limit=5&pool_timeout=2s")?;
    /// assert_eq!(cfg.pool().connection_limit, 5);
    /// assert_eq!(cfg.redacted_url().to_string(), "postgres://app:***@db/app");
    /// # Ok::<(), dbservice::config::ConfigError>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        Self::from_parts(url, &[])
    }

    /// Builds the configuration from `url` on top of `settings` (pairs of parameter name and
    /// value, e.g. from a config file or the environment). A parameter in the URL query
    /// overrides the same parameter in `settings`.
    pub fn from_parts(url: &str, settings: &[(String, String)]) -> Result<Self, ConfigError> {
        let split = split(url)?;
        let mut pool = PoolOptions::default();
        let mut explicit = Vec::new();
        for (key, value) in settings.iter().chain(split.params.iter()) {
            apply(&mut pool, key, value)?;
            explicit.push(key.as_str());
        }
        validate(&pool, split.backend, &explicit)?;
        if let Some(server) = pool.statement_timeout
            && !explicit.contains(&"query_timeout")
        {
            pool.query_timeout = Some(server.saturating_add(CLIENT_AFTER_SERVER));
        }
        let env_password = match split.backend {
            Backend::Postgres => std::env::var("PGPASSWORD").ok(),
            Backend::MySql => std::env::var("MYSQL_PWD").ok(),
            Backend::Sqlite => None,
        };
        let secrets = redact::secrets_of(&split.driver_url, env_password.as_deref());
        let mut sources: Sources = POOL_KEYS
            .iter()
            .map(|k| ((*k).to_owned(), Source::Default))
            .collect();
        for (key, _) in &split.params {
            sources.insert(key.clone(), Source::Url);
        }
        Ok(Self {
            sources,
            tls: tls::resolve(&split),
            url: split,
            direct: None,
            replicas: None,
            secrets,
            pool,
        })
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
        self.secrets
            .extend(redact::secrets_of(&direct.driver_url, None));
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
        replicas: crate::replica::ReplicaConfig,
    ) -> Result<Self, ConfigError> {
        replicas.validate(self.url.backend)?;
        for r in &replicas.replicas {
            self.secrets.extend(r.secrets.iter().cloned());
        }
        self.replicas = Some(Box::new(replicas));
        Ok(self)
    }

    /// Where each pool parameter came from (`default`, `profile:<name>`, `file:<path>`,
    /// `.env`, `environment`, `url`, `code`), and `database_url` where the URL did.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Takes the settings' sources for what the URL did not set.
    pub(crate) fn note_sources(&mut self, settings: &Sources, url_configured: bool) {
        for (key, source) in self.sources.iter_mut() {
            if *source == Source::Default
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
    pub fn replicas(&self) -> Option<&crate::replica::ReplicaConfig> {
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
            replicas: Option<&'a crate::replica::ReplicaConfig>,
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

fn invalid(param: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        param: param.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

fn parse_count(param: &str, value: &str, min: u32) -> Result<u32, ConfigError> {
    let n: u32 = value
        .trim()
        .parse()
        .map_err(|_| invalid(param, value, "expected a whole number"))?;
    if n < min {
        return Err(invalid(param, value, format!("must be at least {min}")));
    }
    Ok(n)
}

fn parse_percent(param: &str, value: &str) -> Result<u32, ConfigError> {
    let n = parse_count(param, value, 1)?;
    if n > 100 {
        return Err(invalid(param, value, "expected a percentage from 1 to 100"));
    }
    Ok(n)
}

fn parse_bool(param: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(param, value, "expected true or false")),
    }
}

fn positive(param: &str, value: &str) -> Result<Duration, ConfigError> {
    let d = parse_duration(param, value)?;
    if d.is_zero() {
        return Err(invalid(param, value, "must be greater than 0"));
    }
    Ok(d)
}

/// Sets one parameter; `key` must be one of [`POOL_KEYS`].
fn apply(pool: &mut PoolOptions, key: &str, value: &str) -> Result<(), ConfigError> {
    match key {
        "connection_limit" => pool.connection_limit = parse_count(key, value, 1)?,
        "min_connections" => pool.min_connections = parse_count(key, value, 0)?,
        "pool_timeout" => pool.pool_timeout = parse_optional_duration(key, value)?,
        "connect_timeout" => pool.connect_timeout = positive(key, value)?,
        "connect_retry_timeout" => pool.connect_retry_timeout = parse_duration(key, value)?,
        "idle_timeout" => pool.idle_timeout = parse_optional_duration(key, value)?,
        "max_lifetime" => pool.max_lifetime = parse_optional_duration(key, value)?,
        "ping_after_idle" => pool.ping_after_idle = parse_duration(key, value)?,
        "max_uses" => {
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| invalid(key, value, "expected a whole number (0 turns it off)"))?;
            pool.max_uses = (n > 0).then_some(n);
        }
        "leak_detection_threshold" => {
            pool.leak_detection_threshold = parse_optional_duration(key, value)?;
        }
        "fail_fast_after" => pool.fail_fast_after = parse_count(key, value, 0)?,
        "stream_timeout" => pool.stream_timeout = parse_optional_duration(key, value)?,
        "health_check_timeout" => pool.health_check_timeout = positive(key, value)?,
        "query_timeout" => pool.query_timeout = parse_optional_duration(key, value)?,
        "ping_timeout" => pool.ping_timeout = positive(key, value)?,
        "slow_query_threshold" => pool.slow_query_threshold = parse_optional_duration(key, value)?,
        "utilization_warn_percent" => pool.utilization_warn_percent = parse_percent(key, value)?,
        "utilization_critical_percent" => {
            pool.utilization_critical_percent = parse_percent(key, value)?;
        }
        "alert_waiting" => pool.alert_waiting = parse_count(key, value, 0)?,
        "alert_errors_per_hour" => pool.alert_errors_per_hour = parse_count(key, value, 0)?,
        "stats_log_interval" => pool.stats_log_interval = parse_optional_duration(key, value)?,
        "transaction_max_wait" => pool.transaction_max_wait = positive(key, value)?,
        "transaction_timeout" => pool.transaction_timeout = positive(key, value)?,
        "statement_timeout" => pool.statement_timeout = parse_optional_duration(key, value)?,
        "idle_in_transaction_session_timeout" => {
            pool.idle_in_transaction_session_timeout = parse_optional_duration(key, value)?;
        }
        "pgbouncer" => pool.pgbouncer = parse_bool(key, value)?,
        "keepalive" => pool.keepalive = parse_bool(key, value)?,
        "log_statements" => pool.log_statements = parse_bool(key, value)?,
        "keepalive_idle" => pool.keepalive_idle = positive(key, value)?,
        "statement_cache_size" => {
            let n: usize = value.trim().parse().map_err(|_| {
                invalid(key, value, "expected a whole number (0 disables the cache)")
            })?;
            pool.statement_cache_size = Some(n);
        }
        "schema" => pool.schema = Some(schema::parse_schema(key, value)?),
        "application_name" => {
            if value.len() > 63 || !value.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
                return Err(invalid(
                    key,
                    value,
                    "expected at most 63 printable ASCII characters",
                ));
            }
            pool.application_name = value.to_owned();
        }
        other => {
            return Err(ConfigError::UnknownParameter {
                param: other.to_owned(),
                hint: format!("; known parameters are {}", POOL_KEYS.join(", ")),
            });
        }
    }
    Ok(())
}

fn validate(pool: &PoolOptions, backend: Backend, explicit: &[&str]) -> Result<(), ConfigError> {
    if pool.min_connections > pool.connection_limit {
        return Err(ConfigError::MinAboveLimit {
            min: pool.min_connections,
            max: pool.connection_limit,
        });
    }
    if pool.utilization_warn_percent > pool.utilization_critical_percent {
        return Err(ConfigError::Conflict {
            first: "utilization_warn_percent".into(),
            second: "utilization_critical_percent".into(),
            reason: format!(
                "the warning level ({}) must not be above the critical level ({})",
                pool.utilization_warn_percent, pool.utilization_critical_percent
            ),
        });
    }
    if let (Some(server), Some(client)) = (pool.statement_timeout, pool.query_timeout)
        && explicit.contains(&"query_timeout")
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
    if backend != Backend::Postgres {
        for param in [
            "statement_timeout",
            "idle_in_transaction_session_timeout",
            "schema",
            "pgbouncer",
        ] {
            if explicit.contains(&param) {
                return Err(ConfigError::UnsupportedOnBackend {
                    param: param.to_owned(),
                    supported: "PostgreSQL",
                    backend: backend.name(),
                });
            }
        }
    }
    if backend == Backend::Sqlite && explicit.contains(&"statement_cache_size") {
        return Err(ConfigError::UnsupportedOnBackend {
            param: "statement_cache_size".to_owned(),
            supported: "PostgreSQL and MySQL/MariaDB",
            backend: backend.name(),
        });
    }
    if pool.pgbouncer && pool.statement_cache_size.is_some_and(|n| n > 0) {
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

#[cfg(test)]
#[path = "tests/config.rs"]
mod tests;
