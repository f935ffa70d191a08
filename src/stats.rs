//! Pool statistics.

use serde::Serialize;

use crate::observe::{Distribution, ErrorCounts};
use crate::transaction::TxStats;

/// A snapshot of the pool: connections, callers, statements, errors, transactions.
///
/// The numbers are read one after another without a lock, so under load they may not add up
/// exactly (`busy` is derived as `open - idle`). Where each is measured: see
/// `CONNECTION_POOLING.md`, "Monitoring".
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PoolStats {
    /// Connections currently open, idle or in use.
    pub open: u32,
    /// Open connections waiting in the pool.
    pub idle: u32,
    /// Open connections checked out by a caller.
    pub busy: u32,
    /// The pool's maximum (`connection_limit`).
    pub max: u32,
    /// Connections kept open while idle (`min_connections`).
    pub min: u32,
    /// Callers waiting for a connection right now (measured where they wait).
    pub waiting: u64,
    /// Callers holding a connection right now: statements in flight and open transactions.
    pub active: u64,
    /// Connections opened since the service started.
    pub opened_total: u64,
    /// Connections closed since the service started (idle, lifetime, broken): opened − open.
    pub closed_total: u64,
    /// Statements executed (inside transactions too).
    pub queries_total: u64,
    /// Statements that returned an error.
    pub queries_failed: u64,
    /// Errors by kind.
    pub errors: ErrorCounts,
    /// Time callers waited for a connection, over the recent window.
    pub wait: Distribution,
    /// Statement execution time, over the recent window.
    pub query: Distribution,
    /// Outcomes of [`DbService::transaction`](crate::DbService::transaction) so far.
    pub transactions: TxStats,
}

impl PoolStats {
    /// Whether every connection the pool may open is in use, so a new caller has to wait.
    pub fn is_saturated(&self) -> bool {
        self.busy >= self.max
    }

    /// `busy / max`, from 0.0 to 1.0.
    pub fn utilization(&self) -> f64 {
        if self.max == 0 {
            return 0.0;
        }
        f64::from(self.busy) / f64::from(self.max)
    }
}
