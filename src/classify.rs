//! What a database error means: its SQLSTATE, its kind, and whether it is worth retrying.
//! The one place SQLSTATEs are interpreted; the counters (`observe`), the retry loop
//! (`transaction`), the statement re-run (`conn`), the release checks and the HTTP mapping
//! (`http::ApiError`) all ask here.

use std::time::Duration;

use sea_orm::{DbErr, RuntimeErr, sqlx};

/// The kinds errors are counted by (`dbservice_client_errors_total{kind=...}`) and answered by
/// (see `http::ApiError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No connection within `pool_timeout`.
    PoolTimeout,
    /// No answer within the client deadline `query_timeout`.
    QueryTimeout,
    /// The pool is closed (shutdown).
    PoolClosed,
    /// The database could not be reached or dropped the connection, or the server can no
    /// longer take writes (SQLSTATE 25006, `read_only_sql_transaction`: a standby, or a primary
    /// demoted in place): the database is not there for this request, and it may be again in a
    /// moment (HTTP 503 + `Retry-After`). A write inside a transaction the caller opened
    /// read-only also reports 25006 and is counted here too; SQLSTATE alone cannot tell them
    /// apart.
    Connection,
    /// The server cancelled a statement (`statement_timeout`, SQLSTATE 57014).
    StatementTimeout,
    /// Serialization failure or deadlock (40001, 40P01): the whole transaction may be retried.
    Serialization,
    /// A constraint was violated (SQLSTATE class 23).
    Constraint,
    /// Any other failed statement.
    Query,
}

impl ErrorKind {
    /// Every kind, in the order of [`ErrorCounts`](crate::ErrorCounts)' fields.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::PoolTimeout,
        ErrorKind::QueryTimeout,
        ErrorKind::PoolClosed,
        ErrorKind::Connection,
        ErrorKind::StatementTimeout,
        ErrorKind::Serialization,
        ErrorKind::Constraint,
        ErrorKind::Query,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::PoolTimeout => "pool_timeout",
            ErrorKind::QueryTimeout => "query_timeout",
            ErrorKind::PoolClosed => "pool_closed",
            ErrorKind::Connection => "connection",
            ErrorKind::StatementTimeout => "statement_timeout",
            ErrorKind::Serialization => "serialization",
            ErrorKind::Constraint => "constraint",
            ErrorKind::Query => "query",
        }
    }

    /// The kind of `err`.
    pub fn of(err: &DbErr) -> ErrorKind {
        use sea_orm::error::ConnAcquireErr;
        match err {
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => return ErrorKind::PoolTimeout,
            DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed) => {
                return ErrorKind::PoolClosed;
            }
            _ => {}
        }
        match acquire_error(err) {
            Some(AcquireError::Saturated { .. } | AcquireError::ServerFull { .. }) => {
                return ErrorKind::PoolTimeout;
            }
            Some(AcquireError::Unreachable { .. }) => return ErrorKind::Connection,
            Some(AcquireError::Closed) => return ErrorKind::PoolClosed,
            None => {}
        }
        match err {
            DbErr::Conn(_) => return ErrorKind::Connection,
            _ if is_query_deadline(err) => return ErrorKind::QueryTimeout,
            _ => {}
        }
        match sqlstate(err).as_deref() {
            Some("57014" | "70100") => ErrorKind::StatementTimeout,
            Some(code) if is_conflict(code) => ErrorKind::Serialization,
            Some(code) if code.starts_with("23") => ErrorKind::Constraint,
            Some(code) if code.starts_with("08") || code.starts_with("57P") || code == "25006" => {
                ErrorKind::Connection
            }
            Some(_) => ErrorKind::Query,
            None if is_io(err) => ErrorKind::Connection,
            None => ErrorKind::Query,
        }
    }
}

/// The SQLSTATE of a driver error, if it carries one (the server answered).
pub fn sqlstate(err: &DbErr) -> Option<String> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
            _ => None,
        },
        _ => None,
    }
}

/// Serialization failure (40001; MySQL reports deadlocks so too) or deadlock (40P01).
fn is_conflict(code: &str) -> bool {
    matches!(code, "40001" | "40P01")
}

/// Whether the server ended a statement or transaction because a time budget ran out:
/// `statement_timeout` (57014) or `idle_in_transaction_session_timeout` (25P03).
pub fn is_server_timeout(err: &DbErr) -> bool {
    matches!(sqlstate(err).as_deref(), Some("57014" | "25P03"))
}

/// Whether re-running the whole transaction may succeed: serialization failure or deadlock.
pub fn is_retryable(err: &DbErr) -> bool {
    sqlstate(err).as_deref().is_some_and(is_conflict)
}

/// Whether a statement that failed with `code` may be run again on another connection.
///
/// - 57P05 (`idle_session_timeout`): the statement met a session the server had ended while it
///   sat in the pool, so it never ran (57P05 is sent only to idle sessions).
/// - 57P01 (`pg_terminate_backend`): only a `SELECT`, since a backend killed while waiting for
///   a synchronous standby reports 57P01 after its local commit.
/// - 25006 (`read_only_sql_transaction`: the server is a standby or was made read-only): any
///   statement. The server refuses a write in a read-only transaction before it changes
///   anything, the error aborts the statement's implicit transaction, and every statement sent
///   in the same message ran in that same implicit transaction (the simple protocol's rule), so
///   nothing of the failed call committed. The one way around it is text that commits by itself
///   and then turns its own session read-only before writing again (`...; COMMIT; SET
///   default_transaction_read_only = on; INSERT ...`), which no caller of an autocommit
///   statement writes. A re-run that meets the same read-only server fails the same way.
pub(crate) fn safe_to_rerun(code: Option<&str>, sql: &str) -> bool {
    match code {
        Some("57P05" | "25006") => true,
        Some("57P01") => is_select(sql),
        _ => false,
    }
}

/// Whether `err` says that the server behind a connection can no longer serve it, so that work
/// which failed with it before its `COMMIT` was sent committed nothing and may be run again on a
/// new connection (the transaction retry loop, [`crate::DbService::transaction`]):
///
/// - 25006: the server turned read-only (a demoted primary, a standby a DNS name still points
///   at);
/// - 57P01, 57P02, 57P03: the server is shutting down (fast, immediate) or starting up;
/// - class 08: the connection failed;
/// - an error without SQLSTATE from the driver's connection itself: I/O, TLS, a broken protocol
///   stream, a crashed connection worker;
/// - [`AcquireError::Unreachable`]: the pool is failing fast because the database (or, with
///   several hosts, every host) is down or does not match.
///
/// Not: a query that got no answer within `query_timeout` (the server may be alive and merely
/// slow; the transaction's `timeout` is the bound for that), the pool's other refusals (busy,
/// full, closed: waiting more is for the caller to decide), and every other SQLSTATE.
pub(crate) fn is_server_lost(err: &DbErr) -> bool {
    match acquire_error(err) {
        Some(AcquireError::Unreachable { .. }) => return true,
        Some(_) => return false,
        None => {}
    }
    if is_query_deadline(err) {
        return false;
    }
    if let Some(code) = sqlstate(err) {
        return matches!(code.as_str(), "25006" | "57P01" | "57P02" | "57P03")
            || code.starts_with("08");
    }
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => matches!(
            e.as_ref(),
            sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::WorkerCrashed
        ),
        _ => false,
    }
}

/// A plain read by its first keyword (SeaORM writes start with INSERT/UPDATE/DELETE; a `WITH`
/// may hide a write, so it does not count).
fn is_select(sql: &str) -> bool {
    sql.trim_start()
        .get(..6)
        .is_some_and(|word| word.eq_ignore_ascii_case("select"))
}

/// Whether retrying a failed connection attempt may succeed: the database is starting, full,
/// or not reachable yet (refused, reset, timed out); not a bad password or an unknown database.
pub(crate) fn is_transient(err: &sqlx::Error) -> bool {
    use std::io::ErrorKind;
    match err {
        // A credentials provider that failed may answer next time; a bad file will not.
        sqlx::Error::Io(io)
            if let Some(e) = io
                .get_ref()
                .and_then(|e| e.downcast_ref::<crate::secrets::SecretError>()) =>
        {
            e.is_transient()
        }
        sqlx::Error::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::NotConnected
                | ErrorKind::TimedOut
                | ErrorKind::UnexpectedEof
                | ErrorKind::BrokenPipe
                | ErrorKind::AddrNotAvailable
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
                | ErrorKind::NetworkDown
                | ErrorKind::Interrupted
        ),
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(_) if is_server_full(err) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            matches!(
                code.as_ref(),
                // PostgreSQL: starting up, too many connections, admin/crash shutdown,
                // connection failures.
                "57P03" | "53300" | "57P01" | "57P02" | "08000" | "08001" | "08006"
                // MySQL/MariaDB: too many connections.
                | "08004"
            )
        }),
        _ => false,
    }
}

/// Whether a failed connect means the server is up but has no connection slot left for us,
/// rather than unreachable: PostgreSQL 53300 ("sorry, too many clients already", "remaining
/// connection slots are reserved ...", "too many connections for role ..."); PgBouncer's
/// `max_client_conn` refusal, which 1.18 sends as 08P01 (a protocol violation), so it is known
/// by its text; MySQL/MariaDB 1040 "Too many connections" and the `max_user_connections`
/// refusals (1203, 1226).
pub(crate) fn is_server_full(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else {
        return false;
    };
    #[cfg(feature = "mysql")]
    let number = db
        .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .map(sqlx::mysql::MySqlDatabaseError::number);
    #[cfg(not(feature = "mysql"))]
    let number = None;
    refused_for_want_of_slots(db.code().as_deref(), number, db.message())
}

/// [`is_server_full`] on the parts of a server's error: its SQLSTATE, its MySQL error number
/// and its text (proxies in front of the server say it in words under varying codes).
fn refused_for_want_of_slots(code: Option<&str>, mysql_number: Option<u16>, message: &str) -> bool {
    if code == Some("53300") || matches!(mysql_number, Some(1040 | 1203)) {
        return true;
    }
    let text = message.to_ascii_lowercase();
    [
        "too many connections",
        "too many clients",
        "no more connections allowed",
        "max_client_conn",
        "max_user_connections",
        "remaining connection slots are reserved",
    ]
    .iter()
    .any(|phrase| text.contains(phrase))
}

/// Marks the I/O error of a statement whose client deadline (`query_timeout`) passed, so it is
/// classified by type rather than by its message.
#[derive(Debug, thiserror::Error)]
#[error("the database did not answer within query_timeout ({0:?})")]
pub(crate) struct QueryDeadline(pub Duration);

/// The error for a statement the server did not answer within `deadline`.
pub(crate) fn query_deadline_passed(deadline: Duration) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(std::sync::Arc::new(sqlx::Error::Io(
        std::io::Error::new(std::io::ErrorKind::TimedOut, QueryDeadline(deadline)),
    ))))
}

/// Why no connection could be had: what a pool timeout means, in the error itself.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AcquireError {
    /// Every connection was busy for the whole wait.
    #[error(
        "no connection within {}: pool saturated ({busy}/{max} busy, {waiting} waiting{})",
        fmt_ms(*waited),
        longest(*longest_hold, held_at.as_deref())
    )]
    Saturated {
        /// How long the caller waited.
        waited: Duration,
        /// Connections checked out.
        busy: u32,
        /// `connection_limit`.
        max: u32,
        /// Other callers waiting.
        waiting: u64,
        /// The longest current hold of a connection.
        longest_hold: Option<Duration>,
        /// Where that connection was taken (`file:line:column`), when known.
        held_at: Option<String>,
    },
    /// The database could not be reached: connects failed during the wait, or it is known
    /// down and the caller was failed at once (`fail_fast`).
    #[error(
        "no connection{}: database unreachable (last connect failed {} ago: {cause})",
        if *fail_fast { String::new() } else { format!(" within {}", fmt_ms(*waited)) },
        fmt_ms(*ago)
    )]
    Unreachable {
        /// How long the caller waited.
        waited: Duration,
        /// Failed at once because the database is known down.
        fail_fast: bool,
        /// How long ago the last connect failed.
        ago: Duration,
        /// Why it failed (redacted).
        cause: String,
    },
    /// The database server refused a new connection for want of a slot (`max_connections`,
    /// PgBouncer's `max_client_conn`, MySQL's `max_connections`) and no open connection came
    /// free within the wait. The server is up: the pool's open connections keep serving.
    #[error(
        "no connection within {}: the database server refused a new connection: too many \
         connections (last refused {} ago: {cause})",
        fmt_ms(*waited),
        fmt_ms(*ago)
    )]
    ServerFull {
        /// How long the caller waited.
        waited: Duration,
        /// How long ago the server last refused.
        ago: Duration,
        /// The server's refusal (redacted).
        cause: String,
    },
    /// The pool is closed (shutdown).
    #[error("the pool is closed")]
    Closed,
}

impl AcquireError {
    /// A short machine-readable code: `pool_saturated`, `database_unreachable`, `server_full`,
    /// `pool_closed`.
    pub fn code(&self) -> &'static str {
        match self {
            AcquireError::Saturated { .. } => "pool_saturated",
            AcquireError::ServerFull { .. } => "server_full",
            AcquireError::Unreachable { .. } => "database_unreachable",
            AcquireError::Closed => "pool_closed",
        }
    }
}

fn fmt_ms(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn longest(hold: Option<Duration>, at: Option<&str>) -> String {
    match (hold, at) {
        (Some(h), Some(at)) => format!(", longest hold {} at {at}", fmt_ms(h)),
        (Some(h), None) => format!(", longest hold {}", fmt_ms(h)),
        _ => String::new(),
    }
}

/// The error a caller gets when no connection could be had; [`acquire_error`] finds the
/// reason in it again. Carried as an I/O error inside SeaORM's `DbErr::Conn`, so code that
/// only knows SeaORM's errors still sees a connection error.
pub(crate) fn acquire_failed(e: AcquireError) -> DbErr {
    let kind = match e {
        AcquireError::Closed => std::io::ErrorKind::NotConnected,
        _ => std::io::ErrorKind::TimedOut,
    };
    DbErr::Conn(RuntimeErr::SqlxError(std::sync::Arc::new(sqlx::Error::Io(
        std::io::Error::new(kind, e),
    ))))
}

/// Why no connection could be had, if that is what `err` says.
pub fn acquire_error(err: &DbErr) -> Option<&AcquireError> {
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            sqlx::Error::Io(io) => io.get_ref().and_then(|inner| inner.downcast_ref()),
            _ => None,
        },
        _ => None,
    }
}

fn is_query_deadline(err: &DbErr) -> bool {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            matches!(e.as_ref(), sqlx::Error::Io(io)
                if io.get_ref().is_some_and(|inner| inner.is::<QueryDeadline>()))
        }
        _ => false,
    }
}

fn is_io(err: &DbErr) -> bool {
    matches!(
        err,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))
            if matches!(e.as_ref(), sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed)
    )
}

/// Finds a [`DbErr`] in `err` or its `source()` chain.
pub fn find_db_err<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a DbErr> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(db) = e.downcast_ref::<DbErr>() {
            return Some(db);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
pub(crate) mod tests;
