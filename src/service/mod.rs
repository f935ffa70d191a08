//! [`DbService`]: the one owner of a backend's database pool.

mod build;
mod connect;
mod global;
mod lifecycle;
mod readiness;
mod tasks;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

pub(crate) use self::connect::describe;
use self::lifecycle::Lifecycle;
pub use self::lifecycle::Phase;
pub use self::readiness::Readiness;
use self::readiness::ReadinessSlot;
pub(crate) use self::tasks::Tasks;
use crate::config::{Backend, DbConfig};
use crate::conn::DbConn;
use crate::error::{Error, Result};
use crate::observe::Instruments;
use crate::pool::{Pool, Pooled};
use crate::replica::{HighWater, Need, Reader, Replica, ReplicaStats, Replicas, WalPosition};
use crate::stats::{PoolStats, TxCounters};

/// A cheap-to-clone handle to one database pool and its state.
///
/// Build as many as you like with [`DbService::new`] (tests run several side by side); a
/// backend usually installs one as the process-wide instance ([`DbService::install_global`])
/// and hands clones to its handlers through `web::Data`.
///
/// The pool is lazy: [`DbService::new`] does no I/O. [`DbService::connect`] (or
/// [`DbService::start`]) waits for the database with backoff and marks the service ready.
#[derive(Clone)]
pub struct DbService {
    inner: Arc<Inner>,
}

struct Inner {
    conn: DbConn,
    instruments: Arc<Instruments>,
    pool: Pool,
    /// How migrations connect (`DATABASE_URL_DIRECT` when set).
    migrations: crate::pool::Connector,
    config: DbConfig,
    lifecycle: Lifecycle,
    last_error: Mutex<Option<LastError>>,
    tx: TxCounters,
    tasks: Arc<Tasks>,
    readiness: ReadinessSlot,
    /// `DATABASE_REPLICA_URLS`: the replicas reads go to, and this instance's write position.
    replicas: Option<Arc<Replicas>>,
    /// The emitted alerts' state.
    alerts: crate::alerts::Alerts,
    /// The pool's name in logs (`primary`, a named pool's, `replica_1`).
    name: std::sync::OnceLock<String>,
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

/// Why a database check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PingError {
    /// No answer within `health_check_timeout` (the pool may be saturated, or the database hung).
    #[error("no answer from the database within {0:?}")]
    TimedOut(Duration),
    /// The database could not be reached or answered with an error.
    #[error("{0}")]
    Failed(String),
    /// The database server answered but refused a new connection for want of a slot, and no
    /// pooled connection was free: it is up, and full.
    #[error("the database server refused a new connection: too many connections ({0})")]
    ServerFull(String),
}

impl std::fmt::Debug for DbService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbService")
            .field("config", &self.inner.config)
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

impl DbService {
    /// Creates the service and its (lazy) pool. No connection is opened yet.
    ///
    /// Must be called inside a tokio runtime, and that runtime becomes the service's: the
    /// `BEGIN`/`COMMIT`/`ROLLBACK` tasks of transactions run there, so that they survive the
    /// HTTP worker that started them. Call it from `main`'s runtime (as the demo does), not
    /// from inside actix-web's per-worker app factory.
    pub fn new(config: DbConfig) -> Result<Self> {
        let p = config.pool();
        let instruments =
            Arc::new(Instruments::new(p.slow_query_threshold).with_statement_log(p.log_statements));
        let tasks = Tasks::current();
        let (pool, raw) = build::build(&config, &instruments, &tasks)?;
        let migrations = build::migration_connector(&config, pool.connector())?;
        if let Some(warning) = config.tls_warning() {
            tracing::warn!("{warning}");
        }
        let backend = match config.backend() {
            Backend::Postgres => sea_orm::DbBackend::Postgres,
            Backend::MySql => sea_orm::DbBackend::MySql,
            Backend::Sqlite => sea_orm::DbBackend::Sqlite,
        };
        let replicas = match config.replicas() {
            Some(rc) => {
                let mut list = Vec::with_capacity(rc.len());
                for (i, replica) in rc.replicas.iter().enumerate() {
                    let name = format!("replica_{}", i + 1);
                    let service = DbService::new(replica.clone())?;
                    service.set_name(&name);
                    list.push(Replica::new(name, service));
                }
                let set = Arc::new(Replicas::new(
                    list,
                    rc.clone(),
                    Arc::new(HighWater::default()),
                ));
                tokio::spawn(crate::replica::probe::run(Arc::downgrade(&set)));
                Some(set)
            }
            None => None,
        };
        let high_water = replicas.as_ref().map(|r| r.high_water.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                conn: DbConn::new(
                    pool.clone(),
                    raw,
                    backend,
                    p.query_timeout,
                    p.stream_timeout,
                    high_water,
                ),
                instruments,
                pool,
                migrations,
                config,
                lifecycle: Lifecycle::default(),
                last_error: Mutex::new(None),
                tx: TxCounters::default(),
                tasks,
                readiness: ReadinessSlot::default(),
                replicas,
                alerts: crate::alerts::Alerts::default(),
                name: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The SeaORM executor: pass `db.conn()` to any SeaORM call. Each call waits (measured,
    /// at most `pool_timeout`) for a connection; see [`DbConn`].
    pub fn conn(&self) -> &DbConn {
        &self.inner.conn
    }

    /// A SeaORM executor for reads: each statement goes to a read replica that has replayed
    /// every write this instance committed before it (read-your-writes), waiting at most
    /// `replica_wait` for one, else to the primary. Without replicas, the primary. See
    /// [`crate::replica`] for the model and [`Reader`] for what it accepts.
    pub fn read(&self) -> Reader {
        Reader::new(self.clone(), Need::Instance)
    }

    /// Like [`read`](Self::read), but waits for `position` (a token a client brought back from
    /// a write, possibly served by another instance) instead of this instance's writes.
    pub fn read_after(&self, position: WalPosition) -> Reader {
        Reader::new(self.clone(), Need::At(position))
    }

    /// Like [`read`](Self::read), for reads that need no particular write: any replica in
    /// rotation (at most `replica_max_lag` behind), no wait.
    pub fn read_any(&self) -> Reader {
        Reader::new(self.clone(), Need::Any)
    }

    /// The furthest WAL position this instance's writes reached on the primary: a token for
    /// [`read_after`](Self::read_after). `None` without replicas (no position is tracked) or
    /// before the first write.
    pub fn write_position(&self) -> Option<WalPosition> {
        let at = self.inner.replicas.as_ref()?.high_water.get();
        (at > 0).then_some(WalPosition(at))
    }

    /// The pool's name in log lines (`primary` unless set: [`Pools`](crate::Pools) names its
    /// pools, replicas are `replica_1`, ...).
    pub fn name(&self) -> &str {
        self.inner
            .name
            .get()
            .map_or(crate::pools::PRIMARY, String::as_str)
    }

    /// Names the pool for log lines, once (later calls are ignored).
    pub fn set_name(&self, name: &str) {
        let _ = self.inner.name.set(name.to_owned());
    }

    /// The emitted alerts' current state (see [`crate::alerts`]).
    pub fn alerts(&self) -> Vec<crate::alerts::AlertStatus> {
        self.inner.alerts.status(self.inner.config.pool())
    }

    pub(crate) fn alert_counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.inner.alerts.counts()
    }

    /// The read replicas' state and where reads went; `None` without replicas.
    pub fn replica_stats(&self) -> Option<ReplicaStats> {
        self.inner.replicas.as_ref().map(|r| r.stats())
    }

    /// Each replica's own service (its pool, statistics, health), named `replica_1`, ...
    pub fn replica_services(&self) -> Vec<(&str, &DbService)> {
        self.inner.replicas.as_ref().map_or_else(Vec::new, |r| {
            r.list.iter().map(|x| (x.name.as_str(), &x.db)).collect()
        })
    }

    pub(crate) fn replicas(&self) -> Option<&Replicas> {
        self.inner.replicas.as_deref()
    }

    /// The instance's write position, to advance after a commit (with replicas only).
    pub(crate) fn high_water(&self) -> Option<Arc<HighWater>> {
        self.inner.replicas.as_ref().map(|r| r.high_water.clone())
    }

    /// A replica's service is ready once its first check passes (it has no connect of its own).
    pub(crate) fn mark_ready(&self) {
        self.inner.lifecycle.mark_ready();
        tokio::spawn(watch_alerts(Arc::downgrade(&self.inner)));
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    pub(crate) fn instruments(&self) -> &Instruments {
        &self.inner.instruments
    }

    /// A SeaORM connection of its own (one connection, outside the pool, over
    /// `DATABASE_URL_DIRECT` when set) for migrations; close it when done.
    pub(crate) fn migration_connection(&self) -> sea_orm::DatabaseConnection {
        build::seaorm_connection(
            &self.inner.migrations,
            self.inner.config.pool(),
            build::Retire::Never,
        )
    }

    /// The configuration in effect.
    pub fn config(&self) -> &DbConfig {
        &self.inner.config
    }

    /// The database engine.
    pub fn backend(&self) -> Backend {
        self.inner.config.backend()
    }

    /// Where the service is in its life (starting, ready, draining, ...).
    pub fn phase(&self) -> Phase {
        self.inner.lifecycle.phase()
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
            max: cfg.connection_limit,
            min: cfg.min_connections,
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
            leaks: ins.leaks.load(Ordering::Relaxed),
            database_down: self.inner.pool.down().is_some(),
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

    pub(crate) fn tx_counters(&self) -> &TxCounters {
        &self.inner.tx
    }

    /// Where transaction work that must outlive its caller runs (see [`Tasks`]).
    pub(crate) fn tasks(&self) -> &Arc<Tasks> {
        &self.inner.tasks
    }

    /// The most recent connection or health-check error, if any.
    pub fn last_error(&self) -> Option<LastError> {
        self.inner.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn record_error(&self, message: &str) {
        if let Ok(mut slot) = self.inner.last_error.lock() {
            *slot = Some(LastError {
                message: message.to_owned(),
                at: SystemTime::now(),
            });
        }
    }

    /// Waits for the database (retrying transient failures with backoff, bounded by
    /// `connect_retry_timeout`), then marks the service ready.
    pub async fn connect(&self) -> Result<()> {
        self.start(|_| async { Ok::<(), std::convert::Infallible>(()) })
            .await
    }

    /// Like [`connect`](Self::connect), but runs `prepare` (e.g. migrations) after the
    /// database is reachable and before the service reports ready. On failure the service
    /// stays not-ready ([`Phase::Failed`]) and the error says why.
    pub async fn start<F, Fut, E>(&self, prepare: F) -> Result<()>
    where
        F: FnOnce(DbService) -> Fut,
        Fut: Future<Output = std::result::Result<(), E>>,
        E: std::fmt::Display,
    {
        let cfg = &self.inner.config;
        let record = |msg: &str| self.record_error(msg);
        let result = async {
            connect::connect_with_retry(&self.inner.pool, cfg, &record).await?;
            let p = cfg.pool();
            tracing::info!(
                url = %cfg.redacted_url(),
                direct_url = cfg.redacted_direct_url().map(|u| u.to_string()),
                connection_limit = p.connection_limit,
                pgbouncer = p.pgbouncer,
                // Every effective setting (seed 003's startup report), redacted: the URLs
                // without passwords, all pool parameters, the replicas.
                settings = %serde_json::to_string(cfg).unwrap_or_default(),
                budget_per_instance = budget_per_instance(p.connection_limit, p.pgbouncer),
                "database reachable; {}",
                budget_line(p.connection_limit, p.pgbouncer)
            );
            prepare(self.clone())
                .await
                .map_err(|e| Error::Startup(cfg.scrub(&e.to_string())))
        }
        .await;
        match &result {
            Ok(()) => {
                self.inner.lifecycle.mark_ready();
                if let Some(every) = cfg.pool().stats_log_interval {
                    tokio::spawn(log_summaries(self.clone(), every));
                }
                tokio::spawn(watch_alerts(Arc::downgrade(&self.inner)));
            }
            Err(e) => {
                self.record_error(&e.to_string());
                self.inner.lifecycle.mark_failed();
            }
        }
        result
    }

    /// Checks that a connection can be had and answers, within `health_check_timeout` in all
    /// (the wait for a connection included). Returns the round-trip time. For
    /// readiness probes use [`readiness`](Self::readiness), which shares one check among
    /// concurrent probes.
    pub async fn ping(&self) -> std::result::Result<Duration, PingError> {
        let bound = self.inner.config.pool().health_check_timeout;
        let started = Instant::now();
        let mut conn = match self.inner.pool.acquire(Some(bound), None).await {
            Ok(c) => c,
            Err(crate::classify::AcquireError::Unreachable { cause, .. }) => {
                return Err(PingError::Failed(cause));
            }
            Err(crate::classify::AcquireError::ServerFull { cause, .. }) => {
                return Err(PingError::ServerFull(cause));
            }
            Err(_) => return Err(PingError::TimedOut(bound)),
        };
        let remaining = bound.saturating_sub(started.elapsed());
        self.ping_on(&mut conn, remaining, bound).await
    }

    /// Pings on a connection the caller holds, within `within`.
    async fn ping_on(
        &self,
        conn: &mut Pooled,
        within: Duration,
        bound: Duration,
    ) -> std::result::Result<Duration, PingError> {
        self.check(within, bound, conn.ping(within)).await
    }

    /// Runs one database check within `within`, recording what went wrong; `bound` is the
    /// limit named in a timeout.
    async fn check(
        &self,
        within: Duration,
        bound: Duration,
        work: impl Future<Output = std::result::Result<(), sea_orm::sqlx::Error>>,
    ) -> std::result::Result<Duration, PingError> {
        let started = Instant::now();
        match tokio::time::timeout(within, work).await {
            Ok(Ok(())) => Ok(started.elapsed()),
            Ok(Err(e)) => {
                let msg = connect::describe(&self.inner.config, &e);
                self.record_error(&msg);
                self.inner.instruments.connection_failed();
                if crate::classify::is_server_full(&e) {
                    Err(PingError::ServerFull(msg))
                } else {
                    Err(PingError::Failed(msg))
                }
            }
            Err(_) => {
                self.record_error(&format!("no answer from the database within {bound:?}"));
                Err(PingError::TimedOut(bound))
            }
        }
    }

    /// Checks the database with a fresh connection outside the pool, within
    /// `health_check_timeout`. For when every pooled connection is busy: it tells a busy
    /// database (answers) from a frozen or unreachable one (does not), without queueing
    /// behind the pool's callers.
    pub async fn check_direct(&self) -> std::result::Result<Duration, PingError> {
        let bound = self.inner.config.pool().health_check_timeout;
        self.check_direct_within(bound).await
    }

    /// [`check_direct`](Self::check_direct) within what is left of the bound.
    async fn check_direct_within(
        &self,
        within: Duration,
    ) -> std::result::Result<Duration, PingError> {
        let bound = self.inner.config.pool().health_check_timeout;
        self.check(within, bound, self.inner.pool.connect_direct())
            .await
    }

    /// Starts the shutdown: readiness fails from now on; the pool keeps serving in-flight work.
    pub fn begin_shutdown(&self) {
        self.inner.lifecycle.mark_draining();
    }

    /// Closes the pool, waiting at most `bound` in all for transactions still committing or
    /// rolling back and for checked-out connections to come back. Returns `false` if the bound
    /// passed first (the remaining connections close when the process exits).
    pub async fn close(&self, bound: Duration) -> bool {
        self.inner.lifecycle.mark_draining();
        let started = Instant::now();
        // The replicas close beside the primary, within the same bound.
        let replicas = async {
            let Some(set) = &self.inner.replicas else {
                return true;
            };
            set.closed.store(true, Ordering::Release);
            futures_util::future::join_all(set.list.iter().map(|r| r.db.close(bound)))
                .await
                .into_iter()
                .all(|closed| closed)
        };
        let (closed, replicas_closed) = tokio::join!(self.close_primary(bound, started), replicas);
        closed && replicas_closed
    }

    async fn close_primary(&self, bound: Duration, started: Instant) -> bool {
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

/// The alerts' check, every second while the service is ready. Holds the service only
/// weakly, so a service dropped without `close()` is freed.
async fn watch_alerts(service: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(crate::alerts::CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = service.upgrade() else {
            return;
        };
        let db = DbService { inner };
        if db.phase() != Phase::Ready {
            return;
        }
        db.inner
            .alerts
            .check(db.name(), &db.stats(), db.inner.config.pool());
    }
}

/// The periodic pool summary line (`stats_log_interval`), until the service shuts down.
async fn log_summaries(db: DbService, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if db.phase() != Phase::Ready {
            return;
        }
        let s = db.stats();
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

/// What one instance may hold open on the database server, counted the way the guide's
/// sizing formula counts it: the pool, one migration connection and one readiness check of
/// its own. Behind PgBouncer the pool's connections are PgBouncer's clients, so only the
/// migration and probe connections reach the server from the instance itself.
fn budget_per_instance(connection_limit: u32, pgbouncer: bool) -> u32 {
    if pgbouncer {
        2
    } else {
        connection_limit.saturating_add(2)
    }
}

/// The startup line's statement of the budget, in the guide's terms ("Sizing the pool"
/// and "The connection budget" in CONNECTION_POOLING.md), so an operator can add up the
/// fleet from one instance's log.
fn budget_line(connection_limit: u32, pgbouncer: bool) -> String {
    let server = "max_connections − superuser_reserved_connections";
    if pgbouncer {
        format!(
            "this instance's connection budget: at most {connection_limit} connection(s) to \
             PgBouncer (count instances at peak × {connection_limit} against its \
             max_client_conn) and 2 to the database server (1 migration + 1 probe: count \
             instances at peak × 2, plus PgBouncer's pools, against {server})"
        )
    } else {
        let total = budget_per_instance(connection_limit, false);
        format!(
            "this instance's connection budget: at most {total} connection(s) to the database \
             server ({connection_limit} pooled + 1 migration + 1 probe: count instances at peak, \
             surge included, × {total} against {server})"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::budget_line;

    #[test]
    fn the_startup_budget_is_the_guides_formula_per_instance() {
        // The shipped manifest: connection_limit 5 → 7 per instance, (2 + 1) × 7 = 21.
        let direct = budget_line(5, false);
        assert!(
            direct.contains(
                "at most 7 connection(s) to the database server (5 pooled + 1 migration + 1 probe"
            ),
            "{direct}"
        );
        assert!(
            direct.contains("× 7 against max_connections − superuser_reserved_connections"),
            "{direct}"
        );
        let bouncer = budget_line(10, true);
        assert!(
            bouncer.contains("at most 10 connection(s) to PgBouncer"),
            "{bouncer}"
        );
        assert!(
            bouncer.contains("× 10 against its max_client_conn"),
            "{bouncer}"
        );
        assert!(
            bouncer.contains("2 to the database server (1 migration + 1 probe"),
            "{bouncer}"
        );
        // Saturates rather than overflowing on an absurd limit.
        assert!(budget_line(u32::MAX, false).contains("4294967295 connection(s)"));
    }
}
