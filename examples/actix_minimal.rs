//! The smallest complete backend on dbservice and actix-web: configuration from the environment
//! (`DATABASE_URL` and its pool parameters), the service in the app data, the health probes, one
//! handler that writes in a transaction, and the graceful shutdown on SIGTERM.
//!
//! `DATABASE_URL=postgres://app:secret@localhost/app cargo run --example actix_minimal`, after
//! `CREATE TABLE counters (id bigint PRIMARY KEY, hits bigint NOT NULL DEFAULT 0)`.

use actix_web::{App, HttpServer, web};
use dbservice::http::{ApiError, drain, health};
use dbservice::shutdown::signal;
use dbservice::{DbService, config::Settings};
use sea_orm::{ConnectionTrait, Statement};

/// `POST /counters/{id}`: adds one hit in a transaction; 404 if there is no such counter.
async fn hit(db: web::Data<DbService>, id: web::Path<i64>) -> Result<String, ApiError> {
    let id = id.into_inner();
    let updated = db
        .transaction(async |tx| {
            let sql = "UPDATE counters SET hits = hits + 1 WHERE id = $1";
            let bump = Statement::from_sql_and_values(tx.get_database_backend(), sql, [id.into()]);
            tx.execute_raw(bump).await.map(|r| r.rows_affected())
        })
        .await?;
    match updated {
        0 => Err(ApiError::not_found(
            "no_such_counter",
            format!("no counter {id}"),
        )),
        _ => Ok(format!("counter {id}: one more hit\n")),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The application installs its own subscriber: the library only emits events.
    tracing_subscriber::fmt().init();
    let settings = Settings::from_env()?;
    let db = DbService::new(settings.db_config(None)?)?;
    db.connect().await?;

    let data = web::Data::new(db.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .service(health::scope())
            .route("/counters/{id}", web::post().to(hit))
    })
    // Ours, not actix's: readiness must fail before the listener closes.
    .disable_signals()
    .shutdown_timeout(settings.shutdown.drain_timeout_secs())
    .bind(("0.0.0.0", 8080))?
    .run();
    let handle = server.handle();
    let server = tokio::spawn(server);

    let name = signal().await;
    tracing::info!(signal = name, "stopping");
    let force = async {
        signal().await;
    };
    drain(&db, handle, server, &settings.shutdown, force).await;
    Ok(())
}
