//! [`Transaction`]: the handle a transaction body receives (and [`DbService::begin`] returns).
//! It implements SeaORM's `ConnectionTrait` on the transaction's own pooled connection, so
//! every entity call works inside it; savepoints nest on it ([`savepoint`](super::savepoint)).

use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DbBackend, DbErr};
use tokio::sync::Mutex;
use tracing::Instrument;

use super::bump;
use super::error::TxError;
use super::finish::{commit_bound, finish_detached};
use crate::pool::{Op, Output, Pooled};
use crate::service::DbService;

/// An open transaction. Pass `&tx` to any SeaORM call. Inside
/// [`DbService::transaction`](crate::DbService::transaction) the service commits or rolls it
/// back; one from [`DbService::begin`] is ended with [`commit`](Self::commit) or
/// [`rollback`](Self::rollback), and rolls back (in a task of its own) when dropped open.
pub struct Transaction {
    /// `None` once the transaction has ended.
    conn: Mutex<Option<Pooled>>,
    backend: DbBackend,
    /// `query_timeout`, for each statement.
    deadline: Option<Duration>,
    pub(super) started: Instant,
    pub(super) timeout: Duration,
    /// Savepoints currently open (for their names).
    pub(super) depth: AtomicU32,
    db: DbService,
    /// The transaction's span (`db.begin()`'s own, or `db.transaction(...)`'s): its statements,
    /// and a rollback after the handle was dropped, nest under it.
    span: tracing::Span,
    owns_span: bool,
    /// Its BEGIN carried a session context (see [`crate::context`]).
    pub(super) carries_context: bool,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("backend", &self.backend)
            .field("elapsed", &self.started.elapsed())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Transaction {
    pub(super) fn new(conn: Pooled, started: Instant, timeout: Duration, db: DbService) -> Self {
        Self {
            conn: Mutex::new(Some(conn)),
            backend: db.conn().get_database_backend(),
            deadline: db.config().pool().deadlines.query_timeout,
            started,
            timeout,
            depth: AtomicU32::new(0),
            db,
            span: tracing::Span::none(),
            owns_span: false,
            carries_context: false,
        }
    }

    /// Gives the handle its transaction's span; `owned`: a `db.begin()` handle, which records
    /// the outcome (inside `db.transaction(...)` the closure's runner does).
    pub(super) fn with_span(mut self, span: tracing::Span, owned: bool) -> Self {
        self.span = span;
        self.owns_span = owned;
        self
    }

    /// Records how the transaction ended on its span.
    fn ended<T, E>(&self, result: &Result<T, TxError<E>>) {
        if self.owns_span {
            crate::trace::spans::transaction_ended(&self.span, super::outcome(result));
        }
    }

    /// Takes the connection out to end the transaction.
    pub(super) fn take(&mut self) -> Option<Pooled> {
        self.conn.get_mut().take()
    }

    /// How long the transaction has been open.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Commits, unless `timeout` has passed: then rolls back and returns [`TxError::Timeout`].
    pub async fn commit(mut self) -> Result<(), TxError<std::convert::Infallible>> {
        let Some(conn) = self.take() else {
            return Err(TxError::Database(DbErr::Custom(
                "transaction already finished".into(),
            )));
        };
        let counters = self.db.tx_counters();
        let ping_timeout = self.db.config().pool().limits.ping_timeout;
        // Dropped mid-commit (its caller went away): the span says `cancelled`.
        let span = self.span.clone();
        let mut unfinished = crate::trace::spans::Unfinished::transaction(&span);
        if !self.owns_span {
            unfinished.finished();
        }
        if self.started.elapsed() > self.timeout {
            let _ = finish_detached(self.db.tasks(), conn, false, ping_timeout, None)
                .instrument(self.span.clone())
                .await;
            bump(&counters.timeout);
            let result = Err(TxError::Timeout(self.timeout));
            unfinished.finished();
            self.ended(&result);
            return result;
        }
        let bound = commit_bound(self.timeout, ping_timeout);
        let result = finish_detached(self.db.tasks(), conn, true, bound, self.db.high_water())
            .instrument(self.span.clone())
            .await;
        let result = self.db.commit_outcome(result, self.timeout);
        unfinished.finished();
        self.ended(&result);
        result
    }

    /// Rolls back now.
    pub async fn rollback(mut self) -> Result<(), DbErr> {
        bump(&self.db.tx_counters().rollback);
        let result = match self.take() {
            Some(conn) => {
                let bound = self.db.config().pool().limits.ping_timeout;
                finish_detached(self.db.tasks(), conn, false, bound, None)
                    .instrument(self.span.clone())
                    .await
            }
            None => Ok(()),
        };
        // Recorded once the ROLLBACK answered: `rolled_back`, or `failed` (its connection is
        // closed, which ends the transaction on the server anyway).
        match &result {
            Ok(()) => self.ended(&Err::<(), _>(TxError::Aborted(()))),
            Err(e) => self.ended(&Err::<(), TxError<()>>(TxError::Database(e.clone()))),
        }
        result
    }

    /// `COPY` needs PostgreSQL, which this build leaves out.
    #[cfg(not(feature = "postgres"))]
    pub(crate) async fn copy_in(&self, _: &str, _: &[u8]) -> Result<u64, DbErr> {
        Err(DbErr::Custom("COPY needs PostgreSQL".into()))
    }

    /// `COPY ... FROM STDIN` with `data` on the transaction's own connection (PostgreSQL),
    /// within `query_timeout`; returns the rows the server copied.
    #[cfg(feature = "postgres")]
    pub(crate) async fn copy_in(&self, statement: &str, data: &[u8]) -> Result<u64, DbErr> {
        use sea_orm::{RuntimeErr, sqlx};
        let mut guard = self.conn.lock().await;
        let span = match guard.as_ref() {
            Some(pooled) => pooled.statement_span(crate::trace::spans::Text::internal(statement)),
            None => tracing::Span::none(),
        };
        let Some(conn) = guard.as_mut().and_then(|c| c.conn()) else {
            return Err(DbErr::Custom("the transaction has already ended".into()));
        };
        let Some(crate::pool::RawConn::Postgres(pg)) = conn.raw.as_mut() else {
            return Err(DbErr::Custom("COPY needs PostgreSQL".into()));
        };
        let started = std::time::Instant::now();
        let work = async {
            let mut copy = pg.copy_in_raw(statement).await?;
            copy.send(data).await?;
            copy.finish().await
        };
        let work = work.instrument(span.clone());
        let result: Result<u64, sqlx::Error> = match self.deadline {
            Some(d) => tokio::time::timeout(d, work).await.unwrap_or_else(|_| {
                Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer to COPY within query_timeout ({d:?})"),
                )))
            }),
            None => work.await,
        };
        if let Err(e) = &result {
            crate::trace::spans::failed_sqlx(&span, e);
        }
        if let Err(sqlx::Error::Io(_)) = &result {
            // Abandoned mid-copy: the connection's state is unknown; it is not reused.
            conn.broken = true;
        }
        self.db.instruments().on_statement(
            crate::trace::spans::Text::internal(statement),
            started.elapsed(),
            result.as_ref().err(),
        );
        result
            .map_err(|e| DbErr::Exec(RuntimeErr::SqlxError(std::sync::Arc::new(e))))
            .inspect_err(|e| self.db.instruments().on_error(e))
    }

    async fn run(&self, op: Op<'_>) -> Result<Output, DbErr> {
        if self.carries_context {
            let pgbouncer = self.db.config().pool().session.pgbouncer;
            crate::context::check_text(op.sql(), true, pgbouncer)?;
        }
        let mut guard = self.conn.lock().await;
        let Some(conn) = guard.as_mut() else {
            return Err(DbErr::Custom("the transaction has already ended".into()));
        };
        // A `db.begin()` handle's statements nest under its span; inside `db.transaction(...)`
        // the transaction's span is already current or an ancestor of the caller's own spans,
        // which a statement must stay under.
        let run = conn.run(op, self.deadline);
        let result = if self.owns_span {
            run.instrument(self.span.clone()).await
        } else {
            run.await
        };
        result.inspect_err(|e| self.db.instruments().on_error(e))
    }
}

impl Drop for Transaction {
    /// Still open: its caller went away (or never ended it). Rolled back explicitly in a task
    /// of its own, bounded by `ping_timeout`; a connection whose ROLLBACK fails is closed.
    fn drop(&mut self) {
        if let Some(conn) = self.take() {
            bump(&self.db.tx_counters().rollback);
            if self.owns_span {
                crate::trace::spans::transaction_ended(&self.span, "abandoned");
            }
            let bound = self.db.config().pool().limits.ping_timeout;
            let tasks = self.db.tasks().clone();
            let spawn_on = tasks.clone();
            let span = self.span.clone();
            spawn_on.spawn(async move {
                if let Err(e) = finish_detached(&tasks, conn, false, bound, None)
                    .instrument(span)
                    .await
                {
                    tracing::warn!(error = %e, "rollback of an abandoned transaction failed; its connection is closed");
                }
            });
        }
    }
}

crate::endpoint::connection_trait!(Transaction);
