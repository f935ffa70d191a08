//! [`Endpoint`]: one database server as the library reaches it: its configuration, its pool
//! and the SeaORM executor over it, its instruments and alerts, its life (connect with retry,
//! checks, close) and the tasks that must outlive their callers.
//!
//! A [`DbService`](crate::DbService) is a primary endpoint with its replicas (each an endpoint
//! of its own) and the service's readiness; a named pool is a service of its own. Nothing
//! here knows about replicas' rotation, transactions or migrations: they sit above.

mod build;
mod check;
mod conn;
mod connect;
#[cfg(feature = "postgres")]
mod hosts;
mod lifecycle;
mod position;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

pub(crate) use self::build::{Retire, find_writable, migration_connector, seaorm_connection};
pub use self::check::PingError;
pub(crate) use self::conn::connection_trait;
pub use self::conn::{DbConn, DbStream};
use self::lifecycle::Lifecycle;
pub use self::lifecycle::Phase;
pub use self::position::{BadPosition, WalPosition};
pub(crate) use self::position::{
    COMMIT_WITH_POSITION_SQL, CURRENT_POSITION_SQL, HighWater, position_in,
};
use crate::alerts::{AlertStatus, Alerts};
use crate::config::DbConfig;
use crate::error::Result;
use crate::observe::Instruments;
use crate::pool::Pool;
use crate::stats::{PoolStats, TxCounters};
use crate::tasks::Tasks;

/// The primary pool's name, and an endpoint's name in log lines until it is given another.
pub const PRIMARY: &str = "primary";

/// One database endpoint (the primary, a replica): its pool, the executor over it, its
/// statistics and alerts. Cheap to clone.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
}

struct Inner {
    conn: DbConn,
    instruments: Arc<Instruments>,
    pool: Pool,
    config: DbConfig,
    lifecycle: Lifecycle,
    last_error: Mutex<Option<LastError>>,
    tx: TxCounters,
    tasks: Arc<Tasks>,
    alerts: Alerts,
    /// The pool's name in logs (`primary`, a named pool's, `replica_1`).
    name: OnceLock<String>,
}

/// The most recent database error the service saw (redacted), for `/health/db`.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    /// The message, without secrets.
    pub message: String,
    /// When it happened.
    #[serde(with = "crate::time::rfc3339")]
    pub at: SystemTime,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name())
            .field("config", &self.inner.config)
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Builds the endpoint and its (lazy) pool on the current tokio runtime, which becomes its
    /// own (see [`Tasks`]). No I/O. `high_water`: the instance's write position, advanced by
    /// the executor after each write (a primary with replicas).
    ///
    /// `writes`: the endpoint takes writes (a primary), so a write refused as read-only marks
    /// its host; a replica's never does.
    pub(crate) fn new(
        config: DbConfig,
        high_water: Option<Arc<HighWater>>,
        writes: bool,
        secrets: &Arc<crate::secrets::Secrets>,
    ) -> Result<Self> {
        let p = config.pool();
        let instruments = Arc::new(
            Instruments::new(p.monitoring.slow_query_threshold)
                .with_statement_log(p.monitoring.log_statements)
                .with_backend(config.backend().dialect()),
        );
        let tasks = Tasks::current();
        let (pool, raw) = build::build(&config, &instruments, &tasks, writes, secrets)?;
        if let Some(warning) = config.tls_warning() {
            tracing::warn!("{warning}");
        }
        let backend = config.backend().dialect();
        let conn = DbConn::new(
            pool.clone(),
            raw,
            backend,
            p.deadlines.query_timeout,
            p.deadlines.stream_timeout,
            high_water,
            p.session.require_context,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                instruments,
                pool,
                config,
                lifecycle: Lifecycle::default(),
                last_error: Mutex::new(None),
                tx: TxCounters::default(),
                tasks,
                alerts: Alerts::default(),
                name: OnceLock::new(),
            }),
        })
    }

    /// The SeaORM executor over this endpoint's pool (see [`DbConn`]).
    pub fn conn(&self) -> &DbConn {
        &self.inner.conn
    }

    /// The pool's name in log lines (`primary` unless set).
    pub fn name(&self) -> &str {
        self.inner.name.get().map_or(PRIMARY, String::as_str)
    }

    /// Names the pool for log lines, once (later calls are ignored).
    pub fn set_name(&self, name: &str) {
        let _ = self.inner.name.set(name.to_owned());
        let _ = self.inner.pool.shared().name.set(name.to_owned());
    }

    /// The configuration in effect.
    pub fn config(&self) -> &DbConfig {
        &self.inner.config
    }

    /// Where the endpoint is in its life (starting, ready, draining, ...).
    pub fn phase(&self) -> Phase {
        self.inner.lifecycle.phase()
    }

    /// The emitted alerts' current state (see [`crate::alerts`]).
    pub fn alerts(&self) -> Vec<AlertStatus> {
        self.inner.alerts.status(self.inner.config.pool())
    }

    /// How often each alert was raised, by level: `(alert, level, count)`.
    pub(crate) fn alert_counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.inner.alerts.counts()
    }

    /// The most recent connection or health-check error, if any.
    pub fn last_error(&self) -> Option<LastError> {
        self.inner.last_error.lock().ok().and_then(|e| e.clone())
    }

    pub(crate) fn record_error(&self, message: &str) {
        if let Ok(mut slot) = self.inner.last_error.lock() {
            *slot = Some(LastError {
                message: message.to_owned(),
                at: SystemTime::now(),
            });
        }
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    pub(crate) fn instruments(&self) -> &Instruments {
        &self.inner.instruments
    }

    pub(crate) fn tx_counters(&self) -> &TxCounters {
        &self.inner.tx
    }

    /// Where work that must outlive its caller runs (see [`Tasks`]).
    pub(crate) fn tasks(&self) -> &Arc<Tasks> {
        &self.inner.tasks
    }

    /// Ready: from now on its alerts are watched (every second, while it stays ready).
    pub(crate) fn mark_ready(&self) {
        self.inner.lifecycle.mark_ready();
        tokio::spawn(watch_alerts(Arc::downgrade(&self.inner)));
    }

    /// The startup gave up: not ready, and it stays so.
    pub(crate) fn mark_failed(&self) {
        self.inner.lifecycle.mark_failed();
    }

    /// Shutting down: readiness fails from now on; the pool keeps serving in-flight work.
    pub(crate) fn mark_draining(&self) {
        self.inner.lifecycle.mark_draining();
    }

    /// Waits for the database (retrying transient failures with backoff, bounded by
    /// `connect_retry_timeout`), recording each failed attempt as the last error.
    pub(crate) async fn connect_with_retry(&self) -> Result<()> {
        let record = |msg: &str| self.record_error(msg);
        connect::connect_with_retry(&self.inner.pool, &self.inner.config, &record).await
    }

    /// Where this endpoint's connections go: its hosts and the one the pool is on
    /// (PostgreSQL; `None` for the other backends).
    pub fn hosts(&self) -> Option<crate::stats::HostsReport> {
        self.inner.pool.hosts()
    }

    /// Closes the connections opened so far: idle ones now, busy ones at check-in (see
    /// [`DbService::soft_evict`](crate::DbService::soft_evict)).
    pub fn soft_evict(&self) {
        tracing::info!(
            pool = %self.name(),
            "soft eviction: the connections opened so far close when idle or given back"
        );
        self.inner.pool.soft_evict();
    }

    /// A snapshot of the pool's connections.
    pub fn stats(&self) -> PoolStats {
        let open = self.inner.pool.size();
        let ins = &self.inner.instruments;
        let busy = u32::try_from(ins.active.load(Ordering::Relaxed).max(0))
            .unwrap_or(u32::MAX)
            .min(open);
        let cfg = self.inner.config.pool();
        let closed = ins.closed_counts();
        let queries_total = ins.statements.load(Ordering::Relaxed);
        let queries_failed = ins.statements_failed.load(Ordering::Relaxed);
        PoolStats {
            open,
            idle: open - busy,
            busy,
            max: cfg.limits.connection_limit,
            min: cfg.limits.min_connections,
            waiting: u64::try_from(ins.waiting.load(Ordering::Relaxed)).unwrap_or(0),
            active: u64::try_from(ins.active.load(Ordering::Relaxed)).unwrap_or(0),
            opened_total: ins.opened.load(Ordering::Relaxed),
            closed_total: closed.total(),
            closed,
            checkout_pings: ins.pings.load(Ordering::Relaxed),
            checkout_checks: ins.state_checks.load(Ordering::Relaxed),
            session_resets: ins.session_resets.load(Ordering::Relaxed),
            statements_cancelled: ins.cancels.load(Ordering::Relaxed),
            keepalive_pings: ins.keepalive_pings.load(Ordering::Relaxed),
            context_refused: ins.context_refused.load(Ordering::Relaxed),
            leaks: ins.leaks.load(Ordering::Relaxed),
            database_down: self.inner.pool.down().is_some(),
            topology_changes: self.inner.pool.topology_changes(),
            server_full: self.inner.pool.server_full().is_some(),
            queries_total,
            queries_failed,
            error_rate: if queries_total == 0 {
                0.0
            } else {
                queries_failed as f64 / queries_total as f64
            },
            uptime_seconds: ins.epoch.elapsed().as_secs_f64(),
            errors: ins.error_counts(),
            wait: ins.waits.summary(),
            query: ins.queries.summary(),
            transactions: self.inner.tx.snapshot(),
        }
    }

    /// Closes the pool, waiting at most `bound` in all for work still running in its tasks
    /// (commits, rollbacks) and for checked-out connections to come back. Returns `false` if
    /// the bound passed first (the remaining connections close when the process exits).
    pub(crate) async fn close(&self, bound: Duration) -> bool {
        self.inner.lifecycle.mark_draining();
        let started = Instant::now();
        // New callers are refused at once; the ones already holding a connection (COMMITs
        // and ROLLBACKs in their tasks included) finish and give it back.
        let closed = self.inner.pool.close(bound).await;
        if !closed {
            let stats = self.stats();
            tracing::warn!(
                busy = stats.busy,
                bound_ms = bound.as_millis() as u64,
                "pool close timed out with connections still checked out"
            );
        }
        let remaining = bound.saturating_sub(started.elapsed());
        if !self.inner.tasks.wait_idle(remaining).await {
            tracing::warn!(
                running = self.inner.tasks.running(),
                "pool close: transactions or closes still finishing when the bound passed"
            );
        }
        let remaining = bound.saturating_sub(started.elapsed());
        let _ = tokio::time::timeout(remaining, self.inner.conn.raw().close_by_ref()).await;
        self.inner.lifecycle.mark_closed();
        closed
    }
}

/// The alerts' check, every second while the endpoint is ready. Holds the endpoint only
/// weakly, so one dropped without `close()` is freed.
async fn watch_alerts(endpoint: Weak<Inner>) {
    let mut tick = tokio::time::interval(crate::alerts::CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = endpoint.upgrade() else {
            return;
        };
        let endpoint = Endpoint { inner };
        if endpoint.phase() != Phase::Ready {
            return;
        }
        let stats = endpoint.stats();
        let inner = &endpoint.inner;
        inner
            .alerts
            .check(endpoint.name(), &stats, inner.config.pool());
    }
}

/// The periodic pool summary line (`stats_log_interval`), until the endpoint leaves `Ready`.
pub(crate) async fn log_summaries(endpoint: Endpoint, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if endpoint.phase() != Phase::Ready {
            return;
        }
        let s = endpoint.stats();
        tracing::info!(
            target: "dbservice::stats",
            open = s.open,
            busy = s.busy,
            idle = s.idle,
            max = s.max,
            waiting = s.waiting,
            utilization = s.utilization(),
            queries_total = s.queries_total,
            queries_failed = s.queries_failed,
            wait_p99_ms = s.wait.p99_ms,
            query_p99_ms = s.query.p99_ms,
            "pool summary"
        );
    }
}
