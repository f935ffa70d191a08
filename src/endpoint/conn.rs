//! [`DbConn`]: the SeaORM executor a backend uses, `db.conn()`.
//!
//! It implements SeaORM's `ConnectionTrait` (and `StreamTrait`), so any SeaORM call takes it
//! (`Account::find_by_id(id).one(db.conn())`, `paginate`, `insert_many`). Each statement takes
//! a connection from the service's [pool](crate::pool) (a measured wait, at most
//! `pool_timeout`), runs there as SeaORM's own sqlx driver would run it, bounded by
//! `query_timeout`, and has its errors counted by kind. It deliberately does not implement
//! `TransactionTrait`: transactions go through
//! [`DbService::transaction`](crate::DbService::transaction) or
//! [`DbService::begin`](crate::DbService::begin), which bound them and survive cancellation.
//! [`DbConn::raw`] is a separate SeaORM connection (one connection) for migrations.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, DbBackend, DbErr, QueryResult, Statement, StreamTrait};

use super::position::{CURRENT_POSITION_SQL, HighWater, position_in};
use crate::classify::{safe_to_rerun, sqlstate};
use crate::pool::{Op, Output, Pool, Pooled, RowStream, to_db_err};
use crate::reads::surely_reads;

/// The service's SeaORM executor; cheap to clone.
#[derive(Clone)]
pub struct DbConn {
    pool: Pool,
    raw: DatabaseConnection,
    backend: DbBackend,
    deadline: Option<Duration>,
    stream_bound: Option<Duration>,
    /// With read replicas: the instance's write position, advanced after each write.
    high_water: Option<Arc<HighWater>>,
    /// `require_context`: statements without a session context are refused.
    require_context: bool,
}

impl std::fmt::Debug for DbConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConn")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl DbConn {
    /// `deadline` bounds each statement on the client (`query_timeout`); `statement_timeout`
    /// is below it, so the server cancels a slow statement itself and the client bound only
    /// fires when the server cannot answer at all (frozen, unreachable).
    pub(crate) fn new(
        pool: Pool,
        raw: DatabaseConnection,
        backend: DbBackend,
        deadline: Option<Duration>,
        stream_bound: Option<Duration>,
        high_water: Option<Arc<HighWater>>,
        require_context: bool,
    ) -> Self {
        Self {
            pool,
            raw,
            backend,
            deadline,
            stream_bound,
            high_water,
            require_context,
        }
    }

    /// A SeaORM connection of its own (one connection, opened on first use and closed when
    /// idle), outside the service's pool: its waits are not measured or bounded by the
    /// service, and its transactions (`raw().begin()`) inherit sqlx's cancellation bug (see
    /// `CONNECTION_POOLING.md`, "Transactions"). For migrations (`sea-orm-migration` needs
    /// SeaORM's own connection type) and driver-specific accessors.
    pub fn raw(&self) -> &DatabaseConnection {
        &self.raw
    }

    /// Runs one statement on a pooled connection. A statement that met a connection the
    /// server had already ended while it sat in the pool never ran, so it is run once more,
    /// on another connection (the dead one is closed), but only where running it twice cannot
    /// do harm: after `idle_session_timeout` (57P05, sent only to idle sessions), and after
    /// `pg_terminate_backend` (57P01) only for a `SELECT`, since a backend killed while
    /// waiting for a synchronous standby reports 57P01 after its local commit.
    ///
    /// A caller's statement: under `require_context` it is refused (see [`crate::context`]).
    pub(crate) async fn run(&self, op: Op<'_>) -> Result<Output, DbErr> {
        if self.require_context {
            return Err(self.refuse(op.sql()));
        }
        self.run_bounded(op, None, "").await
    }

    /// [`run`](Self::run) never refused: with a session context's `SET LOCAL`s (`context`),
    /// which travel with the statement, or the service's own statements (empty).
    pub(crate) async fn run_with(&self, op: Op<'_>, context: &str) -> Result<Output, DbErr> {
        self.run_bounded(op, None, context).await
    }

    /// Whether `require_context` is on.
    pub(crate) fn requires_context(&self) -> bool {
        self.require_context
    }

    /// [`run`](Self::run) with the wait for a connection bounded by `bound` (and
    /// `pool_timeout`), and no WARN line when that wait times out: for a caller with somewhere
    /// else to go (a replica read falls back to the primary). `context`: a session context's
    /// `SET LOCAL`s, empty for none; never refused (the caller checked).
    pub(crate) async fn run_within(
        &self,
        op: Op<'_>,
        bound: Option<Duration>,
        context: &str,
    ) -> Result<Output, DbErr> {
        self.run_bounded(op, Some(bound), context).await
    }

    /// The error for a statement refused under `require_context`, counted.
    pub(crate) fn refuse(&self, sql: &str) -> DbErr {
        let ins = &self.pool.shared().instruments;
        let what = crate::trace::summary::summarize(sql, self.backend).span_name("statement");
        ins.on_context_refused();
        crate::context::refused(&format!("the statement `{what}`"))
    }

    async fn run_bounded(
        &self,
        op: Op<'_>,
        quiet: Option<Option<Duration>>,
        context: &str,
    ) -> Result<Output, DbErr> {
        let ins = &self.pool.shared().instruments;
        let mut result = self.run_once(op, quiet, context).await;
        if let Err(e) = &result
            && safe_to_rerun(sqlstate(e).as_deref(), op.sql())
        {
            ins.on_error(e);
            result = self.run_once(op, quiet, context).await;
        }
        result.inspect_err(|e| ins.on_error(e))
    }

    async fn run_once(
        &self,
        op: Op<'_>,
        quiet: Option<Option<Duration>>,
        context: &str,
    ) -> Result<Output, DbErr> {
        let acquired = match quiet {
            None => self.pool.acquire(None, None).await,
            Some(bound) => self.pool.acquire_quiet(bound).await,
        };
        let mut conn = acquired.map_err(to_db_err)?;
        let out = conn.run_in(op, self.deadline, context).await?;
        if let Some(high_water) = &self.high_water
            && !surely_reads(op.sql())
        {
            self.note_position(&mut conn, high_water).await;
        }
        Ok(out)
    }

    /// After a write outside a transaction: the primary's position, on the same connection
    /// (one more round trip, only with replicas configured), so reads see the write.
    async fn note_position(&self, conn: &mut Pooled, high_water: &HighWater) {
        let noted = conn
            .run(Op::UnpreparedRows(CURRENT_POSITION_SQL), self.deadline)
            .await;
        match noted {
            Ok(Output::All(rows)) => match position_in(&rows) {
                Some(p) => high_water.advance(p.0),
                None => tracing::warn!(
                    "no WAL position after a write; reads from replicas may not show it"
                ),
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(
                error = %e,
                "no WAL position after a write; reads from replicas may not show it"
            ),
        }
    }
}

/// Implements SeaORM's `ConnectionTrait` for a type with `async fn run(&self, Op) ->
/// Result<Output, DbErr>` and a `backend: DbBackend` field: [`DbConn`] and
/// [`Transaction`](crate::Transaction) run statements the same way, on different connections.
macro_rules! connection_trait {
    ($t:ty) => {
        #[async_trait::async_trait]
        impl sea_orm::ConnectionTrait for $t {
            fn get_database_backend(&self) -> sea_orm::DbBackend {
                self.backend
            }

            async fn execute_raw(
                &self,
                stmt: sea_orm::Statement,
            ) -> Result<sea_orm::ExecResult, sea_orm::DbErr> {
                match self.run($crate::pool::Op::Execute(&stmt)).await? {
                    $crate::pool::Output::Exec(r) => Ok(r),
                    _ => Err($crate::pool::unexpected()),
                }
            }

            async fn execute_unprepared(
                &self,
                sql: &str,
            ) -> Result<sea_orm::ExecResult, sea_orm::DbErr> {
                match self.run($crate::pool::Op::Unprepared(sql)).await? {
                    $crate::pool::Output::Exec(r) => Ok(r),
                    _ => Err($crate::pool::unexpected()),
                }
            }

            async fn query_one_raw(
                &self,
                stmt: sea_orm::Statement,
            ) -> Result<Option<sea_orm::QueryResult>, sea_orm::DbErr> {
                match self.run($crate::pool::Op::One(&stmt)).await? {
                    $crate::pool::Output::One(r) => Ok(r),
                    _ => Err($crate::pool::unexpected()),
                }
            }

            async fn query_all_raw(
                &self,
                stmt: sea_orm::Statement,
            ) -> Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr> {
                match self.run($crate::pool::Op::All(&stmt)).await? {
                    $crate::pool::Output::All(r) => Ok(r),
                    _ => Err($crate::pool::unexpected()),
                }
            }

            fn support_returning(&self) -> bool {
                self.backend.support_returning()
            }

            fn is_mock_connection(&self) -> bool {
                false
            }
        }
    };
}
pub(crate) use connection_trait;

connection_trait!(DbConn);

/// A stream of rows from [`DbConn`]'s `StreamTrait`. It holds its connection until read to
/// the end or dropped, at most `stream_timeout`.
#[derive(Debug)]
pub struct DbStream(RowStream);

impl futures_core::Stream for DbStream {
    type Item = Result<QueryResult, DbErr>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        Pin::new(&mut self.0).poll_next(cx)
    }
}

impl DbConn {
    /// Streams `stmt` with a session context's `SET LOCAL`s (`context`, empty for none).
    pub(crate) async fn stream_in(
        &self,
        stmt: Statement,
        context: &str,
    ) -> Result<DbStream, DbErr> {
        let ins = &self.pool.shared().instruments;
        let conn = self
            .pool
            .acquire(None, None)
            .await
            .map_err(to_db_err)
            .inspect_err(|e| ins.on_error(e))?;
        Ok(DbStream(crate::pool::stream::start(
            conn,
            stmt,
            self.stream_bound,
            context.to_owned(),
        )))
    }
}

impl StreamTrait for DbConn {
    type Stream<'a> = DbStream;

    fn get_database_backend(&self) -> DbBackend {
        self.backend
    }

    fn stream_raw<'a>(
        &'a self,
        stmt: Statement,
    ) -> Pin<Box<dyn Future<Output = Result<DbStream, DbErr>> + 'a + Send>> {
        Box::pin(async move {
            if self.require_context {
                return Err(self.refuse(&stmt.sql));
            }
            self.stream_in(stmt, "").await
        })
    }
}
