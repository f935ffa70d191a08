//! Logging a new connection in: the credentials of each connection read from the endpoint's
//! sources when it is opened (see [`crate::secrets`]), one retry with a fresh read when the
//! server refuses a password that its source has replaced since, and a refusal that names
//! where the password came from (never the password).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sea_orm::sqlx::{self, ConnectOptions};

use crate::config::CredentialsRequest;
use crate::secrets::{Resolved, SecretError, Secrets};

/// The driver options that carry a user and a password.
pub(crate) trait LoginOptions: ConnectOptions<Connection: Sized> + Clone {
    /// `postgresql` or `mysql`, for a provider.
    const BACKEND: &'static str;
    fn host(&self) -> &str;
    fn port(&self) -> u16;
    fn user(&self) -> &str;
    fn database(&self) -> Option<&str>;
    /// These options with `r`'s user and password (no password: an empty one, which the
    /// server refuses only if it asks for one).
    fn logged_in(&self, r: &Resolved) -> Self;
}

/// The two drivers' options spell it the same way.
macro_rules! login_options {
    ($feature:literal, $options:ty, $backend:literal) => {
        #[cfg(feature = $feature)]
        impl LoginOptions for $options {
            const BACKEND: &'static str = $backend;
            fn host(&self) -> &str {
                self.get_host()
            }
            fn port(&self) -> u16 {
                self.get_port()
            }
            fn user(&self) -> &str {
                self.get_username()
            }
            fn database(&self) -> Option<&str> {
                self.get_database()
            }
            fn logged_in(&self, r: &Resolved) -> Self {
                let mut o = self.clone();
                if let Some(u) = &r.user {
                    o = o.username(u);
                }
                o.password(r.password.as_deref().unwrap_or_default())
            }
        }
    };
}

login_options!("postgres", sqlx::postgres::PgConnectOptions, "postgresql");
login_options!("mysql", sqlx::mysql::MySqlConnectOptions, "mysql");

/// The credentials side of an endpoint: its sources, and what the last connection logged in
/// with (for the one-connection SeaORM pool behind `DbConn::raw()`, which connects by itself).
pub(crate) struct Login {
    secrets: Arc<Secrets>,
    /// The URL carries its own password: only a provider replaces it.
    url_password: bool,
    /// Numbers each connect's read of the sources, so that a slow connect that read before a
    /// rotation cannot make its older credentials the latest.
    reads: AtomicU64,
    /// The newest credentials a connection logged in with, and the number of their read.
    last: Mutex<Option<(u64, Resolved)>>,
    /// Told the newest credentials when they change (the one-connection SeaORM pool on MySQL;
    /// on PostgreSQL the topology's follower, which also follows host moves).
    on_change: OnceLock<Tell>,
}

/// What is told the newest credentials (see [`Login::on_change`]).
type Tell = Box<dyn Fn(&Resolved) + Send + Sync>;

/// What one connection logged in with.
#[derive(Debug, Default)]
pub(crate) struct LoggedIn {
    /// `None`: the driver's options as parsed (no source of ours applies).
    pub used: Option<Resolved>,
    /// The number of the read that gave `used` (see [`Login::note`]).
    pub read: u64,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("secrets", &self.secrets)
            .field("url_password", &self.url_password)
            .finish_non_exhaustive()
    }
}

/// A password refused by the server, with where it came from: an error of its own so that
/// the startup report names the file (the driver's error cannot be added to). Not transient:
/// a wrong password fails the startup at once.
#[derive(Debug)]
pub(crate) struct Refused {
    message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

impl Login {
    pub fn new(secrets: Arc<Secrets>, url_password: bool) -> Self {
        Self {
            secrets,
            url_password,
            reads: AtomicU64::new(0),
            last: Mutex::new(None),
            on_change: OnceLock::new(),
        }
    }

    /// Registers what to tell when the newest credentials change (once).
    #[cfg(feature = "mysql")]
    pub fn on_change(&self, f: Tell) {
        let _ = self.on_change.set(f);
    }

    /// `base` with `used`'s credentials, or `base` itself when none of ours applied.
    #[cfg(feature = "postgres")]
    pub fn with<O: LoginOptions>(&self, base: &O, used: Option<&Resolved>) -> O {
        match used {
            Some(r) => base.logged_in(r),
            None => base.clone(),
        }
    }

    /// Whether every connection's password comes from our sources (not the URL's).
    pub fn replaces_password(&self) -> bool {
        self.active()
    }

    /// Whether connections need anything beyond the driver's options as parsed.
    fn active(&self) -> bool {
        self.secrets.is_configured() && (!self.url_password || self.secrets.has_provider())
    }

    /// `base` with the credentials the last connection logged in with (`base` itself before
    /// any): for a connection the driver opens by itself.
    pub fn current<O: LoginOptions>(&self, base: &O) -> O {
        if !self.active() {
            return base.clone();
        }
        // Before any connection: no password rather than the stand-in the options carry.
        let last = self
            .last
            .lock()
            .ok()
            .and_then(|l| l.as_ref().map(|(_, r)| r.clone()));
        base.logged_in(&last.unwrap_or_default())
    }

    /// `base` with the credentials read now, or the last ones if the sources fail (a reader
    /// with nothing to wait on, for a connection opened without the pool's bound).
    async fn options<O: LoginOptions>(
        &self,
        base: &O,
        host: Option<&str>,
        fresh: bool,
        bound: Duration,
    ) -> Result<(O, Resolved), sqlx::Error> {
        let request = CredentialsRequest {
            backend: O::BACKEND,
            host: host.unwrap_or(base.host()),
            port: base.port(),
            database: base.database(),
            user: base.user(),
            refused: fresh,
        };
        let r = self
            .secrets
            .resolve(&request, self.url_password, fresh, bound)
            .await
            .map_err(secret_error)?;
        Ok((base.logged_in(&r), r))
    }

    /// Opens one connection with `base`'s options and the credentials read now. A password
    /// refused (28P01, MySQL 1045) whose source may have changed since it was read is read
    /// again, and if it did change, the connection is tried once more: a rotation caught
    /// between the read and the server's check costs a round trip, not a failure. `host`:
    /// the host as the configuration names it (a socket directory, not the driver's stand-in
    /// for it), for passfile lines and providers.
    pub async fn connect<O: LoginOptions>(
        &self,
        base: &O,
        host: Option<&str>,
        bound: Duration,
    ) -> Result<(O::Connection, LoggedIn), sqlx::Error> {
        if !self.active() {
            return base.connect().await.map(|c| (c, LoggedIn::default()));
        }
        let started = Instant::now();
        let mut read = self.reads.fetch_add(1, Ordering::AcqRel);
        let (opts, used) = self.options(base, host, false, bound).await?;
        let (conn, used) = match opts.connect().await {
            Ok(c) => (c, used),
            Err(e) if refused(O::BACKEND, &e) && used.rereadable => {
                let left = bound.saturating_sub(started.elapsed());
                read = self.reads.fetch_add(1, Ordering::AcqRel);
                let Ok((again, fresh)) = self.options(base, host, true, left).await else {
                    return Err(annotate(O::BACKEND, e, &used));
                };
                if fresh == used {
                    return Err(annotate(O::BACKEND, e, &used));
                }
                tracing::info!(
                    source = used.source.as_deref().unwrap_or("url"),
                    "password refused; trying once more with the credentials read again"
                );
                match again.connect().await {
                    Ok(c) => (c, fresh),
                    Err(e) => return Err(annotate(O::BACKEND, e, &fresh)),
                }
            }
            Err(e) => return Err(annotate(O::BACKEND, e, &used)),
        };
        Ok((
            conn,
            LoggedIn {
                used: Some(used),
                read,
            },
        ))
    }

    /// Notes that a connection logged in with `logged_in` is kept (handed to the pool), not
    /// a check's or a cancel's: returns whether its credentials are now the newest and
    /// differ from the last kept (then the one-connection SeaORM pool is told). A slower
    /// connect that read before a rotation never replaces a newer read.
    pub fn note(&self, logged_in: &LoggedIn) -> bool {
        let Some(used) = &logged_in.used else {
            return false;
        };
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        let newer = last.as_ref().is_none_or(|(n, _)| *n < logged_in.read);
        let differs = last.as_ref().is_none_or(|(_, r)| r != used);
        if newer {
            *last = Some((logged_in.read, used.clone()));
        }
        let newest = newer && differs;
        // Told under the lock: two notes cannot reach the pool in the other order. The hook
        // only swaps the pool's options (sqlx's lock, held for a clone), never comes back here.
        if newest && let Some(tell) = self.on_change.get() {
            tell(used);
        }
        newest
    }
}

/// The server refused the password: PostgreSQL's 28P01 (not 28000, a `pg_hba.conf`
/// rejection no password changes), MySQL's 1045 (reported by sqlx as SQLSTATE 28000).
pub(crate) fn refused(backend: &str, e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().is_some_and(|c| match backend {
            "mysql" => c == "28000",
            _ => c == "28P01",
        }),
        _ => false,
    }
}

/// A refusal of a password that came from a file or a provider, named by that source.
fn annotate(backend: &str, e: sqlx::Error, used: &Resolved) -> sqlx::Error {
    match (&used.source, &e) {
        (Some(source), sqlx::Error::Database(db)) if refused(backend, &e) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            sqlx::Error::Io(std::io::Error::other(Refused {
                message: format!("{} (SQLSTATE {code}; password from {source})", db.message()),
            }))
        }
        _ => e,
    }
}

/// Whether `e` is one of ours (a refusal named by its source, a source that failed): its
/// text is the whole story, not a network failure.
pub(crate) fn is_login_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|e| e.is::<Refused>() || e.is::<SecretError>())
}

/// A source that could not be read, as a connect failure (transient when a provider may
/// answer next time: see [`SecretError::is_transient`]).
fn secret_error(e: SecretError) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(e))
}
