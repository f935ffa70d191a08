//! OpenTelemetry metrics (cargo feature `opentelemetry`): the pool's figures under the
//! [database client metric conventions] through the `opentelemetry` metrics API. The library
//! depends on the API only; the application installs a meter provider and its exporter.
//!
//! [database client metric conventions]: https://opentelemetry.io/docs/specs/semconv/database/database-metrics/

use opentelemetry::metrics::Meter;

use crate::named::Pools;

/// Registers the metrics of every pool in `pools` (the primary, the named pools and each
/// one's replicas) on `meter`. SKELETON: implemented by the metrics work.
pub fn instrument(pools: &Pools, meter: &Meter) {
    let _ = (pools, meter);
}
