//! [`WithContext`]: the executor `db.with_context(ctx)` returns, for statements,
//! transactions, replica reads, batch writes and streams that carry a session context (see
//! [`crate::context`]).

use std::panic::Location;
use std::pin::Pin;

use sea_orm::{ActiveModelTrait, DbBackend, DbErr, Statement, StreamTrait};

use crate::DbStream;
use crate::batch::{BatchError, BatchOptions, BatchOutcome};
use crate::config::Backend;
use crate::context::{ContextError, SessionContext, check_text};
use crate::pool::{Op, Output};
use crate::replica::{Reader, WalPosition};
use crate::service::DbService;
use crate::transaction::{Transaction, TxError, TxOptions};

impl DbService {
    /// An executor whose every statement carries `context`'s `app.*` settings as `SET LOCAL`
    /// in its own transaction (see [`crate::context`]): pass `&db.with_context(ctx)?` to any
    /// SeaORM call, or run transactions, replica reads, batches and streams through it.
    /// Cheap: no I/O, no connection is taken until a statement runs.
    ///
    /// Refused on MySQL and SQLite ([`ContextError::Unsupported`]): they have no custom
    /// session settings for a row-level security policy to read.
    pub fn with_context(&self, context: SessionContext) -> Result<WithContext, ContextError> {
        let backend = self.backend();
        if backend != Backend::Postgres {
            return Err(ContextError::Unsupported {
                backend: backend.name(),
            });
        }
        self.instruments().context_names.note(context.names());
        Ok(WithContext {
            db: self.clone(),
            context,
            backend: DbBackend::Postgres,
        })
    }

    /// The session contexts' names this service's primary pool has served (never their
    /// values), sorted: what `/health/db` shows.
    pub fn context_names(&self) -> Vec<String> {
        self.instruments().context_names.names()
    }
}

/// A SeaORM executor (and transaction, read, batch and stream entry) whose work carries a
/// session context; from [`DbService::with_context`]. Cheap to clone.
///
/// - Statements (`&tenant` in any SeaORM call) run outside a transaction as one message,
///   `SET LOCAL app.x = '...'; <statement>`, which PostgreSQL runs as one implicit
///   transaction: the settings end with the statement. Text that begins or ends a
///   transaction itself (`BEGIN`, `COMMIT`, ...) is refused, since what followed it would run
///   without the context: use [`transaction`](Self::transaction).
/// - [`transaction`](Self::transaction), [`transaction_with`](Self::transaction_with) and
///   [`begin`](Self::begin): the settings travel in the `BEGIN` message; every statement of the
///   transaction sees them, nothing after its end does.
/// - [`read`](Self::read) and its kin: replica reads carry the context (and so does a read that
///   falls back to the primary).
/// - [`insert_batch`](Self::insert_batch): the batch's transaction carries it.
/// - Streams (`StreamTrait`): the statement and the settings in one message, read row by row.
#[derive(Clone)]
pub struct WithContext {
    db: DbService,
    context: SessionContext,
    backend: DbBackend,
}

impl std::fmt::Debug for WithContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithContext")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl WithContext {
    /// The context this executor carries.
    pub fn context(&self) -> &SessionContext {
        &self.context
    }

    /// Runs `body` in a transaction with the service's defaults, the context set for all of
    /// it; see [`DbService::transaction`].
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
        self.transaction_with(self.db.tx_options(), body)
    }

    /// Runs `body` in a transaction with `opts`, the context set for all of it (each retry's
    /// `BEGIN` carries it again); see [`DbService::transaction_with`].
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
        self.db
            .run_transaction(opts, body, site, Some(self.context.clone()))
    }

    /// Begins a transaction with `opts` whose `BEGIN` carries the context; see
    /// [`DbService::begin`].
    #[track_caller]
    pub fn begin(
        &self,
        opts: TxOptions,
    ) -> impl Future<Output = Result<Transaction, TxError<std::convert::Infallible>>> + '_ {
        self.db
            .begin_in(opts, Some(Location::caller()), Some(self.context.clone()))
    }

    /// Reads through replicas with read-your-writes ([`DbService::read`]), with the context.
    pub fn read(&self) -> Reader {
        self.db.read().with_context(self.context.clone())
    }

    /// Reads that wait for `position` ([`DbService::read_after`]), with the context.
    pub fn read_after(&self, position: WalPosition) -> Reader {
        self.db
            .read_after(position)
            .with_context(self.context.clone())
    }

    /// Reads from any replica in rotation ([`DbService::read_any`]), with the context.
    pub fn read_any(&self) -> Reader {
        self.db.read_any().with_context(self.context.clone())
    }

    /// Inserts `models` in one transaction that carries the context
    /// ([`DbService::insert_batch`]). `method: None` picks `INSERT`s: PostgreSQL refuses
    /// `COPY FROM` into a table under row-level security.
    pub async fn insert_batch<A>(
        &self,
        models: Vec<A>,
        opts: BatchOptions,
    ) -> Result<BatchOutcome, BatchError>
    where
        A: ActiveModelTrait + Clone + Send + Sync + 'static,
    {
        self.db
            .insert_batch_in(models, opts, Some(self.context.clone()))
            .await
    }

    async fn run(&self, op: Op<'_>) -> Result<Output, DbErr> {
        self.check(op.sql())?;
        self.db.conn().run_with(op, self.context.sql()).await
    }

    /// Refuses text that would end the statement's own transaction (and the context with it),
    /// and behind PgBouncer a change of a setting for the whole session.
    fn check(&self, sql: &str) -> Result<(), DbErr> {
        check_text(sql, false, self.db.config().pool().session.pgbouncer)
    }
}

crate::endpoint::connection_trait!(WithContext);

impl StreamTrait for WithContext {
    type Stream<'a> = DbStream;

    fn get_database_backend(&self) -> DbBackend {
        self.backend
    }

    fn stream_raw<'a>(
        &'a self,
        stmt: Statement,
    ) -> Pin<Box<dyn Future<Output = Result<DbStream, DbErr>> + 'a + Send>> {
        Box::pin(async move {
            self.check(&stmt.sql)?;
            self.db.conn().stream_in(stmt, self.context.sql()).await
        })
    }
}
