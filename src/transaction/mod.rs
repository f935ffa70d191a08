//! Transactions that cannot hang, leak or half-apply.
//!
//! [`DbService::transaction`] runs a closure inside a transaction with Prisma's options and
//! more:
//!
//! - `max_wait` bounds getting a connection and `BEGIN` ([`TxError::MaxWait`]);
//! - `timeout` bounds the whole transaction from `BEGIN` to `COMMIT` ([`TxError::Timeout`]). On
//!   PostgreSQL the server is given the same budget (`statement_timeout` and
//!   `idle_in_transaction_session_timeout`, transaction-scoped through `SET LOCAL`, which also
//!   works through PgBouncer), because sqlx never cancels a statement on the server: without it
//!   a timed-out `pg_sleep` would keep its connection and locks. These settings and the
//!   isolation level travel in one simple-protocol message right after `BEGIN`: one round trip
//!   where SeaORM alone spends one on `SET TRANSACTION` already;
//! - `isolation` and `read_only`;
//! - `retries` re-runs the closure after a serialization failure or deadlock (SQLSTATE 40001,
//!   40P01; MySQL reports deadlocks as 40001), with exponential backoff and jitter;
//! - a transaction that lost its server before its `COMMIT` was sent (a failover, a
//!   switchover, a dropped connection) is run again on a new connection within `max_wait`
//!   (below).
//!
//! The body receives a [`Transaction`]: our handle on the transaction's pooled connection,
//! which implements SeaORM's `ConnectionTrait`.
//!
//! **Cancellation.** sqlx 0.9.0 leaves a pooled PostgreSQL connection inside a transaction
//! when the future is dropped while `BEGIN` is in flight (sqlx#4385/#4393). Here the pool
//! knows: a connection is marked inside a transaction before `BEGIN` is sent and clean only
//! once `COMMIT`/`ROLLBACK` completed, and one given back in between is closed. `COMMIT` and
//! `ROLLBACK` run in spawned tasks that the caller cannot cancel; if the caller goes away (an
//! HTTP client disconnects), the body future is dropped first and the transaction is rolled
//! back explicitly in a task of its own.
//!
//! **Across a failover or switchover.** A transaction is run again, on a new connection, when
//! its `BEGIN` (with the wait for a connection) or its body failed, *before its `COMMIT` was
//! sent*, with an error that says the server can no longer serve it:
//!
//! - SQLSTATE 25006 (`read_only_sql_transaction`): the server turned read-only (a primary
//!   demoted in place, a standby that a DNS name still points at). Not when the transaction was
//!   opened with [`TxOptions::read_only`]: there 25006 is the body's own write;
//! - 57P01, 57P02, 57P03: the server is shutting down (smart or fast, immediate) or starting;
//! - class 08, or a driver error without SQLSTATE (I/O, TLS, protocol, a crashed connection
//!   worker): the connection broke;
//! - the pool's fail-fast "database unreachable" (no host can be had right now).
//!
//! The error is looked for as serialization failures are: [`TxError::Database`] itself, or a
//! `DbErr` in the `source()` chain of the body's error. Nothing of such an attempt committed: the
//! server rolls back a transaction whose `COMMIT` it never received, and a read-only server
//! refused the write before it changed anything. The closure runs again, so the same rule as
//! for serialization retries holds: no effects outside the transaction that cannot be repeated.
//!
//! These retries are bounded by time, not by `retries`: the budget is `max_wait`, counted from
//! the start of the call (the caller's bound on getting a working connection). Before each
//! retry, a pause that starts at 50–100 ms and doubles up to 0.5–1 s (exponential backoff,
//! with jitter adding up to as much again); a retry is made only if its pause ends before the
//! budget does, so the caller hears back at most one pause (under 1 s) before `max_wait` is up,
//! rather than after a pause with no time left to try. The retry waits for its connection and
//! `BEGIN` at most what is left of the budget, and once it has begun it has the whole
//! `timeout`, as every attempt does. So a call takes at most about `max_wait` + `timeout`
//! (+ the `COMMIT` bound). When the budget is spent the caller gets the
//! last attempt's error, except that a last attempt that ran out of the budget waiting for its
//! connection or `BEGIN` ([`TxError::MaxWait`]) reports the error that caused the retry: the
//! server's state is what the caller needs to hear (both answer HTTP 503 + `Retry-After`). Each
//! retry counts in `transactions.retry` and is logged at DEBUG; giving up is logged at WARN.
//!
//! Never run again: a transaction whose `COMMIT` was sent. A `COMMIT` that got no answer, or an
//! answer that the session is ending (57P01, 57P02, class 08: a backend terminated while
//! waiting for a synchronous standby says so *after* its local commit), is
//! [`TxError::CommitOutcomeUnknown`]. Neither are [`TxError::Timeout`],
//! [`TxError::FailedBeforeCommit`], or a body error with no such `DbErr` in it.
//!
//! [`savepoint`] nests: inside a transaction it runs a closure in a savepoint, so an inner
//! failure undoes only the inner part.

mod begin;
mod error;
mod finish;
mod handle;
mod options;
mod savepoint;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use std::panic::Location;

use sea_orm::{ConnectionTrait, DbBackend, DbErr};

pub use self::error::TxError;
use self::error::outcome;
use self::finish::{commit_bound, finish_detached};
pub use self::handle::Transaction;
pub use self::options::{Isolation, TxOptions};
pub use self::savepoint::savepoint;
use crate::classify::{find_db_err, is_retryable, is_server_lost, sqlstate};
use crate::pool::Site;
use crate::service::DbService;
use crate::trace::spans;
use tracing::Instrument;

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

enum Attempt<T, E> {
    Done(T),
    /// No connection or no `BEGIN`: the body never ran.
    NotBegun(TxError<E>),
    /// Failed before its `COMMIT` was sent (getting a connection, `BEGIN`, the body, the
    /// timeout).
    Failed(TxError<E>),
    /// `COMMIT` was sent and did not succeed.
    CommitFailed(TxError<E>),
}

/// The pauses between retries after a lost server: 50–100 ms, doubling to 0.5–1 s (backon's
/// jitter adds up to the delay again), for as long as the time budget lasts.
fn failover_backoff() -> backon::ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_millis(500))
        .with_jitter()
        .without_max_times()
        .build()
}

/// The WARN line of a transaction whose server did not come back within its budget.
fn give_up(error: &dyn std::fmt::Display, max_wait: Duration) {
    tracing::warn!(error = %error, max_wait_ms = max_wait.as_millis() as u64, "giving up on the transaction: its server did not come back within max_wait");
}

/// What to do after a failed attempt.
enum Next {
    /// Run the body again after a serialization failure or deadlock (counted by `retries`).
    Conflict,
    /// Run it again after a lost server (bounded by `max_wait`).
    Failover,
    /// Return the error.
    GiveUp,
}

/// Which retry, if any, `error` calls for. `committing` says the error came from `COMMIT`
/// (only a conflict, which the server answered by rolling back, is run again then).
fn next_step<E>(error: &TxError<E>, committing: bool, read_only: bool) -> Next
where
    E: std::error::Error + 'static,
{
    let db = match error {
        TxError::Database(db) => Some(db),
        TxError::Aborted(e) => find_db_err(e),
        _ => None,
    };
    let Some(db) = db else {
        return Next::GiveUp;
    };
    if is_retryable(db) {
        Next::Conflict
    } else if committing || !is_server_lost(db) {
        Next::GiveUp
    } else if read_only && sqlstate(db).as_deref() == Some("25006") {
        // The body wrote in the read-only transaction it asked for.
        Next::GiveUp
    } else {
        Next::Failover
    }
}

impl DbService {
    /// Transaction options with this service's configured defaults (`transaction_max_wait`,
    /// `transaction_timeout`); adjust per call with the builder methods.
    pub fn tx_options(&self) -> TxOptions {
        let p = self.config().pool();
        TxOptions::default()
            .max_wait(p.transactions.transaction_max_wait)
            .timeout(p.transactions.transaction_timeout)
    }

    /// Runs `body` in a transaction with this service's configured defaults
    /// ([`tx_options`](Self::tx_options): `transaction_max_wait`, `transaction_timeout`, the
    /// database's isolation, 3 retries); see [`transaction_with`](Self::transaction_with).
    ///
    /// ```no_run
    /// # async fn f(db: dbservice::DbService) -> Result<(), Box<dyn std::error::Error>> {
    /// use sea_orm::ConnectionTrait;
    /// db.transaction(async |tx| tx.execute_unprepared("UPDATE accounts SET balance_cents = 0").await)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn transaction<'a, F, T, E>(
        &'a self,
        body: F,
    ) -> impl Future<Output = Result<T, TxError<E>>> + 'a
    where
        F: AsyncFnMut(&Transaction) -> Result<T, E> + Send + 'a,
        T: Send + 'a,
        E: std::error::Error + Send + 'static,
    {
        // `#[track_caller]` chains: transaction_with sees our caller's location.
        self.transaction_with(self.tx_options(), body)
    }

    /// Runs `body` in a transaction with `opts`; commits if it returns `Ok`, rolls back
    /// otherwise. The closure may run more than once (after a serialization failure, see
    /// [`TxOptions::retries`]; after the server was lost before `COMMIT` was sent, within
    /// [`TxOptions::max_wait`]), so it must not have effects outside the transaction that
    /// cannot be repeated.
    ///
    /// The closure's error type must be an `Error` so a serialization failure can be found in
    /// its `source()` chain (e.g. a `thiserror` variant `Db(#[from] DbErr)`) and retried.
    ///
    /// ```no_run
    /// # async fn f(db: dbservice::DbService) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use dbservice::{Isolation, TxOptions};
    /// use sea_orm::ConnectionTrait;
    /// let opts = TxOptions::default().max_wait(Duration::from_millis(500)).isolation(Isolation::Serializable);
    /// let n = db
    ///     .transaction_with(opts, async |tx| {
    ///         tx.execute_unprepared("UPDATE accounts SET balance_cents = balance_cents + 1").await
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn transaction_with<'a, F, T, E>(
        &'a self,
        opts: TxOptions,
        body: F,
    ) -> impl Future<Output = Result<T, TxError<E>>> + 'a
    where
        F: AsyncFnMut(&Transaction) -> Result<T, E> + Send + 'a,
        T: Send + 'a,
        E: std::error::Error + Send + 'static,
    {
        let site = Some(Location::caller());
        self.run_transaction(opts, body, site, None)
    }

    /// [`run_attempts`](Self::run_attempts) in a transaction span (see [`crate::trace`]),
    /// which its statements nest under and which records the attempts and the outcome.
    /// `context`: a session context every attempt's BEGIN carries (none: refused under
    /// `require_context`).
    pub(crate) async fn run_transaction<F, T, E>(
        &self,
        opts: TxOptions,
        body: F,
        site: Site,
        context: Option<crate::context::SessionContext>,
    ) -> Result<T, TxError<E>>
    where
        F: AsyncFnMut(&Transaction) -> Result<T, E> + Send,
        T: Send,
        E: std::error::Error + Send + 'static,
    {
        if context.is_none() && self.conn().requires_context() {
            return Err(TxError::Database(self.refuse_transaction(site)));
        }
        let context = context.as_ref().map_or("", |c| c.sql());
        let span = spans::transaction(
            &self.pool().shared().trace,
            opts.isolation.map(Isolation::label),
            opts.read_only,
        );
        if span.is_disabled() {
            return self.run_attempts(opts, body, site, &span, context).await;
        }
        // Dropped before the end (the caller went away): the span says `cancelled`.
        let mut unfinished = spans::Unfinished::transaction(&span);
        let result = self
            .run_attempts(opts, body, site, &span, context)
            .instrument(span.clone())
            .await;
        unfinished.finished();
        spans::transaction_ended(&span, outcome(&result));
        result
    }

    async fn run_attempts<F, T, E>(
        &self,
        opts: TxOptions,
        mut body: F,
        site: Site,
        span: &tracing::Span,
        context: &str,
    ) -> Result<T, TxError<E>>
    where
        F: AsyncFnMut(&Transaction) -> Result<T, E> + Send,
        T: Send,
        E: std::error::Error + Send + 'static,
    {
        let called = Instant::now();
        let mut attempts = 0u32;
        let mut conflicts = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(10))
            .with_max_delay(Duration::from_millis(500))
            .with_jitter()
            .with_max_times(opts.retries as usize)
            .build();
        let mut failovers = failover_backoff();
        // The wait for a connection and BEGIN: the whole `max_wait`, except for a retry after a
        // lost server, which has what is left of it.
        let mut wait = opts.max_wait;
        // The error that caused the pending failover retry.
        let mut cause: Option<TxError<E>> = None;
        loop {
            attempts += 1;
            spans::attempt(span, attempts);
            let (error, committing, body_ran) = match self
                .attempt(&opts, wait, &mut body, site, span, context)
                .await
            {
                Attempt::Done(value) => return Ok(value),
                Attempt::NotBegun(e) => (e, false, false),
                Attempt::Failed(e) => (e, false, true),
                Attempt::CommitFailed(e) => (e, true, true),
            };
            // A failover retry that ran out of the budget before it began: the lost server is
            // the news, not the wait.
            let error = match (error, cause.take()) {
                (TxError::MaxWait(_), Some(cause)) => {
                    give_up(&cause, opts.max_wait);
                    return Err(cause);
                }
                (error, _) => error,
            };
            match next_step(&error, committing, opts.read_only) {
                Next::Conflict => match conflicts.next() {
                    Some(delay) => {
                        bump(&self.tx_counters().retry);
                        tracing::debug!(delay_ms = delay.as_millis() as u64, error = %error, "retrying transaction");
                        spans::retry(span, "conflict", delay);
                        tokio::time::sleep(delay).await;
                        wait = opts.max_wait;
                    }
                    None => return Err(error),
                },
                // `retries(0)`: the caller's closure must run at most once.
                Next::Failover if body_ran && opts.retries == 0 => return Err(error),
                Next::Failover => {
                    let left = opts.max_wait.saturating_sub(called.elapsed());
                    // Without a limit the iterator never ends: the budget is the limit.
                    let delay = failovers.next().unwrap_or(left);
                    if delay >= left {
                        give_up(&error, opts.max_wait);
                        return Err(error);
                    }
                    bump(&self.tx_counters().retry);
                    spans::retry(span, "server_lost", delay);
                    tracing::debug!(delay_ms = delay.as_millis() as u64, left_ms = left.as_millis() as u64, error = %error, "the transaction lost its server before COMMIT; retrying on a new connection");
                    tokio::time::sleep(delay).await;
                    // Positive but for a scheduler stall; then the retry's wait ends at once
                    // and reports `error`, as a retry that ran out of the budget does.
                    wait = opts.max_wait.saturating_sub(called.elapsed());
                    cause = Some(error);
                }
                Next::GiveUp => return Err(error),
            }
        }
    }

    /// One run of `body`; `wait` bounds getting a connection and `BEGIN`.
    async fn attempt<F, T, E>(
        &self,
        opts: &TxOptions,
        wait: Duration,
        body: &mut F,
        site: Site,
        span: &tracing::Span,
        context: &str,
    ) -> Attempt<T, E>
    where
        F: AsyncFnMut(&Transaction) -> Result<T, E> + Send,
        T: Send,
        E: std::error::Error + Send + 'static,
    {
        let counters = self.tx_counters();
        let started = Instant::now();
        // Boxed, as in `begin`: the caller's future would otherwise hold the checkout's and
        // BEGIN's inline (a deep stack in debug builds).
        let mut tx = match Box::pin(self.begin_guarded(opts, wait, started, site, context)).await {
            // Its span: a handle dropped mid-body rolls back under it.
            Ok(tx) => tx.with_span(span.clone(), false),
            Err(e) => return Attempt::NotBegun(e.widen()),
        };
        let budget = opts.timeout.saturating_sub(started.elapsed());
        let outcome = tokio::time::timeout(budget, body(&tx)).await;
        let ping_timeout = self.config().pool().limits.ping_timeout;
        let Some(conn) = tx.take() else {
            return Attempt::Failed(TxError::Database(DbErr::Custom(
                "transaction vanished".into(),
            )));
        };
        match outcome {
            Ok(Ok(value)) => {
                // COMMIT in its own task: it completes even if the caller goes away now.
                let bound = commit_bound(opts.timeout, ping_timeout);
                // A read-only transaction wrote nothing for a replica to wait for.
                let track = self.high_water().filter(|_| !opts.read_only);
                let result = finish_detached(self.tasks(), conn, true, bound, track).await;
                match self.commit_outcome(result, opts.timeout) {
                    Ok(()) => Attempt::Done(value),
                    Err(e) => Attempt::CommitFailed(e.widen()),
                }
            }
            Ok(Err(e)) => {
                if let Err(rollback) =
                    finish_detached(self.tasks(), conn, false, ping_timeout, None).await
                {
                    // Expected on a connection the server dropped: no news worth a WARN then.
                    if find_db_err(&e).is_some_and(is_server_lost) {
                        tracing::debug!(error = %rollback, "rollback after a lost server failed; the connection is closed");
                    } else {
                        tracing::warn!(error = %rollback, "rollback failed; the connection is closed");
                    }
                }
                bump(&counters.rollback);
                Attempt::Failed(TxError::Aborted(e))
            }
            Err(_elapsed) => {
                // The body future (and any statement it had in flight) is gone; roll back
                // explicitly (a statement abandoned mid-flight is drained first).
                let _ = finish_detached(self.tasks(), conn, false, ping_timeout, None).await;
                bump(&counters.timeout);
                Attempt::Failed(TxError::Timeout(opts.timeout))
            }
        }
    }

    fn backend_kind(&self) -> DbBackend {
        self.conn().get_database_backend()
    }
}

#[cfg(test)]
mod tests;
