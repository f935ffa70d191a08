//! A deadline for whole requests.
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

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use super::ApiError;

/// The longest a request may take from its head to its response; put one in the app data
/// (`web::Data<RequestTimeout>`) and wrap the app in `middleware::from_fn(bound_request)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimeout(pub Duration);

/// actix middleware (use with `middleware::from_fn`): bounds each request by the
/// [`RequestTimeout`] in the app data (none there: no bound). The timeout is returned as an
/// error ([`ApiError`] 504 `request_timeout`), which actix renders, so outer middleware (the
/// request log, the metrics) see its 504.
pub async fn bound_request(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(bound) = req.app_data::<web::Data<RequestTimeout>>().map(|t| t.0) else {
        return next.call(req).await;
    };
    let path = req.path().to_owned();
    match tokio::time::timeout(bound, next.call(req)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(
                target: "dbservice::http",
                path = %path,
                bound_ms = bound.as_millis() as u64,
                "request timed out"
            );
            Err(ApiError::timed_out(
                "request_timeout",
                format!(
                    "the request did not complete within request_timeout ({})",
                    humantime::format_duration(bound)
                ),
            )
            .into())
        }
    }
}
