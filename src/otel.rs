//! OpenTelemetry metrics (cargo feature `opentelemetry`): the pool's figures under the
//! [database client metric conventions] through the `opentelemetry` metrics API. The library
//! depends on the API only; the application installs a meter provider and its exporter, then
//! calls [`instrument`] (or [`instrument_service`]) once with a meter of it.
//!
//! | instrument | kind | unit | attributes besides `db.client.connection.pool.name` |
//! |---|---|---|---|
//! | `db.client.connection.count` | observable up-down counter | `{connection}` | `db.client.connection.state` = `idle` \| `used` |
//! | `db.client.connection.max` | observable up-down counter | `{connection}` | |
//! | `db.client.connection.idle.max` | observable up-down counter | `{connection}` | |
//! | `db.client.connection.idle.min` | observable up-down counter | `{connection}` | |
//! | `db.client.connection.pending_requests` | observable up-down counter | `{request}` | |
//! | `db.client.connection.timeouts` | observable counter | `{timeout}` | |
//! | `db.client.connection.create_time` | histogram | `s` | |
//! | `db.client.connection.wait_time` | histogram | `s` | |
//! | `db.client.connection.use_time` | histogram | `s` | |
//! | `db.client.operation.duration` | histogram | `s` | `db.system.name`, `db.namespace`, `db.operation.name`, `db.collection.name`, `server.address`, `server.port`; on failure `error.type` and `db.response.status_code` |
//!
//! The observable instruments are read from [`Endpoint::stats`] when the reader collects; the
//! histograms are recorded as the events happen. Each pool is named as the Prometheus `pool`
//! label names it: `primary`, a named pool's name, `replica_1` (a replica of the primary),
//! `<pool>_replica_1` (a replica of a named pool).
//!
//! Statement attributes come from the SQL text with placeholders (its first keyword and its
//! table), never from the bound values. `error.type` is the SQLSTATE when the server answered
//! with one (`23505`), else the error's kind as the Prometheus `kind` label spells it
//! (`query_timeout`, `pool_timeout`, `connection`, ...), else `_OTHER`.
//!
//! [database client metric conventions]: https://opentelemetry.io/docs/specs/semconv/database/database-metrics/

use std::borrow::Cow;
use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};
use sea_orm::DbBackend;

use crate::endpoint::{Endpoint, PRIMARY};
use crate::named::Pools;
use crate::observe::{MetricsHook, Outcome};
use crate::service::DbService;
use crate::trace::spans::{PoolAttrs, error_of_db, error_of_driver};
use crate::trace::summary::summarize;

/// Bucket boundaries, in seconds, of every histogram: the ones the conventions advise for
/// `db.client.operation.duration`, used for the connection times too so that a wait and the
/// statement it delayed fall into comparable buckets.
const BOUNDARIES: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

const POOL_NAME: &str = "db.client.connection.pool.name";
const STATE: &str = "db.client.connection.state";
const SYSTEM: &str = "db.system.name";
const NAMESPACE: &str = "db.namespace";
const OPERATION: &str = "db.operation.name";
const COLLECTION: &str = "db.collection.name";
const SERVER_ADDRESS: &str = "server.address";
const SERVER_PORT: &str = "server.port";
const ERROR_TYPE: &str = "error.type";
const STATUS_CODE: &str = "db.response.status_code";

/// Registers the metrics of every pool in `pools` (the primary, the named pools and each
/// one's replicas) on `meter`.
///
/// Call it once, after the application has installed its meter provider. A pool is
/// instrumented once: a later call (on this meter or another) skips the pools already
/// instrumented and registers only those added since, so calling it again after
/// [`Pools::add`] is how a new pool gets its metrics. The meter provider's callbacks keep the
/// instrumented pools alive (they report, closed, until the provider is dropped).
pub fn instrument(pools: &Pools, meter: &Meter) {
    let endpoints = pools
        .iter()
        .flat_map(|(name, db, _)| endpoints_of(name, db))
        .collect();
    register(endpoints, meter);
}

/// Registers the metrics of one service (its primary pool, named as the service is, and its
/// replicas) on `meter`; see [`instrument`] for a registry of pools, and for what a second
/// call does.
pub fn instrument_service(db: &DbService, meter: &Meter) {
    register(endpoints_of(db.name(), db), meter);
}

/// `db`'s primary endpoint under `name` and its replicas under the Prometheus collector's
/// names (`replica_1` under the primary, `<name>_replica_1` under a named pool).
fn endpoints_of(name: &str, db: &DbService) -> Vec<(String, Endpoint)> {
    let mut out = vec![(name.to_owned(), db.primary().clone())];
    for (replica, endpoint) in db.replica_services() {
        let label = if name == PRIMARY {
            replica.to_owned()
        } else {
            format!("{name}_{replica}")
        };
        out.push((label, endpoint.clone()));
    }
    out
}

/// The histograms every pool records into (handles to one instrument each).
#[derive(Debug, Clone)]
struct Histograms {
    create: Histogram<f64>,
    wait: Histogram<f64>,
    used: Histogram<f64>,
    operation: Histogram<f64>,
}

impl Histograms {
    fn new(meter: &Meter) -> Self {
        let seconds = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(BOUNDARIES.to_vec())
                .build()
        };
        Self {
            create: seconds(
                "db.client.connection.create_time",
                "The time it took to create a new connection",
            ),
            wait: seconds(
                "db.client.connection.wait_time",
                "The time it took to obtain an open connection from the pool",
            ),
            used: seconds(
                "db.client.connection.use_time",
                "The time between borrowing a connection and returning it to the pool",
            ),
            operation: seconds(
                "db.client.operation.duration",
                "Duration of database client operations",
            ),
        }
    }
}

/// One pool's events into the shared histograms, with its attributes made once.
#[derive(Debug)]
struct PoolHook {
    histograms: Histograms,
    backend: DbBackend,
    /// `db.client.connection.pool.name`: the connection histograms' attributes.
    pool: [KeyValue; 1],
    /// The pool's name, system, namespace and server: the start of each statement's.
    operation: Vec<KeyValue>,
}

impl MetricsHook for PoolHook {
    fn wait(&self, seconds: f64) {
        self.histograms.wait.record(seconds, &self.pool);
    }

    fn created(&self, seconds: f64) {
        self.histograms.create.record(seconds, &self.pool);
    }

    fn held(&self, seconds: f64) {
        self.histograms.used.record(seconds, &self.pool);
    }

    fn statement(&self, sql: &str, seconds: f64, outcome: Outcome<'_>) {
        let summary = summarize(sql, self.backend);
        let mut attributes = Vec::with_capacity(self.operation.len() + 4);
        // The precomputed values are shared strings: cloning them bumps a count.
        attributes.extend_from_slice(&self.operation);
        if let Some(operation) = summary.operation {
            attributes.push(KeyValue::new(OPERATION, operation));
        }
        if let Some(collection) = summary.collection {
            attributes.push(KeyValue::new(COLLECTION, collection.into_owned()));
        }
        if let Some((error_type, code)) = error_of(outcome) {
            attributes.push(KeyValue::new(ERROR_TYPE, error_type));
            if let Some(code) = code {
                attributes.push(KeyValue::new(STATUS_CODE, code));
            }
        }
        self.histograms.operation.record(seconds, &attributes);
    }
}

/// `error.type` and `db.response.status_code` of a failed statement; `None` if it succeeded.
fn error_of(outcome: Outcome<'_>) -> Option<(Cow<'static, str>, Option<String>)> {
    match outcome {
        Outcome::Ok => None,
        Outcome::Failed => Some((Cow::Borrowed("_OTHER"), None)),
        Outcome::Db(e) => Some(error_of_db(e)),
        Outcome::Driver(e) => Some(error_of_driver(e)),
    }
}

/// One instrumented pool as the observable instruments read it.
struct Observed {
    endpoint: Endpoint,
    pool: [KeyValue; 1],
    idle: [KeyValue; 2],
    used: [KeyValue; 2],
}

/// Hooks each endpoint not yet instrumented and registers the observable instruments over
/// those.
fn register(endpoints: Vec<(String, Endpoint)>, meter: &Meter) {
    let histograms = Histograms::new(meter);
    let mut observed = Vec::new();
    for (name, endpoint) in endpoints {
        let config = endpoint.config();
        let pool_name = KeyValue::new(POOL_NAME, Arc::<str>::from(name.as_str()));
        let hook = PoolHook {
            histograms: histograms.clone(),
            backend: config.backend().dialect(),
            pool: [pool_name.clone()],
            operation: operation_attributes(pool_name.clone(), &endpoint.pool().shared().trace),
        };
        // The first registration wins; a pool already instrumented is not observed twice
        // either (its figures would be reported twice under the same attributes).
        if !endpoint.instruments().set_hook(Box::new(hook)) {
            tracing::debug!(pool = %name, "OpenTelemetry metrics already registered for this pool");
            continue;
        }
        let state = |s: &'static str| [pool_name.clone(), KeyValue::new(STATE, s)];
        observed.push(Observed {
            idle: state("idle"),
            used: state("used"),
            pool: [pool_name],
            endpoint,
        });
    }
    if observed.is_empty() {
        return;
    }
    observe(Arc::new(observed), meter);
}

/// The observable instruments over `pools`, read at each collection.
fn observe(pools: Arc<Vec<Observed>>, meter: &Meter) {
    let each = |read: fn(&crate::PoolStats) -> i64| {
        let pools = pools.clone();
        move |obs: &dyn opentelemetry::metrics::AsyncInstrument<i64>| {
            for p in pools.iter() {
                obs.observe(read(&p.endpoint.stats()), &p.pool);
            }
        }
    };
    let counts = pools.clone();
    // The handles may be dropped: the provider keeps the callbacks.
    meter
        .i64_observable_up_down_counter("db.client.connection.count")
        .with_unit("{connection}")
        .with_description("The number of connections that are currently in state described by the state attribute")
        .with_callback(move |obs| {
            for p in counts.iter() {
                let s = p.endpoint.stats();
                obs.observe(i64::from(s.idle), &p.idle);
                obs.observe(i64::from(s.busy), &p.used);
            }
        })
        .build();
    meter
        .i64_observable_up_down_counter("db.client.connection.max")
        .with_unit("{connection}")
        .with_description("The maximum number of open connections allowed (connection_limit)")
        .with_callback(each(|s| i64::from(s.max)))
        .build();
    // Every open connection may sit idle: the most idle ones is the pool's maximum.
    meter
        .i64_observable_up_down_counter("db.client.connection.idle.max")
        .with_unit("{connection}")
        .with_description("The maximum number of idle open connections allowed")
        .with_callback(each(|s| i64::from(s.max)))
        .build();
    meter
        .i64_observable_up_down_counter("db.client.connection.idle.min")
        .with_unit("{connection}")
        .with_description("The minimum number of idle open connections allowed (min_connections)")
        .with_callback(each(|s| i64::from(s.min)))
        .build();
    meter
        .i64_observable_up_down_counter("db.client.connection.pending_requests")
        .with_unit("{request}")
        .with_description("The number of current pending requests for an open connection")
        .with_callback(each(|s| i64::try_from(s.waiting).unwrap_or(i64::MAX)))
        .build();
    meter
        .u64_observable_counter("db.client.connection.timeouts")
        .with_unit("{timeout}")
        .with_description(
            "The number of connection timeouts that have occurred trying to obtain a connection from the pool",
        )
        .with_callback(move |obs| {
            for p in pools.iter() {
                obs.observe(p.endpoint.stats().errors.pool_timeout, &p.pool);
            }
        })
        .build();
}

/// The attributes every statement of the pool carries: its name, and the system, database and
/// server (its first host) its spans carry too ([`crate::trace`]).
fn operation_attributes(pool_name: KeyValue, attrs: &PoolAttrs) -> Vec<KeyValue> {
    let mut out = vec![pool_name, KeyValue::new(SYSTEM, attrs.system)];
    if let Some(database) = &attrs.namespace {
        out.push(KeyValue::new(
            NAMESPACE,
            Arc::<str>::from(database.as_str()),
        ));
    }
    if let Some((host, port)) = attrs.first_server() {
        out.push(KeyValue::new(
            SERVER_ADDRESS,
            Arc::<str>::from(host.as_str()),
        ));
        out.push(KeyValue::new(SERVER_PORT, i64::from(*port)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DbConfig;

    #[test]
    fn the_namespace_is_the_database_of_the_url_and_never_its_password() {
        let attrs = |url: &str| {
            let config = DbConfig::from_url(url).expect("url");
            operation_attributes(
                KeyValue::new(POOL_NAME, "p"),
                &PoolAttrs::new(&config, crate::trace::spans::Node::Primary),
            )
        };
        let pg = attrs("postgres://app:s3cret@db1:6432/led%20ger?sslmode=disable");
        let text = format!("{pg:?}");
        assert!(
            text.contains("led ger") && text.contains("db1") && text.contains("6432"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
        let sqlite = attrs("sqlite://data/app.sqlite?mode=rwc");
        assert_eq!(
            sqlite.len(),
            2,
            "a file has no namespace and no server: {sqlite:?}"
        );
    }

    #[test]
    fn a_failure_is_typed_by_its_sqlstate_else_by_its_kind() {
        let timeout = crate::classify::query_deadline_passed(std::time::Duration::from_secs(1));
        assert_eq!(
            error_of(Outcome::Db(&timeout)),
            Some((Cow::Borrowed("query_timeout"), None))
        );
        assert_eq!(error_of(Outcome::Ok), None);
        assert_eq!(
            error_of(Outcome::Failed),
            Some((Cow::Borrowed("_OTHER"), None))
        );
        let closed = sea_orm::sqlx::Error::PoolClosed;
        assert_eq!(
            error_of(Outcome::Driver(&closed)),
            Some((Cow::Borrowed("pool_closed"), None))
        );
    }
}
