//! Checking that an endpoint answers: through its pool (a connection had, then pinged) or
//! with a fresh connection beside it, each within `health_check_timeout`.

use std::time::{Duration, Instant};

use super::Endpoint;
use crate::classify::AcquireError;
use crate::pool::{Pooled, describe};

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

impl Endpoint {
    /// Checks that a connection can be had and answers, within `health_check_timeout` in all
    /// (the wait for a connection included). Returns the round-trip time.
    pub async fn ping(&self) -> Result<Duration, PingError> {
        let bound = self.config().pool().limits.health_check_timeout;
        let started = Instant::now();
        let mut conn = match self.pool().acquire(Some(bound), None).await {
            Ok(c) => c,
            Err(AcquireError::Unreachable { cause, .. }) => {
                return Err(PingError::Failed(cause));
            }
            Err(AcquireError::ServerFull { cause, .. }) => {
                return Err(PingError::ServerFull(cause));
            }
            Err(_) => return Err(PingError::TimedOut(bound)),
        };
        let remaining = bound.saturating_sub(started.elapsed());
        self.ping_on(&mut conn, remaining, bound).await
    }

    /// Pings on a connection the caller holds, within `within`.
    pub(crate) async fn ping_on(
        &self,
        conn: &mut Pooled,
        within: Duration,
        bound: Duration,
    ) -> Result<Duration, PingError> {
        self.check(within, bound, conn.ping(within)).await
    }

    /// Runs one database check within `within`, recording what went wrong; `bound` is the
    /// limit named in a timeout.
    async fn check(
        &self,
        within: Duration,
        bound: Duration,
        work: impl Future<Output = Result<(), sea_orm::sqlx::Error>>,
    ) -> Result<Duration, PingError> {
        let started = Instant::now();
        match tokio::time::timeout(within, work).await {
            Ok(Ok(())) => Ok(started.elapsed()),
            Ok(Err(e)) => {
                let msg = describe(self.config(), &e);
                self.record_error(&msg);
                self.instruments().connection_failed();
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
    /// `health_check_timeout`: it tells a busy database (answers) from a frozen or unreachable
    /// one (does not), without queueing behind the pool's callers.
    pub async fn check_direct(&self) -> Result<Duration, PingError> {
        let bound = self.config().pool().limits.health_check_timeout;
        self.check_direct_within(bound).await
    }

    /// [`check_direct`](Self::check_direct) within what is left of the bound.
    pub(crate) async fn check_direct_within(
        &self,
        within: Duration,
    ) -> Result<Duration, PingError> {
        let bound = self.config().pool().limits.health_check_timeout;
        self.check(within, bound, self.pool().connect_direct())
            .await
    }
}
