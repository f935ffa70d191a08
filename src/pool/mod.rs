//! An endpoint's connection pool: sqlx's connections (`PgConnection`, `MySqlConnection`,
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

mod checkout;
mod conn;
mod context_plans;
mod effects;
mod exec;
mod holds;
#[cfg(feature = "postgres")]
mod host;
#[cfg(feature = "postgres")]
mod inline;
#[cfg(feature = "postgres")]
mod literal;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod login;
mod maintain;
mod manager;
mod op;
mod plans;
mod pooled;
mod raw;
mod reach;
#[cfg(feature = "postgres")]
mod role;
pub(crate) mod session_sql;
mod shared;
mod stale;
pub(crate) mod stream;
mod tidy;
#[cfg(feature = "postgres")]
mod topology;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deadpool::managed::{Pool as DeadPool, QueueMode, Timeouts};

use self::checkout::NOW;
use sea_orm::sqlx;

use self::holds::Holds;
pub(crate) use self::holds::Site;
#[cfg(feature = "postgres")]
pub(crate) use self::host::Host;
#[cfg(feature = "postgres")]
pub(crate) use self::literal::text_literal;
pub(crate) use self::manager::{ConnectFailed, Connector, Manager};
pub(crate) use self::op::{Op, Output, unexpected};
pub(crate) use self::pooled::Pooled;
pub(crate) use self::raw::RawConn;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) use self::raw::close as close_raw;
use self::reach::Reachability;
pub(crate) use self::reach::{Failure, describe, is_transient_connect};
pub(crate) use self::shared::Shared;
use self::shared::{Limits, sqlite_in_memory, statement_mode};
pub(crate) use self::stream::RowStream;
#[cfg(feature = "postgres")]
pub(crate) use self::topology::Topology;
use crate::classify::{AcquireError, acquire_failed};
use crate::config::{ConfigError, DbConfig};
use crate::observe::Instruments;
use crate::tasks::Tasks;

/// The service's pool.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pool: DeadPool<Manager>,
    shared: Arc<Shared>,
}

impl Pool {
    /// Builds the pool (no I/O) and starts its maintenance task on the service's runtime.
    pub fn new(
        config: &DbConfig,
        connector: Connector,
        instruments: Arc<Instruments>,
        tasks: Arc<Tasks>,
        node: crate::trace::spans::Node,
    ) -> Result<Self, ConfigError> {
        let p = config.pool();
        let limits = Limits::of(p);
        let shared = Arc::new(Shared {
            instruments,
            tasks,
            holds: Holds::default(),
            reach: Reachability::new(p.limits.fail_fast_after),
            closing: AtomicBool::new(false),
            in_memory: sqlite_in_memory(config, &connector),
            cancel_slots: Arc::new(tokio::sync::Semaphore::new(2)),
            mode: Arc::new(statement_mode(config)),
            plans: Arc::default(),
            context_prepare_off: Arc::default(),
            config: config.clone(),
            probing: AtomicBool::new(false),
            connector: connector.clone(),
            maintain_now: Arc::default(),
            generation: Default::default(),
            trace: crate::trace::spans::PoolAttrs::new(config, node),
            name: std::sync::OnceLock::new(),
            limits,
        });
        let manager = Manager {
            connector,
            shared: shared.clone(),
        };
        let max = usize::try_from(p.limits.connection_limit).unwrap_or(usize::MAX);
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

    /// Opens one connection outside the pool and closes it again, returning the real cause
    /// of a failure at once (the startup loop and the saturated readiness check need it).
    pub async fn connect_direct(&self) -> Result<(), sqlx::Error> {
        let opened = match self.shared.open_checked().await {
            Ok(opened) => opened,
            Err(ConnectFailed::Driver(e)) => {
                // A refusal for want of a slot is news about the server (it is full, not
                // down); other failures here are the caller's to report, not counted.
                if Failure::of(&e) == Failure::Full {
                    let reach = &self.shared.reach;
                    let _ = reach.failed(&self.shared.describe(&e), Failure::Full, reach.stamp());
                }
                return Err(e);
            }
            Err(ConnectFailed::TimedOut(bound)) => {
                return Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within connect_timeout ({bound:?})"),
                )));
            }
        };
        self.shared.reach.connected();
        raw::close(opened.raw, self.shared.limits.ping_timeout).await;
        Ok(())
    }

    /// The longest one new connection may take: `connect_timeout` for each host it may try.
    pub fn connect_bound(&self) -> Duration {
        self.shared
            .connector
            .connect_bound(self.shared.limits.connect_timeout)
    }

    /// Where connections go (PostgreSQL): the hosts as last found.
    pub fn hosts(&self) -> Option<crate::stats::HostsReport> {
        #[cfg(feature = "postgres")]
        if let Some(t) = self.shared.connector.topology() {
            return Some(t.report());
        }
        None
    }

    /// Leaves `host` (a replica found promoted on it): its connections close and new ones go
    /// to the other hosts. Only where `target_session_attrs` demands a standby or a read-only
    /// session (`prefer-standby` takes a primary when no standby answers, and `any` anything,
    /// so leaving would only close and reopen the same connections at every check).
    pub fn leave_host(&self, host: usize, why: &str) {
        #[cfg(feature = "postgres")]
        if let Some(t) = self.shared.connector.topology()
            && matches!(
                t.attrs,
                crate::config::TargetSessionAttrs::Standby
                    | crate::config::TargetSessionAttrs::ReadOnly
            )
            && t.mark(host, why)
        {
            self.shared.maintain_now.notify_one();
        }
        let _ = (host, why);
    }

    /// Closes every connection opened so far: idle ones now (the maintenance task is woken),
    /// busy ones when they come back; connections opened from here on stay. For a credential
    /// revoked or rotated that must stop being used before connections end by themselves.
    pub fn soft_evict(&self) {
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        self.shared.maintain_now.notify_one();
        #[cfg(feature = "postgres")]
        if let Some(t) = self.shared.connector.topology() {
            t.refollow();
        }
    }

    /// Times the pool moved to another host or lost the one it was on.
    pub fn topology_changes(&self) -> u64 {
        #[cfg(feature = "postgres")]
        if let Some(t) = self.shared.connector.topology() {
            return t.changes.load(Ordering::Relaxed);
        }
        0
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
