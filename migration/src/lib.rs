//! The ledger schema of the dbservice demo.
//!
//! Applied by `dbservice migrate` (`cargo run -- migrate`) or at startup by the demo (unless
//! `migrate=false`), both through `dbservice::migrate::apply`, which serialises concurrent
//! runs under a lock with a bounded wait; or by hand with `cargo run -p migration -- up|down|status`.

pub use sea_orm_migration::prelude::*;

mod m20250101_000001_create_accounts;
mod m20250101_000002_create_transfers;
mod m20250101_000003_cap_balances;
mod m20250101_000004_tenant_isolation;

/// Where the demo keeps its data when `DATABASE_URL` is unset: an SQLite file in the working
/// directory, created on first run. The migration CLI uses it too, so that
/// `cargo run -p migration -- status` at the repository root reads the demo's database.
pub const DEMO_DATABASE_URL: &str = "sqlite://dbservice-demo.sqlite?mode=rwc";

/// The ledger's migrations, in order.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_create_accounts::Migration),
            Box::new(m20250101_000002_create_transfers::Migration),
            Box::new(m20250101_000003_cap_balances::Migration),
            Box::new(m20250101_000004_tenant_isolation::Migration),
        ]
    }
}
