//! Opening connections (with `connect_timeout`, every time) and deciding at checkout whether an
//! idle one may be handed out: deadpool's `Manager`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use sea_orm::sqlx;
#[cfg(feature = "sqlite")]
use sea_orm::sqlx::ConnectOptions;
#[cfg(feature = "mysql")]
use sea_orm::sqlx::mysql::MySqlConnectOptions;
#[cfg(feature = "sqlite")]
use sea_orm::sqlx::sqlite::SqliteConnectOptions;

use super::Shared;
use super::conn::Conn;
use super::plans::{self, Plans};
use super::raw::{Opened, RawConn};
use super::tidy;
#[cfg(feature = "postgres")]
use super::topology::Topology;
use super::{op, raw};
use crate::stats::CloseReason;

/// How to open a connection of each backend.
#[derive(Debug, Clone)]
pub(crate) enum Connector {
    #[cfg(feature = "postgres")]
    /// The endpoint's hosts, and which of them a connection may go to.
    Postgres(Arc<Topology>),
    #[cfg(feature = "mysql")]
    /// With the session settings sent once per connection, and the credentials of each.
    MySql(MySqlConnectOptions, String, Arc<super::login::Login>),
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteConnectOptions),
}

/// How long a credentials provider may take for a connection opened outside a connect's own
/// bound (the caller's bound still applies around it).
#[cfg(any(feature = "postgres", feature = "mysql"))]
const OPEN_LOGIN_BOUND: Duration = Duration::from_secs(10);

impl Connector {
    /// Opens one connection: on PostgreSQL to the first host whose session matches, each
    /// attempt within `connect_timeout` (see [`Topology::connect`]); elsewhere within
    /// `connect_timeout`. `inline`: statements go through PgBouncer.
    pub async fn connect(
        &self,
        connect_timeout: Duration,
        inline: bool,
        scrub: &(dyn Fn(&sqlx::Error) -> String + Sync),
    ) -> Result<Opened, ConnectFailed> {
        #[cfg(feature = "postgres")]
        #[allow(irrefutable_let_patterns)] // the only variant in a PostgreSQL-only build
        if let Connector::Postgres(t) = self {
            return t
                .connect(connect_timeout, inline, scrub)
                .await
                .map_err(ConnectFailed::Driver);
        }
        let _ = (inline, scrub);
        match tokio::time::timeout(connect_timeout, self.open(0)).await {
            Ok(Ok(raw)) => Ok(Opened {
                raw,
                host: 0,
                epoch: 0,
                session: None,
            }),
            Ok(Err(e)) => Err(ConnectFailed::Driver(e)),
            Err(_) => Err(ConnectFailed::TimedOut(connect_timeout)),
        }
    }

    /// The longest a [`connect`](Self::connect) may take: `connect_timeout` for each host it
    /// may try (twice each for `prefer-standby`).
    pub fn connect_bound(&self, connect_timeout: Duration) -> Duration {
        #[cfg(feature = "postgres")]
        #[allow(irrefutable_let_patterns)] // the only variant in a PostgreSQL-only build
        if let Connector::Postgres(t) = self {
            return connect_timeout.saturating_mul(t.attempts());
        }
        connect_timeout
    }

    /// Opens one connection to host `host` (the only one for MySQL and SQLite), without any
    /// bound or check: a cancel must reach the server its statement runs on.
    pub async fn open(&self, host: usize) -> Result<RawConn, sqlx::Error> {
        let _ = host;
        match self {
            #[cfg(feature = "postgres")]
            Connector::Postgres(t) => match t.hosts.get(host).or(t.hosts.first()) {
                Some(h) => t
                    .login
                    .connect(&h.opts, Some(&h.spec.host), OPEN_LOGIN_BOUND)
                    .await
                    .map(|(c, _)| RawConn::Postgres(c)),
                None => Err(sqlx::Error::Configuration("no host to connect to".into())),
            },
            #[cfg(feature = "mysql")]
            Connector::MySql(o, session, login) => {
                let (mut c, logged_in) = login.connect(o, None, OPEN_LOGIN_BOUND).await?;
                // MySQL has one host and no separate check connections: every login here is
                // the pool's or a cancel's, both with the credentials read now.
                login.note(&logged_in);
                sqlx::raw_sql(sqlx::AssertSqlSafe(session.as_str()))
                    .execute(&mut c)
                    .await?;
                Ok(RawConn::MySql(c))
            }
            #[cfg(feature = "sqlite")]
            Connector::Sqlite(o) => o.connect().await.map(RawConn::Sqlite),
        }
    }

    /// The PostgreSQL hosts, if this is PostgreSQL.
    #[cfg(feature = "postgres")]
    pub fn topology(&self) -> Option<&Arc<Topology>> {
        #[allow(irrefutable_let_patterns)] // the only variant in a PostgreSQL-only build
        if let Connector::Postgres(t) = self {
            return Some(t);
        }
        None
    }
}

/// A connection could not be opened: the driver's error, or none within the bound.
#[derive(Debug)]
pub(crate) enum ConnectFailed {
    Driver(sqlx::Error),
    TimedOut(Duration),
}

/// Why a connection could not be opened or handed out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ManagerError {
    #[error(transparent)]
    Connect(sqlx::Error),
    #[error("no connection within connect_timeout ({0:?})")]
    ConnectTimeout(Duration),
}

#[derive(Debug)]
pub(crate) struct Manager {
    pub connector: Connector,
    pub shared: Arc<Shared>,
}

impl Manager {
    /// Opens a connection within `connect_timeout` (per host tried), measured and counted; a
    /// failure feeds the fail-fast state.
    pub async fn connect(&self) -> Result<Opened, ManagerError> {
        let limits = &self.shared.limits;
        let started = Instant::now();
        let inline = matches!(*self.shared.mode, op::Mode::Inline { .. });
        let scrub = |e: &sqlx::Error| self.shared.describe_bare(e);
        let stamp = self.shared.reach.stamp();
        let result = self
            .connector
            .connect(limits.connect_timeout, inline, &scrub)
            .await;
        let ins = &self.shared.instruments;
        match result {
            Ok(opened) => {
                ins.on_created(started.elapsed());
                self.shared.reach.connected();
                Ok(opened)
            }
            Err(ConnectFailed::Driver(e)) => {
                let cause = self.shared.describe(&e);
                self.shared
                    .connect_failed(&cause, super::Failure::of(&e), stamp);
                Err(ManagerError::Connect(e))
            }
            Err(ConnectFailed::TimedOut(bound)) => {
                let e = ManagerError::ConnectTimeout(bound);
                self.shared
                    .connect_failed(&e.to_string(), super::Failure::Unreachable, stamp);
                Err(e)
            }
        }
    }
}

impl Manager {
    /// One round trip on `conn` within `ping_timeout`; a failure or no answer retires it as
    /// broken (also if the checkout is dropped meanwhile).
    async fn round_trip<T>(
        &self,
        conn: &mut Conn,
        what: &str,
        work: impl AsyncFnOnce(&mut RawConn) -> Result<T, sqlx::Error>,
    ) -> Result<T, RecycleError<ManagerError>> {
        conn.retire(CloseReason::Broken);
        let Some(raw) = conn.raw.as_mut() else {
            return Err(RecycleError::message("taken"));
        };
        match tokio::time::timeout(self.shared.limits.ping_timeout, work(raw)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.shared.instruments.connection_failed();
                Err(RecycleError::message(format!("{what} failed: {e}")))
            }
            Err(_) => Err(RecycleError::message(format!(
                "no answer to the {what} within ping_timeout"
            ))),
        }
    }
}

impl managed::Manager for Manager {
    type Type = Conn;
    type Error = ManagerError;

    async fn create(&self) -> Result<Conn, ManagerError> {
        // Taken before the credentials are read: one read before an eviction is evicted too.
        let generation = self
            .shared
            .generation
            .load(std::sync::atomic::Ordering::Acquire);
        let Opened {
            mut raw,
            host,
            epoch,
            session,
        } = self.connect().await?;
        let limits = &self.shared.limits;
        let session = match session {
            Some(s) => Some(s),
            // PostgreSQL named it while checking the host (or names none behind PgBouncer).
            None if raw.is_postgres() => None,
            None => tidy::session_id(&mut raw, limits.ping_timeout).await,
        };
        let jitter = self.shared.instruments.jitter();
        let mut conn = Conn::new(
            raw,
            limits
                .max_uses
                .map(|m| ((m as f64) * (1.0 - 0.2 * jitter)).ceil().max(1.0) as u64),
            limits.max_lifetime.map(|l| l.mul_f64(1.0 - 0.2 * jitter)),
            self.shared.holds.register(),
            self.shared.mode.clone(),
            Plans::new(self.shared.plans.clone()),
            self.shared.instruments.clone(),
        );
        conn.context_plans = super::context_plans::ContextPlans::new(
            limits.statement_cache,
            self.shared.context_prepare_off.clone(),
        );
        conn.session = session;
        conn.host = host;
        conn.epoch = epoch;
        conn.generation = generation;
        Ok(conn)
    }

    /// Runs at checkout, for an idle connection: retire it if worn out, check it if suspect,
    /// ping it if it idled past `ping_after_idle` or predates the last connection failure;
    /// otherwise hand it out with no I/O.
    async fn recycle(&self, conn: &mut Conn, metrics: &Metrics) -> RecycleResult<ManagerError> {
        if let Some(reason) = conn.worn_out() {
            conn.retire(reason);
            return Err(RecycleError::message(reason.label()));
        }
        if conn.refused_write || self.shared.host_left(conn) {
            conn.retire(CloseReason::HostMismatch);
            return Err(RecycleError::message("its host stopped matching"));
        }
        if self.shared.evicted(conn) {
            conn.retire(CloseReason::Evicted);
            return Err(RecycleError::message("evicted"));
        }
        let limits = &self.shared.limits;
        if conn.raw.is_none() {
            conn.retire(CloseReason::Broken);
            return Err(RecycleError::message("taken"));
        }
        if tidy::needs_care(conn) {
            // What the check-in task could not do (no runtime, or the pool was closing).
            // Retired as broken should this be dropped half-way (the caller gave up).
            conn.retire(CloseReason::Broken);
            if let Err(unfit) = tidy::make_fit(&self.shared, conn).await {
                conn.retire(unfit.reason());
                return Err(RecycleError::message(unfit.to_string()));
            }
            if conn.broken {
                return Err(RecycleError::message(
                    "its abandoned statement could not be cancelled",
                ));
            }
        } else {
            let idle_for = conn.alive_at.elapsed();
            let suspect_age = self.shared.instruments.predates_last_failure(metrics.age());
            let keepalive = conn.keepalive_due.swap(false, Ordering::AcqRel);
            if keepalive || idle_for >= limits.ping_after_idle || suspect_age {
                let counter = if keepalive {
                    &self.shared.instruments.keepalive_pings
                } else {
                    &self.shared.instruments.pings
                };
                counter.fetch_add(1, Ordering::Relaxed);
                self.round_trip(conn, "ping", raw::ping).await?;
                conn.alive_at = Instant::now();
            }
        }
        // Another connection met a stale cached statement: this one has the same cached.
        if conn.plans.outdated() {
            self.round_trip(conn, "statement cache eviction", plans::evict)
                .await?;
            conn.plans.evicted();
        }
        conn.retire(CloseReason::Shutdown);
        Ok(())
    }

    /// Called for every connection leaving the pool for good: a healthy one is closed
    /// politely in the background (bounded by `ping_timeout`), a broken one just dropped.
    fn detach(&self, conn: &mut Conn) {
        let Some(raw) = conn.raw.take() else {
            return;
        };
        if conn.reason().graceful() {
            let bound = self.shared.limits.ping_timeout;
            self.shared.tasks.spawn(raw::close(raw, bound));
        }
    }
}
