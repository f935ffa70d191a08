//! [`Transaction`], the handle of [`DbService::begin`], and [`Open`], the owner of a live
//! transaction that rolls it back if its caller goes away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{DatabaseTransaction, DbErr};

use super::bump;
use super::error::TxError;
use super::finish::{commit_bound, finish_detached};
use crate::gate::Permit;
use crate::observe::Instruments;
use crate::service::{DbService, Tasks};

/// A transaction begun with [`DbService::begin`]; rolls back when dropped uncommitted.
pub struct Transaction {
    pub(super) open: Open,
    pub(super) started: Instant,
    pub(super) timeout: Duration,
    pub(super) db: DbService,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("elapsed", &self.started.elapsed())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for Transaction {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        // Cannot fail: `open` holds the transaction from `begin` until `commit`/`rollback`,
        // which consume the handle, and `Drop`, which ends it; no `&self` outlives any of them.
        // (`Deref` has no way to return an error.)
        self.open
            .txn()
            .expect("a Transaction handle always holds its transaction")
    }
}

impl Transaction {
    /// Commits, unless `timeout` has passed: then rolls back and returns [`TxError::Timeout`].
    pub async fn commit(mut self) -> Result<(), TxError<std::convert::Infallible>> {
        let counters = self.db.tx_counters();
        let Some((txn, permit)) = self.open.take() else {
            return Err(TxError::Database(DbErr::Custom(
                "transaction already finished".into(),
            )));
        };
        let ping_timeout = self.db.config().pool().ping_timeout;
        if self.started.elapsed() > self.timeout {
            let _ = finish_detached(self.db.tasks(), txn, permit, false, ping_timeout).await;
            bump(&counters.timeout);
            return Err(TxError::Timeout(self.timeout));
        }
        let bound = commit_bound(self.timeout, ping_timeout);
        let result = finish_detached(self.db.tasks(), txn, permit, true, bound).await;
        self.db.commit_outcome(result, self.timeout)
    }

    /// Rolls back now.
    pub async fn rollback(mut self) -> Result<(), DbErr> {
        bump(&self.db.tx_counters().rollback);
        match self.open.take() {
            Some((txn, permit)) => {
                let bound = self.db.config().pool().ping_timeout;
                finish_detached(self.db.tasks(), txn, permit, false, bound).await
            }
            None => Ok(()),
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if self.open.txn().is_some() {
            bump(&self.db.tx_counters().rollback);
        }
        // `open`'s own Drop rolls back in a spawned task.
    }
}

/// Owns the open transaction and its permit; if dropped (the caller's future was cancelled)
/// it rolls back explicitly in a spawned task instead of relying on SeaORM's `Drop`.
pub(super) struct Open {
    pub(super) txn: Option<DatabaseTransaction>,
    pub(super) permit: Option<Permit>,
    /// `ping_timeout`: how long a rollback after cancellation may take.
    pub(super) bound: Duration,
    /// Where a cancellation is noted, so the connection gets the full release check.
    pub(super) instruments: Arc<Instruments>,
    /// Where that rollback runs.
    pub(super) tasks: Arc<Tasks>,
}

impl Open {
    pub(super) fn txn(&self) -> Option<&DatabaseTransaction> {
        self.txn.as_ref()
    }

    pub(super) fn take(&mut self) -> Option<(DatabaseTransaction, Option<Permit>)> {
        self.txn.take().map(|t| (t, self.permit.take()))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some((txn, permit)) = self.take() {
            self.instruments.note_trouble();
            let bound = self.bound;
            self.tasks.spawn(async move {
                match tokio::time::timeout(bound, txn.rollback()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "rollback after cancellation failed"),
                    Err(_) => tracing::warn!(
                        "rollback after cancellation got no answer; connection abandoned"
                    ),
                }
                drop(permit);
            });
        }
    }
}
