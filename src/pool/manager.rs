//! Opening connections (with `connect_timeout`, every time) and deciding at checkout whether an
//! idle one may be handed out: deadpool's `Manager`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
#[cfg(feature = "mysql")]
use sea_orm::sqlx::mysql::MySqlConnectOptions;
#[cfg(feature = "postgres")]
use sea_orm::sqlx::postgres::PgConnectOptions;
#[cfg(feature = "sqlite")]
use sea_orm::sqlx::sqlite::SqliteConnectOptions;
use sea_orm::sqlx::{self, ConnectOptions};

use super::Shared;
use super::conn::Conn;
use super::plans::{self, Plans};
use super::raw::RawConn;
use super::tidy;
use super::{op, raw};
use crate::stats::CloseReason;

/// How to open a connection of each backend.
#[derive(Debug, Clone)]
pub(crate) enum Connector {
    #[cfg(feature = "postgres")]
    Postgres(PgConnectOptions),
    #[cfg(feature = "mysql")]
    /// With the session settings sent once per connection.
    MySql(MySqlConnectOptions, String),
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteConnectOptions),
}

impl Connector {
    /// Opens one connection, without any bound.
    pub async fn open(&self) -> Result<RawConn, sqlx::Error> {
        match self {
            #[cfg(feature = "postgres")]
            Connector::Postgres(o) => o.connect().await.map(RawConn::Postgres),
            #[cfg(feature = "mysql")]
            Connector::MySql(o, session) => {
                let mut c = o.connect().await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(session.as_str()))
                    .execute(&mut c)
                    .await?;
                Ok(RawConn::MySql(c))
            }
            #[cfg(feature = "sqlite")]
            Connector::Sqlite(o) => o.connect().await.map(RawConn::Sqlite),
        }
    }
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
    /// Opens a connection within `connect_timeout`, measured and counted; a failure feeds the
    /// fail-fast state.
    pub async fn connect(&self) -> Result<RawConn, ManagerError> {
        let limits = &self.shared.limits;
        let started = Instant::now();
        let result = tokio::time::timeout(limits.connect_timeout, self.connector.open()).await;
        let ins = &self.shared.instruments;
        match result {
            Ok(Ok(raw)) => {
                ins.on_created(started.elapsed());
                self.shared.reach.connected();
                Ok(raw)
            }
            Ok(Err(e)) => {
                let cause = self.shared.describe(&e);
                self.shared.connect_failed(&cause, super::Failure::of(&e));
                Err(ManagerError::Connect(e))
            }
            Err(_) => {
                let e = ManagerError::ConnectTimeout(limits.connect_timeout);
                self.shared
                    .connect_failed(&e.to_string(), super::Failure::Unreachable);
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
        let mut raw = self.connect().await?;
        let limits = &self.shared.limits;
        let inline = matches!(*self.shared.mode, op::Mode::Inline { .. });
        let session = tidy::session_id(&mut raw, inline, limits.ping_timeout).await;
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
        conn.session = session;
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
