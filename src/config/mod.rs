//! Configuration: `DATABASE_URL`, its pool parameters, and the layered settings.
//!
//! - [`DbConfig`] is the validated pool configuration. It is built from a URL whose query holds
//!   the pool parameters (Prisma's convention), optionally on top of values from the layered
//!   settings; the URL wins where both set a parameter.
//! - [`PoolOptions`] holds the pool parameters by concern ([`PoolLimits`], [`Deadlines`],
//!   [`TransactionDefaults`], [`Monitoring`], [`Session`]), all declared in one table.
//! - [`Settings`] loads everything a backend needs from defaults < config file < environment
//!   (`.env` included); see its docs for the exact names.
//! - [`RedactedUrl`] is the only form in which a URL is ever shown.

mod backend;
mod credentials;
mod db_config;
pub(crate) mod duration;
mod error;
mod host_list;
mod hosts;
mod params;
mod parse;
mod password;
mod profile;
mod redact;
pub(crate) mod replica;
mod schema;
mod service_links;
mod settings;
mod shutdown;
mod table;
mod tls;
mod unknown;
mod url;
mod validate;

use std::time::Duration;

pub use self::backend::Backend;
pub(crate) use self::credentials::{CredentialSources, NamedPath};
pub use self::credentials::{Credentials, CredentialsProvider, CredentialsRequest, ProviderError};
pub use self::db_config::DbConfig;
pub use self::duration::MAX_DURATION;
pub use self::error::ConfigError;
pub use self::hosts::{DEFAULT_PORT, HostSpec, LoadBalanceHosts, TargetSessionAttrs};
pub use self::params::{
    Deadlines, Monitoring, POOL_KEYS, PoolLimits, PoolOptions, Session, TransactionDefaults,
};
pub use self::profile::{Profile, Source, Sources};
pub use self::redact::RedactedUrl;
pub use self::settings::{AppKeys, AppValues, LIBRARY_KEYS, LogFormat, NamedPool, Settings};
pub use self::shutdown::ShutdownSettings;
pub use self::tls::TlsMode;

/// How much later than the client the server gives up: the client's timeout fires first and
/// reports `Timeout`; the server's is the backstop that frees the connection and the locks
/// (sqlx cannot cancel a running statement) and guards against a stalled client.
pub(crate) const SERVER_GRACE: Duration = Duration::from_millis(250);
