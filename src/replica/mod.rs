//! Read replicas with read-your-writes.
//!
//! `DATABASE_REPLICA_URLS` names one or more streaming replicas of a PostgreSQL primary (see
//! [`ReplicaConfig`]). Reads the backend marks as such ([`DbService::read`]) go to a replica
//! in rotation; writes, transactions and everything through [`DbService::conn`] go to the
//! primary.
//!
//! **Consistency.** After a write commits on the primary, the service reads the primary's WAL
//! position in the same round trip (`COMMIT; SELECT pg_current_wal_lsn()`, or one more
//! statement right after a write outside a transaction) and keeps the furthest one: its
//! *write position* ([`DbService::write_position`]). A read through [`DbService::read`] goes
//! to a replica only once that replica has replayed at least the write position as it was
//! when the read started (`pg_last_wal_replay_lsn()`), waiting at most `replica_wait`; else it
//! reads from the primary. So every read an instance serves sees every write that instance
//! committed before. A client that moves between instances carries the position as a token
//! ([`WalPosition`], `16/B374D848`): [`DbService::read_after`] waits for that position instead.
//! [`DbService::read_any`] reads from any replica in rotation (at most `replica_max_lag`
//! behind).
//!
//! **Failures.** A background check (every `replica_check_interval`) takes a replica that is
//! unreachable, not in recovery, or lagging past `replica_max_lag` out of rotation and puts it
//! back once healthy; a read that meets a failing replica is taken to the primary at once and
//! takes the replica out. Neither is an error to the caller, and neither waits `pool_timeout`.
//!
//! [`DbService::read`]: crate::DbService::read
//! [`DbService::read_after`]: crate::DbService::read_after
//! [`DbService::read_any`]: crate::DbService::read_any
//! [`DbService::conn`]: crate::DbService::conn
//! [`DbService::write_position`]: crate::DbService::write_position

pub(crate) mod probe;
mod reader;
mod set;
mod stats;

pub(crate) use self::reader::Need;
pub use self::reader::{PositionError, Reader};
pub(crate) use self::set::{Replica, Replicas};
pub use self::stats::{ReadCounts, ReplicaStats, ReplicaStatus};
pub use crate::config::replica::{
    DEFAULT_REPLICA_CHECK_INTERVAL, DEFAULT_REPLICA_MAX_LAG, DEFAULT_REPLICA_WAIT, ReplicaConfig,
};
pub use crate::endpoint::{BadPosition, WalPosition};
