//! The migration CLI (`cargo run --bin migrate -- up|down|status|fresh|...`).
//!
//! It reads `DATABASE_URL` like the server does: our pool parameters are validated and
//! stripped before the driver sees the URL, so the same URL works here and in the server.

use dbservice::{DbConfig, DbService};
use sea_orm_migration::cli::run_cli_with_connection;

#[tokio::main]
async fn main() {
    run_cli_with_connection(migration::Migrator, |opts| async move {
        let config = DbConfig::from_url(opts.get_url())
            .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
        let db = DbService::new(config).map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
        db.connect()
            .await
            .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
        Ok(db.conn().raw().clone())
    })
    .await;
}
