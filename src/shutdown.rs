//! Graceful shutdown of a server backed by a [`DbService`], whatever the web framework
//! ([`drain_with`]; the actix wing's `http::drain` for an actix server).
//!
//! The sequence, on SIGTERM or SIGINT:
//! 1. readiness fails at once (`/health/ready` → 503), so load balancers stop sending traffic;
//! 2. wait `grace` while still serving (Kubernetes keeps routing to a terminating pod for a few
//!    seconds after SIGTERM);
//! 3. stop accepting and let in-flight requests finish, bounded by `drain_timeout` (the
//!    server's `shutdown_timeout`; idle keep-alive connections close at once);
//! 4. close the pool, bounded by `pool_close_timeout`.
//!
//! A second signal skips what is left of the grace and drain and stops at once.
//! Keep `grace + drain_timeout + pool_close_timeout` (+ a margin) under Kubernetes'
//! `terminationGracePeriodSeconds` (30 s by default); the defaults (0 + 15 + 5) do.

use std::time::Duration;

use crate::config::ShutdownSettings;
use crate::service::DbService;

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C) and returns its name.
///
/// If the handlers cannot be installed the error is logged and the future never resolves on
/// that signal (the process can still be stopped by SIGKILL).
pub async fn signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot install signal handlers");
                std::future::pending().await
            }
        }
    }
    #[cfg(not(unix))]
    {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(e) => {
                tracing::error!(error = %e, "cannot install Ctrl-C handler");
                std::future::pending().await
            }
        }
    }
}

/// Runs steps 1-4 of the sequence for a server that is already running.
///
/// `stop(graceful)` asks the server to stop accepting and resolves once it has (graceful:
/// after in-flight requests finish; not graceful: at once); `server` is the running server's
/// future (e.g. its spawned `JoinHandle`); `force` resolves when the operator insists (a
/// second signal), which cuts the grace and the drain short.
pub async fn drain_with<S, F, Stop>(
    db: &DbService,
    stop: F,
    server: S,
    settings: &ShutdownSettings,
    force: impl Future<Output = ()>,
) where
    S: Future,
    F: Fn(bool) -> Stop,
    Stop: Future<Output = ()>,
{
    db.begin_shutdown();
    tracing::info!(
        grace_ms = settings.grace.as_millis() as u64,
        drain_timeout_ms = settings.drain_timeout.as_millis() as u64,
        "shutdown started: readiness now failing"
    );
    let orderly = async {
        tokio::time::sleep(settings.grace).await;
        tracing::info!("grace over: closing listeners, draining in-flight requests");
        stop(true).await;
    };
    tokio::pin!(force);
    tokio::select! {
        () = orderly => {}
        () = &mut force => {
            tracing::warn!("second signal: stopping without waiting for in-flight requests");
            stop(false).await;
        }
    }
    // The server enforces `drain_timeout` (actix: `shutdown_timeout`); this outer bound only
    // guards against a server that never reports back.
    let bound = settings
        .drain_timeout
        .saturating_add(Duration::from_secs(2));
    if tokio::time::timeout(bound, server).await.is_err() {
        tracing::warn!("server did not stop within drain_timeout");
    }
    if db.close(settings.pool_close_timeout).await {
        tracing::info!("pool closed; shutdown complete");
    }
}
