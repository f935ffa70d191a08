//! The statistics types: what [`DbService::stats`](crate::DbService::stats) reports (pool,
//! waits, statements, errors, transactions) and the transaction outcome counters behind it.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Why a connection was closed; counted in `dbservice_connections_closed_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Idle longer than `idle_timeout` (above `min_connections`).
    Idle,
    /// Older than its (jittered) `max_lifetime`.
    Lifetime,
    /// Served its (jittered) `max_uses` checkouts.
    MaxUses,
    /// The connection failed (I/O error, no answer to a check, terminated by the server).
    Broken,
    /// Its state could not be proven clean (left inside a transaction, or a check disagreed).
    Unclean,
    /// The pool was closed.
    Shutdown,
    /// Its host stopped matching what the pool needs (`target_session_attrs`, or a write
    /// refused as read-only): a standby, an old primary, a server turned read-only.
    HostMismatch,
    /// Opened before [`DbService::soft_evict`](crate::DbService::soft_evict) (a rotated or
    /// revoked credential): closed when idle, or at check-in.
    Evicted,
}

impl CloseReason {
    /// Every reason, in the order of [`ClosedCounts`](crate::ClosedCounts)' fields.
    pub const ALL: [CloseReason; 8] = [
        CloseReason::Idle,
        CloseReason::Lifetime,
        CloseReason::MaxUses,
        CloseReason::Broken,
        CloseReason::Unclean,
        CloseReason::Shutdown,
        CloseReason::HostMismatch,
        CloseReason::Evicted,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Idle => "idle",
            CloseReason::Lifetime => "lifetime",
            CloseReason::MaxUses => "max_uses",
            CloseReason::Broken => "broken",
            CloseReason::Unclean => "unclean",
            CloseReason::Shutdown => "shutdown",
            CloseReason::HostMismatch => "host_mismatch",
            CloseReason::Evicted => "evicted",
        }
    }

    pub(crate) fn index(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_index(i: u8) -> Self {
        Self::ALL
            .get(usize::from(i))
            .copied()
            .unwrap_or(CloseReason::Shutdown)
    }

    /// Whether a connection closed for this reason is still healthy enough to be told
    /// goodbye (a `Terminate` message) rather than just dropped.
    pub(crate) fn graceful(self) -> bool {
        !matches!(self, CloseReason::Broken | CloseReason::Unclean)
    }
}

/// Where an endpoint's connections go (PostgreSQL): its hosts as last found, and the one the
/// pool is on. Shown in `/health/db` under `hosts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HostsReport {
    /// `target_session_attrs` in effect.
    pub target_session_attrs: String,
    /// `load_balance_hosts` in effect.
    pub load_balance_hosts: String,
    /// The host of the last connection kept (`host:port`), if any.
    pub current: Option<String>,
    /// How long ago the pool moved to `current`, in milliseconds.
    pub current_since_ms: Option<u64>,
    /// Times the pool moved to another host or lost the one it was on.
    pub changes: u64,
    /// Each host in the order written.
    pub hosts: Vec<HostReport>,
}

/// One host of a [`HostsReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HostReport {
    /// `host:port` (`[v6]:port`, or a socket directory).
    pub host: String,
    /// `unknown` (not tried), `matching`, `mismatch` (answered, passed over), `unreachable`.
    pub state: &'static str,
    /// Why it was passed over, when it was.
    pub reason: Option<String>,
    /// How long it has been in this state, in milliseconds.
    pub since_ms: u64,
}

/// A snapshot of the pool: connections, callers, statements, errors, transactions.
///
/// The numbers are read one after another without a lock, so under load they may not add up
/// exactly (`idle` is derived as `open - busy`). Where each is measured: see
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
    /// Connections closed since the service started (the sum of `closed`).
    pub closed_total: u64,
    /// Connections closed since the service started, by reason.
    pub closed: ClosedCounts,
    /// Liveness pings at checkout: connections idle past `ping_after_idle`, or opened before
    /// the last connection failure. A connection used moments ago goes out without one.
    pub checkout_pings: u64,
    /// State checks at checkout: connections whose last statement was abandoned, or that
    /// might be inside a transaction, proven clean (or closed) before reuse. A connection
    /// that came back clean goes out without one.
    pub checkout_checks: u64,
    /// Session resets: connections whose session a caller may have changed (a `SET`, a role,
    /// an advisory lock, `LISTEN`, a temporary table, a `PREPARE`...) reset before anyone
    /// else gets them. SeaORM's own statements never need one.
    pub session_resets: u64,
    /// Statements abandoned on the client (past `query_timeout`, or their caller dropped)
    /// for which a cancel was sent to the server.
    pub statements_cancelled: u64,
    /// Keepalive pings of connections quiet for `keepalive_idle` while idle in the pool.
    pub keepalive_pings: u64,
    /// Statements, transactions, streams and batches refused for want of a session context
    /// (`require_context`; see [`crate::context`]).
    pub context_refused: u64,
    /// Connections and transactions reported as held past `leak_detection_threshold`.
    pub leaks: u64,
    /// Whether the database is known down (fail-fast: callers get the cause at once).
    pub database_down: bool,
    /// Times the pool moved to another host or lost the one it was on (PostgreSQL; see
    /// [`HostsReport`]).
    pub topology_changes: u64,
    /// Whether the server refused the last new connection for want of a slot (full, not
    /// down: the open connections serve, readiness holds); cleared by the next connect.
    pub server_full: bool,
    /// Statements executed (inside transactions too).
    pub queries_total: u64,
    /// Statements that returned an error.
    pub queries_failed: u64,
    /// `queries_failed / queries_total` since the service started (0 before any statement).
    pub error_rate: f64,
    /// Seconds since the service was created.
    pub uptime_seconds: f64,
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

/// Percentiles of a duration over the most recent samples (a window of 1024), in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Distribution {
    /// How many samples the window holds (at most 1024).
    pub samples: usize,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample in the window.
    pub max_ms: f64,
    /// Average over the window (the "average query time" of a dashboard).
    pub mean_ms: f64,
}

/// Connections closed since the service started, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ClosedCounts {
    /// Idle longer than `idle_timeout`.
    pub idle: u64,
    /// Older than their (jittered) `max_lifetime`.
    pub lifetime: u64,
    /// Served their (jittered) `max_uses` checkouts.
    pub max_uses: u64,
    /// Failed: an I/O error, no answer to a check, terminated by the server.
    pub broken: u64,
    /// Could not be proven clean (left inside a transaction).
    pub unclean: u64,
    /// Closed with the pool.
    pub shutdown: u64,
    /// Their host stopped matching what the pool needs (a failover, a server turned
    /// read-only).
    pub host_mismatch: u64,
    /// Opened before a [`soft_evict`](crate::DbService::soft_evict).
    pub evicted: u64,
}

impl ClosedCounts {
    /// All closes.
    pub fn total(&self) -> u64 {
        self.idle
            + self.lifetime
            + self.max_uses
            + self.broken
            + self.unclean
            + self.shutdown
            + self.host_mismatch
            + self.evicted
    }
}

/// Errors counted by kind since the service started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ErrorCounts {
    /// No connection within `pool_timeout`.
    pub pool_timeout: u64,
    /// No answer within the client deadline `query_timeout`.
    pub query_timeout: u64,
    /// The pool was closed (shutdown).
    pub pool_closed: u64,
    /// The database could not be reached or dropped the connection.
    pub connection: u64,
    /// The server cancelled a statement (`statement_timeout`).
    pub statement_timeout: u64,
    /// Serialization failures and deadlocks.
    pub serialization: u64,
    /// Constraint violations (SQLSTATE class 23).
    pub constraint: u64,
    /// Any other failed statement.
    pub query: u64,
}

/// Transaction outcome counters, since the service started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TxStats {
    /// Transactions committed.
    pub commit: u64,
    /// Transactions rolled back because the closure failed (retried attempts included).
    pub rollback: u64,
    /// Transactions rolled back because they ran past `timeout`.
    pub timeout: u64,
    /// Transactions that could not start within `max_wait`.
    pub max_wait: u64,
    /// Re-runs after a serialization failure or deadlock, or after the server was lost before
    /// the `COMMIT` was sent (a failover: see `CONNECTION_POOLING.md`, "Failover").
    pub retry: u64,
    /// Transactions whose `COMMIT` got no answer in time, or was answered by the end of its
    /// session (57P01, 57P02, class 08): committed or not, nobody knows.
    pub commit_unknown: u64,
    /// Transactions whose body returned `Ok` after a statement inside had failed: rolled
    /// back at `COMMIT` and reported as [`TxError::FailedBeforeCommit`](crate::TxError).
    pub failed_before_commit: u64,
}

#[derive(Debug, Default)]
pub(crate) struct TxCounters {
    pub(crate) commit: AtomicU64,
    pub(crate) rollback: AtomicU64,
    pub(crate) timeout: AtomicU64,
    pub(crate) max_wait: AtomicU64,
    pub(crate) retry: AtomicU64,
    pub(crate) commit_unknown: AtomicU64,
    pub(crate) failed_before_commit: AtomicU64,
}

impl TxCounters {
    pub fn snapshot(&self) -> TxStats {
        TxStats {
            commit: self.commit.load(Ordering::Relaxed),
            rollback: self.rollback.load(Ordering::Relaxed),
            timeout: self.timeout.load(Ordering::Relaxed),
            max_wait: self.max_wait.load(Ordering::Relaxed),
            retry: self.retry.load(Ordering::Relaxed),
            commit_unknown: self.commit_unknown.load(Ordering::Relaxed),
            failed_before_commit: self.failed_before_commit.load(Ordering::Relaxed),
        }
    }
}
