//! [`TxError`]: why a transaction did not commit.

use std::time::Duration;

use sea_orm::DbErr;

/// Why a transaction did not commit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxError<E> {
    /// No connection (and `BEGIN`) within `max_wait`. Nothing ran; safe to retry later
    /// (HTTP 503 + `Retry-After`).
    #[error("no database connection within max_wait ({0:?})")]
    MaxWait(Duration),
    /// The transaction ran past its `timeout` and was rolled back (HTTP 504).
    #[error("transaction timed out after {0:?} and was rolled back")]
    Timeout(Duration),
    /// A database error outside the closure (`BEGIN`, `COMMIT`, ...), or a retryable conflict
    /// that persisted through every retry. The transaction was rolled back.
    #[error("transaction failed: {0}")]
    Database(DbErr),
    /// The closure returned an error; the transaction was rolled back.
    #[error("transaction aborted: {0}")]
    Aborted(E),
    /// `COMMIT` was sent, but no answer came within the commit bound (the transaction's
    /// `timeout` + 1 s) or the connection broke while waiting: the transaction may or may not
    /// have committed. Do not blindly retry: look the effect up (an idempotency key), or retry
    /// only what is idempotent (HTTP 504 `commit_outcome_unknown`, no `Retry-After`).
    #[error("the outcome of COMMIT is unknown: {0}")]
    CommitOutcomeUnknown(String),
    /// The body returned `Ok`, but a statement inside the transaction had failed (its error
    /// was swallowed), so PostgreSQL would only have rolled it back at `COMMIT`: nothing was
    /// committed and the transaction was rolled back. Fix the body to return the statement's
    /// error, or undo the failure with a [`savepoint`](super::savepoint). Not retried: the
    /// original error is gone (HTTP 500).
    #[error(
        "not committed: a statement in the transaction failed earlier and its error was not returned ({0})"
    )]
    FailedBeforeCommit(DbErr),
}

impl TxError<std::convert::Infallible> {
    /// The same error with another closure error type (there is no `Aborted` to convert).
    pub(super) fn widen<E>(self) -> TxError<E> {
        match self {
            TxError::MaxWait(d) => TxError::MaxWait(d),
            TxError::Timeout(d) => TxError::Timeout(d),
            TxError::Database(e) => TxError::Database(e),
            TxError::CommitOutcomeUnknown(why) => TxError::CommitOutcomeUnknown(why),
            TxError::FailedBeforeCommit(e) => TxError::FailedBeforeCommit(e),
            TxError::Aborted(never) => match never {},
        }
    }
}

/// The `dbservice.transaction.outcome` a transaction's result is recorded as on its span:
/// `committed`, `rolled_back` (the body returned an error), `timeout`, `max_wait`,
/// `failed_before_commit`, `commit_unknown`, `failed` (an error of the database); and, set
/// elsewhere, `abandoned` (a `db.begin()` handle dropped open) and `cancelled` (the caller of
/// `db.transaction(...)` went away before it ended).
pub(crate) fn outcome<T, E>(result: &Result<T, TxError<E>>) -> &'static str {
    match result {
        Ok(_) => "committed",
        Err(TxError::Aborted(_)) => "rolled_back",
        Err(TxError::Timeout(_)) => "timeout",
        Err(TxError::MaxWait(_)) => "max_wait",
        Err(TxError::FailedBeforeCommit(_)) => "failed_before_commit",
        Err(TxError::CommitOutcomeUnknown(_)) => "commit_unknown",
        Err(TxError::Database(_)) => "failed",
    }
}
