//! The ledger's route table.

mod accounts;
pub mod consistency;
mod diagnostics;
mod transfers;

use actix_web::web;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use dbservice::http::ApiError;

/// The largest balance an account may hold, in cents (10^15: ten trillion in the currency's
/// main unit). Far above any real balance and far below `i64::MAX`, so no sum of two allowed
/// balances overflows; the schema enforces it too (migration `m20250101_000003`).
pub const MAX_BALANCE_CENTS: i64 = 1_000_000_000_000_000;

/// A JSON request body that must be an object. serde maps a JSON array onto a struct field by
/// field (`[1, 2, 3]` would be a transfer), so bodies are read as an object first and only then
/// as the request type; anything else is a 400 in the JSON error shape.
pub(crate) type ObjectBody = web::Json<Map<String, Value>>;

/// The request type `T` from an [`ObjectBody`].
pub(crate) fn from_object<T: DeserializeOwned>(body: ObjectBody) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(body.into_inner()))
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))
}

/// Mounts `/api/...`. `diagnostics` adds `GET /api/diagnostics/sleep`.
pub fn configure(cfg: &mut web::ServiceConfig, diagnostics: bool) {
    let mut scope = web::scope("/api")
        .route("/accounts", web::post().to(accounts::create))
        .route("/accounts", web::get().to(accounts::list))
        .service(
            web::resource("/accounts/batch")
                // 10,000 accounts of up to 200 characters' owner each.
                .app_data(crate::json_config_limited(4 * 1024 * 1024))
                .route(web::post().to(accounts::create_batch)),
        )
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
