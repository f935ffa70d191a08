//! [`Reader`]: the SeaORM executor for reads, `db.read()`.

use std::time::Instant;

use sea_orm::{DbBackend, DbErr};

use super::position::WalPosition;
use super::set::Fallback;
use crate::classify::ErrorKind;
use crate::pool::{Op, Output};
use crate::service::DbService;

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
/// `TABLE` or `EXPLAIN` is refused (on every backend, with or without replicas), so code that
/// writes through a reader fails in development, not on the first replica in production. A
/// `WITH` that writes is refused by the replica itself (PostgreSQL's read-only error).
#[derive(Clone)]
pub struct Reader {
    db: DbService,
    need: Need,
    backend: DbBackend,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("need", &self.need)
            .finish_non_exhaustive()
    }
}

/// Whether `sql` is a read by its first word (what a [`Reader`] accepts).
pub(crate) fn is_read(sql: &str) -> bool {
    let word = first_word(sql);
    ["select", "with", "values", "show", "table", "explain"]
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w))
}

/// Whether `sql` cannot write, by its first word: a `WITH` may hold an `INSERT`, so after one
/// the write position is noted too. (A `SELECT` of a function that writes is not seen.)
pub(crate) fn surely_reads(sql: &str) -> bool {
    is_read(sql) && !first_word(sql).eq_ignore_ascii_case("with")
}

fn first_word(sql: &str) -> &str {
    sql.trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
}

impl Reader {
    pub(crate) fn new(db: DbService, need: Need) -> Self {
        let backend = sea_orm::ConnectionTrait::get_database_backend(db.conn());
        Self { db, need, backend }
    }

    async fn run(&self, op: Op<'_>) -> Result<Output, DbErr> {
        if !is_read(op.sql()) {
            return Err(DbErr::Custom(format!(
                "db.read() runs reads only (SELECT, WITH, VALUES, SHOW, TABLE, EXPLAIN); \
                 run `{}` through db.conn() or a transaction",
                first_word(op.sql()).to_ascii_uppercase()
            )));
        }
        let Some(set) = self.db.replicas() else {
            return self.db.conn().run(op).await;
        };
        let need = match self.need {
            Need::Instance => set.high_water.get(),
            Need::At(p) => p.0,
            Need::Any => 0,
        };
        let wait = set.config.wait;
        let deadline = Instant::now() + wait;
        let why = match set.choose(need, deadline).await {
            Ok(chosen) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match chosen.replica.db.conn().run_within(op, Some(left)).await {
                    Ok(out) => {
                        set.served(&chosen);
                        return Ok(out);
                    }
                    Err(e) => match ErrorKind::of(&e) {
                        // Busy: the primary serves this one; the replica stays in rotation.
                        ErrorKind::PoolTimeout => Fallback::Unavailable,
                        // Canceled by a conflict with recovery: the primary has no such conflict.
                        ErrorKind::Serialization => Fallback::ReplicaError,
                        // A read the replica cannot run (`SELECT ... FOR UPDATE`, a function
                        // that writes): SQLSTATE 25006; the primary can.
                        _ if crate::classify::sqlstate(&e).as_deref() == Some("25006") => {
                            Fallback::ReplicaError
                        }
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
        self.db.conn().run(op).await
    }
}

crate::conn::connection_trait!(Reader);

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
