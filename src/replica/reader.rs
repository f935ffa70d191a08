//! [`Reader`]: the SeaORM executor for reads, `db.read()`.

use std::sync::Arc;
use std::time::Instant;

use sea_orm::{DbBackend, DbErr, Statement};

use super::set::{Fallback, Replicas};
use crate::classify::{ErrorKind, sqlstate};
use crate::context::SessionContext;
use crate::endpoint::{CURRENT_POSITION_SQL, Endpoint, WalPosition};
use crate::pool::{Op, Output};
use crate::reads::check_read;

/// What a read must see.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Need {
    /// Every write this instance committed before the statement (read-your-writes).
    Instance,
    /// Writes up to a position a client brought back.
    At(WalPosition),
    /// Nothing in particular: any replica in rotation (at most `replica_max_lag` behind).
    Any,
}

/// A SeaORM executor for reads: pass `&db.read()` (or `&db.read_after(pos)`) to any SeaORM
/// query. Each statement goes to a replica in rotation that has replayed what it must see,
/// waiting at most `replica_wait` for one; otherwise, or when the replica fails, to the
/// primary, without an error to the caller. Without replicas everything goes to the primary.
///
/// Only reads: a statement that does not start with `SELECT`, `WITH`, `VALUES`, `SHOW`,
/// `TABLE` or `EXPLAIN`, or that writes all the same as far as its text shows (a `WITH`
/// holding an `INSERT`/`UPDATE`/`DELETE`/`MERGE`, a second statement, `EXPLAIN ANALYZE` of a
/// write, `SELECT ... INTO`, `FOR UPDATE`), is refused on every backend, with or without
/// replicas, so code that writes through a reader fails in development, not on the first
/// replica in production. A function that writes is refused by the replica itself (SQLSTATE
/// 25006), returned as the error; it is never re-run on the primary.
#[derive(Clone)]
pub struct Reader {
    /// Where reads go when no replica will do, and writes' positions are asked.
    primary: Endpoint,
    replicas: Option<Arc<Replicas>>,
    need: Need,
    backend: DbBackend,
    /// A session context every read carries, on a replica and on the primary alike.
    context: Option<SessionContext>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("need", &self.need)
            .finish_non_exhaustive()
    }
}

/// Whether `sql` is a read (what a [`Reader`] accepts): see [`check_read`].
#[cfg(test)]
pub(crate) fn is_read(sql: &str) -> bool {
    check_read(sql, DbBackend::Postgres).is_ok()
}

/// A `read_after` token the primary has not reached, or could not be checked against it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PositionError {
    /// The token is ahead of the primary's current position: no write of this database made it
    /// (forged, corrupted, or from another database). Waiting for it would be in vain.
    #[error(
        "read position `{position}` is ahead of the primary's WAL position `{primary}`: \
         no write of this database has reached it"
    )]
    Ahead {
        /// The token.
        position: WalPosition,
        /// The primary's position when asked.
        primary: WalPosition,
    },
    /// The primary's position could not be read.
    #[error("read position `{position}` could not be checked against the primary: {source}")]
    Unchecked {
        /// The token.
        position: WalPosition,
        /// Why the primary did not answer.
        #[source]
        source: DbErr,
    },
}

impl PositionError {
    /// The token that was refused or not checked.
    pub fn position(&self) -> WalPosition {
        match self {
            PositionError::Ahead { position, .. } | PositionError::Unchecked { position, .. } => {
                *position
            }
        }
    }
}

impl From<PositionError> for DbErr {
    fn from(e: PositionError) -> Self {
        match e {
            // The primary's own error keeps its kind (unreachable, timeout) for the caller.
            PositionError::Unchecked { source, .. } => source,
            ahead @ PositionError::Ahead { .. } => DbErr::Custom(ahead.to_string()),
        }
    }
}

impl Reader {
    pub(crate) fn new(primary: Endpoint, replicas: Option<Arc<Replicas>>, need: Need) -> Self {
        let backend = sea_orm::ConnectionTrait::get_database_backend(primary.conn());
        Self {
            primary,
            replicas,
            need,
            backend,
            context: None,
        }
    }

    /// This reader with a session context (see [`crate::context`]).
    pub(crate) fn with_context(mut self, context: SessionContext) -> Self {
        self.context = Some(context);
        self
    }

    /// This reader, once its `read_after` token is known to be reached by the primary (see
    /// [`PositionError`]); any other reader as it is. For a service that takes tokens from
    /// clients and wants to answer a bad one before reading (the demo's 400): a statement run
    /// through an unchecked reader is checked the same way and fails with the same text.
    pub async fn verified(self) -> Result<Self, PositionError> {
        if let (Need::At(p), Some(set)) = (self.need, self.replicas.as_deref()) {
            self.reached(set, p).await?;
        }
        Ok(self)
    }

    /// Whether the primary has reached `p`: at once when this instance has written or seen
    /// that far, else by asking the primary (its answer kept for the next tokens).
    async fn reached(&self, set: &Replicas, p: WalPosition) -> Result<(), PositionError> {
        if p.0 <= set.high_water.get() || p.0 <= set.primary_seen.get() {
            return Ok(());
        }
        let stmt = Statement::from_string(DbBackend::Postgres, CURRENT_POSITION_SQL);
        let unchecked = |source| PositionError::Unchecked {
            position: p,
            source,
        };
        let row = match self.primary.conn().run_with(Op::One(&stmt), "").await {
            Ok(Output::One(row)) => row,
            Ok(_) => return Err(unchecked(crate::pool::unexpected())),
            Err(e) => return Err(unchecked(e)),
        };
        let primary = row
            .and_then(|r| r.try_get_by_index::<String>(0).ok())
            .and_then(|t| t.parse::<WalPosition>().ok())
            .ok_or_else(|| unchecked(DbErr::Custom("the primary gave no WAL position".into())))?;
        set.primary_seen.advance(primary.0);
        if p <= primary {
            Ok(())
        } else {
            Err(PositionError::Ahead {
                position: p,
                primary,
            })
        }
    }

    async fn run(&self, op: Op<'_>) -> Result<Output, DbErr> {
        if let Err(why) = check_read(op.sql(), self.backend) {
            return Err(DbErr::Custom(format!(
                "db.read() runs reads only (one SELECT, WITH, VALUES, SHOW, TABLE or EXPLAIN \
                 that writes nothing), and {why}; run it through db.conn() or a transaction"
            )));
        }
        let context = match &self.context {
            Some(c) => {
                let pgbouncer = self.primary.config().pool().session.pgbouncer;
                crate::context::check_text(op.sql(), false, pgbouncer)?;
                c.sql()
            }
            None if self.primary.conn().requires_context() => {
                return Err(self.primary.conn().refuse(op.sql()));
            }
            None => "",
        };
        let Some(set) = self.replicas.as_deref() else {
            return self.primary.conn().run_with(op, context).await;
        };
        let need = match self.need {
            Need::Instance => set.high_water.get(),
            Need::At(p) => {
                self.reached(set, p).await?;
                p.0
            }
            Need::Any => 0,
        };
        let wait = set.config.wait;
        let deadline = Instant::now() + wait;
        let why = match set.choose(need, deadline).await {
            Ok(chosen) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match chosen
                    .replica
                    .endpoint
                    .conn()
                    .run_within(op, Some(left), context)
                    .await
                {
                    // A connection opened since the position was learned may reach another
                    // server (the host behind the URL replaced): the answer counts only if
                    // that server has replayed far enough too.
                    Ok(_) if need > 0 && !chosen.replica.still_there(need, deadline).await => {
                        Fallback::Lagging
                    }
                    Ok(out) => {
                        set.served(&chosen);
                        return Ok(out);
                    }
                    // 25006 (read-only transaction): a function that writes. The reader
                    // promised reads only; the primary would run it.
                    Err(e) if sqlstate(&e).as_deref() == Some("25006") => return Err(e),
                    Err(e) => match ErrorKind::of(&e) {
                        // Busy: the primary serves this one; the replica stays in rotation.
                        ErrorKind::PoolTimeout => Fallback::Unavailable,
                        // Canceled by a conflict with recovery: the primary has no such conflict.
                        ErrorKind::Serialization => Fallback::ReplicaError,
                        ErrorKind::Connection | ErrorKind::PoolClosed => {
                            chosen.replica.take_out(format!("read failed: {e}"));
                            Fallback::ReplicaError
                        }
                        // The caller's deadline is spent: no second try on the primary. A slow
                        // query is not the replica's fault; a frozen replica fails its check.
                        ErrorKind::QueryTimeout => return Err(e),
                        _ => return Err(e),
                    },
                }
            }
            Err(why) => why,
        };
        set.fell_back(why);
        self.primary.conn().run_with(op, context).await
    }
}

crate::endpoint::connection_trait!(Reader);

#[cfg(test)]
mod tests {
    use super::is_read;

    #[test]
    fn reads_are_told_by_their_first_word() {
        for sql in [
            "SELECT 1",
            "  with x as (select 1) select * from x",
            "VALUES (1)",
            "show work_mem",
            "EXPLAIN SELECT 1",
            "(SELECT 1)",
        ] {
            assert_eq!(is_read(sql), !sql.starts_with('('), "{sql}");
        }
        for sql in [
            "INSERT INTO t VALUES (1)",
            "update t set a = 1",
            "DELETE FROM t",
            "BEGIN",
            "",
        ] {
            assert!(!is_read(sql), "{sql}");
        }
    }
}
