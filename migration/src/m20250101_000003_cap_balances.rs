//! Caps balances at 10^15 cents, so no balance, and no sum of two, can overflow a 64-bit
//! integer. Without it, a credit past `i64::MAX` is a "bigint out of range" error on PostgreSQL
//! and MariaDB, and on SQLite silently turns the column's value into a REAL (the row then no
//! longer reads as an integer). SQLite cannot add a CHECK to an existing table, so there two
//! triggers enforce the same rule, and also refuse any value that is not an integer.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// The cap, in cents; the demo's `MAX_BALANCE_CENTS` is the same number.
const MAX_BALANCE_CENTS: i64 = 1_000_000_000_000_000;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn sqlite_trigger(event: &str) -> String {
    let name = event
        .split_whitespace()
        .next()
        .unwrap_or("write")
        .to_lowercase();
    format!(
        "CREATE TRIGGER IF NOT EXISTS accounts_balance_max_{name} BEFORE {event} ON accounts \
         WHEN typeof(NEW.balance_cents) <> 'integer' OR NEW.balance_cents > {MAX_BALANCE_CENTS} \
         BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: accounts_balance_max'); END"
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Sqlite => {
                db.execute_unprepared(&sqlite_trigger("INSERT")).await?;
                db.execute_unprepared(&sqlite_trigger("UPDATE OF balance_cents"))
                    .await?;
            }
            _ => {
                db.execute_unprepared(&format!(
                    "ALTER TABLE accounts ADD CONSTRAINT accounts_balance_max \
                     CHECK (balance_cents <= {MAX_BALANCE_CENTS})"
                ))
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Sqlite => {
                db.execute_unprepared("DROP TRIGGER IF EXISTS accounts_balance_max_insert")
                    .await?;
                db.execute_unprepared("DROP TRIGGER IF EXISTS accounts_balance_max_update")
                    .await?;
            }
            DbBackend::MySql => {
                db.execute_unprepared("ALTER TABLE accounts DROP CONSTRAINT accounts_balance_max")
                    .await?;
            }
            _ => {
                db.execute_unprepared(
                    "ALTER TABLE accounts DROP CONSTRAINT IF EXISTS accounts_balance_max",
                )
                .await?;
            }
        }
        Ok(())
    }
}
