//! What the pool, its manager and its connections share: the limits copied out of the
//! configuration, the instruments, the reachability of the server and its background probe,
//! and how statements reach the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sea_orm::sqlx;

use super::conn::Conn;
use super::holds::Holds;
use super::manager::{ConnectFailed, Connector};
use super::raw::Opened;
use super::reach::{Failure, Reachability, describe};
use super::{op, plans, raw, session_sql};
use crate::config::{DbConfig, PoolOptions};
use crate::observe::Instruments;
use crate::tasks::Tasks;

/// sqlx's statement cache per connection when `statement_cache_size` is unset (its
/// `PgConnectOptions` default), which the context's prepared statements follow too.
const DRIVER_STATEMENT_CACHE: usize = 100;

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
    /// `statement_cache_size` (100 when unset, sqlx's default): also the bound on the
    /// statements each connection prepares for session contexts.
    pub statement_cache: usize,
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
            statement_cache: p
                .session
                .statement_cache_size
                .unwrap_or(DRIVER_STATEMENT_CACHE),
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
    /// Context statements are sent inlined on every connection: a statement a connection had
    /// just prepared was not on the session that ran it (see [`super::context_plans`]).
    pub context_prepare_off: Arc<AtomicBool>,
    pub(super) config: DbConfig,
    pub(super) probing: AtomicBool,
    pub(super) connector: Connector,
    /// Wakes the maintenance task at once (a host was marked: close its idle connections).
    pub(super) maintain_now: Arc<tokio::sync::Notify>,
    /// Bumped by [`soft_evict`](super::Pool::soft_evict): connections whose opening began
    /// before are closed (idle ones at once, busy ones at check-in).
    pub(super) generation: std::sync::atomic::AtomicU64,
    /// What every span of this pool carries (see [`crate::trace`]).
    pub trace: crate::trace::spans::PoolAttrs,
    /// The pool's name (`primary`, a named pool's, `replica_1`), for wait spans.
    pub name: std::sync::OnceLock<String>,
}

impl Shared {
    pub fn describe(&self, e: &sqlx::Error) -> String {
        describe(&self.config, e)
    }

    /// [`describe`](Self::describe) for an error of a host the caller names itself.
    pub fn describe_bare(&self, e: &sqlx::Error) -> String {
        super::reach::describe_bare(&self.config, e)
    }

    /// Whether `conn`'s host was marked since it was opened (a failover, a server turned
    /// read-only): it is closed rather than handed out or taken back.
    pub fn host_left(&self, conn: &Conn) -> bool {
        #[cfg(feature = "postgres")]
        if let Some(t) = self.connector.topology() {
            return !t.current_epoch(conn.host, conn.epoch);
        }
        let _ = conn;
        false
    }

    /// Whether `conn` began opening before the latest soft eviction.
    pub fn evicted(&self, conn: &Conn) -> bool {
        conn.generation < self.generation.load(Ordering::Acquire)
    }

    /// A write on `conn`'s host was refused as read-only (25006). On a pool that writes, a
    /// connection of its own checks the host in the background; if it is read-only for every
    /// session (a standby, an old primary, `default_transaction_read_only`), the host is
    /// marked: its connections close and new ones go to the other hosts (or wait for this one
    /// to accept writes again).
    ///
    /// Returns whether this pool writes (then the refusing connection is closed when it comes
    /// back: the server behind it may not be the writable one any more).
    pub fn write_refused(self: &Arc<Self>, conn: &Conn) -> bool {
        #[cfg(feature = "postgres")]
        if let Some(t) = self.connector.topology()
            && t.wants_writes
        {
            if t.needs_verify(conn.host) && !self.closing.load(Ordering::Acquire) {
                self.verify_host(t, conn.host);
            }
            return true;
        }
        let _ = conn;
        false
    }

    /// Checks `host` on a connection of its own after a refused write, in the background.
    #[cfg(feature = "postgres")]
    fn verify_host(self: &Arc<Self>, t: &Arc<super::Topology>, host: usize) {
        {
            let (shared, topology) = (self.clone(), t.clone());
            self.tasks.spawn(async move {
                let Some(_claim) = topology.claim_verify(host) else {
                    return;
                };
                // Another check may have just ended (queued behind the same claim).
                if !topology.needs_verify(host) {
                    return;
                }
                let bound = shared.limits.connect_timeout;
                let Some(role) = topology.read_only_now(host, bound).await else {
                    return;
                };
                let why = if role.in_recovery {
                    "is in hot standby mode"
                } else if role.read_only {
                    "is read-only"
                } else {
                    // The caller's own `SET TRANSACTION READ ONLY`, or the name leads to
                    // another server now: the host is fine (the refusing connection closes).
                    topology.verified(host);
                    return;
                };
                shared.leave_host(host, why).await;
            });
        }
    }

    /// Marks `host` as no longer matching (see [`super::topology::Topology::mark`]), wakes the
    /// maintenance task to close its idle connections, and opens one connection the pool's
    /// way at once, so that readiness and callers learn whether the pool has anywhere to go
    /// without waiting for a caller's connect.
    #[cfg(feature = "postgres")]
    pub(super) async fn leave_host(self: &Arc<Self>, host: usize, why: &str) {
        let Some(topology) = self.connector.topology() else {
            return;
        };
        if self.closing.load(Ordering::Acquire) || !topology.mark(host, why) {
            return;
        }
        self.maintain_now.notify_one();
        let stamp = self.reach.stamp();
        if let Err((cause, kind)) = self.reconnect().await {
            self.connect_failed(&cause, kind, stamp);
        }
    }

    /// Opens one connection the pool's way and closes it again: the database is reachable
    /// (noted), or the failure's cause and kind for the caller to record.
    async fn reconnect(&self) -> Result<(), (String, Failure)> {
        match self.open_checked().await {
            Ok(opened) => {
                raw::close(opened.raw, self.limits.ping_timeout).await;
                self.reach.connected();
                Ok(())
            }
            Err(ConnectFailed::Driver(e)) => Err((self.describe(&e), Failure::of(&e))),
            Err(ConnectFailed::TimedOut(bound)) => Err((
                format!("no connection within connect_timeout ({bound:?})"),
                Failure::Unreachable,
            )),
        }
    }

    /// A connection attempt failed: note it, and start the background probe when this makes
    /// the database count as down.
    /// `stamp` is [`Reachability::stamp`](super::reach::Reachability::stamp) taken when the
    /// attempt began.
    pub fn connect_failed(self: &Arc<Self>, cause: &str, kind: Failure, stamp: u64) {
        self.instruments.connection_failed();
        if self.reach.failed(cause, kind, stamp) {
            self.start_probe();
        }
    }

    /// Opens one connection as the pool would (every host tried and checked), outside it.
    pub(super) async fn open_checked(&self) -> Result<Opened, ConnectFailed> {
        let inline = matches!(*self.mode, op::Mode::Inline { .. });
        let scrub = |e: &sqlx::Error| self.describe_bare(e);
        let bound = self.connector.connect_bound(self.limits.connect_timeout);
        let connecting = self
            .connector
            .connect(self.limits.connect_timeout, inline, &scrub);
        match tokio::time::timeout(bound, connecting).await {
            Ok(r) => r,
            Err(_) => Err(ConnectFailed::TimedOut(bound)),
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
                // Often enough that writes come back within seconds of a failover.
                .with_max_delay(Duration::from_secs(1))
                .with_jitter()
                .without_max_times()
                .build();
            loop {
                if !shared.reach.is_down() || shared.closing.load(Ordering::Acquire) {
                    shared.probing.store(false, Ordering::Release);
                    // A failure that marked the pool down between the check above and the
                    // store found `probing` set and started nothing: take it on.
                    if !shared.reach.is_down()
                        || shared.closing.load(Ordering::Acquire)
                        || shared.probing.swap(true, Ordering::AcqRel)
                    {
                        return;
                    }
                }
                let delay = delays.next().unwrap_or(Duration::from_secs(1));
                tokio::time::sleep(delay).await;
                // Recorded without starting another probe: this one goes on.
                let stamp = shared.reach.stamp();
                if let Err((cause, kind)) = shared.reconnect().await {
                    let _ = shared.reach.failed(&cause, kind, stamp);
                }
            }
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
