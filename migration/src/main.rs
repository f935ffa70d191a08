//! The migration CLI, as SeaORM users expect it: `cargo run -p migration -- up|down|status|...`
//! (and `sea-orm-cli migrate ...`, which runs this crate).
//!
//! The database comes from `-u <url>`, else `DATABASE_URL` through dbservice's layered settings
//! (so the same URL, pool parameters included, works here and in the server), else the demo's
//! SQLite file. A plain `up` runs under dbservice's cross-instance migration lock, like the
//! server's startup migrations; every other command is sea-orm-migration's own.

use dbservice::{DbService, config::DbConfig, config::Settings, migrate};
use migration::{DEMO_DATABASE_URL, Migrator};
use sea_orm_migration::cli::run_cli_with_custom_connection;
use sea_orm_migration::sea_orm::DbErr;

/// The URL given with `-u`/`--database-url`, if any.
fn url_argument(args: &[String]) -> Option<String> {
    args.iter()
        .position(|a| a == "-u" || a == "--database-url")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--database-url=").map(str::to_owned))
        })
}

/// A plain `up` (no `-n`): the one command that runs under the lock.
fn is_plain_up(args: &[String]) -> bool {
    args.iter().any(|a| a == "up")
        && !args
            .iter()
            .any(|a| a == "-n" || a == "--num" || a.starts_with("--num="))
}

async fn service(url: Option<String>) -> Result<DbService, String> {
    let config = match url {
        Some(url) => DbConfig::from_url(&url),
        None => Settings::from_env().and_then(|s| s.db_config(Some(DEMO_DATABASE_URL))),
    }
    .map_err(|e| e.to_string())?;
    let db = DbService::new(config).map_err(|e| e.to_string())?;
    db.connect().await.map_err(|e| e.to_string())?;
    Ok(db)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = url_argument(&args);
    if is_plain_up(&args) {
        let result = match service(url).await {
            Ok(db) => migrate::run::<Migrator>(&db)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        return match result {
            Ok(()) => {
                println!("migrations applied");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("migration: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    run_cli_with_custom_connection(Migrator, async || {
        let db = service(url).await.map_err(DbErr::Custom)?;
        Ok(db.conn().raw().clone())
    })
    .await;
    std::process::ExitCode::SUCCESS
}
