//! The graceful shutdown ([`crate::shutdown`]) of an actix server.

use actix_web::dev::ServerHandle;

use crate::config::ShutdownSettings;
use crate::service::DbService;
use crate::shutdown::drain_with;

/// Runs the shutdown sequence for a running actix server: readiness fails, the grace, the
/// drain (bounded by the server's `shutdown_timeout`), then the pool closes. `server` is the
/// running server's future (e.g. its spawned `JoinHandle`); `force` cuts the grace and drain
/// short (a second signal).
pub async fn drain<S>(
    db: &DbService,
    handle: ServerHandle,
    server: S,
    settings: &ShutdownSettings,
    force: impl Future<Output = ()>,
) where
    S: Future,
{
    let stop = |graceful| {
        let handle = handle.clone();
        async move { handle.stop(graceful).await }
    };
    drain_with(db, stop, server, settings, force).await;
}
