//! The pool's maintenance task: closes connections idle past `idle_timeout` (down to
//! `min_connections`) or past their lifetime, opens connections up to `min_connections`, and
//! reports leaks. It holds the pool weakly and ends when the pool is closed or dropped.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Pool;
use crate::stats::CloseReason;

/// How often the task runs: often enough for the shortest bound it enforces.
fn period(pool: &Pool) -> Duration {
    let l = &pool.shared.limits;
    [
        Some(Duration::from_secs(1)),
        l.idle_timeout.map(|t| t / 2),
        l.leak_detection_threshold.map(|t| t / 2),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(Duration::from_secs(1))
    .max(Duration::from_millis(50))
}

pub(super) fn start(pool: &Pool) {
    let weak = pool.pool.weak();
    let shared = std::sync::Arc::downgrade(&pool.shared);
    let every = period(pool);
    let woken = pool.shared.maintain_now.clone();
    pool.shared.tasks.spawn_untracked(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // A marked host's idle connections close now, not at the next tick.
            tokio::select! {
                _ = tick.tick() => {}
                () = woken.notified() => {}
            }
            let (Some(inner), Some(shared)) = (weak.upgrade(), shared.upgrade()) else {
                return;
            };
            if shared.closing.load(Ordering::Acquire) {
                return;
            }
            let pool = Pool {
                pool: inner,
                shared,
            };
            pool.maintain().await;
        }
    });
}

impl Pool {
    /// Pings each idle connection that has been quiet for `quiet` (`keepalive_idle`), so one a
    /// NAT or firewall dropped is closed and replaced now rather than met by a request. The due
    /// ones are marked, then taken out and put back: the check on the way out pings a marked
    /// one (counted as a keepalive) and closes it if it does not answer. Nothing is taken when
    /// nothing is due, and nothing waits or opens a connection for it.
    async fn keepalive(&self, quiet: Duration) {
        let mut due = 0usize;
        drop(self.pool.retain(|conn, _| {
            if !conn.suspect && conn.alive_at.elapsed() >= quiet {
                conn.keepalive_due.store(true, Ordering::Release);
                due += 1;
            }
            true
        }));
        for _ in 0..due {
            if self.shared.closing.load(Ordering::Acquire) || self.pool.status().available == 0 {
                return;
            }
            // Back into the pool at once (at the end of the queue).
            if self.pool.timeout_get(&super::NOW).await.is_err() {
                return;
            }
        }
    }

    async fn maintain(&self) {
        let limits = &self.shared.limits;
        // Retire idle connections past their time, never below `min_connections`.
        let mut open = self.pool.status().size;
        let min = usize::try_from(limits.min).unwrap_or(0);
        let retired = self.pool.retain(|conn, _| {
            if self.shared.host_left(conn) {
                conn.retire(CloseReason::HostMismatch);
                open = open.saturating_sub(1);
                return false;
            }
            if self.shared.evicted(conn) {
                conn.retire(CloseReason::Evicted);
                open = open.saturating_sub(1);
                return false;
            }
            if let Some(reason) = conn.worn_out() {
                conn.retire(reason);
                open = open.saturating_sub(1);
                return false;
            }
            let idle_out = limits
                .idle_timeout
                .is_some_and(|t| conn.released.elapsed() >= t);
            if idle_out && open > min {
                conn.retire(CloseReason::Idle);
                open = open.saturating_sub(1);
                return false;
            }
            true
        });
        drop(retired);

        // Open connections up to `min_connections` (without waiting in the queue: callers
        // come first), and put them back idle.
        let status = self.pool.status();
        if status.size < min && !self.shared.reach.is_down() {
            let wanted = min - status.size + status.available;
            let mut held = Vec::with_capacity(wanted);
            for _ in 0..wanted {
                match self.pool.timeout_get(&super::NOW).await {
                    Ok(obj) => held.push(obj),
                    Err(_) => break,
                }
            }
            drop(held);
        }

        if let Some(quiet) = limits.keepalive_idle {
            self.keepalive(quiet).await;
        }

        if let Some(threshold) = limits.leak_detection_threshold {
            let found = self.shared.holds.report_leaks(threshold);
            if found > 0 {
                self.shared
                    .instruments
                    .leaks
                    .fetch_add(found, Ordering::Relaxed);
            }
        }
    }
}
