//! Pool statistics.

use serde::Serialize;

use crate::transaction::TxStats;

/// A snapshot of the pool's connections.
///
/// The numbers are read one after another without a lock, so under load they may not add up
/// exactly (`busy` is derived as `open - idle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
