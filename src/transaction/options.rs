//! [`TxOptions`] and [`Isolation`]: what a transaction may wait for, how long it may run, how
//! it is isolated and how often it is retried.

use std::time::Duration;

use sea_orm::IsolationLevel;
use serde::Serialize;

/// Transaction isolation levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Isolation {
    /// Each statement sees data committed before it started (PostgreSQL's default).
    ReadCommitted,
    /// The whole transaction sees one snapshot (MySQL's default).
    RepeatableRead,
    /// As if transactions ran one after another; conflicts fail with SQLSTATE 40001 and are
    /// retried (see [`TxOptions::retries`]).
    Serializable,
}

impl Isolation {
    /// The level as SQL spells it, lower case (`read committed`): `dbservice.transaction.isolation`.
    pub fn label(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read committed",
            Isolation::RepeatableRead => "repeatable read",
            Isolation::Serializable => "serializable",
        }
    }
}

impl From<Isolation> for IsolationLevel {
    fn from(i: Isolation) -> Self {
        match i {
            Isolation::ReadCommitted => IsolationLevel::ReadCommitted,
            Isolation::RepeatableRead => IsolationLevel::RepeatableRead,
            Isolation::Serializable => IsolationLevel::Serializable,
        }
    }
}

/// Options of [`DbService::transaction`](crate::DbService::transaction); build from
/// `TxOptions::default()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TxOptions {
    pub(super) max_wait: Duration,
    pub(super) timeout: Duration,
    pub(super) isolation: Option<Isolation>,
    pub(super) read_only: bool,
    pub(super) retries: u32,
}

impl Default for TxOptions {
    /// `max_wait` 2 s, `timeout` 5 s (Prisma's defaults), the database's default isolation,
    /// read-write, 3 retries.
    fn default() -> Self {
        Self {
            max_wait: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            isolation: None,
            read_only: false,
            retries: 3,
        }
    }
}

impl TxOptions {
    /// Longest wait for a connection and `BEGIN`. Default 2 s.
    ///
    /// Also the budget for running the transaction again after it lost its server before its
    /// `COMMIT` was sent (a failover or switchover: the server turned read-only, SQLSTATE
    /// 25006; shut down, 57P01/57P02/57P03; the connection broke, class 08 or an I/O error; or
    /// the pool is failing fast because no host can be had): such retries are not counted by
    /// [`retries`](Self::retries) but go on, with pauses from 50–100 ms doubling to 0.5–1 s,
    /// while less than `max_wait` has passed since the call began, and each retry waits for its
    /// connection and `BEGIN` at most what is left of it; a retry is made only if its pause
    /// ends before the budget does. When the budget is spent the last error is returned (if
    /// the last retry ran out of it before `BEGIN`, the error that caused that retry rather
    /// than [`TxError::MaxWait`](crate::TxError::MaxWait)). A write inside a transaction opened
    /// [`read_only`](Self::read_only) is the body's own 25006 and is not retried. A `COMMIT`
    /// that was sent is never retried: no answer, or an answer that the session is ending, is
    /// [`TxError::CommitOutcomeUnknown`](crate::TxError::CommitOutcomeUnknown).
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = d;
        self
    }

    /// Longest time from `BEGIN` to `COMMIT`, per attempt. Default 5 s.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Isolation level. Default: the database's (read committed on PostgreSQL, repeatable
    /// read on MySQL). Ignored on SQLite, whose transactions are serializable.
    pub fn isolation(mut self, i: Isolation) -> Self {
        self.isolation = Some(i);
        self
    }

    /// Read-only transaction: writes fail. Default false. Ignored on SQLite.
    pub fn read_only(mut self, yes: bool) -> Self {
        self.read_only = yes;
        self
    }

    /// How many times the closure is re-run after a serialization failure or deadlock.
    /// Default 3; 0 disables retries. Retries after a lost server are bounded by
    /// [`max_wait`](Self::max_wait) instead, not by this count; but with 0 the closure runs at
    /// most once (only a retry whose connection or `BEGIN` failed, before the closure ran, is
    /// made).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }
}
