//! The service's own connection pool: sqlx's connections (`PgConnection`, `MySqlConnection`,
//! `SqliteConnection`) handed out by `deadpool::managed`, with our rules for check-in,
//! checkout, retirement and diagnostics.
//!
//! - **Check-in costs nothing** for a connection whose last statement completed outside a
//!   transaction (sqlx's own pool pings every returned connection). Anything else is marked
//!   *suspect* ([`Conn::suspect`]) and gets one bounded round trip at its next checkout that
//!   proves it is outside a transaction, or it is closed.
//! - **One queue**: deadpool's fair semaphore is where callers wait; `pool_timeout` bounds the
//!   whole checkout (waiting, opening, checking) once.
//! - **Retirement**: `idle_timeout` and `min_connections` in a maintenance task; `max_lifetime`
//!   and `max_uses` (both jittered per connection) at check-in and checkout; every close is
//!   counted by reason.
//! - **Diagnostics**: creation and hold times, leak detection, and a timeout that says whether
//!   the pool was saturated or the database unreachable; fail-fast while it is known down.

mod conn;
mod effects;
mod exec;
mod holds;
#[cfg(feature = "postgres")]
mod inline;
mod maintain;
mod manager;
mod plans;
mod pooled;
mod reach;
pub(crate) mod stream;
mod tidy;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use deadpool::managed::{Pool as DeadPool, PoolError, QueueMode, Timeouts};
use sea_orm::sqlx;

pub use self::conn::CloseReason;
pub(crate) use self::conn::RawConn;
pub(crate) use self::exec::{Op, Output, session_prefix, unexpected};
use self::holds::Holds;
pub(crate) use self::holds::Site;
pub(crate) use self::manager::{Connector, Manager};
pub(crate) use self::pooled::Pooled;
pub(crate) use self::reach::Failure;
use self::reach::Reachability;
pub(crate) use self::stream::RowStream;
use crate::classify::{AcquireError, acquire_failed};
use crate::config::{ConfigError, DbConfig, PoolOptions};
use crate::observe::Instruments;
use crate::service::Tasks;

/// A checkout that does not wait in the queue.
const NOW: Timeouts = Timeouts {
    wait: Some(Duration::ZERO),
    create: None,
    recycle: None,
};

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
    fn of(p: &PoolOptions) -> Self {
        Self {
            max: p.connection_limit,
            min: p.min_connections,
            pool_timeout: p.pool_timeout,
            connect_timeout: p.connect_timeout,
            idle_timeout: p.idle_timeout,
            max_lifetime: p.max_lifetime,
            max_uses: p.max_uses,
            ping_after_idle: p.ping_after_idle,
            keepalive_idle: p.keepalive.then_some(p.keepalive_idle),
            ping_timeout: p.ping_timeout,
            leak_detection_threshold: p.leak_detection_threshold,
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
    pub mode: Arc<exec::Mode>,
    /// Stale-statement events (see [`plans`]): outdates every connection's statement cache.
    pub plans: Arc<plans::PlanEpoch>,
    config: DbConfig,
    probing: AtomicBool,
    connector: Connector,
}

impl Shared {
    pub fn describe(&self, e: &sqlx::Error) -> String {
        crate::service::describe(&self.config, e)
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
                        exec::close(raw, shared.limits.ping_timeout).await;
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
fn sqlite_in_memory(config: &DbConfig, connector: &Connector) -> bool {
    // Irrefutable in a SQLite-only build.
    #[allow(irrefutable_let_patterns)]
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

/// Without the SQLite driver there is no in-memory database to keep.
#[cfg(not(feature = "sqlite"))]
fn sqlite_in_memory(_: &DbConfig, _: &Connector) -> bool {
    false
}

/// How this configuration's statements reach the server.
fn statement_mode(config: &DbConfig) -> exec::Mode {
    let p = config.pool();
    if config.backend() != crate::config::Backend::Postgres {
        exec::Mode::Prepared
    } else if p.pgbouncer {
        exec::Mode::Inline {
            prefix: exec::session_prefix(p),
        }
    } else if p.statement_cache_size == Some(0) {
        exec::Mode::Unnamed
    } else {
        exec::Mode::Prepared
    }
}

/// The service's pool.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pool: DeadPool<Manager>,
    shared: Arc<Shared>,
}

/// Counts a waiter until dropped (also when the waiting caller is cancelled), and records how
/// long it waited.
struct Waiting<'a> {
    instruments: &'a Instruments,
    since: Instant,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.instruments.waiting.fetch_sub(1, Ordering::Relaxed);
        self.instruments.on_wait(self.since.elapsed());
    }
}

impl Pool {
    /// Builds the pool (no I/O) and starts its maintenance task on the service's runtime.
    pub fn new(
        config: &DbConfig,
        connector: Connector,
        instruments: Arc<Instruments>,
        tasks: Arc<Tasks>,
    ) -> Result<Self, ConfigError> {
        let p = config.pool();
        let limits = Limits::of(p);
        let shared = Arc::new(Shared {
            instruments,
            tasks,
            holds: Holds::default(),
            reach: Reachability::new(p.fail_fast_after),
            closing: AtomicBool::new(false),
            in_memory: sqlite_in_memory(config, &connector),
            cancel_slots: Arc::new(tokio::sync::Semaphore::new(2)),
            mode: Arc::new(statement_mode(config)),
            plans: Arc::default(),
            config: config.clone(),
            probing: AtomicBool::new(false),
            connector: connector.clone(),
            limits,
        });
        let manager = Manager {
            connector,
            shared: shared.clone(),
        };
        let max = usize::try_from(p.connection_limit).unwrap_or(usize::MAX);
        // Our own bounds apply (pool_timeout around the whole checkout, connect_timeout inside
        // `create`, ping_timeout inside `recycle`); deadpool's would only duplicate them.
        let pool = DeadPool::builder(manager)
            .max_size(max)
            .queue_mode(QueueMode::Fifo)
            .timeouts(Timeouts::default())
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| ConfigError::Driver {
                url: config.redacted_url(),
                message: format!("the pool could not be built: {e}"),
            })?;
        let this = Self { pool, shared };
        maintain::start(&this);
        Ok(this)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// How this pool opens connections.
    pub fn connector(&self) -> &Connector {
        &self.shared.connector
    }

    /// Connections open (idle and checked out).
    pub fn size(&self) -> u32 {
        u32::try_from(self.pool.status().size).unwrap_or(u32::MAX)
    }

    /// Takes a connection: waits in the pool's one FIFO queue, at most `pool_timeout` (and at
    /// most `bound` if given), in all. While the database is known down (`fail_fast_after`
    /// connect failures in a row) a caller that finds no idle connection gets the cause at
    /// once instead of waiting.
    pub async fn acquire(
        &self,
        bound: Option<Duration>,
        site: Site,
    ) -> Result<Pooled, AcquireError> {
        self.acquire_logged(bound, site, true).await
    }

    /// [`acquire`](Self::acquire) without the WARN line on a timeout: for callers that have
    /// somewhere else to go (a read that falls back from a replica to the primary).
    pub async fn acquire_quiet(&self, bound: Option<Duration>) -> Result<Pooled, AcquireError> {
        self.acquire_logged(bound, None, false).await
    }

    async fn acquire_logged(
        &self,
        bound: Option<Duration>,
        site: Site,
        warn: bool,
    ) -> Result<Pooled, AcquireError> {
        let limit = match (self.shared.limits.pool_timeout, bound) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let ins = &self.shared.instruments;
        let started = Instant::now();
        ins.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting {
            instruments: ins,
            since: started,
        };
        // Fast path: a connection free now. No waiter can be passed over: the pool's
        // semaphore hands a returned permit straight to the first waiter. Taking it may still
        // cost a round trip (a ping after idle) or a connect, so the caller's bound applies
        // here too; a check dropped half-way closes its connection.
        if !self.shared.closing.load(Ordering::Acquire) && !self.shared.reach.is_down() {
            let mut now = std::pin::pin!(self.pool.timeout_get(&NOW));
            // Polled once first: a free connection that needs no round trip is ready at once,
            // and then no timer is made (dropping one takes tokio's timer-driver lock, which
            // every worker thread shares).
            let first = std::future::poll_fn(|cx| Poll::Ready(now.as_mut().poll(cx))).await;
            let got = match (first, limit) {
                (Poll::Ready(got), _) => got,
                (Poll::Pending, Some(l)) => {
                    let left = l.saturating_sub(started.elapsed());
                    match tokio::time::timeout(left, now).await {
                        Ok(got) => got,
                        Err(_) => return Err(self.timed_out(started.elapsed(), warn)),
                    }
                }
                (Poll::Pending, None) => now.await,
            };
            match got {
                Ok(obj) => return Ok(Pooled::new(obj, site, Instant::now(), &self.shared)),
                Err(PoolError::Closed) => return Err(AcquireError::Closed),
                // None free (or opening one failed): wait in the queue below.
                Err(_) => {}
            }
        }
        let mut retry = Duration::from_millis(20);
        loop {
            if self.shared.closing.load(Ordering::Acquire) {
                return Err(AcquireError::Closed);
            }
            if self.shared.reach.is_down() && self.pool.status().available == 0 {
                return Err(self.unreachable(started.elapsed(), true, warn));
            }
            let remaining = limit.map(|l| l.saturating_sub(started.elapsed()));
            if remaining.is_some_and(|r| r.is_zero()) {
                return Err(self.timed_out(started.elapsed(), warn));
            }
            let got = match remaining {
                Some(r) => match tokio::time::timeout(r, self.pool.get()).await {
                    Ok(got) => got,
                    Err(_) => return Err(self.timed_out(started.elapsed(), warn)),
                },
                None => self.pool.get().await,
            };
            match got {
                Ok(obj) => return Ok(Pooled::new(obj, site, Instant::now(), &self.shared)),
                Err(PoolError::Closed) => return Err(AcquireError::Closed),
                // A connect failed (recorded by the manager): try again until the bound, as
                // a database restarting for a second should cost a wait, not an error.
                Err(_) => {
                    let pause = remaining.map_or(retry, |r| r.min(retry));
                    tokio::time::sleep(pause).await;
                    retry = (retry * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    fn unreachable(&self, waited: Duration, fail_fast: bool, warn: bool) -> AcquireError {
        let e = self.shared.reach.no_connection(waited, fail_fast);
        if warn && !fail_fast {
            tracing::warn!(error = %e, "pool timeout");
        }
        e
    }

    /// Why a wait of `waited` ended without a connection: the database failed to connect
    /// during it, or every connection was busy.
    fn timed_out(&self, waited: Duration, warn: bool) -> AcquireError {
        if self.shared.reach.failed_within(waited).is_some() {
            return self.unreachable(waited, false, warn);
        }
        let status = self.pool.status();
        let longest = self.shared.holds.longest();
        let e = AcquireError::Saturated {
            waited,
            busy: u32::try_from(
                self.shared
                    .instruments
                    .active
                    .load(Ordering::Relaxed)
                    .max(0),
            )
            .unwrap_or(0),
            max: self.shared.limits.max,
            waiting: u64::try_from(status.waiting).unwrap_or(0),
            longest_hold: longest.map(|l| l.held),
            held_at: longest.map(|l| holds::describe_site(l.site)),
        };
        if warn {
            tracing::warn!(error = %e, "pool timeout");
        }
        e
    }

    /// A connection if one can be had without waiting in the queue.
    pub async fn try_acquire(&self) -> Option<Pooled> {
        if self.shared.closing.load(Ordering::Acquire) {
            return None;
        }
        let bound = self.shared.limits.connect_timeout;
        match tokio::time::timeout(bound, self.pool.timeout_get(&NOW)).await {
            Ok(Ok(obj)) => Some(Pooled::new(obj, None, Instant::now(), &self.shared)),
            _ => None,
        }
    }

    /// Opens one connection outside the pool and closes it again, returning the real cause
    /// of a failure at once (the startup loop and the saturated readiness check need it).
    pub async fn connect_direct(&self) -> Result<(), sqlx::Error> {
        let raw = match self.shared.connector.open().await {
            Ok(raw) => raw,
            Err(e) => {
                // A refusal for want of a slot is news about the server (it is full, not
                // down); other failures here are the caller's to report, not counted.
                if Failure::of(&e) == Failure::Full {
                    let _ = self
                        .shared
                        .reach
                        .failed(&self.shared.describe(&e), Failure::Full);
                }
                return Err(e);
            }
        };
        self.shared.reach.connected();
        exec::close(raw, self.shared.limits.ping_timeout).await;
        Ok(())
    }

    /// Whether the database is known down, and the last cause.
    pub fn down(&self) -> Option<String> {
        if !self.shared.reach.is_down() {
            return None;
        }
        self.shared.reach.last_failure().map(|l| {
            format!(
                "database unreachable: last connect failed {} ms ago: {}",
                l.ago.as_millis(),
                l.cause
            )
        })
    }

    /// Whether the server refused this pool's last connect attempt for want of a slot (it is
    /// full, not down), and that refusal; cleared by the next connection opened.
    pub fn server_full(&self) -> Option<String> {
        self.shared.reach.full().map(|l| {
            format!(
                "database server full: it refused a new connection {} ms ago: {}",
                l.ago.as_millis(),
                l.cause
            )
        })
    }

    /// Closes the pool: refuses new checkouts at once, closes the idle connections politely,
    /// and waits at most `bound` for the checked-out ones to come back (they are closed then).
    /// Returns whether every connection was closed in time.
    pub async fn close(&self, bound: Duration) -> bool {
        let started = Instant::now();
        self.shared.closing.store(true, Ordering::Release);
        // Idle connections leave through the manager's `detach`, which says goodbye politely.
        drop(self.pool.retain(|_, _| false));
        self.pool.close();
        loop {
            if self.pool.status().size == 0 {
                return true;
            }
            if started.elapsed() >= bound {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Maps a failed checkout to SeaORM's error type (see [`AcquireError`]).
pub(crate) fn to_db_err(e: AcquireError) -> sea_orm::DbErr {
    acquire_failed(e)
}
