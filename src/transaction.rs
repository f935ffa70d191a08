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
//! **Cancellation.** sqlx 0.9.0 leaves a pooled PostgreSQL connection inside a transaction
//! when the future is dropped while `BEGIN` is in flight (sqlx#4385/#4393). Here `BEGIN`,
//! `COMMIT` and `ROLLBACK` run in spawned tasks that the caller cannot cancel; if the caller
//! goes away (an HTTP client disconnects), the body future is dropped first and the transaction
//! is rolled back explicitly in a task of its own, never through SeaORM's `Drop` (which panics
//! if it runs while a statement holds the connection's lock).
//!
//! [`savepoint`] nests: inside a transaction it runs a closure in a savepoint, so an inner
//! failure undoes only the inner part.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, IsolationLevel,
    TransactionTrait,
};
use serde::Serialize;

use crate::classify::{find_db_err, is_retryable, sqlstate};
use crate::gate::Permit;
use crate::observe::Instruments;
use crate::service::{DbService, Tasks};
use crate::stats::TxCounters;

/// Transaction isolation levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Isolation {
    /// Each statement sees data committed before it started (PostgreSQL's default).
    ReadCommitted,
    /// The whole transaction sees one snapshot (MySQL's default).
    RepeatableRead,
    /// As if transactions ran one after another; conflicts fail with SQLSTATE 40001 and are
    /// retried (see [`TxOptions::retries`]).
    Serializable,
}

impl From<Isolation> for IsolationLevel {
    fn from(i: Isolation) -> Self {
        match i {
            Isolation::ReadCommitted => IsolationLevel::ReadCommitted,
            Isolation::RepeatableRead => IsolationLevel::RepeatableRead,
            Isolation::Serializable => IsolationLevel::Serializable,
        }
    }
}

/// Options of [`DbService::transaction`]; build from `TxOptions::default()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TxOptions {
    max_wait: Duration,
    timeout: Duration,
    isolation: Option<Isolation>,
    read_only: bool,
    retries: u32,
}

impl Default for TxOptions {
    /// `max_wait` 2 s, `timeout` 5 s (Prisma's defaults), the database's default isolation,
    /// read-write, 3 retries.
    fn default() -> Self {
        Self {
            max_wait: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            isolation: None,
            read_only: false,
            retries: 3,
        }
    }
}

impl TxOptions {
    /// Longest wait for a connection and `BEGIN`. Default 2 s.
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = d;
        self
    }

    /// Longest time from `BEGIN` to `COMMIT`, per attempt. Default 5 s.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Isolation level. Default: the database's (read committed on PostgreSQL, repeatable
    /// read on MySQL). Ignored on SQLite, whose transactions are serializable.
    pub fn isolation(mut self, i: Isolation) -> Self {
        self.isolation = Some(i);
        self
    }

    /// Read-only transaction: writes fail. Default false. Ignored on SQLite.
    pub fn read_only(mut self, yes: bool) -> Self {
        self.read_only = yes;
        self
    }

    /// How many times the closure is re-run after a serialization failure or deadlock.
    /// Default 3; 0 disables retries.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }
}

/// Why a transaction did not commit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxError<E> {
    /// No connection (and `BEGIN`) within `max_wait`. Nothing ran; safe to retry later
    /// (HTTP 503 + `Retry-After`).
    #[error("no database connection within max_wait ({0:?})")]
    MaxWait(Duration),
    /// The transaction ran past its `timeout` and was rolled back (HTTP 504).
    #[error("transaction timed out after {0:?} and was rolled back")]
    Timeout(Duration),
    /// A database error outside the closure (`BEGIN`, `COMMIT`, ...), or a retryable conflict
    /// that persisted through every retry. The transaction was rolled back.
    #[error("transaction failed: {0}")]
    Database(DbErr),
    /// The closure returned an error; the transaction was rolled back.
    #[error("transaction aborted: {0}")]
    Aborted(E),
    /// `COMMIT` was sent, but no answer came within the commit bound (the transaction's
    /// `timeout` + 1 s) or the connection broke while waiting: the transaction may or may not
    /// have committed. Do not blindly retry: look the effect up (an idempotency key), or retry
    /// only what is idempotent (HTTP 504 `commit_outcome_unknown`, no `Retry-After`).
    #[error("the outcome of COMMIT is unknown: {0}")]
    CommitOutcomeUnknown(String),
}

impl TxError<std::convert::Infallible> {
    /// The same error with another closure error type (there is no `Aborted` to convert).
    fn widen<E>(self) -> TxError<E> {
        match self {
            TxError::MaxWait(d) => TxError::MaxWait(d),
            TxError::Timeout(d) => TxError::Timeout(d),
            TxError::Database(e) => TxError::Database(e),
            TxError::CommitOutcomeUnknown(why) => TxError::CommitOutcomeUnknown(why),
            TxError::Aborted(never) => match never {},
        }
    }
}

/// A transaction begun with [`DbService::begin`]; rolls back when dropped uncommitted.
pub struct Transaction {
    open: Open,
    started: Instant,
    timeout: Duration,
    db: DbService,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("elapsed", &self.started.elapsed())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for Transaction {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        // Cannot fail: `open` holds the transaction from `begin` until `commit`/`rollback`,
        // which consume the handle, and `Drop`, which ends it; no `&self` outlives any of them.
        // (`Deref` has no way to return an error.)
        self.open
            .txn()
            .expect("a Transaction handle always holds its transaction")
    }
}

impl Transaction {
    /// Commits, unless `timeout` has passed: then rolls back and returns [`TxError::Timeout`].
    pub async fn commit(mut self) -> Result<(), TxError<std::convert::Infallible>> {
        let counters = self.db.tx_counters();
        let Some((txn, permit)) = self.open.take() else {
            return Err(TxError::Database(DbErr::Custom(
                "transaction already finished".into(),
            )));
        };
        let ping_timeout = self.db.config().pool().ping_timeout;
        if self.started.elapsed() > self.timeout {
            let _ = finish_detached(self.db.tasks(), txn, permit, false, ping_timeout).await;
            bump(&counters.timeout);
            return Err(TxError::Timeout(self.timeout));
        }
        let bound = commit_bound(self.timeout, ping_timeout);
        let result = finish_detached(self.db.tasks(), txn, permit, true, bound).await;
        self.db.commit_outcome(result, self.timeout)
    }

    /// Rolls back now.
    pub async fn rollback(mut self) -> Result<(), DbErr> {
        bump(&self.db.tx_counters().rollback);
        match self.open.take() {
            Some((txn, permit)) => {
                let bound = self.db.config().pool().ping_timeout;
                finish_detached(self.db.tasks(), txn, permit, false, bound).await
            }
            None => Ok(()),
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if self.open.txn().is_some() {
            bump(&self.db.tx_counters().rollback);
        }
        // `open`'s own Drop rolls back in a spawned task.
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// How long a caller waits for the answer to `COMMIT`: the transaction's `timeout` (at least
/// `ping_timeout`) + 1 s. A COMMIT may legitimately be slow (an fsync stall, a synchronous
/// standby), and an answer that comes late is still an answer, whereas giving up early turns
/// a commit into "unknown". The server gives up first: the transaction's `statement_timeout`
/// (its budget + [`SERVER_GRACE`]) cancels a COMMIT stuck in a deferred trigger or a lock.
fn commit_bound(timeout: Duration, ping_timeout: Duration) -> Duration {
    timeout
        .max(ping_timeout)
        .saturating_add(Duration::from_secs(1))
}

/// Runs COMMIT or ROLLBACK in a task of its own on the service's runtime: it completes even if
/// the caller is dropped meanwhile (or its HTTP worker stops), and the permit (the right to the
/// connection) is returned only when it is done. The caller waits at most `bound`; a server
/// that does not answer within it is frozen or gone, and the caller gets a connection error
/// (no SQLSTATE) instead of a hang. For COMMIT that error means the outcome is unknown (see
/// [`DbService::commit_outcome`]).
async fn finish_detached(
    tasks: &Arc<Tasks>,
    txn: DatabaseTransaction,
    permit: Option<Permit>,
    commit: bool,
    bound: Duration,
) -> Result<(), DbErr> {
    // The task's own bound: a COMMIT/ROLLBACK the server never answers is abandoned, and the
    // connection goes back through the release check, which closes it.
    let task = tasks.spawn(async move {
        let work = async {
            if commit {
                txn.commit().await
            } else {
                txn.rollback().await
            }
        };
        let result = tokio::time::timeout(bound.saturating_mul(2), work).await;
        drop(permit);
        result.unwrap_or_else(|_| {
            Err(DbErr::Custom(
                "abandoned: no answer from the database".into(),
            ))
        })
    });
    let what = if commit { "COMMIT" } else { "ROLLBACK" };
    match tokio::time::timeout(bound, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(DbErr::Custom(format!("the {what} task failed: {e}"))),
        Err(_) => Err(DbErr::Conn(sea_orm::RuntimeErr::SqlxError(
            std::sync::Arc::new(sea_orm::sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer to {what} within {bound:?}"),
            ))),
        ))),
    }
}

/// Owns the open transaction and its permit; if dropped (the caller's future was cancelled)
/// it rolls back explicitly in a spawned task instead of relying on SeaORM's `Drop`.
struct Open {
    txn: Option<DatabaseTransaction>,
    permit: Option<Permit>,
    /// `ping_timeout`: how long a rollback after cancellation may take.
    bound: Duration,
    /// Where a cancellation is noted, so the connection gets the full release check.
    instruments: Arc<Instruments>,
    /// Where that rollback runs.
    tasks: Arc<Tasks>,
}

impl Open {
    fn txn(&self) -> Option<&DatabaseTransaction> {
        self.txn.as_ref()
    }

    fn take(&mut self) -> Option<(DatabaseTransaction, Option<Permit>)> {
        self.txn.take().map(|t| (t, self.permit.take()))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some((txn, permit)) = self.take() {
            self.instruments.note_trouble();
            let bound = self.bound;
            self.tasks.spawn(async move {
                match tokio::time::timeout(bound, txn.rollback()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "rollback after cancellation failed"),
                    Err(_) => tracing::warn!(
                        "rollback after cancellation got no answer; connection abandoned"
                    ),
                }
                drop(permit);
            });
        }
    }
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
            .max_wait(p.transaction_max_wait)
            .timeout(p.transaction_timeout)
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
    /// use dbservice::transaction::{Isolation, TxOptions};
    /// use sea_orm::ConnectionTrait;
    /// let opts = TxOptions::default().max_wait(Duration::from_millis(500)).isolation(Isolation::Serializable);
    /// let n = db
    ///     .transaction(opts, async |tx| {
    ///         tx.execute_unprepared("UPDATE accounts SET balance_cents = balance_cents + 1").await
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn transaction<F, T, E>(&self, opts: TxOptions, mut body: F) -> Result<T, TxError<E>>
    where
        F: AsyncFnMut(&DatabaseTransaction) -> Result<T, E> + Send,
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
            let error = match self.attempt(&opts, &mut body).await {
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

    async fn attempt<F, T, E>(&self, opts: &TxOptions, body: &mut F) -> Attempt<T, E>
    where
        F: AsyncFnMut(&DatabaseTransaction) -> Result<T, E> + Send,
        T: Send,
        E: Send,
    {
        let counters = self.tx_counters();
        let started = Instant::now();
        let mut open = match self.begin_guarded(opts, started).await {
            Ok(open) => open,
            Err(e) => return Attempt::Failed(e.widen()),
        };
        let Some(txn) = open.txn() else {
            return Attempt::Failed(TxError::Database(DbErr::Custom(
                "transaction vanished".into(),
            )));
        };

        let budget = opts.timeout.saturating_sub(started.elapsed());

        let outcome = tokio::time::timeout(budget, body(txn)).await;
        match outcome {
            Ok(Ok(value)) => {
                let Some((txn, permit)) = open.take() else {
                    return Attempt::Failed(TxError::Database(DbErr::Custom(
                        "transaction vanished".into(),
                    )));
                };
                // COMMIT in its own task: it completes even if the caller goes away now.
                let bound = commit_bound(opts.timeout, self.config().pool().ping_timeout);
                let result = finish_detached(self.tasks(), txn, permit, true, bound).await;
                match self.commit_outcome(result, opts.timeout) {
                    Ok(()) => Attempt::Done(value),
                    Err(e) => Attempt::Failed(e.widen()),
                }
            }
            Ok(Err(e)) => self.finish_failed(&mut open, TxError::Aborted(e)).await,
            Err(_elapsed) => {
                // The body future (and any statement lock it held) is gone; roll back explicitly.
                self.instruments().note_trouble();
                if let Some((txn, permit)) = open.take() {
                    let bound = self.config().pool().ping_timeout;
                    let _ = finish_detached(self.tasks(), txn, permit, false, bound).await;
                }
                bump(&counters.timeout);
                Attempt::Failed(TxError::Timeout(opts.timeout))
            }
        }
    }

    /// Acquires a connection and runs `BEGIN` (and on PostgreSQL the transaction's settings,
    /// see [`settings_after_begin`]) within `max_wait`, in a task the caller cannot cancel (a
    /// cancelled BEGIN would poison the connection: sqlx#4393). If nobody takes the
    /// transaction (max_wait passed, or the caller was dropped), that task rolls it back.
    /// `started` is when the transaction's `timeout` began to run.
    async fn begin_guarded(
        &self,
        opts: &TxOptions,
        started: Instant,
    ) -> Result<Open, TxError<std::convert::Infallible>> {
        let max_wait = |counters: &TxCounters| {
            bump(&counters.max_wait);
            TxError::MaxWait(opts.max_wait)
        };
        // The measured wait for a connection (see `gate`), bounded by max_wait.
        let permit = match self.gate().enter(Some(opts.max_wait)).await {
            Ok(p) => p,
            Err(DbErr::ConnectionAcquire(_)) => return Err(max_wait(self.tx_counters())),
            Err(e) => return Err(TxError::Database(e)),
        };
        let conn = self.conn().raw().clone();
        let isolation = opts.isolation.map(IsolationLevel::from);
        let access = opts.read_only.then_some(AccessMode::ReadOnly);
        let (begin_isolation, begin_access, settings) = match self.backend_kind() {
            DbBackend::Sqlite => (None, None, None),
            // SeaORM would send `SET TRANSACTION` as a round trip of its own; it goes into
            // the one settings message instead.
            DbBackend::Postgres => (None, None, Some((isolation, access, opts.timeout))),
            _ => (isolation, access, None),
        };
        let (deliver, receive) = tokio::sync::oneshot::channel();
        let bound = self.config().pool().ping_timeout;
        let give_up = opts.max_wait.saturating_add(bound);
        self.tasks().spawn(async move {
            // Bounded: a BEGIN the server never answers is abandoned; the release check then
            // closes the connection (it is inside a transaction or does not answer).
            let work = async {
                let txn = conn
                    .begin_with_config(begin_isolation, begin_access)
                    .await?;
                if let Some((isolation, access, timeout)) = settings {
                    let sql = settings_after_begin(isolation, access, timeout, started.elapsed());
                    if let Err(e) = txn.execute_unprepared(&sql).await {
                        let _ = txn.rollback().await;
                        return Err(e);
                    }
                }
                Ok(txn)
            };
            let begun = tokio::time::timeout(give_up, work)
                .await
                .unwrap_or_else(|_| {
                    Err(DbErr::ConnectionAcquire(
                        sea_orm::error::ConnAcquireErr::Timeout,
                    ))
                });
            if let Err(Ok(txn)) = deliver.send(begun) {
                let _ = tokio::time::timeout(bound, txn.rollback()).await;
            }
        });
        let remaining = opts.max_wait.saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, receive).await {
            Ok(Ok(Ok(txn))) => Ok(Open {
                txn: Some(txn),
                permit: Some(permit),
                bound,
                instruments: self.instruments_arc(),
                tasks: self.tasks().clone(),
            }),
            Ok(Ok(Err(DbErr::ConnectionAcquire(_)))) | Err(_) => {
                // A BEGIN may still be in flight on a connection we no longer wait for.
                self.instruments().note_trouble();
                Err(max_wait(self.tx_counters()))
            }
            Ok(Ok(Err(e))) => {
                self.instruments().on_error(&e);
                Err(TxError::Database(e))
            }
            Ok(Err(_)) => Err(TxError::Database(DbErr::Custom(
                "the BEGIN task died".into(),
            ))),
        }
    }

    /// Begins a transaction with `opts` and returns a handle: use it (it derefs to SeaORM's
    /// `DatabaseTransaction`) and [`commit`](Transaction::commit) it. Dropping the handle rolls
    /// back (explicitly, in a spawned task). `max_wait` bounds the begin; `timeout` is enforced
    /// by the server on PostgreSQL (statements and idle time inside the transaction) and by
    /// `commit`, which rolls back and returns [`TxError::Timeout`] once it has passed.
    /// `retries` does not apply: only the closure form can re-run your code.
    pub async fn begin(
        &self,
        opts: TxOptions,
    ) -> Result<Transaction, TxError<std::convert::Infallible>> {
        let started = Instant::now();
        let open = self.begin_guarded(&opts, started).await?;
        Ok(Transaction {
            open,
            started,
            timeout: opts.timeout,
            db: self.clone(),
        })
    }

    async fn finish_failed<T, E>(&self, open: &mut Open, error: TxError<E>) -> Attempt<T, E> {
        let bound = self.config().pool().ping_timeout;
        if let Some((txn, permit)) = open.take()
            && let Err(e) = finish_detached(self.tasks(), txn, permit, false, bound).await
        {
            self.instruments().note_trouble();
            tracing::warn!(error = %e, "rollback failed; the connection is discarded");
        }
        bump(&self.tx_counters().rollback);
        Attempt::Failed(error)
    }

    /// Counts and classifies the result of a COMMIT. An error the server answered (it carries
    /// a SQLSTATE) means the transaction did not commit; any other error (no answer in time,
    /// the connection broke, the task died) leaves the outcome unknown.
    fn commit_outcome(
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
            Err(e) if sqlstate(&e).is_some() => {
                self.instruments().on_error(&e);
                bump(&counters.rollback);
                Err(map_server_timeout(e, timeout, counters))
            }
            Err(e) => {
                self.instruments().on_error(&e);
                self.instruments().note_trouble();
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

/// A statement the server cancelled because our transaction budget ran out is a timeout.
fn map_server_timeout<E>(e: DbErr, timeout: Duration, counters: &TxCounters) -> TxError<E> {
    if matches!(sqlstate(&e).as_deref(), Some("57014" | "25P03")) {
        bump(&counters.timeout);
        TxError::Timeout(timeout)
    } else {
        TxError::Database(e)
    }
}

/// How much later than the client the server gives up: the client's timeout fires first and
/// reports `Timeout`; the server's is the backstop that frees the connection and the locks
/// (sqlx cannot cancel a running statement) and guards against a stalled client.
pub(crate) const SERVER_GRACE: Duration = Duration::from_millis(250);

/// The PostgreSQL settings of a transaction just begun, as one simple-protocol message (one
/// round trip, several statements): the isolation level and access mode (what SeaORM would send
/// as a `SET TRANSACTION` of its own), and the transaction's remaining budget plus
/// [`SERVER_GRACE`] as `statement_timeout` and `idle_in_transaction_session_timeout`, so a stuck
/// statement or a stalled client cannot hold locks past the timeout. `SET LOCAL`: gone at
/// COMMIT/ROLLBACK, and safe behind PgBouncer in transaction mode. Only numbers and SeaORM's
/// fixed keywords are formatted in.
fn settings_after_begin(
    isolation: Option<IsolationLevel>,
    access: Option<AccessMode>,
    timeout: Duration,
    elapsed: Duration,
) -> String {
    let ms = timeout
        .saturating_sub(elapsed)
        .saturating_add(SERVER_GRACE)
        .as_millis();
    let level = isolation.map(|l| format!(" ISOLATION LEVEL {l}"));
    let mode = access.map(|m| format!(" {m}"));
    let set_transaction = match (level, mode) {
        (None, None) => String::new(),
        (l, m) => format!(
            "SET TRANSACTION{}{}; ",
            l.unwrap_or_default(),
            m.unwrap_or_default()
        ),
    };
    format!(
        "{set_transaction}SET LOCAL statement_timeout = {ms}; \
         SET LOCAL idle_in_transaction_session_timeout = {ms}"
    )
}

/// Runs `body` in a savepoint of `txn`: on error only the savepoint's work is undone and the
/// outer transaction continues.
pub async fn savepoint<F, T, E>(txn: &DatabaseTransaction, body: F) -> Result<T, TxError<E>>
where
    F: AsyncFnOnce(&DatabaseTransaction) -> Result<T, E> + Send,
    T: Send,
    E: Send,
{
    let inner = txn.begin().await.map_err(TxError::Database)?;
    match body(&inner).await {
        Ok(value) => {
            inner.commit().await.map_err(TxError::Database)?;
            Ok(value)
        }
        Err(e) => {
            inner.rollback().await.map_err(TxError::Database)?;
            Err(TxError::Aborted(e))
        }
    }
}
