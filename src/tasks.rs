//! An endpoint's own runtime for work that must outlive its caller: `BEGIN`, `COMMIT` and
//! `ROLLBACK` of transactions, which run in tasks the caller cannot cancel.
//!
//! actix-web gives every HTTP worker a runtime of its own and drops it when the worker stops;
//! a task spawned there from a handler dies with it, possibly with a `COMMIT` in flight. So the
//! tasks go to the runtime the endpoint was built on (the process's main runtime), and they
//! are counted, so that closing the endpoint waits for them before the
//! pool closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

#[derive(Debug)]
pub(crate) struct Tasks {
    runtime: Handle,
    running: AtomicUsize,
    finished: Notify,
}

/// Counts a task as running until dropped (finished, failed or cancelled).
struct Running(Arc<Tasks>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.finished.notify_waiters();
        }
    }
}

impl Tasks {
    /// Takes the current runtime as the service's. Must be called inside a tokio runtime.
    pub fn current() -> Arc<Self> {
        Arc::new(Self {
            runtime: Handle::current(),
            running: AtomicUsize::new(0),
            finished: Notify::new(),
        })
    }

    /// Runs `work` on the service's runtime, counted until it ends.
    pub fn spawn<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl Future<Output = T> + Send + 'static,
    ) -> JoinHandle<T> {
        self.running.fetch_add(1, Ordering::AcqRel);
        let running = Running(self.clone());
        self.runtime.spawn(async move {
            let _running = running;
            work.await
        })
    }

    /// Runs `work` on the service's runtime without counting it (a loop that ends with the
    /// pool, which `close` must not wait for).
    pub fn spawn_untracked(&self, work: impl Future<Output = ()> + Send + 'static) {
        drop(self.runtime.spawn(work));
    }

    /// Tasks still running.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Waits until no task is running, at most `bound`; returns whether they all ended.
    pub async fn wait_idle(&self, bound: Duration) -> bool {
        let all_done = async {
            loop {
                let finished = self.finished.notified();
                if self.running() == 0 {
                    return;
                }
                finished.await;
            }
        };
        tokio::time::timeout(bound, all_done).await.is_ok()
    }
}
