//! Whether the database is known to be down, or only full: consecutive connect failures, the
//! last cause, the fail-fast state that spares waiters a `pool_timeout` each while it lasts,
//! and the saturated-server state, in which the server answers but has no slot left for a new
//! connection (it is up: the open connections keep serving and readiness holds); and the
//! scrubbed description of a failed connect that every report of it uses.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::sqlx;

use crate::classify::{AcquireError, is_server_full};
use crate::config::DbConfig;

/// How a connect attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No answer, refused, reset, or an error: counts towards `fail_fast_after`.
    Unreachable,
    /// The server answered that it has no connection slot left (53300, PgBouncer's
    /// `max_client_conn`, MySQL 1040): it is up, so this proves it reachable.
    Full,
    /// Every host answered or failed, and none matches what the pool needs (the writable
    /// server is gone): down at once, without waiting for `fail_fast_after` failures.
    Mismatch,
}

impl Failure {
    /// The kind of failure `err` is.
    pub fn of(err: &sqlx::Error) -> Self {
        if is_server_full(err) {
            Failure::Full
        } else if hosts_failed(err).is_some_and(|h| h.mismatch) {
            Failure::Mismatch
        } else {
            Failure::Unreachable
        }
    }
}

#[derive(Debug)]
pub(crate) struct Reachability {
    /// Failures in a row after which the database counts as down (0: never).
    threshold: u32,
    failures: AtomicU32,
    down: AtomicBool,
    /// The last connect attempt was refused for want of a slot (cleared by a connect).
    full: AtomicBool,
    last: Mutex<Option<(Instant, String, Failure)>>,
    /// Bumped by every connection opened: an attempt that began before the latest success
    /// and failed after it is stale news (the server was back in between).
    generation: AtomicU64,
}

/// The last connect failure.
#[derive(Debug, Clone)]
pub(crate) struct LastFailure {
    pub ago: Duration,
    pub cause: String,
    pub kind: Failure,
}

impl Reachability {
    pub fn new(threshold: u32) -> Self {
        Self {
            threshold,
            failures: AtomicU32::new(0),
            down: AtomicBool::new(false),
            full: AtomicBool::new(false),
            last: Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    /// The stamp a connect attempt takes when it begins, for [`Reachability::failed`].
    pub fn stamp(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A connection was opened: the database is up and has room.
    pub fn connected(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.failures.store(0, Ordering::Relaxed);
        // The hosts' own log lines tell of a server that stopped and started matching.
        let mismatch = self
            .last
            .lock()
            .ok()
            .is_some_and(|l| l.as_ref().is_some_and(|(_, _, k)| *k == Failure::Mismatch));
        if self.down.swap(false, Ordering::AcqRel) && !mismatch {
            tracing::info!("database reachable again; callers wait for connections as usual");
        }
        if self.full.swap(false, Ordering::AcqRel) {
            tracing::info!("database server accepts new connections again");
        }
    }

    /// A connection attempt failed with `cause`; returns true when this failure marks the
    /// database down (the caller then starts the background probe). A server that refused for
    /// want of a slot answered, so that ends a run of failures instead of adding to it. An
    /// attempt stamped before a connection was opened since (a reset that outlived the
    /// recovery) is ignored: it must not mark a pool down that the probe has just found up.
    pub fn failed(&self, cause: &str, kind: Failure, stamp: u64) -> bool {
        if kind != Failure::Full && stamp != self.stamp() {
            return false;
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some((Instant::now(), cause.to_owned(), kind));
        }
        if kind == Failure::Full {
            self.failures.store(0, Ordering::Relaxed);
            if self.down.swap(false, Ordering::AcqRel) {
                tracing::info!("database reachable again (but full)");
            }
            if !self.full.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    cause = %cause,
                    "database server full: it refused a new connection; serving on the open \
                     connections, readiness holds"
                );
            }
            return false;
        }
        self.full.store(false, Ordering::Release);
        let n = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if self.threshold == 0 || (n < self.threshold && kind != Failure::Mismatch) {
            return false;
        }
        let became = !self.down.swap(true, Ordering::AcqRel);
        if became && kind != Failure::Mismatch {
            tracing::error!(
                failures = n,
                cause = %cause,
                "database unreachable; failing callers fast until a background probe connects"
            );
        }
        became
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// The last connect attempt was refused for want of a slot, with that refusal.
    pub fn full(&self) -> Option<LastFailure> {
        if !self.full.load(Ordering::Acquire) {
            return None;
        }
        self.last_failure().filter(|l| l.kind == Failure::Full)
    }

    pub fn last_failure(&self) -> Option<LastFailure> {
        self.last.lock().ok().and_then(|l| {
            l.as_ref().map(|(at, cause, kind)| LastFailure {
                ago: at.elapsed(),
                cause: cause.clone(),
                kind: *kind,
            })
        })
    }

    /// The last failure if it happened within `window` (it explains a wait that long).
    pub fn failed_within(&self, window: Duration) -> Option<LastFailure> {
        self.last_failure().filter(|f| f.ago <= window)
    }

    /// Why a caller who waited `waited` got no connection, by the last connect failure: the
    /// server full, or unreachable (`fail_fast`: failed at once while known down).
    pub fn no_connection(&self, waited: Duration, fail_fast: bool) -> AcquireError {
        match self.last_failure() {
            Some(l) if l.kind == Failure::Full => AcquireError::ServerFull {
                waited,
                ago: l.ago,
                cause: l.cause,
            },
            last => AcquireError::Unreachable {
                waited,
                fail_fast,
                ago: last.as_ref().map_or(Duration::ZERO, |l| l.ago),
                cause: last.map_or_else(|| "unknown".to_owned(), |l| l.cause),
            },
        }
    }
}

/// Why no host gave a connection: one cause per host tried, and whether any of them answered
/// but did not match (then the database is there, only not what the pool needs).
#[derive(Debug, thiserror::Error)]
#[error("{summary}")]
pub(crate) struct HostsFailed {
    pub summary: String,
    pub mismatch: bool,
    pub transient: bool,
}

/// The failure of every host of a multi-host connect, if that is what `err` is.
fn hosts_failed(err: &sqlx::Error) -> Option<&HostsFailed> {
    match err {
        sqlx::Error::Io(e) => e.get_ref().and_then(|i| i.downcast_ref::<HostsFailed>()),
        _ => None,
    }
}

/// Whether retrying a failed connect may succeed (see [`crate::classify::is_transient`]); a
/// multi-host connect is transient if any of its hosts' failures was.
pub(crate) fn is_transient_connect(err: &sqlx::Error) -> bool {
    match hosts_failed(err) {
        Some(h) => h.transient,
        None => crate::classify::is_transient(err),
    }
}

/// Describes a driver error of a host the caller names (no host in the text), scrubbed.
pub(crate) fn describe_bare(config: &DbConfig, err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Io(e) if hosts_failed(err).is_none() => config.scrub(&e.to_string()),
        _ => describe(config, err),
    }
}

/// Describes a driver error with its SQLSTATE, scrubbed of the URL's secrets.
pub(crate) fn describe(config: &DbConfig, err: &sqlx::Error) -> String {
    if let Some(h) = hosts_failed(err) {
        return config.scrub(&h.summary);
    }
    let text = match err {
        #[cfg(any(feature = "postgres", feature = "mysql"))]
        sqlx::Error::Io(e) if super::login::is_login_error(e) => e.to_string(),
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        sqlx::Error::Io(e) => {
            let u = url::Url::parse(config.driver_url()).ok();
            let host = u
                .as_ref()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default();
            let port = u
                .as_ref()
                .and_then(url::Url::port)
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            format!("cannot reach {host}{port}: {e}")
        }
        sqlx::Error::Tls(e) => match config.tls() {
            Some(tls) => format!(
                "TLS failed: {e} (sslmode={}, from {})",
                tls.mode, tls.source
            ),
            None => format!("TLS failed: {e}"),
        },
        other => other.to_string(),
    };
    config.scrub(&text)
}
