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
//!   40P01; MySQL reports deadlocks as 40001), with exponential backoff and jitter.
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
use self::finish::{IN_FAILED_TRANSACTION, commit_bound, finish_detached, map_server_timeout};
pub use self::handle::Transaction;
pub use self::options::{Isolation, TxOptions};
pub use self::savepoint::savepoint;
use crate::classify::{find_db_err, is_retryable, sqlstate};
use crate::pool::Site;
use crate::service::DbService;

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

enum Attempt<T, E> {
    Done(T),
    Failed(TxError<E>),
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
    /// otherwise. The closure may run more than once (see [`TxOptions::retries`]), so it must
    /// not have effects outside the transaction that cannot be repeated.
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
        self.run_transaction(opts, body, site)
    }

    async fn run_transaction<F, T, E>(
        &self,
        opts: TxOptions,
        mut body: F,
        site: Site,
    ) -> Result<T, TxError<E>>
    where
        F: AsyncFnMut(&Transaction) -> Result<T, E> + Send,
        T: Send,
        E: std::error::Error + Send + 'static,
    {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(10))
            .with_max_delay(Duration::from_millis(500))
            .with_jitter()
            .with_max_times(opts.retries as usize)
            .build();
        loop {
            let error = match self.attempt(&opts, &mut body, site).await {
                Attempt::Done(value) => return Ok(value),
                Attempt::Failed(e) => e,
            };
            let retryable = match &error {
                TxError::Database(db) => is_retryable(db),
                TxError::Aborted(e) => find_db_err(e).is_some_and(is_retryable),
                _ => false,
            };
            match delays.next() {
                Some(delay) if retryable => {
                    bump(&self.tx_counters().retry);
                    tracing::debug!(delay_ms = delay.as_millis() as u64, error = %error, "retrying transaction");
                    tokio::time::sleep(delay).await;
                }
                _ => return Err(error),
            }
        }
    }

    async fn attempt<F, T, E>(&self, opts: &TxOptions, body: &mut F, site: Site) -> Attempt<T, E>
    where
        F: AsyncFnMut(&Transaction) -> Result<T, E> + Send,
        T: Send,
        E: Send,
    {
        let counters = self.tx_counters();
        let started = Instant::now();
        let mut tx = match self.begin_guarded(opts, started, site).await {
            Ok(tx) => tx,
            Err(e) => return Attempt::Failed(e.widen()),
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
                    Err(e) => Attempt::Failed(e.widen()),
                }
            }
            Ok(Err(e)) => {
                if let Err(e) = finish_detached(self.tasks(), conn, false, ping_timeout, None).await
                {
                    tracing::warn!(error = %e, "rollback failed; the connection is closed");
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

    /// Counts and classifies the result of a COMMIT. An error the server answered (it carries
    /// a SQLSTATE) means the transaction did not commit: [`IN_FAILED_TRANSACTION`] says a
    /// statement inside it had failed before (its error swallowed by the body), anything else
    /// is the COMMIT's own failure. Any other error (no answer in time, the connection broke,
    /// the task died) leaves the outcome unknown.
    pub(super) fn commit_outcome(
        &self,
        result: Result<(), DbErr>,
        timeout: Duration,
    ) -> Result<(), TxError<std::convert::Infallible>> {
        let counters = self.tx_counters();
        match result {
            Ok(()) => {
                bump(&counters.commit);
                Ok(())
            }
            Err(e) if sqlstate(&e).as_deref() == Some(IN_FAILED_TRANSACTION) => {
                self.instruments().on_error(&e);
                bump(&counters.failed_before_commit);
                tracing::error!(error = %e, "a statement failed inside the transaction and its error was not returned; rolled back instead of committed");
                Err(TxError::FailedBeforeCommit(e))
            }
            Err(e) if sqlstate(&e).is_some() => {
                self.instruments().on_error(&e);
                bump(&counters.rollback);
                Err(map_server_timeout(e, timeout, counters))
            }
            Err(e) => {
                self.instruments().on_error(&e);
                bump(&counters.commit_unknown);
                tracing::error!(error = %e, "COMMIT outcome unknown");
                Err(TxError::CommitOutcomeUnknown(e.to_string()))
            }
        }
    }

    fn backend_kind(&self) -> DbBackend {
        self.conn().get_database_backend()
    }
}
