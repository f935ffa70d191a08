//! What the service measures about itself: waits for a connection, statements, errors,
//! connections opened. Read through [`DbService::stats`](crate::DbService::stats) and exported by
//! [`crate::metrics`].
//!
//! Where each number comes from:
//! - **waits** are measured in [`crate::gate`], the one place a caller of the service waits for
//!   a connection (sqlx reports no waiters): every ordinary SeaORM call through
//!   [`DbService::conn`](crate::DbService::conn) and every transaction passes through it;
//! - **statements** (count, duration, failures, slow-query log) come from SeaORM's per-statement
//!   metric callback, which also sees statements inside transactions;
//! - **errors by kind** are classified where the error surfaces (the connection wrapper and the
//!   transaction helper);
//! - **connections opened** are counted by sqlx's `after_connect` hook; closed = opened − open.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use sea_orm::DbErr;

use crate::classify::ErrorKind;
use crate::stats::{Distribution, ErrorCounts};

/// How long after a sign of trouble returned connections keep getting the full release check.
pub const TROUBLE_WINDOW: Duration = Duration::from_secs(30);

/// How many recent samples the percentiles of [`DbService::stats`](crate::DbService::stats)
/// are computed over.
pub const WINDOW: usize = 1024;

/// The last [`WINDOW`] samples of a duration, for percentiles.
#[derive(Debug, Default)]
pub(crate) struct Window(Mutex<VecDeque<f64>>);

impl Window {
    pub fn record(&self, seconds: f64) {
        if let Ok(mut w) = self.0.lock() {
            if w.len() == WINDOW {
                w.pop_front();
            }
            w.push_back(seconds);
        }
    }

    pub fn summary(&self) -> Distribution {
        let mut samples: Vec<f64> = self
            .0
            .lock()
            .map(|w| w.iter().copied().collect())
            .unwrap_or_default();
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| -> f64 {
            if samples.is_empty() {
                return 0.0;
            }
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(i).copied().unwrap_or(0.0) * 1000.0
        };
        Distribution {
            samples: samples.len(),
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            max_ms: samples.last().copied().unwrap_or(0.0) * 1000.0,
        }
    }
}

/// The service's own instruments.
#[derive(Debug)]
pub(crate) struct Instruments {
    pub statements: AtomicU64,
    pub statements_failed: AtomicU64,
    errors: [AtomicU64; 8],
    pub opened: AtomicU64,
    pub waiting: AtomicI64,
    pub active: AtomicI64,
    pub wait_histogram: Histogram,
    pub query_histogram: Histogram,
    /// When a connection last failed (the database restarted, a backend was killed, the
    /// network broke), as nanoseconds since `epoch`; 0 = never.
    last_connection_failure: AtomicU64,
    /// Until when (nanoseconds since `epoch`) returned connections get the full release
    /// check; see [`Instruments::note_trouble`].
    trouble_until: AtomicU64,
    epoch: Instant,
    pub waits: Window,
    pub queries: Window,
    slow_query_threshold: Option<Duration>,
}

fn buckets() -> Histogram {
    // 100 µs to ~105 s, doubling: fine enough for sub-millisecond reads, wide enough for waits.
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

impl Instruments {
    pub fn new(slow_query_threshold: Option<Duration>) -> Self {
        Self {
            statements: AtomicU64::new(0),
            statements_failed: AtomicU64::new(0),
            errors: Default::default(),
            opened: AtomicU64::new(0),
            waiting: AtomicI64::new(0),
            active: AtomicI64::new(0),
            wait_histogram: buckets(),
            query_histogram: buckets(),
            last_connection_failure: AtomicU64::new(0),
            trouble_until: AtomicU64::new(0),
            epoch: Instant::now(),
            waits: Window::default(),
            queries: Window::default(),
            slow_query_threshold,
        }
    }

    /// SeaORM's per-statement callback.
    pub fn on_statement(&self, info: &sea_orm::metric::Info<'_>) {
        let secs = info.elapsed.as_secs_f64();
        self.statements.fetch_add(1, Ordering::Relaxed);
        if info.failed {
            self.statements_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.query_histogram.observe(secs);
        self.queries.record(secs);
        if let Some(threshold) = self.slow_query_threshold
            && info.elapsed >= threshold
        {
            // The SQL text carries placeholders, never the bound values.
            tracing::warn!(
                target: "dbservice::slow_query",
                duration_ms = secs * 1000.0,
                threshold_ms = threshold.as_secs_f64() * 1000.0,
                failed = info.failed,
                statement = %info.statement.sql,
                "slow query"
            );
        }
    }

    pub fn on_wait(&self, waited: Duration) {
        let secs = waited.as_secs_f64();
        self.wait_histogram.observe(secs);
        self.waits.record(secs);
    }

    pub fn on_error(&self, err: &DbErr) {
        let kind = ErrorKind::of(err);
        if matches!(kind, ErrorKind::Connection | ErrorKind::QueryTimeout) {
            self.connection_failed();
        }
        if let Some(slot) = ErrorKind::ALL
            .iter()
            .position(|k| *k == kind)
            .and_then(|i| self.errors.get(i))
        {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Notes that a connection may have come back dirty or dead: a statement or transaction
    /// was cancelled or missed its deadline, a connection failed, a probe got no answer. For
    /// the next [`TROUBLE_WINDOW`], every connection returned to the pool gets the bounded
    /// release check; in calm times it is skipped (it costs a round trip per query, on top of
    /// the ping sqlx always makes). Called *before* the affected connection is released.
    pub fn note_trouble(&self) {
        let until = self.epoch.elapsed() + TROUBLE_WINDOW;
        let nanos = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX);
        self.trouble_until.fetch_max(nanos, Ordering::Relaxed);
    }

    /// Whether returned connections should get the full release check now.
    pub fn in_trouble(&self) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        now < self.trouble_until.load(Ordering::Relaxed)
    }

    /// Notes that a connection to the database just failed.
    pub fn connection_failed(&self) {
        self.note_trouble();
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        self.last_connection_failure
            .fetch_max(nanos, Ordering::Relaxed);
    }

    /// Whether a connection of this `age` has reached its own, jittered end of life: somewhere
    /// in the last 20 % of `max_lifetime`, fixed per connection (derived from the millisecond
    /// it was opened). Connections opened together then retire at different times instead of
    /// all at once, which would make every caller pay for a new connection at the same moment.
    pub fn past_jittered_lifetime(&self, age: Duration, max_lifetime: Duration) -> bool {
        use std::hash::{Hash, Hasher};
        let opened_ms = self.epoch.elapsed().saturating_sub(age).as_millis();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        opened_ms.hash(&mut h);
        let fraction = (h.finish() % 1000) as f64 / 1000.0;
        age >= max_lifetime.mul_f64(1.0 - 0.2 * fraction)
    }

    /// Whether a connection of this `age` was opened before the last connection failure, so
    /// it may be dead too (a restart or a network break kills every connection at once).
    pub fn predates_last_failure(&self, age: Duration) -> bool {
        let failed_at = self.last_connection_failure.load(Ordering::Relaxed);
        if failed_at == 0 {
            return false;
        }
        let now = self.epoch.elapsed();
        let opened_at = now.saturating_sub(age);
        opened_at <= Duration::from_nanos(failed_at)
    }

    pub fn error_counts(&self) -> ErrorCounts {
        let get = |k: ErrorKind| {
            ErrorKind::ALL
                .iter()
                .position(|x| *x == k)
                .and_then(|i| self.errors.get(i))
                .map_or(0, |a| a.load(Ordering::Relaxed))
        };
        ErrorCounts {
            pool_timeout: get(ErrorKind::PoolTimeout),
            query_timeout: get(ErrorKind::QueryTimeout),
            pool_closed: get(ErrorKind::PoolClosed),
            connection: get(ErrorKind::Connection),
            statement_timeout: get(ErrorKind::StatementTimeout),
            serialization: get(ErrorKind::Serialization),
            constraint: get(ErrorKind::Constraint),
            query: get(ErrorKind::Query),
        }
    }
}
