//! [`DbService`]: a backend's database: the primary [`Endpoint`], its read replicas, the
//! service's start (connect, prepare, ready), readiness and close.

mod budget;
mod global;
mod readiness;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use self::budget::{Budget, budget_line};
pub use self::readiness::Readiness;
use self::readiness::ReadinessSlot;
use crate::config::{Backend, DbConfig};
use crate::endpoint::{
    DbConn, Endpoint, HighWater, LastError, Phase, PingError, Retire, WalPosition, find_writable,
    log_summaries, migration_connector, seaorm_connection,
};
use crate::error::{Error, Result};
use crate::observe::Instruments;
use crate::pool::{Connector, Pool};
use crate::replica::{Need, Reader, Replica, ReplicaStats, Replicas};
use crate::secrets::Secrets;
use crate::stats::{PoolStats, TxCounters};
use crate::tasks::Tasks;

/// A cheap-to-clone handle to one database: its primary pool, its read replicas and its state.
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
    primary: Endpoint,
    /// How migrations connect (`DATABASE_URL_DIRECT` when set).
    migrations: Connector,
    readiness: ReadinessSlot,
    /// `DATABASE_REPLICA_URLS`: the replicas reads go to, and this instance's write position.
    replicas: Option<Arc<Replicas>>,
    /// Where new connections' passwords come from.
    secrets: Arc<Secrets>,
}

impl std::fmt::Debug for DbService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbService")
            .field("config", self.config())
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

impl DbService {
    /// Creates the service and its (lazy) pools. No connection is opened yet.
    ///
    /// Must be called inside a tokio runtime, and that runtime becomes the service's: the
    /// `BEGIN`/`COMMIT`/`ROLLBACK` tasks of transactions run there, so that they survive the
    /// HTTP worker that started them. Call it from `main`'s runtime (as the demo does), not
    /// from inside actix-web's per-worker app factory.
    pub fn new(config: DbConfig) -> Result<Self> {
        let high_water = config.replicas().map(|_| Arc::new(HighWater::default()));
        // One set of sources for the primary, its replicas and migrations: each file is
        // watched once, and a missing one stops the start here.
        let secrets = Arc::new(
            Secrets::open(config.credential_sources().clone())
                .map_err(|e| crate::Error::Config(e.into_config_error()))?,
        );
        let primary = Endpoint::new(config, high_water.clone(), true, &secrets)?;
        let migrations =
            migration_connector(primary.config(), primary.pool().connector(), &secrets)?;
        let replicas = match (primary.config().replicas(), high_water) {
            (Some(rc), Some(high_water)) => {
                let mut list = Vec::with_capacity(rc.len());
                for (i, replica) in rc.replicas.iter().enumerate() {
                    let name = format!("replica_{}", i + 1);
                    let endpoint = Endpoint::new(replica.clone(), None, false, &secrets)?;
                    endpoint.set_name(&name);
                    list.push(Replica::new(name, endpoint));
                }
                let set = Arc::new(Replicas::new(list, rc.clone(), high_water));
                tokio::spawn(crate::replica::probe::run(Arc::downgrade(&set)));
                Some(set)
            }
            _ => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                primary,
                migrations,
                readiness: ReadinessSlot::default(),
                replicas,
                secrets,
            }),
        })
    }

    /// The SeaORM executor: pass `db.conn()` to any SeaORM call. Each call waits (measured,
    /// at most `pool_timeout`) for a connection; see [`DbConn`].
    pub fn conn(&self) -> &DbConn {
        self.inner.primary.conn()
    }

    /// A SeaORM executor for reads: each statement goes to a read replica that has replayed
    /// every write this instance committed before it (read-your-writes), waiting at most
    /// `replica_wait` for one, else to the primary. Without replicas, the primary. See
    /// [`crate::replica`] for the model and [`Reader`] for what it accepts.
    pub fn read(&self) -> Reader {
        Reader::new(
            self.inner.primary.clone(),
            self.inner.replicas.clone(),
            Need::Instance,
        )
    }

    /// Like [`read`](Self::read), but waits for `position` (a token a client brought back from
    /// a write, possibly served by another instance) instead of this instance's writes.
    pub fn read_after(&self, position: WalPosition) -> Reader {
        Reader::new(
            self.inner.primary.clone(),
            self.inner.replicas.clone(),
            Need::At(position),
        )
    }

    /// Like [`read`](Self::read), for reads that need no particular write: any replica in
    /// rotation (at most `replica_max_lag` behind), no wait.
    pub fn read_any(&self) -> Reader {
        Reader::new(
            self.inner.primary.clone(),
            self.inner.replicas.clone(),
            Need::Any,
        )
    }

    /// The furthest WAL position this instance's writes reached on the primary: a token for
    /// [`read_after`](Self::read_after). `None` without replicas (no position is tracked) or
    /// before the first write.
    pub fn write_position(&self) -> Option<WalPosition> {
        let at = self.inner.replicas.as_ref()?.high_water.get();
        (at > 0).then_some(WalPosition(at))
    }

    /// The primary endpoint: its pool, statistics and checks.
    pub fn primary(&self) -> &Endpoint {
        &self.inner.primary
    }

    /// The pool's name in log lines (`primary` unless set: [`Pools`](crate::Pools) names its
    /// pools, replicas are `replica_1`, ...).
    pub fn name(&self) -> &str {
        self.inner.primary.name()
    }

    /// Names the pool for log lines, once (later calls are ignored).
    pub fn set_name(&self, name: &str) {
        self.inner.primary.set_name(name);
    }

    /// The emitted alerts' current state (see [`crate::alerts`]).
    pub fn alerts(&self) -> Vec<crate::alerts::AlertStatus> {
        self.inner.primary.alerts()
    }

    /// The read replicas' state and where reads went; `None` without replicas.
    pub fn replica_stats(&self) -> Option<ReplicaStats> {
        self.inner.replicas.as_ref().map(|r| r.stats())
    }

    /// Each replica's endpoint (its pool, statistics, health), named `replica_1`, ...
    pub fn replica_services(&self) -> Vec<(&str, &Endpoint)> {
        self.inner.replicas.as_ref().map_or_else(Vec::new, |r| {
            r.list
                .iter()
                .map(|x| (x.name.as_str(), &x.endpoint))
                .collect()
        })
    }

    /// The instance's write position, to advance after a commit (with replicas only).
    pub(crate) fn high_water(&self) -> Option<Arc<HighWater>> {
        self.inner.replicas.as_ref().map(|r| r.high_water.clone())
    }

    pub(crate) fn pool(&self) -> &Pool {
        self.inner.primary.pool()
    }

    pub(crate) fn instruments(&self) -> &Instruments {
        self.inner.primary.instruments()
    }

    pub(crate) fn tx_counters(&self) -> &TxCounters {
        self.inner.primary.tx_counters()
    }

    /// Where transaction work that must outlive its caller runs (see [`Tasks`]).
    pub(crate) fn tasks(&self) -> &Arc<Tasks> {
        self.inner.primary.tasks()
    }

    /// A SeaORM connection of its own (one connection, outside the pool, over
    /// `DATABASE_URL_DIRECT` when set) for migrations; close it when done.
    /// On PostgreSQL a writable host among the URL's is found first (migrations write, and
    /// their connection stays on the host it starts on).
    pub(crate) async fn migration_connection(&self) -> sea_orm::DatabaseConnection {
        let p = self.config().pool();
        find_writable(
            &self.inner.migrations,
            p.limits.connect_timeout,
            self.config(),
        )
        .await;
        seaorm_connection(&self.inner.migrations, p, Retire::Never)
    }

    /// The configuration in effect.
    pub fn config(&self) -> &DbConfig {
        self.inner.primary.config()
    }

    /// The database engine.
    pub fn backend(&self) -> Backend {
        self.config().backend()
    }

    /// Where the service is in its life (starting, ready, draining, ...).
    pub fn phase(&self) -> Phase {
        self.inner.primary.phase()
    }

    /// A snapshot of the primary pool's connections.
    pub fn stats(&self) -> PoolStats {
        self.inner.primary.stats()
    }

    /// The most recent connection or health-check error, if any.
    pub fn last_error(&self) -> Option<LastError> {
        self.inner.primary.last_error()
    }

    /// Where the primary pool's connections go: its hosts as last found and the one it is on
    /// (PostgreSQL; `None` for the other backends).
    pub fn hosts(&self) -> Option<crate::stats::HostsReport> {
        self.inner.primary.hosts()
    }

    /// Where new connections' passwords come from, in precedence order, never a value: e.g.
    /// `DATABASE_PASSWORD_FILE /run/secrets/db_password > PGPASSWORD`, `credentials provider`,
    /// `url` (see CONNECTION_POOLING.md, "Credentials and rotation").
    pub fn password_source(&self) -> String {
        let secrets = &self.inner.secrets;
        if self.inner.primary.config().url_has_password() && !secrets.has_provider() {
            return "url".into();
        }
        secrets.describe()
    }

    /// Closes every connection opened so far, on the primary and on each replica: idle ones
    /// now, busy ones when their holder gives them back (nothing in flight is interrupted);
    /// new connections read the credentials afresh. HikariCP's `softEvictConnections`: for a
    /// role that was revoked, or old credentials that must stop being used now rather than at
    /// `max_lifetime`. Counted as `closed_total{reason="evicted"}`.
    pub fn soft_evict(&self) {
        self.inner.primary.soft_evict();
        for r in self.inner.replicas.iter().flat_map(|r| &r.list) {
            r.endpoint.soft_evict();
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
        let primary = &self.inner.primary;
        let cfg = primary.config();
        let result = async {
            primary.connect_with_retry().await?;
            let p = cfg.pool();
            let budget = Budget::of(
                p.limits.connection_limit,
                cfg.redacted_direct_url().is_some(),
            );
            tracing::info!(
                url = %cfg.redacted_url(),
                direct_url = cfg.redacted_direct_url().map(|u| u.to_string()),
                connection_limit = p.limits.connection_limit,
                pgbouncer = p.session.pgbouncer,
                // Every effective setting, redacted (the URLs without passwords, all pool
                // parameters, the replicas): what an operator compares across instances.
                settings = %serde_json::to_string(cfg).unwrap_or_default(),
                budget_through_url = budget.through_url,
                budget_direct = budget.direct,
                "database reachable; {}",
                budget_line(
                    cfg.backend(),
                    p.limits.connection_limit,
                    p.session.pgbouncer,
                    budget
                )
            );
            prepare(self.clone())
                .await
                .map_err(|e| Error::Startup(cfg.scrub(&e.to_string())))
        }
        .await;
        match &result {
            Ok(()) => {
                primary.mark_ready();
                if let Some(every) = cfg.pool().monitoring.stats_log_interval {
                    tokio::spawn(log_summaries(primary.clone(), every));
                }
            }
            Err(e) => {
                primary.record_error(&e.to_string());
                primary.mark_failed();
            }
        }
        result
    }

    /// Checks that a connection can be had and answers, within `health_check_timeout` in all
    /// (the wait for a connection included). Returns the round-trip time. For
    /// readiness probes use [`readiness`](Self::readiness), which shares one check among
    /// concurrent probes.
    pub async fn ping(&self) -> std::result::Result<Duration, PingError> {
        self.inner.primary.ping().await
    }

    /// Checks the database with a fresh connection outside the pool, within
    /// `health_check_timeout`. For when every pooled connection is busy: it tells a busy
    /// database (answers) from a frozen or unreachable one (does not), without queueing
    /// behind the pool's callers.
    pub async fn check_direct(&self) -> std::result::Result<Duration, PingError> {
        self.inner.primary.check_direct().await
    }

    /// Starts the shutdown: readiness fails from now on; the pool keeps serving in-flight work.
    pub fn begin_shutdown(&self) {
        self.inner.primary.mark_draining();
    }

    /// Closes the pool, waiting at most `bound` in all for transactions still committing or
    /// rolling back and for checked-out connections to come back. Returns `false` if the bound
    /// passed first (the remaining connections close when the process exits).
    pub async fn close(&self, bound: Duration) -> bool {
        self.inner.primary.mark_draining();
        // The replicas close beside the primary, within the same bound.
        let replicas = async {
            let Some(set) = &self.inner.replicas else {
                return true;
            };
            set.closed.store(true, Ordering::Release);
            futures_util::future::join_all(set.list.iter().map(|r| r.endpoint.close(bound)))
                .await
                .into_iter()
                .all(|closed| closed)
        };
        let (closed, replicas_closed) = tokio::join!(self.inner.primary.close(bound), replicas);
        closed && replicas_closed
    }
}
