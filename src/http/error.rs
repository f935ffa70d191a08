//! [`ApiError`]: an error at the HTTP edge, rendered as
//! `{"error": {"code": "...", "message": "..."}}` with a meaningful status. `From<DbErr>` and
//! `From<TxError<E>>` give a backend's own handlers the same answers as the demo's: 503 +
//! `Retry-After` for no connection or an unreachable database, 504 for timeouts, 504
//! `commit_outcome_unknown` without `Retry-After`, 500 (detail logged, not shown) for the rest.

use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpResponse, ResponseError};
use sea_orm::DbErr;
use serde_json::json;

use crate::classify::ErrorKind;

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (e.g. `insufficient_funds`, `pool_timeout`).
    pub code: &'static str,
    /// Human-readable explanation; never contains secrets or internal details.
    pub message: String,
    /// Seconds for a `Retry-After` header (503s).
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: malformed or invalid input.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 409: conflicts with existing state (e.g. an idempotency key reused for another request).
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 422: well-formed but breaks a business rule.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 504: something ran out of time (no `Retry-After`: whether a retry is safe depends on
    /// what timed out).
    pub fn timed_out(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, code, message)
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    /// 500 with an opaque message; the detail goes to the log only.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl<E: std::fmt::Display> From<crate::transaction::TxError<E>> for ApiError {
    fn from(err: crate::transaction::TxError<E>) -> Self {
        use crate::transaction::TxError;
        match err {
            TxError::MaxWait(d) => ApiError::unavailable(
                "transaction_max_wait",
                format!(
                    "no database connection within the transaction's max_wait ({d:?}); retry later"
                ),
            ),
            TxError::Timeout(d) => ApiError::timed_out(
                "transaction_timeout",
                format!("the transaction ran past its timeout ({d:?}) and was rolled back"),
            ),
            TxError::Database(e) => e.into(),
            // No Retry-After: a blind retry may move the money twice.
            TxError::CommitOutcomeUnknown(_) => ApiError::timed_out(
                "commit_outcome_unknown",
                "the database did not confirm the commit in time: it may or may not have \
                 happened; retry only with the same Idempotency-Key",
            ),
            // A bug in the transaction's body (it swallowed a statement's error); nothing was
            // committed, and repeating the request would meet the same failure.
            TxError::FailedBeforeCommit(e) => {
                tracing::error!(error = %e, "transaction failed before COMMIT; rolled back");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "transaction_failed",
                    "a statement inside the transaction failed; nothing was committed",
                )
            }
            other => ApiError::internal(&other),
        }
    }
}

impl From<crate::batch::BatchError> for ApiError {
    fn from(err: crate::batch::BatchError) -> Self {
        use crate::batch::BatchError;
        use crate::transaction::TxError;
        match err {
            // A row the database refused (a constraint): answered like the statement's error.
            BatchError::Transaction(TxError::Aborted(e)) => e.into(),
            BatchError::Transaction(other) => other.into(),
            BatchError::Unsupported(message) => ApiError::bad_request("batch_unsupported", message),
        }
    }
}

impl From<crate::context::ContextError> for ApiError {
    /// A setting built from request input (a value too long, a NUL) is the client's 400, its
    /// message naming the setting, never the value; a context on a database without session
    /// settings is the service's own error (500, logged).
    fn from(err: crate::context::ContextError) -> Self {
        use crate::context::ContextError;
        match err {
            ContextError::Unsupported { .. } => ApiError::internal(&err),
            other => ApiError::bad_request("bad_context", other.to_string()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            res.insert_header((RETRY_AFTER, secs.to_string()));
        }
        res.json(json!({ "error": { "code": self.code, "message": self.message } }))
    }
}

impl From<DbErr> for ApiError {
    fn from(err: DbErr) -> Self {
        // The reason stays in the log (it names source locations); the client gets its code.
        match crate::classify::acquire_error(&err) {
            Some(crate::classify::AcquireError::Saturated { .. }) => {
                return ApiError::unavailable(
                    "pool_saturated",
                    "every database connection stayed busy for pool_timeout; retry later",
                );
            }
            Some(crate::classify::AcquireError::Unreachable { .. }) => {
                return ApiError::unavailable(
                    "database_unreachable",
                    "the database cannot be reached; retry later",
                );
            }
            Some(crate::classify::AcquireError::ServerFull { .. }) => {
                return ApiError::unavailable(
                    "server_full",
                    "the database server refused a new connection: too many connections; \
                     retry later",
                );
            }
            _ => {}
        }
        match ErrorKind::of(&err) {
            ErrorKind::PoolTimeout => ApiError::unavailable(
                "pool_timeout",
                "no database connection became free within pool_timeout; retry later",
            ),
            ErrorKind::PoolClosed => {
                ApiError::unavailable("shutting_down", "the database pool is closed")
            }
            ErrorKind::Connection => {
                tracing::warn!(error = %err, "database unreachable");
                ApiError::unavailable(
                    "database_unavailable",
                    "the database is unreachable; retry later",
                )
            }
            ErrorKind::QueryTimeout => {
                tracing::warn!(error = %err, "statement unanswered");
                ApiError::timed_out(
                    "query_timeout",
                    "the database did not answer within query_timeout",
                )
            }
            ErrorKind::StatementTimeout => {
                ApiError::timed_out("statement_timeout", "the database statement timed out")
            }
            // Serialization failure / deadlock: safe for the client to retry.
            ErrorKind::Serialization => ApiError::unavailable(
                "transaction_conflict",
                "the transaction conflicted with another one; retry",
            ),
            ErrorKind::Constraint | ErrorKind::Query => ApiError::internal(&err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::TxError;

    #[test]
    fn a_transaction_failed_before_commit_is_a_500_of_its_own() {
        let err = ApiError::from(TxError::<std::convert::Infallible>::FailedBeforeCommit(
            DbErr::Custom("current transaction is aborted".into()),
        ));
        assert_eq!(err.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(err.code, "transaction_failed");
        assert!(err.retry_after.is_none());
    }

    #[test]
    fn a_bad_context_value_is_a_400_that_names_the_setting_not_the_value() {
        use crate::context::{ContextError, SessionContext};
        let secret = "x".repeat(5000);
        let err = ApiError::from(
            SessionContext::new([("app.claims", secret.as_str())]).expect_err("too long"),
        );
        assert_eq!(
            (err.status, err.code),
            (StatusCode::BAD_REQUEST, "bad_context")
        );
        assert!(err.message.contains("app.claims") && !err.message.contains("xxxx"));
        let unsupported = ApiError::from(ContextError::Unsupported { backend: "sqlite" });
        assert_eq!(unsupported.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    /// A server that turned read-only (a demoted primary, a standby behind a DNS name that has
    /// not flipped yet) is not there for writes for a moment: 503 with `Retry-After`, not 500.
    #[test]
    fn a_read_only_server_is_a_503_with_retry_after() {
        let read_only = || crate::classify::tests::server("25006");
        for err in [
            ApiError::from(read_only()),
            ApiError::from(TxError::<std::convert::Infallible>::Database(read_only())),
        ] {
            assert_eq!(
                (err.status, err.code, err.retry_after),
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    Some(1)
                )
            );
        }
    }
}
