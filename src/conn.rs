//! [`DbConn`]: the SeaORM executor a backend uses, `db.conn()`.
//!
//! It implements SeaORM's `ConnectionTrait`, so any SeaORM call takes it
//! (`Account::find_by_id(id).one(db.conn())`). Every call first passes the
//! [gate](crate::gate) (a measured, bounded wait for a connection) and has its errors counted by
//! kind. It deliberately does not implement `TransactionTrait`: transactions go through
//! [`DbService::transaction`](crate::DbService::transaction) or
//! [`DbService::begin`](crate::DbService::begin), which bound them and survive cancellation.
//! [`DbConn::raw`] is the unguarded SeaORM connection for the rare code that needs it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult, Statement,
};

use crate::classify::{query_deadline_passed, safe_to_rerun, sqlstate};
use crate::gate::Gate;
use crate::observe::Instruments;

/// The service's SeaORM executor; cheap to clone.
#[derive(Clone)]
pub struct DbConn {
    raw: DatabaseConnection,
    gate: Arc<Gate>,
    instruments: Arc<Instruments>,
    deadline: Option<Duration>,
}

impl std::fmt::Debug for DbConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConn")
            .field("backend", &self.raw.get_database_backend())
            .finish_non_exhaustive()
    }
}

impl DbConn {
    /// `deadline` bounds each statement on the client (`query_timeout`); `statement_timeout`
    /// is below it, so the server cancels a slow statement itself and the client bound only
    /// fires when the server cannot answer at all (frozen, unreachable).
    pub(crate) fn new(
        raw: DatabaseConnection,
        gate: Arc<Gate>,
        instruments: Arc<Instruments>,
        deadline: Option<Duration>,
    ) -> Self {
        Self {
            raw,
            gate,
            instruments,
            deadline,
        }
    }

    /// The underlying SeaORM connection, bypassing the gate: its waits are not measured or
    /// bounded by the service, and its transactions (`raw().begin()`) inherit sqlx's
    /// cancellation bug (see `CONNECTION_POOLING.md`, "Transactions"). For migrations and
    /// driver-specific accessors (`get_postgres_connection_pool()`).
    pub fn raw(&self) -> &DatabaseConnection {
        &self.raw
    }

    /// Runs one statement: waits at the gate, bounds it by the client deadline
    /// (`query_timeout`), counts its errors. A statement that met a connection the server had
    /// already ended while it sat in the pool never ran, so it is run once more, on another
    /// connection (the dead one is closed by the release check), but only where running it
    /// twice cannot do harm: after `idle_session_timeout` (57P05, sent only to idle sessions),
    /// and after `pg_terminate_backend` (57P01) only for a `SELECT`, since a backend killed
    /// while waiting for a synchronous standby reports 57P01 after its local commit.
    async fn guarded<T, F, Fut>(&self, sql: &str, op: F) -> Result<T, DbErr>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, DbErr>>,
    {
        let _permit = self.gate.enter(None).await?;
        let mut result = self.bounded(op()).await;
        if let Err(e) = &result
            && safe_to_rerun(sqlstate(e).as_deref(), sql)
        {
            self.instruments.on_error(e);
            result = self.bounded(op()).await;
        }
        result.inspect_err(|e| self.instruments.on_error(e))
    }

    async fn bounded<T>(&self, op: impl Future<Output = Result<T, DbErr>>) -> Result<T, DbErr> {
        let watched = Watched {
            op,
            instruments: &self.instruments,
            finished: false,
        };
        match self.deadline {
            Some(deadline) => tokio::time::timeout(deadline, watched)
                .await
                .unwrap_or_else(|_| Err(query_deadline_passed(deadline))),
            None => watched.await,
        }
    }
}

pin_project_lite::pin_project! {
    /// A statement's future that notes trouble if it is dropped before it finished (its caller
    /// went away, or the client deadline passed). The drop hook runs before the fields are
    /// dropped, so the trouble is noted before the statement's connection goes back to the
    /// pool, where the release check must see it (see `Instruments::note_trouble`); a guard
    /// beside the future could be dropped after it, and the check would race the note. Pinned
    /// in place (no allocation): it wraps every statement.
    struct Watched<'a, F> {
        #[pin]
        op: F,
        instruments: &'a Instruments,
        finished: bool,
    }

    impl<'a, F> PinnedDrop for Watched<'a, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.finished {
                this.instruments.note_trouble();
            }
        }
    }
}

impl<T, F: Future<Output = Result<T, DbErr>>> Future for Watched<'_, F> {
    type Output = Result<T, DbErr>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = this.op.poll(cx);
        if result.is_ready() {
            *this.finished = true;
        }
        result
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for DbConn {
    fn get_database_backend(&self) -> DbBackend {
        self.raw.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.guarded(&stmt.sql, || self.raw.execute_raw(stmt.clone()))
            .await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.guarded(sql, || self.raw.execute_unprepared(sql)).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.guarded(&stmt.sql, || self.raw.query_one_raw(stmt.clone()))
            .await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.guarded(&stmt.sql, || self.raw.query_all_raw(stmt.clone()))
            .await
    }

    fn support_returning(&self) -> bool {
        self.raw.support_returning()
    }

    fn is_mock_connection(&self) -> bool {
        false
    }
}
