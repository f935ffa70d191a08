//! Taking a connection: the fast path for an idle one, the pool's one FIFO queue, the bounds,
//! fail-fast while the database is known down, the wait's span and its diagnostics.

use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use deadpool::managed::{PoolError, Timeouts};
use tracing::Instrument;

use super::{Pool, Pooled, Site, holds};
use crate::classify::AcquireError;
use crate::observe::Instruments;
use crate::trace::spans;

/// A checkout that does not wait in the queue.
pub(super) const NOW: Timeouts = Timeouts {
    wait: Some(Duration::ZERO),
    create: None,
    recycle: None,
};

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

    /// The span of a checkout that waits (disabled when no subscriber wants it).
    fn wait_span(&self) -> tracing::Span {
        let name = self.shared.name.get().map_or("primary", String::as_str);
        spans::wait(&self.shared.trace, name)
    }

    /// [`timed_out`](Self::timed_out), recorded on the wait's span.
    fn waited_in_vain(
        &self,
        span: &Option<tracing::Span>,
        started: Instant,
        warn: bool,
    ) -> AcquireError {
        if let Some(span) = span {
            spans::record_failure(span, "pool_timeout");
        }
        self.timed_out(started.elapsed(), warn)
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
        // Created only once the caller has to wait (see `crate::trace`).
        let mut wait_span: Option<tracing::Span> = None;
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
                    let span = wait_span.insert(self.wait_span()).clone();
                    match tokio::time::timeout(left, now).instrument(span).await {
                        Ok(got) => got,
                        Err(_) => return Err(self.waited_in_vain(&wait_span, started, warn)),
                    }
                }
                (Poll::Pending, None) => {
                    let span = wait_span.insert(self.wait_span()).clone();
                    now.instrument(span).await
                }
            };
            match got {
                Ok(obj) => return Ok(Pooled::new(obj, site, Instant::now(), &self.shared)),
                Err(PoolError::Closed) => return Err(AcquireError::Closed),
                // None free (or opening one failed): wait in the queue below.
                Err(_) => {}
            }
        }
        let span = wait_span.get_or_insert_with(|| self.wait_span()).clone();
        let mut retry = Duration::from_millis(20);
        loop {
            if self.shared.closing.load(Ordering::Acquire) {
                spans::record_failure(&span, "pool_closed");
                return Err(AcquireError::Closed);
            }
            if self.shared.reach.is_down() && self.pool.status().available == 0 {
                spans::record_failure(&span, "connection");
                return Err(self.unreachable(started.elapsed(), true, warn));
            }
            let remaining = limit.map(|l| l.saturating_sub(started.elapsed()));
            if remaining.is_some_and(|r| r.is_zero()) {
                return Err(self.waited_in_vain(&wait_span, started, warn));
            }
            let got = match remaining {
                Some(r) => match tokio::time::timeout(r, self.pool.get())
                    .instrument(span.clone())
                    .await
                {
                    Ok(got) => got,
                    Err(_) => return Err(self.waited_in_vain(&wait_span, started, warn)),
                },
                None => self.pool.get().instrument(span.clone()).await,
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
}
