//! What the pool, its manager and its connections share: the limits copied out of the
//! configuration, the instruments, the reachability of the server and its background probe,
//! and how statements reach the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sea_orm::sqlx;

use super::holds::Holds;
use super::manager::Connector;
use super::reach::{Failure, Reachability, describe};
use super::{op, plans, raw, session_sql};
use crate::config::{DbConfig, PoolOptions};
use crate::observe::Instruments;
use crate::tasks::Tasks;

/// The pool parameters the hand-out needs, copied out of [`PoolOptions`].
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max: u32,
    pub min: u32,
    pub pool_timeout: Option<Duration>,
    pub connect_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    pub max_lifetime: Option<Duration>,
    pub max_uses: Option<u64>,
    pub ping_after_idle: Duration,
    /// `keepalive_idle` when `keepalive` is on.
    pub keepalive_idle: Option<Duration>,
    pub ping_timeout: Duration,
    pub leak_detection_threshold: Option<Duration>,
}

impl Limits {
    pub(super) fn of(p: &PoolOptions) -> Self {
        Self {
            max: p.limits.connection_limit,
            min: p.limits.min_connections,
            pool_timeout: p.limits.pool_timeout,
            connect_timeout: p.limits.connect_timeout,
            idle_timeout: p.limits.idle_timeout,
            max_lifetime: p.limits.max_lifetime,
            max_uses: p.limits.max_uses,
            ping_after_idle: p.limits.ping_after_idle,
            keepalive_idle: p.limits.keepalive.then_some(p.limits.keepalive_idle),
            ping_timeout: p.limits.ping_timeout,
            leak_detection_threshold: p.limits.leak_detection_threshold,
        }
    }
}

/// What the pool, its manager and its connections share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub instruments: Arc<Instruments>,
    pub tasks: Arc<Tasks>,
    pub limits: Limits,
    pub holds: Holds,
    pub reach: Reachability,
    pub closing: AtomicBool,
    /// An in-memory SQLite database, which closing every connection would lose.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub in_memory: bool,
    /// Cancels under way (each holds a server connection of its own): at most two.
    pub cancel_slots: Arc<tokio::sync::Semaphore>,
    /// How statements are sent (PostgreSQL): prepared, unnamed, or inline for PgBouncer.
    pub mode: Arc<op::Mode>,
    /// Stale-statement events (see [`plans`]): outdates every connection's statement cache.
    pub plans: Arc<plans::PlanEpoch>,
    pub(super) config: DbConfig,
    pub(super) probing: AtomicBool,
    pub(super) connector: Connector,
}

impl Shared {
    pub fn describe(&self, e: &sqlx::Error) -> String {
        describe(&self.config, e)
    }

    /// A connection attempt failed: note it, and start the background probe when this makes
    /// the database count as down.
    pub fn connect_failed(self: &Arc<Self>, cause: &str, kind: Failure) {
        self.instruments.connection_failed();
        if self.reach.failed(cause, kind) {
            self.start_probe();
        }
    }

    fn start_probe(self: &Arc<Self>) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = self.clone();
        self.tasks.spawn(async move {
            use backon::BackoffBuilder;
            let mut delays = backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(5))
                .with_jitter()
                .without_max_times()
                .build();
            while shared.reach.is_down() && !shared.closing.load(Ordering::Acquire) {
                let delay = delays.next().unwrap_or(Duration::from_secs(5));
                tokio::time::sleep(delay).await;
                let bound = shared.limits.connect_timeout;
                match tokio::time::timeout(bound, shared.connector.open()).await {
                    Ok(Ok(raw)) => {
                        raw::close(raw, shared.limits.ping_timeout).await;
                        shared.reach.connected();
                    }
                    Ok(Err(e)) => {
                        let _ = shared.reach.failed(&shared.describe(&e), Failure::of(&e));
                    }
                    Err(_) => {
                        let _ = shared.reach.failed(
                            &format!("no connection within connect_timeout ({bound:?})"),
                            Failure::Unreachable,
                        );
                    }
                }
            }
            shared.probing.store(false, Ordering::Release);
        });
    }
}

/// Whether this is an in-memory SQLite database (`sqlite::memory:`, `mode=memory`), which
/// closing every connection would lose; a file whose path merely contains "memory" is not.
#[cfg(feature = "sqlite")]
#[allow(irrefutable_let_patterns)] // the only variant in a SQLite-only build
pub(super) fn sqlite_in_memory(config: &DbConfig, connector: &Connector) -> bool {
    let Connector::Sqlite(o) = connector else {
        return false;
    };
    // sqlx names `sqlite::memory:` databases `file:sqlx-in-memory-N`.
    o.get_filename()
        .to_string_lossy()
        .starts_with("file:sqlx-in-memory-")
        || config.driver_url().contains(":memory:")
        || config.driver_url().contains("mode=memory")
}

/// Without the SQLite driver there is no in-memory database to lose.
#[cfg(not(feature = "sqlite"))]
pub(super) fn sqlite_in_memory(_: &DbConfig, _: &Connector) -> bool {
    false
}

/// How this configuration's statements reach the server.
pub(super) fn statement_mode(config: &DbConfig) -> op::Mode {
    let p = config.pool();
    if config.backend() != crate::config::Backend::Postgres {
        op::Mode::Prepared
    } else if p.session.pgbouncer {
        op::Mode::Inline {
            prefix: session_sql::session_prefix(p),
        }
    } else if p.session.statement_cache_size == Some(0) {
        op::Mode::Unnamed
    } else {
        op::Mode::Prepared
    }
}
