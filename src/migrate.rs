//! Applying sea-orm-migration migrations safely when several replicas start together.
//!
//! sea-orm-migration takes no lock, so two instances migrating at once race. On PostgreSQL we
//! hold a transaction-scoped advisory lock (released by COMMIT/ROLLBACK, so it also works
//! through PgBouncer's transaction mode) and run the migrations inside that transaction;
//! PostgreSQL's DDL is transactional, so a failure leaves nothing half-applied. On
//! MySQL/MariaDB we hold a named `GET_LOCK` on the migrating connection (bounded wait). SQLite
//! serialises writers itself.

use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use sea_orm_migration::MigratorTrait;

use crate::config::Backend;
use crate::error::{Error, Result};
use crate::service::DbService;

/// The migration lock's advisory lock key: the first 8 bytes of "dbservic" as a big-endian i64.
pub const PG_LOCK_KEY: i64 = 0x6462_7365_7276_6963;
/// Longest wait for another instance's migrations on MySQL, in seconds.
const MYSQL_LOCK_WAIT_SECS: u32 = 120;

/// Applies every pending migration of `M`, serialised across processes.
pub async fn run<M: MigratorTrait>(db: &DbService) -> Result<()> {
    // sea-orm-migration needs SeaORM's own connection type: one connection of its own,
    // closed when the migrations are done, so it does not stay beside the pool's.
    let conn = db.migration_connection();
    let result = migrate::<M>(db, &conn).await;
    let _ = conn.close().await;
    result
}

async fn migrate<M: MigratorTrait>(db: &DbService, conn: &DatabaseConnection) -> Result<()> {
    match db.backend() {
        Backend::Postgres => {
            let txn = conn.begin().await?;
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({PG_LOCK_KEY})"))
                .await?;
            match M::up(&txn, None).await {
                Ok(()) => txn.commit().await?,
                Err(e) => {
                    txn.rollback().await?;
                    return Err(Error::Database(e));
                }
            }
        }
        Backend::MySql => {
            let txn = conn.begin().await?;
            let got = txn
                .query_one_raw(sea_orm::Statement::from_string(
                    conn.get_database_backend(),
                    format!(
                        "SELECT GET_LOCK('dbservice_migrations', {MYSQL_LOCK_WAIT_SECS}) AS got"
                    ),
                ))
                .await?
                .and_then(|row| row.try_get::<Option<i64>>("", "got").ok().flatten());
            if got != Some(1) {
                txn.rollback().await?;
                return Err(Error::Startup(format!(
                    "another instance held the migration lock for {MYSQL_LOCK_WAIT_SECS} s"
                )));
            }
            let result = M::up(&txn, None).await;
            txn.execute_unprepared("DO RELEASE_LOCK('dbservice_migrations')")
                .await?;
            txn.commit().await?;
            result?;
        }
        Backend::Sqlite => M::up(conn, None).await?,
    }
    Ok(())
}
