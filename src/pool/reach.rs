//! Whether the database is known to be down: consecutive connect failures, the last cause,
//! and the fail-fast state that spares waiters a `pool_timeout` each while it lasts.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct Reachability {
    /// Failures in a row after which the database counts as down (0: never).
    threshold: u32,
    failures: AtomicU32,
    down: AtomicBool,
    last: Mutex<Option<(Instant, String)>>,
}

/// The last connect failure.
#[derive(Debug, Clone)]
pub(crate) struct LastFailure {
    pub ago: Duration,
    pub cause: String,
}

impl Reachability {
    pub fn new(threshold: u32) -> Self {
        Self {
            threshold,
            failures: AtomicU32::new(0),
            down: AtomicBool::new(false),
            last: Mutex::new(None),
        }
    }

    /// A connection was opened: the database is up.
    pub fn connected(&self) {
        self.failures.store(0, Ordering::Relaxed);
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::info!("database reachable again; callers wait for connections as usual");
        }
    }

    /// A connection attempt failed with `cause`; returns true when this failure marks the
    /// database down (the caller then starts the background probe).
    pub fn failed(&self, cause: &str) -> bool {
        if let Ok(mut last) = self.last.lock() {
            *last = Some((Instant::now(), cause.to_owned()));
        }
        let n = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if self.threshold == 0 || n < self.threshold {
            return false;
        }
        let became = !self.down.swap(true, Ordering::AcqRel);
        if became {
            tracing::error!(
                failures = n,
                cause = %cause,
                "database unreachable; failing callers fast until a background probe connects"
            );
        }
        became
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    pub fn last_failure(&self) -> Option<LastFailure> {
        self.last.lock().ok().and_then(|l| {
            l.as_ref().map(|(at, cause)| LastFailure {
                ago: at.elapsed(),
                cause: cause.clone(),
            })
        })
    }

    /// The last failure if it happened within `window` (it explains a wait that long).
    pub fn failed_within(&self, window: Duration) -> Option<LastFailure> {
        self.last_failure().filter(|f| f.ago <= window)
    }
}
