//! The minimal actix-web + bare SeaORM server the demo is measured against: the same two
//! routes on the same tables, nothing else (no health, metrics, request log or bounds). Runs
//! in a process of its own (the benchmark re-executes itself with `--serve-minimal`), like the
//! demo, so both pay for their own runtime and their memory can be compared.

use actix_web::{App, HttpResponse, HttpServer, web};
use dbservice_demo::entities::accounts;
use sea_orm::{Database, DatabaseConnection, EntityTrait};
use serde::Deserialize;

#[derive(Deserialize)]
struct NewTransfer {
    from_account_id: i64,
    to_account_id: i64,
    amount_cents: i64,
}

async fn get_account(db: web::Data<DatabaseConnection>, id: web::Path<i64>) -> HttpResponse {
    match accounts::Entity::find_by_id(id.into_inner())
        .one(db.get_ref())
        .await
    {
        Ok(Some(a)) => HttpResponse::Ok().json(a),
        Ok(None) => HttpResponse::NotFound().finish(),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

async fn create_transfer(
    db: web::Data<DatabaseConnection>,
    body: web::Json<NewTransfer>,
) -> HttpResponse {
    if body.amount_cents != 1 {
        return HttpResponse::BadRequest().finish();
    }
    match crate::pool::bare_transfer(db.get_ref(), body.from_account_id, body.to_account_id).await {
        // The demo answers with the recorded transfer; so does this.
        Ok(created) => HttpResponse::Created().json(created),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

/// Serves on 127.0.0.1:`port` until killed. `mode` is `defaults` (`Database::connect(url)`,
/// actix's one worker per core) or `like-ours:<size>` (bare SeaORM with our pool settings and
/// our worker count). A subscriber at INFO writes to
/// stdout, as in any real service; with SeaORM's defaults that includes a line per statement.
pub fn serve(mode: &str, port: u16, url: &str) -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .init();
    actix_web::rt::System::new().block_on(async move {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // "like-ours:<pool size>": our pool settings and our worker layout (half the cores).
        let (db, workers) = match mode.strip_prefix("like-ours:") {
            Some(size) => (
                crate::pool::like_ours(url, size.parse().unwrap_or(10)).await,
                cores.div_ceil(2),
            ),
            None => (
                Database::connect(url)
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?,
                cores,
            ),
        };
        let data = web::Data::new(db);
        HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/api/accounts/{id}", web::get().to(get_account))
                .route("/api/transfers", web::post().to(create_transfer))
        })
        .workers(workers)
        .bind(("127.0.0.1", port))?
        .run()
        .await
    })
}
