//! The bounds of the graceful shutdown (see [`crate::shutdown`]), as settings.

use std::time::Duration;

use serde::Serialize;

/// The bounds of the shutdown sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShutdownSettings {
    /// Time between failing readiness and closing the listener (`shutdown_grace`). Default 0;
    /// about 5 s behind a Kubernetes Service.
    #[serde(with = "super::duration::human")]
    pub grace: Duration,
    /// Longest wait for in-flight requests (`drain_timeout`); whole seconds, rounded up, as
    /// actix counts them. Default 15 s.
    #[serde(with = "super::duration::human")]
    pub drain_timeout: Duration,
    /// Longest wait for the pool to close (`pool_close_timeout`). Default 5 s.
    #[serde(with = "super::duration::human")]
    pub pool_close_timeout: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            grace: Duration::ZERO,
            drain_timeout: Duration::from_secs(15),
            pool_close_timeout: Duration::from_secs(5),
        }
    }
}

impl ShutdownSettings {
    /// `drain_timeout` in the whole seconds `HttpServer::shutdown_timeout` takes.
    pub fn drain_timeout_secs(&self) -> u64 {
        let d = self.drain_timeout;
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }
}
