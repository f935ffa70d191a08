//! Applying sea-orm-migration migrations once, by one process at a time, and checking that a
//! database is not behind the build that did not migrate it.
//!
//! sea-orm-migration takes no lock, so two processes migrating at once race. We serialise them
//! with a lock whose wait is bounded ([`apply`]'s `lock_timeout`, the demo's
//! `migrate_lock_timeout`): past it the run fails naming the session that holds it, instead
//! of hanging a rollout.
//!
//! - PostgreSQL over a real session (`DATABASE_URL_DIRECT`, or a URL without
//!   `pgbouncer=true`): a session advisory lock ([`PG_LOCK_KEY`]); each migration then runs in
//!   its own transaction, as sea-orm-migration does on PostgreSQL, and a migration whose
//!   `use_transaction()` is `Some(false)` runs outside any (`CREATE INDEX CONCURRENTLY`).
//! - PostgreSQL through PgBouncer's transaction mode (`pgbouncer=true`, no direct URL): a
//!   session lock would stay on whichever server connection took it, so the lock is
//!   transaction-scoped and every migration runs inside that one transaction; a migration that
//!   cannot run in a transaction fails there and needs `DATABASE_URL_DIRECT`.
//! - MySQL/MariaDB: a named `GET_LOCK` on the migrating connection.
//! - SQLite serialises writers itself.

mod check;
mod lock;

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};
use sea_orm_migration::MigratorTrait;

use crate::config::Backend;
pub use crate::error::MigrateError;
use crate::error::Result;
use crate::service::DbService;

pub use self::check::{Checked, check};

/// The migration lock's advisory lock key: the first 8 bytes of "dbservic" as a big-endian
/// i64. An operator finds its holder with `SELECT pid FROM pg_locks WHERE locktype =
/// 'advisory' AND classid = 1684173669 AND objid = 1920362851`.
pub const PG_LOCK_KEY: i64 = 0x6462_7365_7276_6963;

/// How long [`run`] waits for another process's migrations before it gives up.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// Applies every pending migration of `M` under the lock, waiting for it at most
/// [`DEFAULT_LOCK_TIMEOUT`].
pub async fn run<M: MigratorTrait>(db: &DbService) -> Result<()> {
    apply::<M>(db, DEFAULT_LOCK_TIMEOUT).await?;
    Ok(())
}

/// Applies every pending migration of `M` over `DATABASE_URL_DIRECT` (else the pool's URL),
/// waiting at most `lock_timeout` for another process holding the migration lock. Returns the
/// names of the migrations this call applied (empty: nothing was pending).
pub async fn apply<M: MigratorTrait>(
    db: &DbService,
    lock_timeout: Duration,
) -> std::result::Result<Vec<String>, MigrateError> {
    // sea-orm-migration needs SeaORM's own connection type: one connection of its own,
    // closed when the migrations are done, so it does not stay beside the pool's.
    let conn = db.migration_connection().await;
    let result = apply_on::<M>(db, &conn, lock_timeout).await;
    let _ = conn.close().await;
    result.map_err(|e| scrubbed(db, e))
}

/// A failure's driver text without the password.
fn scrubbed(db: &DbService, e: MigrateError) -> MigrateError {
    match e {
        MigrateError::Database(m) => MigrateError::Database(db.config().scrub(&m)),
        other => other,
    }
}

impl From<DbErr> for MigrateError {
    fn from(e: DbErr) -> Self {
        MigrateError::Database(e.to_string())
    }
}

async fn apply_on<M: MigratorTrait>(
    db: &DbService,
    conn: &DatabaseConnection,
    bound: Duration,
) -> std::result::Result<Vec<String>, MigrateError> {
    let config = db.config();
    match db.backend() {
        Backend::Postgres
            if config.pool().session.pgbouncer && config.redacted_direct_url().is_none() =>
        {
            let txn = conn.begin().await?;
            lock::postgres(&txn, lock::Scope::Transaction, bound).await?;
            let pending = pending::<M, _>(&txn).await?;
            // Dropping the transaction on failure rolls it back, lock included.
            M::up(&txn, None).await?;
            txn.commit().await?;
            Ok(pending)
        }
        Backend::Postgres => {
            lock::postgres(conn, lock::Scope::Session, bound).await?;
            up_then_unlock::<M>(conn, &format!("SELECT pg_advisory_unlock({PG_LOCK_KEY})")).await
        }
        Backend::MySql => {
            lock::mysql(conn, bound).await?;
            let unlock = format!("DO RELEASE_LOCK('{}')", lock::MYSQL_LOCK_NAME);
            up_then_unlock::<M>(conn, &unlock).await
        }
        Backend::Sqlite => {
            let pending = pending::<M, _>(conn).await?;
            M::up(conn, None).await?;
            Ok(pending)
        }
    }
}

/// Applies the pending migrations on `conn`, which holds the session lock, then releases it
/// with `unlock` whatever happened (closing the connection would release it too; unlocking
/// says so at once).
async fn up_then_unlock<M: MigratorTrait>(
    conn: &DatabaseConnection,
    unlock: &str,
) -> std::result::Result<Vec<String>, MigrateError> {
    let result = async {
        let pending = pending::<M, _>(conn).await?;
        M::up(conn, None).await?;
        Ok(pending)
    }
    .await;
    let _ = conn.execute_unprepared(unlock).await;
    result
}

/// The names of the migrations not yet applied (read under the lock).
async fn pending<M: MigratorTrait, C: ConnectionTrait>(
    conn: &C,
) -> std::result::Result<Vec<String>, MigrateError> {
    Ok(M::get_pending_migrations(conn)
        .await?
        .iter()
        .map(|m| m.name().to_owned())
        .collect())
}
