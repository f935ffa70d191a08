//! What the read replicas report: each replica's rotation, lag and reads, and where reads
//! went ([`DbService::replica_stats`](crate::DbService::replica_stats), `/health/db`, the
//! metrics).

use std::time::SystemTime;

use serde::Serialize;

use crate::endpoint::WalPosition;

/// One replica as `/health/db` and [`ReplicaStats`] show it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ReplicaStatus {
    /// `replica_1`, `replica_2`, ... in the order of `DATABASE_REPLICA_URLS`.
    pub name: String,
    /// The replica's URL, password masked.
    pub url: String,
    /// Whether reads go to it.
    pub in_rotation: bool,
    /// Why not, when it is out.
    pub out_because: Option<String>,
    /// How far behind the primary the last check found it (`None`: not known yet).
    pub lag_seconds: Option<f64>,
    /// The furthest WAL position it was seen to have replayed.
    pub replayed: WalPosition,
    /// Reads it served.
    pub reads: u64,
    /// When it was last checked.
    #[serde(with = "crate::time::rfc3339_opt")]
    pub checked_at: Option<SystemTime>,
}

/// Where reads went: replica or primary, and why.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadCounts {
    /// Served by a replica that had replayed far enough at once.
    pub replica: u64,
    /// Served by a replica after waiting for it to replay far enough.
    pub replica_after_wait: u64,
    /// Served by the primary: no replica replayed far enough within `replica_wait`.
    pub primary_lagging: u64,
    /// Served by the primary: no replica in rotation (or none with a free connection).
    pub primary_unavailable: u64,
    /// Served by the primary after the replica failed (and was taken out of rotation).
    pub primary_replica_error: u64,
}

impl ReadCounts {
    /// `(outcome label, count)` for the `dbservice_replica_reads_total{outcome}` family.
    pub fn labelled(&self) -> [(&'static str, u64); 5] {
        [
            ("replica", self.replica),
            ("replica_after_wait", self.replica_after_wait),
            ("primary_lagging", self.primary_lagging),
            ("primary_unavailable", self.primary_unavailable),
            ("primary_replica_error", self.primary_replica_error),
        ]
    }
}

/// The read replicas' state: every replica and where the reads went.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ReplicaStats {
    /// The instance's own write position (read-your-writes waits for it by default).
    pub write_position: WalPosition,
    /// Where reads went.
    pub reads: ReadCounts,
    /// Each replica.
    pub replicas: Vec<ReplicaStatus>,
}
