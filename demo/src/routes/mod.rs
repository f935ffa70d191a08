//! The ledger's route table.

mod accounts;
pub mod consistency;
mod diagnostics;
pub mod openapi;
mod transfers;

use actix_web::http::Method;
use actix_web::{Route, web};
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

/// One route of `/api`: method, path under `/api`, handler, and a JSON body limit when it
/// differs from the app's 16 KiB.
type Entry = (Method, &'static str, Route, Option<usize>);

/// Every route of `/api`, in matching order (`/accounts/batch` before `/accounts/{id}`). The
/// one table both [`configure`] mounts and [`served`] lists, so the OpenAPI description can be
/// checked against what is really served.
fn table(diagnostics: bool) -> Vec<Entry> {
    let mut t: Vec<Entry> = vec![
        (
            Method::POST,
            "/accounts",
            web::post().to(accounts::create),
            None,
        ),
        (
            Method::GET,
            "/accounts",
            web::get().to(accounts::list),
            None,
        ),
        // 10,000 accounts with owners of up to 200 characters.
        (
            Method::POST,
            "/accounts/batch",
            web::post().to(accounts::create_batch),
            Some(4 * 1024 * 1024),
        ),
        (
            Method::GET,
            "/accounts/{id}",
            web::get().to(accounts::get),
            None,
        ),
        (
            Method::POST,
            "/transfers",
            web::post().to(transfers::create),
            None,
        ),
        (
            Method::GET,
            "/transfers",
            web::get().to(transfers::list),
            None,
        ),
    ];
    if diagnostics {
        t.push((
            Method::GET,
            "/diagnostics/sleep",
            web::get().to(diagnostics::sleep),
            None,
        ));
    }
    t
}

/// Mounts `/api/...`. `diagnostics` adds `GET /api/diagnostics/sleep`.
pub fn configure(cfg: &mut web::ServiceConfig, diagnostics: bool) {
    // One resource per path, with all its methods (a second resource for the same path would
    // never be reached).
    let mut resources: Vec<(&str, actix_web::Resource)> = Vec::new();
    for (_, path, route, limit) in table(diagnostics) {
        let at = match resources.iter().position(|(p, _)| *p == path) {
            Some(i) => i,
            None => {
                let mut resource = web::resource(path);
                if let Some(limit) = limit {
                    resource = resource.app_data(crate::json_config_limited(limit));
                }
                resources.push((path, resource));
                resources.len() - 1
            }
        };
        if let Some((p, resource)) = resources.get_mut(at) {
            let taken = std::mem::replace(resource, web::resource(*p));
            *resource = taken.route(route);
        }
    }
    let mut scope = web::scope("/api");
    for (_, resource) in resources {
        scope = scope.service(resource);
    }
    cfg.service(scope);
}

/// Every `/api` route the demo serves: (method, full path), e.g. `("GET", "/api/accounts/{id}")`.
pub fn served(diagnostics: bool) -> Vec<(String, String)> {
    table(diagnostics)
        .into_iter()
        .map(|(m, path, _, _)| (m.to_string(), format!("/api{path}")))
        .collect()
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
