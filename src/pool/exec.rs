//! Running SeaORM's statements on sqlx connections exactly as SeaORM's sqlx driver does:
//! `sqlx::query_with(AssertSqlSafe(sql), SqlxValues(values))`, rows through SeaORM's public
//! `From<PgRow> for QueryResult` (and the MySQL/SQLite twins), results through
//! `From<PgQueryResult> for ExecResult`. Unprepared SQL goes through the simple protocol
//! (`raw_sql`), as SeaORM's `execute_unprepared` does.

// Some parameters and imports serve only PostgreSQL (PgBouncer, statement modes, resets).
#![cfg_attr(not(feature = "postgres"), allow(unused_variables, unused_imports))]

use std::time::Duration;

use sea_orm::sea_query::Values;
use sea_orm::sqlx::{self, AssertSqlSafe, Connection};
use sea_orm::{ExecResult, QueryResult, Statement};
use sea_query_sqlx::SqlxValues;

use super::conn::RawConn;

/// How statements reach a PostgreSQL server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Named prepared statements, cached per connection (sqlx's default).
    Prepared,
    /// `statement_cache_size=0`: the unnamed statement, re-prepared each time, so nothing
    /// accumulates on the server (sqlx 0.9 names and never closes statements it does not cache,
    /// sqlx#4328).
    Unnamed,
    /// `pgbouncer=true`: one simple-protocol message per statement, values inlined as typed
    /// literals (`inline.rs`), no prepared statement at all, so PgBouncer's transaction
    /// mode cannot split a statement across server connections or meet another client's
    /// statement names; `prefix` (`SET LOCAL ...;`) carries the session settings into the
    /// same implicit transaction.
    Inline { prefix: String },
}

/// One statement to run.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op<'a> {
    Execute(&'a Statement),
    Unprepared(&'a str),
    /// Unprepared SQL (one or more statements, simple protocol) whose rows are wanted.
    UnpreparedRows(&'a str),
    One(&'a Statement),
    All(&'a Statement),
}

/// What it returned.
pub(crate) enum Output {
    Exec(ExecResult),
    One(Option<QueryResult>),
    All(Vec<QueryResult>),
}

/// For a result of the wrong kind (an `Op` always yields its own kind; this keeps the
/// `ConnectionTrait` methods free of panics).
pub(crate) fn unexpected() -> sea_orm::DbErr {
    sea_orm::DbErr::Custom("the statement returned an unexpected kind of result".into())
}

impl Op<'_> {
    pub fn sql(&self) -> &str {
        match self {
            Op::Execute(s) | Op::One(s) | Op::All(s) => &s.sql,
            Op::Unprepared(sql) | Op::UnpreparedRows(sql) => sql,
        }
    }

    /// SeaORM reports failed executions as `DbErr::Exec` and failed queries as `DbErr::Query`.
    pub fn is_query(&self) -> bool {
        matches!(self, Op::One(_) | Op::All(_) | Op::UnpreparedRows(_))
    }
}

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

/// Runs `op` on `conn`; `in_tx`: inside a transaction we began (its settings are set already).
pub(crate) async fn run(
    conn: &mut RawConn,
    op: Op<'_>,
    mode: &Mode,
    in_tx: bool,
) -> Result<Output, sqlx::Error> {
    match conn {
        #[cfg(feature = "postgres")]
        RawConn::Postgres(c) => match mode {
            Mode::Prepared => run_on!(c, op, true),
            Mode::Unnamed => run_on!(c, op, false),
            Mode::Inline { prefix } => {
                super::inline::run(c, op, if in_tx { "" } else { prefix }).await
            }
        },
        #[cfg(feature = "mysql")]
        RawConn::MySql(c) => run_on!(c, op, true),
        #[cfg(feature = "sqlite")]
        RawConn::Sqlite(c) => run_on!(c, op, true),
    }
}

/// The session settings as `SET LOCAL` statements for the front of each message behind
/// PgBouncer (where a session is not ours): `statement_timeout`,
/// `idle_in_transaction_session_timeout`, `search_path`. Only numbers and validated schema
/// names are formatted in.
pub(crate) fn session_prefix(p: &crate::config::PoolOptions) -> String {
    let mut s = String::new();
    if let Some(t) = p.statement_timeout {
        s.push_str(&format!(
            "SET LOCAL statement_timeout = {}; ",
            t.as_millis()
        ));
    }
    if let Some(t) = p.idle_in_transaction_session_timeout {
        s.push_str(&format!(
            "SET LOCAL idle_in_transaction_session_timeout = {}; ",
            t.as_millis()
        ));
    }
    if let Some(schema) = &p.schema {
        s.push_str(&format!("SET LOCAL search_path TO {schema}; "));
    }
    s
}

/// A liveness round trip.
pub(crate) async fn ping(conn: &mut RawConn) -> Result<(), sqlx::Error> {
    match conn {
        #[cfg(feature = "postgres")]
        RawConn::Postgres(c) => c.ping().await,
        #[cfg(feature = "mysql")]
        RawConn::MySql(c) => c.ping().await,
        #[cfg(feature = "sqlite")]
        RawConn::Sqlite(c) => c.ping().await,
    }
}

/// Closes politely (PostgreSQL's `Terminate`, MySQL's `COM_QUIT`), within `bound`.
pub(crate) async fn close(conn: RawConn, bound: Duration) {
    let closing = async {
        match conn {
            #[cfg(feature = "postgres")]
            RawConn::Postgres(c) => c.close().await,
            #[cfg(feature = "mysql")]
            RawConn::MySql(c) => c.close().await,
            #[cfg(feature = "sqlite")]
            RawConn::Sqlite(c) => c.close().await,
        }
    };
    let _ = tokio::time::timeout(bound, closing).await;
}
