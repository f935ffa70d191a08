//! The health endpoints for actix-web: mount [`scope()`] and put a `web::Data<DbService>` (the
//! primary) in the app data; with named pools, a `web::Data<Pools>` too, and a
//! `web::Data<HealthOptions>` to change what `/health/ready` reveals. The answers themselves
//! are [`crate::health`]'s.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, Scope, web};

use crate::health::{self, HealthOptions, HealthReport};
use crate::named::Pools;
use crate::service::DbService;

/// The `/health` scope with `live`, `ready` and `db`.
pub fn scope() -> Scope {
    probes().route("/db", web::get().to(details))
}

/// The `/health` scope with the orchestrator's probes only: `live` and `ready`.
pub fn probes() -> Scope {
    web::scope("/health")
        .route("/live", web::get().to(live))
        .route("/ready", web::get().to(ready))
}

fn respond(report: HealthReport) -> HttpResponse {
    let status = StatusCode::from_u16(report.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = HttpResponse::build(status);
    for header in report.headers() {
        res.insert_header(header);
    }
    res.body(report.body.to_string())
}

async fn live() -> HttpResponse {
    respond(health::live())
}

async fn ready(
    db: web::Data<DbService>,
    opts: Option<web::Data<HealthOptions>>,
    pools: Option<web::Data<Pools>>,
) -> HttpResponse {
    let opts = opts.map(|o| **o).unwrap_or_default();
    respond(health::ready(&db, pools.as_ref().map(|p| p.get_ref()), opts).await)
}

/// `GET /health/db`: phase, redacted configuration, pool statistics, alert level, last error.
/// Mount it where only operators reach it (see [`probes`]).
pub async fn details(db: web::Data<DbService>, pools: Option<web::Data<Pools>>) -> HttpResponse {
    respond(health::details(&db, pools.as_ref().map(|p| p.get_ref())))
}
