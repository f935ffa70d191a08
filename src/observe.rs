//! What the service measures about itself: waits for a connection, statements, errors,
//! connections opened. Read through [`DbService::stats`](crate::DbService::stats) and exported by
//! [`crate::metrics`].
//!
//! Where each number comes from:
//! - **waits** are measured in the pool's `acquire`, the one place a caller of the service
//!   waits for a connection: every ordinary SeaORM call through
//!   [`DbService::conn`](crate::DbService::conn) and every transaction passes through it;
//! - **statements** (count, duration, failures, slow-query log) are measured where the pool runs
//!   them ([`crate::pool`]), inside transactions too;
//! - **errors by kind** are classified where the error surfaces (the connection wrapper and the
//!   transaction helper);
//! - **connections** opened (with their creation time), held (hold time) and closed (by
//!   reason) are counted by the pool itself.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use sea_orm::{DbBackend, DbErr, sqlx};

pub(crate) use crate::trace::spans::Text;

use crate::classify::ErrorKind;
use crate::stats::CloseReason;
use crate::stats::{ClosedCounts, Distribution, ErrorCounts};

/// How many recent samples the percentiles of [`DbService::stats`](crate::DbService::stats)
/// are computed over.
pub const WINDOW: usize = 1024;

/// The last [`WINDOW`] samples of a duration, for percentiles. Lock-free: a sample is one
/// atomic increment and one store (it is recorded on every checkout and statement, from every
/// worker thread); a reader may see a slot being overwritten, which moves a percentile by one
/// sample at most.
#[derive(Debug)]
pub(crate) struct Window {
    next: AtomicU64,
    /// Seconds as `f64` bits.
    slots: Box<[AtomicU64]>,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            next: AtomicU64::new(0),
            slots: (0..WINDOW).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Window {
    pub fn record(&self, seconds: f64) {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = self.slots.get((i % WINDOW as u64) as usize) {
            slot.store(seconds.to_bits(), Ordering::Relaxed);
        }
    }

    pub fn summary(&self) -> Distribution {
        let filled = usize::try_from(self.next.load(Ordering::Relaxed))
            .unwrap_or(WINDOW)
            .min(WINDOW);
        let mut samples: Vec<f64> = self
            .slots
            .iter()
            .take(filled)
            .map(|s| f64::from_bits(s.load(Ordering::Relaxed)))
            .collect();
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
            mean_ms: if samples.is_empty() {
                0.0
            } else {
                samples.iter().sum::<f64>() / samples.len() as f64 * 1000.0
            },
        }
    }
}

/// The counter of `key` in `slots`, which are in the order of `all`.
fn slot<'a, K: PartialEq>(all: &[K], slots: &'a [AtomicU64], key: K) -> Option<&'a AtomicU64> {
    all.iter()
        .position(|k| *k == key)
        .and_then(|i| slots.get(i))
}

fn load(slot: Option<&AtomicU64>) -> u64 {
    slot.map_or(0, |a| a.load(Ordering::Relaxed))
}

/// How a statement ended, for [`Instruments::on_statement`]: the call sites hand over what they
/// have (`bool` = failed or not, or the error itself) and only a metrics hook looks inside it.
#[derive(Debug, Clone, Copy)]
// Only a metrics hook reads the errors.
#[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
pub(crate) enum Outcome<'a> {
    /// It succeeded.
    Ok,
    /// It failed, for a reason the call site did not pass on.
    Failed,
    /// It failed with this error.
    Db(&'a DbErr),
    /// It failed with this driver error.
    Driver(&'a sqlx::Error),
}

impl Outcome<'_> {
    pub fn failed(self) -> bool {
        !matches!(self, Outcome::Ok)
    }
}

impl From<bool> for Outcome<'_> {
    fn from(failed: bool) -> Self {
        if failed { Outcome::Failed } else { Outcome::Ok }
    }
}

impl<'a> From<Option<&'a DbErr>> for Outcome<'a> {
    fn from(error: Option<&'a DbErr>) -> Self {
        error.map_or(Outcome::Ok, Outcome::Db)
    }
}

impl<'a> From<Option<&'a sqlx::Error>> for Outcome<'a> {
    fn from(error: Option<&'a sqlx::Error>) -> Self {
        error.map_or(Outcome::Ok, Outcome::Driver)
    }
}

/// Where the events of one pool go besides its own counters: the OpenTelemetry instruments of
/// [`crate::otel`]. A trait so that this layer imports nothing above it; the hook does its
/// own reading of the SQL text and the error, so a pool without one pays nothing for it.
#[cfg(feature = "opentelemetry")]
pub(crate) trait MetricsHook: Send + Sync + std::fmt::Debug {
    /// A caller waited `seconds` for a connection (0 when one was free).
    fn wait(&self, seconds: f64);
    /// A connection was opened in `seconds`.
    fn created(&self, seconds: f64);
    /// A connection was held `seconds` by its caller.
    fn held(&self, seconds: f64);
    /// A statement ran for `seconds` and ended so.
    fn statement(&self, sql: &str, seconds: f64, outcome: Outcome<'_>);
}

/// The service's own instruments.
#[derive(Debug)]
pub(crate) struct Instruments {
    pub statements: AtomicU64,
    pub statements_failed: AtomicU64,
    errors: [AtomicU64; 8],
    pub opened: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    pub leaks: AtomicU64,
    /// Liveness pings at checkout (idle past `ping_after_idle`, or older than a failure).
    pub pings: AtomicU64,
    /// State checks at checkout (suspect connections).
    pub state_checks: AtomicU64,
    /// Session resets of connections whose session a caller may have changed.
    pub session_resets: AtomicU64,
    /// Statements abandoned on the client and cancelled on the server.
    pub cancels: AtomicU64,
    /// Keepalive pings of idle connections (`keepalive_idle`).
    pub keepalive_pings: AtomicU64,
    /// Statements, transactions, streams and batches refused for want of a session context
    /// (`require_context`).
    pub context_refused: AtomicU64,
    /// The session contexts' names this pool served (never their values).
    pub context_names: crate::context::seen::SeenNames,
    /// `log_statements`: one INFO line per statement.
    log_statements: bool,
    pub create_histogram: Histogram,
    pub hold_histogram: Histogram,
    pub waiting: AtomicI64,
    pub active: AtomicI64,
    pub wait_histogram: Histogram,
    pub query_histogram: Histogram,
    /// When a connection last failed (the database restarted, a backend was killed, the
    /// network broke), as nanoseconds since `epoch`; 0 = never.
    last_connection_failure: AtomicU64,
    pub(crate) epoch: Instant,
    pub waits: Window,
    pub queries: Window,
    slow_query_threshold: Option<Duration>,
    backend: DbBackend,
    /// The OpenTelemetry instruments, once [`crate::otel::instrument`] registered them: the
    /// first registration stays. Unset, an event costs one atomic load for it.
    #[cfg(feature = "opentelemetry")]
    hook: std::sync::OnceLock<Box<dyn MetricsHook>>,
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
            closed: Default::default(),
            leaks: AtomicU64::new(0),
            pings: AtomicU64::new(0),
            state_checks: AtomicU64::new(0),
            session_resets: AtomicU64::new(0),
            cancels: AtomicU64::new(0),
            keepalive_pings: AtomicU64::new(0),
            context_refused: AtomicU64::new(0),
            context_names: crate::context::seen::SeenNames::default(),
            log_statements: false,
            create_histogram: buckets(),
            hold_histogram: buckets(),
            waiting: AtomicI64::new(0),
            active: AtomicI64::new(0),
            wait_histogram: buckets(),
            query_histogram: buckets(),
            last_connection_failure: AtomicU64::new(0),
            epoch: Instant::now(),
            waits: Window::default(),
            queries: Window::default(),
            slow_query_threshold,
            backend: DbBackend::Postgres,
            #[cfg(feature = "opentelemetry")]
            hook: std::sync::OnceLock::new(),
        }
    }

    /// Work was refused for want of a session context.
    pub fn on_context_refused(&self) {
        self.context_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends this pool's events to `hook` too, unless one is set already (then `false`, and
    /// `hook` is dropped).
    #[cfg(feature = "opentelemetry")]
    pub fn set_hook(&self, hook: Box<dyn MetricsHook>) -> bool {
        self.hook.set(hook).is_ok()
    }

    /// The SQL dialect of this pool's statements (for masking literals in what is logged).
    pub fn with_backend(mut self, backend: DbBackend) -> Self {
        self.backend = backend;
        self
    }

    /// Turns the statement log (`log_statements`) on or off.
    pub fn with_statement_log(mut self, on: bool) -> Self {
        self.log_statements = on;
        self
    }

    /// One statement finished (or failed) after `elapsed`. `outcome`: `failed` as a `bool`,
    /// or the error itself (`result.as_ref().err()`, a `DbErr` or a driver error), which gives
    /// the OpenTelemetry metric its `error.type` (the SQLSTATE).
    ///
    /// `text.sql` is what the hook reads; the statement log and the slow-query line show
    /// [`Text::shown`]: placeholders kept, literals of text without bound values masked.
    pub fn on_statement<'a>(
        &self,
        text: Text<'_>,
        elapsed: Duration,
        outcome: impl Into<Outcome<'a>>,
    ) {
        let outcome = outcome.into();
        let failed = outcome.failed();
        let secs = elapsed.as_secs_f64();
        #[cfg(feature = "opentelemetry")]
        if let Some(hook) = self.hook.get() {
            hook.statement(text.sql, secs, outcome);
        }
        if self.log_statements {
            // `log_statements`: every statement, as its SQL text with placeholders; the bound
            // values are never part of it, nor the literals of text run without any.
            tracing::info!(
                target: "dbservice::statements",
                duration_ms = secs * 1000.0,
                failed,
                statement = %text.shown(self.backend),
                "statement"
            );
        }
        self.statements.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.statements_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.query_histogram.observe(secs);
        self.queries.record(secs);
        if let Some(threshold) = self.slow_query_threshold
            && elapsed >= threshold
        {
            // The SQL text carries placeholders, never the bound values (nor literals).
            tracing::warn!(
                target: "dbservice::slow_query",
                duration_ms = secs * 1000.0,
                threshold_ms = threshold.as_secs_f64() * 1000.0,
                failed,
                statement = %text.shown(self.backend),
                "slow query"
            );
        }
    }

    /// A connection was opened, taking `took`.
    pub fn on_created(&self, took: Duration) {
        self.opened.fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        self.create_histogram.observe(secs);
        #[cfg(feature = "opentelemetry")]
        if let Some(hook) = self.hook.get() {
            hook.created(secs);
        }
    }

    /// A connection came back after being held for `held`.
    pub fn on_hold(&self, held: Duration) {
        let secs = held.as_secs_f64();
        self.hold_histogram.observe(secs);
        #[cfg(feature = "opentelemetry")]
        if let Some(hook) = self.hook.get() {
            hook.held(secs);
        }
    }

    /// A connection was closed.
    pub fn on_closed(&self, reason: CloseReason) {
        if let Some(slot) = slot(&CloseReason::ALL, &self.closed, reason) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Connections closed so far, by reason.
    pub fn closed_counts(&self) -> ClosedCounts {
        let get = |r| load(slot(&CloseReason::ALL, &self.closed, r));
        ClosedCounts {
            idle: get(CloseReason::Idle),
            lifetime: get(CloseReason::Lifetime),
            max_uses: get(CloseReason::MaxUses),
            broken: get(CloseReason::Broken),
            unclean: get(CloseReason::Unclean),
            shutdown: get(CloseReason::Shutdown),
            host_mismatch: get(CloseReason::HostMismatch),
            evicted: get(CloseReason::Evicted),
        }
    }

    /// A fraction in [0, 1) that differs from connection to connection (for jittered limits).
    pub fn jitter(&self) -> f64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(self.epoch.elapsed().as_nanos());
        (h.finish() % 10_000) as f64 / 10_000.0
    }

    pub fn on_wait(&self, waited: Duration) {
        let secs = waited.as_secs_f64();
        self.wait_histogram.observe(secs);
        self.waits.record(secs);
        #[cfg(feature = "opentelemetry")]
        if let Some(hook) = self.hook.get() {
            hook.wait(secs);
        }
    }

    pub fn on_error(&self, err: &DbErr) {
        let kind = ErrorKind::of(err);
        if matches!(kind, ErrorKind::Connection | ErrorKind::QueryTimeout) {
            self.connection_failed();
        }
        if let Some(slot) = slot(&ErrorKind::ALL, &self.errors, kind) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Notes that a connection to the database just failed.
    pub fn connection_failed(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        self.last_connection_failure
            .fetch_max(nanos, Ordering::Relaxed);
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
        let get = |k| load(slot(&ErrorKind::ALL, &self.errors, k));
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
