//! COMMIT and ROLLBACK in tasks their caller cannot cancel, with their bounds.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sea_orm::DbErr;

use super::bump;
use super::error::TxError;
use crate::classify::{is_server_timeout, sqlstate};
use crate::endpoint::{COMMIT_WITH_POSITION_SQL, HighWater, position_in};
use crate::pool::{Op, Output, Pooled, RawConn};

/// SQLSTATE `in_failed_sql_transaction`: what any statement but the end of the transaction
/// gets once a statement inside it has failed.
pub(super) const IN_FAILED_TRANSACTION: &str = "25P02";

/// PostgreSQL answers `COMMIT` inside a failed transaction with the tag `ROLLBACK` and no
/// error, and sqlx shows neither the tag nor the transaction status. So the COMMIT travels
/// behind a statement that does nothing in a healthy transaction and fails with
/// [`IN_FAILED_TRANSACTION`] in a failed one, in the same simple-protocol message: the error
/// skips the rest of the message, so the COMMIT never runs and the failure costs no extra
/// round trip. A `ROLLBACK TO SAVEPOINT` heals a transaction, and then the probe passes.
const GUARDED_COMMIT: &str = "SELECT WHERE false; COMMIT";

/// [`GUARDED_COMMIT`] with the write position read after it (with replicas).
static GUARDED_COMMIT_WITH_POSITION: LazyLock<String> =
    LazyLock::new(|| format!("SELECT WHERE false; {COMMIT_WITH_POSITION_SQL}"));
use crate::stats::TxCounters;
use crate::tasks::Tasks;

/// How long a caller waits for the answer to `COMMIT`: the transaction's `timeout` (at least
/// `ping_timeout`) + 1 s. A COMMIT may legitimately be slow (an fsync stall, a synchronous
/// standby), and an answer that comes late is still an answer, whereas giving up early turns
/// a commit into "unknown". The server gives up first: the transaction's `statement_timeout`
/// (its budget + `SERVER_GRACE`) cancels a COMMIT stuck in a deferred trigger or a lock.
pub(super) fn commit_bound(timeout: Duration, ping_timeout: Duration) -> Duration {
    timeout
        .max(ping_timeout)
        .saturating_add(Duration::from_secs(1))
}

/// Runs COMMIT or ROLLBACK in a task of its own on the service's runtime: it completes even if
/// the caller is dropped meanwhile (or its HTTP worker stops), and the connection goes back
/// only when it is done (clean), or is closed if it did not end the transaction. The caller
/// waits at most `bound`; a server that does not answer within it is frozen or gone, and the
/// caller gets a connection error (no SQLSTATE) instead of a hang. For COMMIT that error
/// means the outcome is unknown (see [`DbService::commit_outcome`](crate::DbService)).
///
/// With read replicas (`track`), a COMMIT carries `SELECT pg_current_wal_lsn()` in the same
/// message, and the position advances the instance's write position before the caller hears
/// of the commit: any read it starts afterwards waits for a replica to show the write.
pub(super) async fn finish_detached(
    tasks: &Arc<Tasks>,
    mut conn: Pooled,
    commit: bool,
    bound: Duration,
    track: Option<Arc<HighWater>>,
) -> Result<(), DbErr> {
    let what = if commit { "COMMIT" } else { "ROLLBACK" };
    // The task's own bound: a COMMIT/ROLLBACK the server never answers is abandoned, and the
    // connection, still inside its transaction, is closed.
    // Under the caller's span (a transaction's), so that COMMIT's statement span nests there.
    let span = tracing::Span::current();
    let task = tasks.spawn(tracing::Instrument::instrument(
        async move {
            let within = Some(bound.saturating_mul(2));
            let postgres = conn
                .conn()
                .and_then(|c| c.raw.as_ref())
                .is_some_and(RawConn::is_postgres);
            let result = match (&track, commit) {
                (Some(high_water), true) => conn
                    .run(
                        Op::UnpreparedRows(GUARDED_COMMIT_WITH_POSITION.as_str()),
                        within,
                    )
                    .await
                    .inspect(|out| {
                        if let Output::All(rows) = out
                            && let Some(p) = position_in(rows)
                        {
                            high_water.advance(p.0);
                        }
                    }),
                (None, true) if postgres => conn.run(Op::Unprepared(GUARDED_COMMIT), within).await,
                _ => conn.run(Op::Unprepared(what), within).await,
            };
            let ended = match &result {
                Ok(_) => true,
                // The transaction had failed and the COMMIT was never sent: end it here.
                Err(e) if sqlstate(e).as_deref() == Some(IN_FAILED_TRANSACTION) => {
                    conn.run(Op::Unprepared("ROLLBACK"), within).await.is_ok()
                }
                Err(_) => false,
            };
            if ended {
                conn.set_in_transaction(false);
            }
            drop(conn);
            result.map(|_| ())
        },
        span,
    ));
    match tokio::time::timeout(bound, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(DbErr::Custom(format!("the {what} task failed: {e}"))),
        Err(_) => Err(DbErr::Conn(sea_orm::RuntimeErr::SqlxError(
            std::sync::Arc::new(sea_orm::sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer to {what} within {bound:?}"),
            ))),
        ))),
    }
}

/// A statement the server cancelled because our transaction budget ran out is a timeout.
pub(super) fn map_server_timeout<E>(
    e: DbErr,
    timeout: Duration,
    counters: &TxCounters,
) -> TxError<E> {
    if is_server_timeout(&e) {
        bump(&counters.timeout);
        TxError::Timeout(timeout)
    } else {
        TxError::Database(e)
    }
}

impl crate::service::DbService {
    /// Counts and classifies the result of a COMMIT. An error the server answered (it carries
    /// a SQLSTATE) means the transaction did not commit: [`IN_FAILED_TRANSACTION`] says a
    /// statement inside it had failed before (its error swallowed by the body), anything else
    /// is the COMMIT's own failure; except an answer that the session is ending (57P01, 57P02,
    /// class 08), which is no answer about the COMMIT: a backend terminated while it waited for
    /// a synchronous standby reports 57P01 after it committed locally. That, and any other
    /// error (no answer in time, the connection broke, the task died), leaves the outcome
    /// unknown.
    pub(super) fn commit_outcome(
        &self,
        result: Result<(), DbErr>,
        timeout: Duration,
    ) -> Result<(), TxError<std::convert::Infallible>> {
        let counters = self.tx_counters();
        match result {
            Ok(()) => {
                bump(&counters.commit);
                Ok(())
            }
            Err(e) if sqlstate(&e).as_deref() == Some(IN_FAILED_TRANSACTION) => {
                self.instruments().on_error(&e);
                bump(&counters.failed_before_commit);
                tracing::error!(error = %e, "a statement failed inside the transaction and its error was not returned; rolled back instead of committed");
                Err(TxError::FailedBeforeCommit(e))
            }
            Err(e) if sqlstate(&e).is_some() && !session_ended(&e) => {
                self.instruments().on_error(&e);
                bump(&counters.rollback);
                Err(map_server_timeout(e, timeout, counters))
            }
            Err(e) => {
                self.instruments().on_error(&e);
                bump(&counters.commit_unknown);
                tracing::error!(error = %e, "COMMIT outcome unknown");
                Err(TxError::CommitOutcomeUnknown(e.to_string()))
            }
        }
    }
}

/// The server's answer says it is ending the session (terminated, shutting down, the
/// connection failed), not how the statement went.
pub(super) fn session_ended(err: &DbErr) -> bool {
    sqlstate(err)
        .is_some_and(|code| matches!(code.as_str(), "57P01" | "57P02") || code.starts_with("08"))
}
