//! The actix-web wing (cargo feature `actix`): everything that knows actix types.
//!
//! - [`ApiError`]: database errors as HTTP answers (`{"error": {"code", "message"}}`).
//! - [`bound_request`] and [`RequestTimeout`]: a deadline for whole requests (body and handler).
//! - [`request_spans`] and [`log_request`]: a span and one log line per request, and the
//!   per-route metrics of an [`HttpMetrics`](crate::metrics::HttpMetrics).
//! - [`health`]: `/health/live`, `/health/ready`, `/health/db` over [`crate::health`].
//! - [`serve_metrics`]: `GET /metrics` over [`Metrics`](crate::metrics::Metrics).
//! - [`drain`]: the graceful shutdown of an actix server ([`crate::shutdown`]).
//!
//! The core does not depend on this module: another framework serves the same answers through
//! [`crate::health`] and [`Metrics::exposition`](crate::metrics::Metrics::exposition).

mod deadline;
mod error;
pub mod health;
mod log;
mod metrics;
mod shutdown;

pub use self::deadline::{RequestTimeout, bound_request};
pub use self::error::ApiError;
pub use self::log::{RequestSpan, log_request, request_spans};
pub use self::metrics::serve_metrics;
pub use self::shutdown::drain;
