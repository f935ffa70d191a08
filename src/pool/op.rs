//! One statement to run, how it is sent to a PostgreSQL server, and what it returned.

use sea_orm::{ExecResult, QueryResult, Statement};

use crate::trace::spans::Text;

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

impl<'a> Op<'a> {
    /// Its text, parameterized when it carries bound values (what spans and logs show).
    pub fn text(&self) -> Text<'a> {
        match *self {
            Op::Execute(s) | Op::One(s) | Op::All(s) => Text::statement(s),
            Op::Unprepared(sql) | Op::UnpreparedRows(sql) => Text {
                sql,
                parameterized: false,
            },
        }
    }

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
