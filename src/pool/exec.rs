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
        RawConn::Postgres(c) => {
            use super::inline::{self, Prefix};
            let session = match mode {
                Mode::Inline { prefix } => Some(prefix.as_str()),
                Mode::Prepared | Mode::Unnamed => None,
            };
            match session {
                // Inside our transaction BEGIN carried every setting.
                Some(_) if in_tx => inline::run(c, op, Prefix::default()).await,
                None if in_tx || context.is_empty() => run_on!(c, op, *mode == Mode::Prepared),
                None if *mode == Mode::Prepared => match op {
                    Op::Execute(stmt) | Op::One(stmt) | Op::All(stmt) => {
                        super::context_plans::run(c, op, stmt, context, context_plans).await
                    }
                    Op::Unprepared(_) | Op::UnpreparedRows(_) => {
                        let prefix = Prefix {
                            session: "",
                            context,
                        };
                        inline::run(c, op, prefix).await
                    }
                },
                session => {
                    let prefix = Prefix {
                        session: session.unwrap_or(""),
                        context,
                    };
                    inline::run(c, op, prefix).await
                }
            }
        }
        #[cfg(feature = "mysql")]
        RawConn::MySql(c) => run_on!(c, op, true),
        #[cfg(feature = "sqlite")]
        RawConn::Sqlite(c) => run_on!(c, op, true),
    }
}
