//! Prepared statements made stale behind the pool's back. sqlx keeps each connection's named
//! statements for as long as the connection lives; after a migration changes a table, PostgreSQL
//! refuses a cached statement whose result type changed (0A000 "cached plan must not change
//! result type", sqlx#1250), and after a `DEALLOCATE` the statement is gone (26000). Every
//! connection of the pool has the same statements cached, so one such error is taken as news
//! for all of them: the pool's [`PlanEpoch`] moves on, the connection that met the error is
//! evicted at once and every other one at its next checkout, before anyone else meets it.
//!
//! The failed statement never ran (the server refuses it before executing), so a read is run
//! once more on the evicted connection; a write is not, by rule: the caller gets the error and
//! decides. Inside a transaction nothing is re-run: the error has aborted the transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::sqlx;
#[cfg(feature = "postgres")]
use sea_orm::sqlx::Connection;

use super::exec;
use super::op::{Mode, Op, Output};
use super::raw::RawConn;
use super::stale::is_stale_statement;

/// The pool's count of stale-statement events; a connection whose cache predates the
/// current count is evicted before it is handed out.
#[derive(Debug, Default)]
pub(crate) struct PlanEpoch(AtomicU64);

/// One connection's view: the pool's epoch and the count its cache was last cleared at.
#[derive(Debug)]
pub(crate) struct Plans {
    epoch: Arc<PlanEpoch>,
    seen: u64,
}

impl Plans {
    /// A new connection's cache is empty, so it is current as of now.
    pub fn new(epoch: Arc<PlanEpoch>) -> Self {
        let seen = epoch.0.load(Ordering::Acquire);
        Self { epoch, seen }
    }

    /// Whether this connection's statement cache predates a stale-statement event.
    pub fn outdated(&self) -> bool {
        self.seen != self.epoch.0.load(Ordering::Acquire)
    }

    /// Its cache was just cleared.
    pub fn evicted(&mut self) {
        self.seen = self.epoch.0.load(Ordering::Acquire);
    }

    /// A stale statement was met: every connection's cache is outdated.
    fn bump(&mut self) {
        self.epoch.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// Clears the connection's statement cache (PostgreSQL closes each statement on the server,
/// one round trip, none when the cache is empty). MySQL and SQLite re-prepare by themselves.
pub(crate) async fn evict(raw: &mut RawConn) -> Result<(), sqlx::Error> {
    match raw {
        #[cfg(feature = "postgres")]
        RawConn::Postgres(c) => c.clear_cached_statements().await,
        #[cfg(feature = "mysql")]
        RawConn::MySql(_) => Ok(()),
        #[cfg(feature = "sqlite")]
        RawConn::Sqlite(_) => Ok(()),
    }
}

/// Whether re-running `op` after a stale-statement error is safe by rule: a named prepared
/// statement that reads, outside a transaction of ours. (A `SELECT` calling a writing function
/// passes, which is still safe here: the failed statement never ran.)
fn rerun_allowed(op: Op<'_>, in_tx: bool) -> bool {
    matches!(op, Op::One(_) | Op::All(_)) && !in_tx && crate::reads::surely_reads(op.sql())
}

/// [`exec::run`] (`context`: see there), recovering from a stale cached statement: evicts this connection's cache,
/// outdates every other connection's, and re-runs a read once (see the module docs).
pub(crate) async fn run(
    raw: &mut RawConn,
    op: Op<'_>,
    mode: &Mode,
    in_tx: bool,
    plans: &mut Plans,
    context: &str,
    context_plans: &mut super::context_plans::ContextPlans,
) -> Result<Output, sqlx::Error> {
    let first = exec::run(raw, op, mode, in_tx, context, context_plans).await;
    let e = match first {
        // Only sqlx's own named statements are cached (a `PREPARE` of the caller's is not).
        Err(e)
            if *mode == Mode::Prepared
                && !matches!(op, Op::Unprepared(_) | Op::UnpreparedRows(_))
                && is_stale_statement(&e) =>
        {
            e
        }
        other => return other,
    };
    tracing::warn!(error = %e, "a cached prepared statement went stale (a migration or DEALLOCATE); evicting the pool's statement caches");
    plans.bump();
    // On failure the connection, not the statement, is the news (an I/O error breaks it).
    evict(raw).await?;
    plans.evicted();
    if rerun_allowed(op, in_tx) {
        exec::run(raw, op, mode, in_tx, context, context_plans).await
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_outdated_by_another_ones_event_until_evicted() {
        let epoch = Arc::new(PlanEpoch::default());
        let mut a = Plans::new(epoch.clone());
        let mut b = Plans::new(epoch);
        assert!(!a.outdated() && !b.outdated());
        a.bump();
        a.evicted();
        assert!(!a.outdated());
        assert!(b.outdated());
        b.evicted();
        assert!(!b.outdated());
    }

    #[test]
    fn only_reads_outside_a_transaction_are_rerun() {
        let stmt = |sql: &str| sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql);
        let select = stmt("SELECT * FROM p");
        let insert = stmt("INSERT INTO p VALUES (1) RETURNING *");
        let cte = stmt("WITH d AS (DELETE FROM p RETURNING *) SELECT * FROM d");
        assert!(rerun_allowed(Op::All(&select), false));
        assert!(!rerun_allowed(Op::All(&select), true));
        assert!(!rerun_allowed(Op::One(&insert), false));
        assert!(!rerun_allowed(Op::All(&cte), false));
        assert!(!rerun_allowed(Op::Execute(&select), false));
    }
}
