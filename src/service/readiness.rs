//! The readiness check that probes share: one check in flight at a time, its answer reused
//! for [`READY_CACHE`], and never more than one connection held by probes in total.
//!
//! Without this, every `/health/ready` request pinged on its own: a flood of probes took pool
//! slots from the callers, and once the pool was full each probe opened a fresh direct
//! connection, so 120 probe loops drove PostgreSQL to 13 backends against `connection_limit=3`.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::{DbService, PingError};

/// How long a readiness answer is reused by later probes.
pub const READY_CACHE: Duration = Duration::from_secs(1);

/// The outcome of a readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Readiness {
    /// The database's round-trip time, or why it could not be had.
    pub result: Result<Duration, PingError>,
    /// Every pooled connection was busy, so the check used a connection of its own.
    pub saturated: bool,
    /// The database server refuses new connections for want of a slot (why, redacted): it is
    /// up and full, so this is a warning, not a failure. The open connections serve; the
    /// check's own connection, when refused so, counts as the server's answer.
    pub server_full: Option<String>,
}

/// The last check and the right to run the next one.
#[derive(Debug, Default)]
pub(crate) struct ReadinessSlot(Mutex<Option<(Instant, Readiness)>>);

impl DbService {
    /// Whether the database answers, for readiness probes: concurrent callers share one check
    /// (the others wait for its answer), and an answer younger than `READY_CACHE` (1 s) is reused.
    /// The check pings on a pooled connection when one is free without queueing (so no caller
    /// loses its place), or else on one connection of its own outside the pool, which
    /// tells a busy database from a frozen one. Either way probes hold at most one connection.
    /// Bounded by `health_check_timeout` (twice that for a caller that waited for another's
    /// check).
    pub async fn readiness(&self) -> Readiness {
        let bound = self.config().pool().limits.health_check_timeout;
        if let Some(cause) = self.pool().down() {
            // Known down (fail-fast): say so at once, whatever an earlier check found; the
            // background probe is already trying.
            return Readiness {
                result: Err(PingError::Failed(cause)),
                saturated: false,
                server_full: None,
            };
        }
        let Ok(mut last) =
            tokio::time::timeout(bound.saturating_mul(2), self.inner.readiness.0.lock()).await
        else {
            return Readiness {
                result: Err(PingError::TimedOut(bound)),
                saturated: false,
                server_full: None,
            };
        };
        if let Some((at, answer)) = last.as_ref()
            && at.elapsed() < READY_CACHE
        {
            // The server's state is the pool's, known without I/O: always the current one.
            return Readiness {
                server_full: self.pool().server_full(),
                ..answer.clone()
            };
        }
        // The whole check within `health_check_timeout`: a checkout may check or ping an idle
        // connection, or open one, before the ping itself.
        let started = Instant::now();
        let answer = match tokio::time::timeout(bound, self.pool().try_acquire()).await {
            Ok(Some(mut conn)) => {
                let remaining = bound.saturating_sub(started.elapsed());
                let result = self
                    .inner
                    .primary
                    .ping_on(&mut conn, remaining, bound)
                    .await;
                drop(conn);
                Readiness {
                    result,
                    saturated: false,
                    server_full: self.pool().server_full(),
                }
            }
            Ok(None) => {
                let remaining = bound.saturating_sub(started.elapsed());
                let result = match self.inner.primary.check_direct_within(remaining).await {
                    // Refused for want of a slot: the server answered, so it is up. Failing
                    // readiness would take every instance out of rotation while the open
                    // connections serve; with none open, this instance can serve nothing.
                    Err(PingError::ServerFull(_)) if self.pool().size() > 0 => {
                        Ok(started.elapsed())
                    }
                    other => other,
                };
                Readiness {
                    result,
                    saturated: true,
                    server_full: self.pool().server_full(),
                }
            }
            Err(_) => Readiness {
                result: Err(PingError::TimedOut(bound)),
                saturated: false,
                server_full: None,
            },
        };
        *last = Some((Instant::now(), answer.clone()));
        answer
    }
}
