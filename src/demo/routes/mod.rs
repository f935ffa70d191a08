//! The ledger's route table.

mod accounts;
mod diagnostics;
mod transfers;

use actix_web::web;

use super::error::ApiError;

/// Mounts `/api/...`. `diagnostics` adds `GET /api/diagnostics/sleep`.
pub fn configure(cfg: &mut web::ServiceConfig, diagnostics: bool) {
    let mut scope = web::scope("/api")
        .route("/accounts", web::post().to(accounts::create))
        .route("/accounts", web::get().to(accounts::list))
        .route("/accounts/{id}", web::get().to(accounts::get))
        .route("/transfers", web::post().to(transfers::create))
        .route("/transfers", web::get().to(transfers::list));
    if diagnostics {
        scope = scope.route("/diagnostics/sleep", web::get().to(diagnostics::sleep));
    }
    cfg.service(scope);
}

/// Page size bounds shared by the list endpoints.
pub(crate) fn page_limit(limit: Option<u64>) -> Result<u64, ApiError> {
    match limit {
        None => Ok(50),
        Some(n @ 1..=200) => Ok(n),
        Some(n) => Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and 200, got {n}"),
        )),
    }
}
