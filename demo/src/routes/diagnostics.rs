//! `GET /api/diagnostics/sleep?seconds=N`: holds a pooled connection for N seconds (at most
//! 30) inside the database. Off unless `demo_diagnostics` is set; for shutdown and load tests.

use std::time::Instant;

use actix_web::{HttpResponse, web};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde::Deserialize;
use serde_json::json;

use dbservice::DbService;
use dbservice::http::ApiError;

/// Query of the sleep endpoint.
#[derive(Debug, Deserialize)]
pub struct SleepQuery {
    seconds: f64,
}

pub(crate) async fn sleep(
    db: web::Data<DbService>,
    q: web::Query<SleepQuery>,
) -> Result<HttpResponse, ApiError> {
    let secs = q.seconds;
    if !(0.0..=30.0).contains(&secs) {
        return Err(ApiError::bad_request(
            "invalid_seconds",
            format!("seconds must be between 0 and 30, got {secs}"),
        ));
    }
    let started = Instant::now();
    let conn = db.conn();
    let backend = conn.get_database_backend();
    match backend {
        DbBackend::Postgres => {
            conn.execute_raw(Statement::from_sql_and_values(
                backend,
                "SELECT pg_sleep($1)",
                [secs.into()],
            ))
            .await?;
        }
        DbBackend::MySql => {
            conn.execute_raw(Statement::from_sql_and_values(
                backend,
                "SELECT SLEEP(?)",
                [secs.into()],
            ))
            .await?;
        }
        _ => {
            // SQLite has no sleep: hold a transaction (and so a connection) for the time instead.
            let txn = db
                .begin(
                    db.tx_options()
                        .timeout(std::time::Duration::from_secs_f64(secs + 5.0)),
                )
                .await?;
            tokio::time::sleep(std::time::Duration::from_secs_f64(secs)).await;
            txn.commit().await?;
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "slept_ms": started.elapsed().as_millis() as u64 })))
}
