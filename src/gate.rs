//! The gate: where a caller of the service waits for a connection, measured.
//!
//! sqlx's pool does not say how many callers wait or for how long, so the service puts a fair
//! (FIFO) semaphore with `connection_limit` permits in front of it. A caller takes a permit
//! before it touches the pool and holds it for one statement or a whole transaction; the wait
//! for the permit is the wait for a connection. `pool_timeout` bounds it. The pool itself then
//! never has more borrowers than connections, so its own queue stays empty.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sea_orm::DbErr;
use sea_orm::error::ConnAcquireErr;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::observe::Instruments;

#[derive(Debug)]
pub(crate) struct Gate {
    permits: Arc<Semaphore>,
    pool_timeout: Option<Duration>,
    instruments: Arc<Instruments>,
}

/// The right to use one connection; returned when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    _permit: OwnedSemaphorePermit,
    instruments: Arc<Instruments>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.instruments.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a waiter until dropped (also when the waiting caller is cancelled), and records how
/// long it waited.
struct Waiting<'a> {
    instruments: &'a Instruments,
    since: Instant,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.instruments.waiting.fetch_sub(1, Ordering::Relaxed);
        self.instruments.on_wait(self.since.elapsed());
    }
}

impl Gate {
    pub fn new(limit: u32, pool_timeout: Option<Duration>, instruments: Arc<Instruments>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit as usize)),
            pool_timeout,
            instruments,
        }
    }

    /// Waits for a permit, at most `pool_timeout` (and at most `bound` if given).
    pub async fn enter(&self, bound: Option<Duration>) -> Result<Permit, DbErr> {
        let limit = match (self.pool_timeout, bound) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let permit = {
            self.instruments.waiting.fetch_add(1, Ordering::Relaxed);
            let _waiting = Waiting {
                instruments: &self.instruments,
                since: Instant::now(),
            };
            let acquire = self.permits.clone().acquire_owned();
            match limit {
                Some(limit) => match tokio::time::timeout(limit, acquire).await {
                    Ok(p) => p,
                    Err(_) => {
                        let err = DbErr::ConnectionAcquire(ConnAcquireErr::Timeout);
                        self.instruments.on_error(&err);
                        return Err(err);
                    }
                },
                None => acquire.await,
            }
        };
        let permit = permit.map_err(|_| {
            let err = DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed);
            self.instruments.on_error(&err);
            err
        })?;
        self.instruments.active.fetch_add(1, Ordering::Relaxed);
        Ok(Permit {
            _permit: permit,
            instruments: self.instruments.clone(),
        })
    }

    /// A permit if one is free now, without waiting (and without counting as a waiter).
    pub fn try_enter(&self) -> Option<Permit> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        self.instruments.active.fetch_add(1, Ordering::Relaxed);
        Some(Permit {
            _permit: permit,
            instruments: self.instruments.clone(),
        })
    }

    /// Refuses every waiter from now on (shutdown).
    pub fn close(&self) {
        self.permits.close();
    }
}
