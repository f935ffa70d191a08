//! A deadline for whole HTTP requests, for actix-web.
//!
//! actix bounds the request head (`client_request_timeout`) and idle keep-alive connections,
//! but not the body or the handler: a client that trickles its body one byte at a time, or a
//! handler stuck behind a slow dependency, holds the request forever. [`bound_request`] bounds
//! everything after the head (body read and handler) by a [`RequestTimeout`] from the app
//! data and answers `504` with the JSON error shape
//! `{"error": {"code": "request_timeout", "message": ...}}`. The handler's future is dropped:
//! a statement in flight is abandoned (its connection is checked before reuse), an open
//! transaction is rolled back, and a `COMMIT` already sent completes on its own.

use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use serde_json::json;

/// The longest a request may take from its head to its response; put one in the app data
/// (`web::Data<RequestTimeout>`) and wrap the app in `middleware::from_fn(bound_request)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimeout(pub Duration);

/// actix middleware (use with `middleware::from_fn`): bounds each request by the
/// [`RequestTimeout`] in the app data (none there: no bound).
pub async fn bound_request(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(bound) = req.app_data::<web::Data<RequestTimeout>>().map(|t| t.0) else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    let request = req.request().clone();
    match tokio::time::timeout(bound, next.call(req)).await {
        Ok(res) => res.map(ServiceResponse::map_into_left_body),
        Err(_) => {
            tracing::warn!(
                target: "dbservice::http",
                path = %request.path(),
                bound_ms = bound.as_millis() as u64,
                "request timed out"
            );
            let res = HttpResponse::GatewayTimeout().json(json!({
                "error": {
                    "code": "request_timeout",
                    "message": format!(
                        "the request did not complete within request_timeout ({})",
                        humantime::format_duration(bound)
                    ),
                }
            }));
            Ok(ServiceResponse::new(request, res).map_into_right_body())
        }
    }
}
