//! Row streams (SeaORM's `StreamTrait`): the statement runs in a task that owns its pooled
//! connection and hands rows over a small channel, so a stream borrows nothing, and the task
//! gives the connection back when the stream is read to the end, dropped, or has held it
//! longer than `stream_timeout`.

// Some parameters and imports serve only PostgreSQL (PgBouncer, statement modes, resets).
#![cfg_attr(not(feature = "postgres"), allow(unused_variables, unused_imports))]

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;
use futures_core::stream::BoxStream;
#[cfg(feature = "postgres")]
use sea_orm::sqlx::PgConnection;
use sea_orm::sqlx::{self, AssertSqlSafe};
use sea_orm::{DbErr, QueryResult, RuntimeErr, Statement};
use tokio::sync::mpsc;

use super::exec::values;
#[cfg(feature = "postgres")]
use super::inline;
use super::op::Mode;
use super::pooled::Pooled;
use super::raw::RawConn;

/// Rows of a streamed query, as they arrive.
#[derive(Debug)]
pub(crate) struct RowStream(mpsc::Receiver<Result<QueryResult, DbErr>>);

impl Stream for RowStream {
    type Item = Result<QueryResult, DbErr>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Rows buffered ahead of the reader.
const AHEAD: usize = 64;

fn query_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(e)))
}

/// Sends the rows of `rows` to the reader until they end, an error (sent too) ends them, or
/// the reader goes away; true when nothing is left pending on the connection.
async fn pump<R>(
    mut rows: BoxStream<'_, Result<R, sqlx::Error>>,
    tx: &mpsc::Sender<Result<QueryResult, DbErr>>,
) -> bool
where
    QueryResult: From<R>,
{
    loop {
        let next = std::future::poll_fn(|cx| rows.as_mut().poll_next(cx)).await;
        let Some(row) = next else { break true };
        let failed = row.is_err();
        if let Err(e) = &row {
            // The stream's task runs in its statement span.
            crate::trace::spans::failed_sqlx(&tracing::Span::current(), e);
        }
        if tx
            .send(row.map(QueryResult::from).map_err(query_err))
            .await
            .is_err()
        {
            // The reader went away mid-stream.
            break false;
        }
        if failed {
            break true;
        }
    }
}

/// Streams `stmt` on a PostgreSQL connection the way every other statement is sent there
/// (`mode`): behind PgBouncer, or with a session context outside a transaction, as one
/// simple-protocol message with its values inlined and the `SET LOCAL`s in front; with no
/// statement cache on the unnamed statement.
#[cfg(feature = "postgres")]
async fn pump_postgres(
    c: &mut PgConnection,
    stmt: &Statement,
    mode: &Mode,
    in_tx: bool,
    context: &str,
    tx: &mpsc::Sender<Result<QueryResult, DbErr>>,
) -> bool {
    let Some(prefix) = inline::message_prefix(mode, in_tx, context) else {
        let q = sqlx::query_with(AssertSqlSafe(stmt.sql.as_str()), values(stmt))
            .persistent(*mode == Mode::Prepared);
        return pump(q.fetch(c), tx).await;
    };
    match inline::inline(stmt) {
        Ok(body) => {
            let sql = inline::prefixed(prefix, body);
            pump(sqlx::raw_sql(AssertSqlSafe(sql)).fetch(c), tx).await
        }
        Err(e) => {
            // Nothing was sent: the connection is as it was.
            let _ = tx.send(Err(query_err(e.into()))).await;
            true
        }
    }
}

#[cfg(any(feature = "mysql", feature = "sqlite"))]
fn query<DB: sqlx::Database>(
    stmt: &Statement,
) -> sqlx::query::Query<'_, DB, sea_query_sqlx::SqlxValues>
where
    sea_query_sqlx::SqlxValues: for<'q> sqlx::IntoArguments<DB>,
{
    sqlx::query_with(AssertSqlSafe(stmt.sql.as_str()), values(stmt))
}

/// Starts streaming `stmt` on `conn` in a task of its own; `bound` limits how long the
/// stream may hold the connection; `context`: a session context's `SET LOCAL`s (empty for
/// none). The statement's span is opened here, under the caller's span, and the task runs in
/// it.
pub(crate) fn start(
    conn: Pooled,
    stmt: Statement,
    bound: Option<Duration>,
    context: String,
) -> RowStream {
    let (tx, rx) = mpsc::channel(AHEAD);
    let span = conn.statement_span(crate::trace::spans::Text::statement(&stmt));
    tokio::spawn(tracing::Instrument::instrument(
        feed(conn, stmt, bound, context, tx),
        span,
    ));
    RowStream(rx)
}

/// The stream's task: reads the rows into `tx`, then gives the connection back.
async fn feed(
    mut conn: Pooled,
    stmt: Statement,
    bound: Option<Duration>,
    context: String,
    tx: mpsc::Sender<Result<QueryResult, DbErr>>,
) {
    let started = Instant::now();
    let Some(c) = conn.conn() else {
        return;
    };
    c.suspect = true;
    let inline_mode = matches!(*c.mode, Mode::Inline { .. }) || (!context.is_empty() && !c.in_tx);
    let at = super::effects::Context {
        postgres: c.raw.as_ref().is_some_and(RawConn::is_postgres),
        in_tx: c.in_tx,
    };
    if super::effects::taints(&stmt.sql, !inline_mode, at) {
        c.tainted = true;
    }
    let (mode, in_tx) = (c.mode.clone(), c.in_tx);
    let Some(raw) = c.raw.as_mut() else {
        return;
    };
    let work = async {
        match raw {
            #[cfg(feature = "postgres")]
            RawConn::Postgres(c) => pump_postgres(c, &stmt, &mode, in_tx, &context, &tx).await,
            #[cfg(feature = "mysql")]
            RawConn::MySql(c) => pump(query(&stmt).fetch(c), &tx).await,
            #[cfg(feature = "sqlite")]
            RawConn::Sqlite(c) => pump(query(&stmt).fetch(c), &tx).await,
        }
    };
    let (completed, cut_off) = match bound {
        Some(b) => match tokio::time::timeout(b, work).await {
            Ok(done) => (done, None),
            Err(_) => (false, Some(b)),
        },
        None => (work.await, None),
    };
    if let Some(c) = conn.conn() {
        // Read to the end: nothing is left pending on the connection. Otherwise its
        // statement may still run on the server: cancelled before the connection's reuse.
        c.suspect = !completed || c.in_tx;
        c.in_flight = !completed;
    }
    // The connection goes back before the reader hears why the stream ended.
    drop(conn);
    tracing::trace!(
        held_ms = started.elapsed().as_millis() as u64,
        "stream finished"
    );
    if let Some(b) = cut_off {
        crate::trace::spans::record_failure(&tracing::Span::current(), "timeout");
        let _ = tx
            .send(Err(DbErr::Custom(format!(
                "the stream held its connection longer than stream_timeout ({b:?}); \
                 read it faster or raise stream_timeout"
            ))))
            .await;
    }
}
