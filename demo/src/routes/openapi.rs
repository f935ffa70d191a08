//! The demo API described in OpenAPI 3.1 (utoipa), served at `GET /openapi.json`. The
//! operations below are documentation only (they mirror [`super::table`] and the library's
//! probes and metrics); a test checks that what is described is exactly what is served.

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::accounts::{NewAccount, NewAccounts};
use super::transfers::NewTransfer;
use crate::entities::{accounts, transfers};

/// Every error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiErrorBody {
    /// The error.
    pub error: ApiErrorDetail,
}

/// An error's code and message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiErrorDetail {
    /// Stable, machine-readable: `invalid_owner`, `account_not_found`, `insufficient_funds`,
    /// `pool_saturated`, `commit_outcome_unknown`, ...
    pub code: String,
    /// For people; never holds a password or a bound value.
    pub message: String,
}

/// A page of accounts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountPage {
    /// The accounts, by id.
    pub items: Vec<accounts::Model>,
    /// The cursor of the next page (`after=`); `null` on the last.
    pub next_after: Option<i64>,
}

/// A page of transfers.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransferPage {
    /// The transfers, by id.
    pub items: Vec<transfers::Model>,
    /// The cursor of the next page (`after=`); `null` on the last.
    pub next_after: Option<i64>,
}

/// What `POST /api/accounts/batch` did.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    /// Accounts opened.
    pub inserted: u64,
    /// Statements sent.
    pub statements: u32,
    /// `insert` (chunked multi-row INSERTs) or `copy` (PostgreSQL COPY).
    pub method: String,
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "dbservice demo ledger",
        description = "Accounts and money transfers on DbService. Errors are always \
            `{\"error\": {\"code\", \"message\"}}`. With read replicas, writes answer with a \
            `Db-Position` header that GETs accept back for read-your-writes. With tenancy on \
            (PostgreSQL, `DBSERVICE_TENANT_HEADER`, e.g. `X-Tenant-Id`), every accounts and \
            transfers request names its tenant in that header (a whole number from 1; missing \
            or invalid: 400 `missing_tenant` / `invalid_tenant`) and sees only its own rows: \
            another tenant's account answers 404 like a missing one."
    ),
    paths(
        create_account,
        list_accounts,
        create_accounts_batch,
        get_account,
        create_transfer,
        list_transfers,
        diagnostics_sleep,
        health_live,
        health_ready,
        health_db,
        metrics,
        openapi_json
    ),
    components(schemas(
        ApiErrorBody,
        ApiErrorDetail,
        AccountPage,
        TransferPage,
        BatchResult,
        NewAccount,
        NewAccounts,
        NewTransfer,
        accounts::Model,
        transfers::Model
    ))
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn serve() -> HttpResponse {
    match ApiDoc::openapi().to_json() {
        Ok(json) => HttpResponse::Ok()
            .content_type("application/json")
            .body(json),
        Err(e) => HttpResponse::InternalServerError().json(serde_json::json!({
            "error": {"code": "internal", "message": e.to_string()}
        })),
    }
}

#[utoipa::path(post, path = "/api/accounts", tag = "accounts", request_body = NewAccount,
    responses(
        (status = 201, description = "Opened", body = accounts::Model,
            headers(("Location" = String), ("Db-Position" = String, description = "With replicas: the write's WAL position"))),
        (status = 400, description = "Invalid owner or balance, or not a JSON object", body = ApiErrorBody),
        (status = 503, description = "No database connection in time", body = ApiErrorBody)))]
#[allow(dead_code)]
fn create_account() {}

#[utoipa::path(get, path = "/api/accounts", tag = "accounts",
    params(("limit" = Option<u64>, Query, description = "1 to 200, default 50"),
           ("after" = Option<i64>, Query, description = "Cursor: the last id of the previous page"),
           ("Db-Position" = Option<String>, Header, description = "Read after this WAL position")),
    responses((status = 200, description = "A page", body = AccountPage),
        (status = 400, description = "Invalid limit or Db-Position", body = ApiErrorBody),
        (status = 503, description = "No database connection in time", body = ApiErrorBody)))]
#[allow(dead_code)]
fn list_accounts() {}

#[utoipa::path(post, path = "/api/accounts/batch", tag = "accounts", request_body = NewAccounts,
    responses((status = 201, description = "All opened, in one transaction", body = BatchResult),
        (status = 400, description = "A row is invalid (named by index), or 0 or more than 10,000 rows", body = ApiErrorBody),
        (status = 413, description = "Body over 4 MiB", body = ApiErrorBody),
        (status = 503, description = "No database connection in time", body = ApiErrorBody)))]
#[allow(dead_code)]
fn create_accounts_batch() {}

#[utoipa::path(get, path = "/api/accounts/{id}", tag = "accounts",
    params(("id" = i64, Path, description = "Account id"),
           ("Db-Position" = Option<String>, Header, description = "Read after this WAL position")),
    responses((status = 200, description = "The account", body = accounts::Model),
        (status = 400, description = "Invalid id or Db-Position", body = ApiErrorBody),
        (status = 404, description = "No such account", body = ApiErrorBody),
        (status = 503, description = "No database connection in time", body = ApiErrorBody)))]
#[allow(dead_code)]
fn get_account() {}

#[utoipa::path(post, path = "/api/transfers", tag = "transfers", request_body = NewTransfer,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key never moves money twice")),
    responses((status = 201, description = "Moved (or replayed for a known key)", body = transfers::Model),
        (status = 400, description = "Invalid input", body = ApiErrorBody),
        (status = 404, description = "An account does not exist", body = ApiErrorBody),
        (status = 422, description = "Insufficient funds or balance limit", body = ApiErrorBody),
        (status = 503, description = "No database connection in time", body = ApiErrorBody),
        (status = 504, description = "Timed out, or commit outcome unknown", body = ApiErrorBody)))]
#[allow(dead_code)]
fn create_transfer() {}

#[utoipa::path(get, path = "/api/transfers", tag = "transfers",
    params(("account_id" = Option<i64>, Query, description = "Only this account's transfers"),
           ("limit" = Option<u64>, Query, description = "1 to 200, default 50"),
           ("after" = Option<i64>, Query, description = "Cursor"),
           ("Db-Position" = Option<String>, Header, description = "Read after this WAL position")),
    responses((status = 200, description = "A page", body = TransferPage),
        (status = 400, description = "Invalid query", body = ApiErrorBody),
        (status = 404, description = "No such account", body = ApiErrorBody)))]
#[allow(dead_code)]
fn list_transfers() {}

#[utoipa::path(get, path = "/api/diagnostics/sleep", tag = "diagnostics",
    params(("seconds" = f64, Query, description = "0 to 30")),
    responses((status = 200, description = "Slept holding a connection (only with demo_diagnostics)"),
        (status = 400, description = "Invalid seconds", body = ApiErrorBody)))]
#[allow(dead_code)]
fn diagnostics_sleep() {}

#[utoipa::path(get, path = "/health/live", tag = "probes",
    responses((status = 200, description = "The process runs (never touches the database)")))]
#[allow(dead_code)]
fn health_live() {}

#[utoipa::path(get, path = "/health/ready", tag = "probes",
    responses((status = 200, description = "Ready: the database answered within health_check_timeout"),
        (status = 503, description = "Not ready (starting, draining, database failing)")))]
#[allow(dead_code)]
fn health_ready() {}

#[utoipa::path(get, path = "/health/db", tag = "probes",
    responses((status = 200, description = "Pool statistics, alerts, configuration with sources, replicas")))]
#[allow(dead_code)]
fn health_db() {}

#[utoipa::path(get, path = "/metrics", tag = "probes",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
#[allow(dead_code)]
fn metrics() {}

#[utoipa::path(get, path = "/openapi.json", tag = "probes",
    responses((status = 200, description = "This document", content_type = "application/json")))]
#[allow(dead_code)]
fn openapi_json() {}
