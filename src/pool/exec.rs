//! Running SeaORM's statements on sqlx connections exactly as SeaORM's sqlx driver does:
//! `sqlx::query_with(AssertSqlSafe(sql), SqlxValues(values))`, rows through SeaORM's public
//! `From<PgRow> for QueryResult` (and the MySQL/SQLite twins), results through
//! `From<PgQueryResult> for ExecResult`. Unprepared SQL goes through the simple protocol
//! (`raw_sql`), as SeaORM's `execute_unprepared` does.

// The statement mode and the transaction flag serve only PostgreSQL (PgBouncer, statement modes).
#![cfg_attr(not(feature = "postgres"), allow(unused_variables))]

use sea_orm::Statement;
use sea_orm::sea_query::Values;
use sea_orm::sqlx::{self, AssertSqlSafe};
use sea_query_sqlx::SqlxValues;

use super::context_plans::ContextPlans;
use super::op::{Mode, Op, Output};
use super::raw::RawConn;

pub(crate) fn values(stmt: &Statement) -> SqlxValues {
    SqlxValues(stmt.values.clone().unwrap_or(Values(Vec::new())))
}

macro_rules! run_on {
    ($conn:expr, $op:expr, $persistent:expr) => {
        match $op {
            Op::Execute(s) => sqlx::query_with(AssertSqlSafe(s.sql.as_str()), values(s))
                .persistent($persistent)
                .execute(&mut *$conn)
                .await
                .map(|r| Output::Exec(r.into())),
            Op::Unprepared(sql) => sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut *$conn)
                .await
                .map(|r| Output::Exec(r.into())),
            Op::UnpreparedRows(sql) => sqlx::raw_sql(AssertSqlSafe(sql))
                .fetch_all(&mut *$conn)
                .await
                .map(|rows| Output::All(rows.into_iter().map(Into::into).collect())),
            Op::One(s) => sqlx::query_with(AssertSqlSafe(s.sql.as_str()), values(s))
                .persistent($persistent)
                .fetch_optional(&mut *$conn)
                .await
                .map(|r| Output::One(r.map(Into::into))),
            Op::All(s) => sqlx::query_with(AssertSqlSafe(s.sql.as_str()), values(s))
                .persistent($persistent)
                .fetch_all(&mut *$conn)
                .await
                .map(|rows| Output::All(rows.into_iter().map(Into::into).collect())),
        }
    };
}

/// Runs `op` on `conn`; `in_tx`: inside a transaction we began (its settings, a context's
/// included, are set already). `context`: a session context's `SET LOCAL`s (empty for none),
/// which outside a transaction put the statement in one message behind them, values written
/// in (or, with the statement cache on, as an `EXECUTE` of a statement the connection prepared
/// for it: [`ContextPlans`]), so that PostgreSQL runs both in one implicit transaction (one
/// round trip).
pub(crate) async fn run(
    conn: &mut RawConn,
    op: Op<'_>,
    mode: &Mode,
    in_tx: bool,
    context: &str,
    context_plans: &mut ContextPlans,
) -> Result<Output, sqlx::Error> {
    match conn {
        #[cfg(feature = "postgres")]
        RawConn::Postgres(c) => postgres(c, op, mode, in_tx, context, context_plans).await,
        #[cfg(feature = "mysql")]
        RawConn::MySql(c) => run_on!(c, op, true),
        #[cfg(feature = "sqlite")]
        RawConn::Sqlite(c) => run_on!(c, op, true),
    }
}

/// [`run`] on PostgreSQL.
#[cfg(feature = "postgres")]
async fn postgres(
    c: &mut sqlx::PgConnection,
    op: Op<'_>,
    mode: &Mode,
    in_tx: bool,
    context: &str,
    context_plans: &mut ContextPlans,
) -> Result<Output, sqlx::Error> {
    use super::inline;
    let Some(prefix) = inline::message_prefix(mode, in_tx, context) else {
        return run_on!(c, op, *mode == Mode::Prepared);
    };
    match (mode, op) {
        // With the statement cache on: an EXECUTE of a statement prepared once.
        (Mode::Prepared, Op::Execute(stmt) | Op::One(stmt) | Op::All(stmt)) => {
            super::context_plans::run(c, op, stmt, prefix.context, context_plans).await
        }
        _ => inline::run(c, op, prefix).await,
    }
}
