//! `GET /metrics` for actix: the framework-free [`Metrics::exposition`] as a response.

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpResponse, web};

use crate::metrics::Metrics;

/// `GET /metrics` handler: needs a `web::Data<Metrics>`.
pub async fn serve_metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    let scrape = metrics.exposition();
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, scrape.content_type))
        .body(scrape.body)
}
