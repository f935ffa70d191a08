//! The demo server's settings: the library's [`Settings`] plus the HTTP server's address,
//! workers, deadlines, limits, listeners and switches, read from the same layers (config file,
//! `.env`, environment) with the same rules and error messages.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use actix_web::http::header::HeaderName;
use dbservice::config::{AppKeys, AppValues, Profile};
use dbservice::{config::ConfigError, config::Settings};

/// The demo's keys (file keys; `DBSERVICE_<KEY>` in the environment; `HOST` and `PORT` bare).
pub const DEMO_KEYS: &[&str] = &[
    "host",
    "port",
    "http_workers",
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
    "migrate",
    "migrate_lock_timeout",
    "tenant_header",
];

const KEYS: AppKeys<'static> = AppKeys {
    keys: DEMO_KEYS,
    bare: &[("HOST", "host"), ("PORT", "port")],
};

/// Everything the demo server reads at startup.
#[derive(Debug, Clone)]
pub struct DemoSettings {
    /// The library's settings: database URL, pool parameters, log format, shutdown bounds.
    pub core: Settings,
    /// Address the HTTP server binds (`HOST`). Default: `127.0.0.1`.
    pub host: String,
    /// Port the HTTP server binds (`PORT`); 0 picks a free one. Default: 8080.
    pub port: u16,
    /// HTTP worker threads (`http_workers`), each with its own single-threaded runtime.
    /// 0 (the default) means half the CPU cores, at least one; see
    /// [`effective_http_workers`](Self::effective_http_workers).
    pub http_workers: usize,
    /// Enables `GET /api/diagnostics/sleep` (holds a connection for a while; for shutdown and
    /// load tests) (`demo_diagnostics`). Default: false.
    pub demo_diagnostics: bool,
    /// Serves `GET /metrics` and records per-route HTTP metrics (`metrics`). Default: true.
    /// Off, there is no `/metrics` route and no per-request metric work; the pool's own
    /// accounting stays (readiness and `/health/db` use it).
    pub metrics: bool,
    /// The HTTP server's deadlines, limits and listeners.
    pub http: HttpSettings,
    /// Whether the server migrates at startup, and the migration lock's bound.
    pub migrations: MigrationSettings,
    /// Tenancy (`tenant_header`, e.g. `X-Tenant-Id`): when set, every `/api` request names its
    /// tenant (a whole number from 1) in this header, and PostgreSQL's row-level security
    /// shows it only that tenant's rows. PostgreSQL only, as a role that is neither superuser
    /// nor BYPASSRLS (both checked at startup). Default: unset, tenancy off.
    /// Checked to be a valid header name; as configured (headers match case-insensitively).
    pub tenant_header: Option<String>,
}

/// Who runs the migrations, and how long a run waits for another's (see CONNECTION_POOLING.md,
/// "Migrations").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationSettings {
    /// The server applies pending migrations at startup (`migrate`). Off, it only checks that
    /// the database is not behind and refuses to start if it is; `dbservice migrate` (an init
    /// container or a Job) applies them. Default: false in the `production` profile (the DDL
    /// runs once, with its own credentials, not in every pod), true otherwise.
    pub at_startup: bool,
    /// Longest wait for the migration lock held by another run (`migrate_lock_timeout`);
    /// past it the run fails naming the holder. Must be above zero. Default: 60 s.
    pub lock_timeout: Duration,
}

/// The HTTP server's deadlines, limits and listeners (see CONNECTION_POOLING.md, "Deadlines"
/// and "Security").
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// `tenant_header` as a header name, refused with the reason when it is not one. The value is
/// cut in the message: it is an operator's typo, not something to print at length.
fn tenant_header(v: &AppValues) -> Result<Option<String>, ConfigError> {
    let Some(name) = v.text("tenant_header") else {
        return Ok(None);
    };
    HeaderName::from_bytes(name.as_bytes())
        .map(|_| Some(name.to_owned()))
        .map_err(|_| ConfigError::InvalidValue {
            param: "tenant_header (DBSERVICE_TENANT_HEADER)".into(),
            value: name.chars().take(64).collect(),
            reason: "expected an HTTP header name such as X-Tenant-Id: letters, digits and \
                     !#$%&'*+-.^_`|~, nothing else (unset or empty: tenancy off)"
                .into(),
        })
}

impl DemoSettings {
    /// Loads the settings from the process environment, `.env` and the config file.
    pub fn from_env() -> Result<Self, ConfigError> {
        let (core, values) = Settings::from_env_with(KEYS)?;
        Self::from_values(core, &values)
    }

    /// Loads the settings from `env` and the config file it points at (relative to `dir`),
    /// touching no process state.
    pub fn from_sources(env: &HashMap<String, String>, dir: &Path) -> Result<Self, ConfigError> {
        let (core, values) = Settings::from_sources_with(env, dir, KEYS)?;
        Self::from_values(core, &values)
    }

    fn from_values(core: Settings, v: &AppValues) -> Result<Self, ConfigError> {
        let d = HttpSettings::default();
        Ok(Self {
            host: v.text("host").unwrap_or("127.0.0.1").to_owned(),
            port: v.port("port")?.unwrap_or(8080),
            http_workers: usize::from(v.number::<u16>("http_workers", 0, 0)?),
            demo_diagnostics: v.bool("demo_diagnostics", false)?,
            metrics: v.bool("metrics", true)?,
            http: HttpSettings {
                request_timeout: v.optional_duration("request_timeout", d.request_timeout)?,
                keep_alive: v.optional_duration("http_keep_alive", d.keep_alive)?,
                // Above zero: a client could otherwise hold a connection without a request.
                client_request_timeout: v
                    .positive_duration("http_client_request_timeout", d.client_request_timeout)?,
                max_connections: v.number("http_max_connections", d.max_connections, 1)?,
                backlog: v.number("http_backlog", d.backlog, 1)?,
                management_host: v.text("management_host").map(str::to_owned),
                management_port: v.port("management_port")?,
                health_details: v.bool("health_details", false)?,
            },
            migrations: MigrationSettings {
                at_startup: v.bool("migrate", core.profile() != Some(Profile::Production))?,
                lock_timeout: v.positive_duration(
                    "migrate_lock_timeout",
                    dbservice::migrate::DEFAULT_LOCK_TIMEOUT,
                )?,
            },
            tenant_header: tenant_header(v)?,
            core,
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
}
