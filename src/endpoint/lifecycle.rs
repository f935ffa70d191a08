//! An endpoint's phase (the service's is its primary's), readable without a lock from every
//! health probe.

use std::sync::atomic::{AtomicU8, Ordering};

use serde::Serialize;

/// Where a [`DbService`](crate::DbService) (its primary endpoint) or a replica's
/// [`Endpoint`](super::Endpoint) is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// Waiting for the database or for startup steps (migrations). Not ready.
    Starting,
    /// Connected and prepared. Ready while the database answers.
    Ready,
    /// The startup gave up (see the last error). Not ready.
    Failed,
    /// Shutting down: in-flight work continues, readiness fails.
    Draining,
    /// The pool is closed.
    Closed,
}

const PHASES: [Phase; 5] = [
    Phase::Starting,
    Phase::Ready,
    Phase::Failed,
    Phase::Draining,
    Phase::Closed,
];

#[derive(Debug, Default)]
pub(crate) struct Lifecycle(AtomicU8);

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        PHASES
            .get(usize::from(self.0.load(Ordering::Acquire)))
            .copied()
            .unwrap_or(Phase::Closed)
    }

    /// Moves forward only: a late `mark_ready` must not undo a shutdown that already began.
    fn advance(&self, to: Phase) {
        let to = to as u8;
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (cur < to).then_some(to)
            });
    }

    pub fn mark_ready(&self) {
        self.advance(Phase::Ready);
    }

    pub fn mark_failed(&self) {
        self.advance(Phase::Failed);
    }

    pub fn mark_draining(&self) {
        self.advance(Phase::Draining);
    }

    pub fn mark_closed(&self) {
        self.advance(Phase::Closed);
    }
}
