//! The initial connect: retry a database that is not up yet, give up on one that refuses us.
//!
//! Each attempt opens one connection directly (so a failure reports its real cause), then takes
//! a connection from the (lazy) pool and pings it; the whole attempt is bounded by
//! `connect_timeout`. Transient failures (refused, reset, timed out, "the database system is
//! starting up" 57P03, "too many connections" 53300, ...) are retried with exponential backoff
//! (100 ms doubling up to 5 s, with full jitter so a fleet restarting together does not knock in
//! step) until `connect_retry_timeout` has passed. Anything else (bad password 28P01, unknown
//! database 3D000, TLS refused) fails at once: retrying cannot fix it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use sea_orm::sqlx;

use crate::config::DbConfig;
use crate::error::Error;
use crate::pool::{Pool, describe, is_transient_connect};

/// One failed attempt, already scrubbed of secrets.
#[derive(Debug, Clone)]
pub(crate) struct AttemptError {
    pub transient: bool,
    pub message: String,
}

/// Takes a connection from the pool (opening one if needed) and pings it.
async fn probe(pool: &Pool, bound: Duration) -> Result<(), sqlx::Error> {
    let mut conn = pool
        .acquire(Some(bound), None)
        .await
        .map_err(|e| sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, e)))?;
    conn.ping(bound).await
}

/// Retries a direct connect and a pooled ping until it succeeds, a non-transient error occurs, or
/// `connect_retry_timeout` passes. `on_error` sees every failed attempt (for "last error").
pub(crate) async fn connect_with_retry(
    pool: &Pool,
    config: &DbConfig,
    on_error: &(dyn Fn(&str) + Sync),
) -> Result<(), Error> {
    let p = config.pool();
    let started = Instant::now();
    let attempts = AtomicU32::new(0);
    let last = Mutex::new(String::from("no attempt finished"));

    let attempt = || async {
        attempts.fetch_add(1, Ordering::Relaxed);
        let probe = async {
            pool.connect_direct().await?;
            probe(pool, p.limits.connect_timeout).await
        };
        // `connect_timeout` for each host a connect may try, then the ping.
        let bound = pool.connect_bound() + p.limits.connect_timeout;
        let result = match tokio::time::timeout(bound, probe).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => AttemptError {
                transient: is_transient_connect(&e),
                message: describe(config, &e),
            },
            Err(_) => AttemptError {
                transient: true,
                message: format!(
                    "no connection within connect_timeout ({}) per host",
                    humantime::format_duration(p.limits.connect_timeout)
                ),
            },
        };
        on_error(&result.message);
        if let Ok(mut slot) = last.lock() {
            slot.clone_from(&result.message);
        }
        Err(result)
    };

    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    let url = config.redacted_url();
    let retrying = attempt
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e: &AttemptError| e.transient && !p.limits.connect_retry_timeout.is_zero())
        .notify(|e: &AttemptError, delay: Duration| {
            tracing::warn!(
                url = %url,
                error = %e.message,
                retry_in_ms = delay.as_millis() as u64,
                "database not reachable yet; retrying"
            );
        });

    let outcome = tokio::time::timeout(
        p.limits.connect_retry_timeout.max(p.limits.connect_timeout),
        retrying,
    )
    .await;
    let attempts = attempts.load(Ordering::Relaxed);
    let last_error = last.lock().map(|s| s.clone()).unwrap_or_default();
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if !e.transient => Err(Error::ConnectRejected {
            url,
            message: e.message,
        }),
        _ => Err(Error::ConnectTimedOut {
            url,
            elapsed: started.elapsed(),
            attempts,
            last_error,
        }),
    }
}
