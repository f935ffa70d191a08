//! The services' figures as Prometheus families, read live at each scrape by a
//! `prometheus-client` collector.

use std::sync::atomic::AtomicU64;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;

use crate::PoolStats;
use crate::classify::ErrorKind;
use crate::endpoint::Endpoint;
use crate::endpoint::PRIMARY;
use crate::named::Pools;
use crate::observe::Instruments;
use crate::replica::ReplicaStats;
use crate::service::DbService;

/// The services' figures, read live at each scrape: the pool gauges and counters, the wait,
/// statement, creation and hold histograms, errors by kind, transactions by outcome, closes
/// by reason. One service unlabelled ([`Metrics::new`](super::Metrics::new)), or every pool of a [`Pools`] with a
/// `pool` label ([`Metrics::for_pools`](super::Metrics::for_pools)).
#[derive(Debug)]
pub(super) enum ServiceCollector {
    One(DbService),
    Pools(Pools),
}

/// Encodes one metric under `name`.
fn put(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> std::fmt::Result {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

type Labels = Vec<(String, String)>;

/// The gauges: name, help, value.
fn gauges(s: &PoolStats) -> [(&'static str, &'static str, f64); 10] {
    [
        (
            "dbservice_pool_connections_open",
            "Connections open (idle and busy)",
            f64::from(s.open),
        ),
        (
            "dbservice_pool_connections_busy",
            "Connections checked out",
            f64::from(s.busy),
        ),
        (
            "dbservice_pool_connections_idle",
            "Connections idle in the pool",
            f64::from(s.idle),
        ),
        (
            "dbservice_pool_connections_max",
            "Maximum connections (connection_limit)",
            f64::from(s.max),
        ),
        (
            "dbservice_pool_connections_min",
            "Connections kept open when idle (min_connections)",
            f64::from(s.min),
        ),
        (
            "dbservice_pool_utilization_ratio",
            "Busy connections as a fraction of the maximum",
            s.utilization(),
        ),
        (
            "dbservice_client_queries_active",
            "Callers holding a connection (statements and open transactions)",
            s.active as f64,
        ),
        (
            "dbservice_client_queries_wait",
            "Callers waiting for a connection",
            s.waiting as f64,
        ),
        (
            "dbservice_pool_database_down",
            "1 while the database is known down (callers fail fast), else 0",
            if s.database_down { 1.0 } else { 0.0 },
        ),
        (
            "dbservice_pool_server_full",
            "1 while the database server refuses new connections for want of a slot (full, \
             not down), else 0",
            if s.server_full { 1.0 } else { 0.0 },
        ),
    ]
}

/// The plain counters (named without `_total`: the encoder adds it).
fn counters(s: &PoolStats) -> [(&'static str, &'static str, u64); 6] {
    [
        (
            "dbservice_pool_connections_opened",
            "Connections opened",
            s.opened_total,
        ),
        (
            "dbservice_pool_connection_leaks",
            "Connections held longer than leak_detection_threshold",
            s.leaks,
        ),
        (
            "dbservice_client_statements_cancelled",
            "Statements abandoned on the client (query_timeout, or the caller dropped) and cancelled on the server",
            s.statements_cancelled,
        ),
        (
            "dbservice_client_queries",
            "Statements executed",
            s.queries_total,
        ),
        (
            "dbservice_pool_topology_changes",
            "Times the pool moved to another host or lost the one it was on (a failover, a server turned read-only)",
            s.topology_changes,
        ),
        (
            "dbservice_client_context_refused",
            "Statements, transactions, streams and batches refused for want of a session context (require_context)",
            s.context_refused,
        ),
    ]
}

/// A labelled counter family: name, help, label key, (label value, count).
type LabelledFamily = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'static str, u64)>,
);

/// The labelled counters.
fn labelled(s: &PoolStats) -> Vec<LabelledFamily> {
    let e = s.errors;
    let t = s.transactions;
    let c = s.closed;
    vec![
        (
            "dbservice_pool_connections_closed",
            "Connections closed, by reason",
            "reason",
            crate::CloseReason::ALL
                .iter()
                .map(|r| r.label())
                .zip([
                    c.idle,
                    c.lifetime,
                    c.max_uses,
                    c.broken,
                    c.unclean,
                    c.shutdown,
                    c.host_mismatch,
                    c.evicted,
                ])
                .collect(),
        ),
        (
            "dbservice_pool_checkout_checks",
            "Round trips made to check connections: pings after idle at checkout, state checks of suspect connections and session resets before reuse, keepalive pings of idle connections",
            "check",
            vec![
                ("ping", s.checkout_pings),
                ("state", s.checkout_checks),
                ("reset", s.session_resets),
                ("keepalive", s.keepalive_pings),
            ],
        ),
        (
            "dbservice_client_errors",
            "Errors by kind",
            "kind",
            ErrorKind::ALL
                .iter()
                .map(|k| k.label())
                .zip([
                    e.pool_timeout,
                    e.query_timeout,
                    e.pool_closed,
                    e.connection,
                    e.statement_timeout,
                    e.serialization,
                    e.constraint,
                    e.query,
                ])
                .collect(),
        ),
        (
            "dbservice_transactions",
            "Transactions by outcome",
            "outcome",
            vec![
                ("commit", t.commit),
                ("rollback", t.rollback),
                ("timeout", t.timeout),
                ("max_wait", t.max_wait),
                ("retry", t.retry),
                ("commit_unknown", t.commit_unknown),
                ("failed_before_commit", t.failed_before_commit),
            ],
        ),
    ]
}

/// The histograms: name, help, the instrument's histogram.
fn histograms(ins: &Instruments) -> [(&'static str, &'static str, &Histogram); 4] {
    [
        (
            "dbservice_pool_connection_create_seconds",
            "Time to open a connection",
            &ins.create_histogram,
        ),
        (
            "dbservice_pool_connection_hold_seconds",
            "Time a connection was held by its caller (a statement or a transaction)",
            &ins.hold_histogram,
        ),
        (
            "dbservice_client_queries_duration_seconds",
            "Statement execution time",
            &ins.query_histogram,
        ),
        (
            "dbservice_client_queries_wait_seconds",
            "Time spent waiting for a connection",
            &ins.wait_histogram,
        ),
    ]
}

impl Collector for ServiceCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        // The pools that own replicas' reads: (pool label, service).
        let owners: Vec<(Labels, &DbService)> = match self {
            ServiceCollector::One(db) => vec![(Vec::new(), db)],
            ServiceCollector::Pools(pools) => pools
                .iter()
                .map(|(name, db, _)| (vec![("pool".to_owned(), name.to_owned())], db))
                .collect(),
        };
        // (pool label, statistics, service) for each service, each replica's own pool as a
        // pool of its own (`replica_1`, or `<pool>_replica_1` under a named pool).
        let mut services: Vec<(Labels, PoolStats, &Endpoint)> = Vec::new();
        for (labels, db) in &owners {
            let pool = labels.first().map(|(_, v)| v.as_str()).unwrap_or(PRIMARY);
            let labels = if db.replica_services().is_empty() || !labels.is_empty() {
                labels.clone()
            } else {
                vec![("pool".to_owned(), PRIMARY.to_owned())]
            };
            services.push((labels, db.stats(), db.primary()));
            for (name, replica) in db.replica_services() {
                let label = if pool == PRIMARY {
                    name.to_owned()
                } else {
                    format!("{pool}_{name}")
                };
                services.push((vec![("pool".to_owned(), label)], replica.stats(), replica));
            }
        }
        let labelled_by_pool = matches!(self, ServiceCollector::Pools(_)) || services.len() > 1;
        let Some(&(_, ref first, first_db)) = services.first() else {
            return Ok(());
        };
        for (i, (name, help, _)) in gauges(first).into_iter().enumerate() {
            if labelled_by_pool {
                let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
                for (labels, s, _) in &services {
                    if let Some((_, _, v)) = gauges(s).get(i) {
                        family.get_or_create(labels).set(*v);
                    }
                }
                put(&mut e, name, help, &family)?;
            } else if let Some((_, _, v)) = gauges(first).get(i) {
                put(&mut e, name, help, &ConstGauge::new(*v))?;
            }
        }
        for (i, (name, help, _)) in counters(first).into_iter().enumerate() {
            if labelled_by_pool {
                let family = Family::<Labels, Counter>::default();
                for (labels, s, _) in &services {
                    if let Some((_, _, v)) = counters(s).get(i) {
                        family.get_or_create(labels).inc_by(*v);
                    }
                }
                put(&mut e, name, help, &family)?;
            } else if let Some((_, _, v)) = counters(first).get(i) {
                put(&mut e, name, help, &ConstCounter::new(*v))?;
            }
        }
        for (i, (name, help, key, _)) in labelled(first).into_iter().enumerate() {
            let family = Family::<Labels, Counter>::default();
            for (labels, s, _) in &services {
                if let Some((_, _, _, values)) = labelled(s).get(i) {
                    for (value, n) in values {
                        let mut l = labels.clone();
                        l.push((key.to_owned(), (*value).to_owned()));
                        family.get_or_create(&l).inc_by(*n);
                    }
                }
            }
            put(&mut e, name, help, &family)?;
        }
        // The emitted alerts: times raised, and the current level.
        let raised = Family::<Labels, Counter>::default();
        let level = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        for (labels, _, db) in &services {
            for (alert, lvl, n) in db.alert_counts() {
                let mut l = labels.clone();
                l.push(("alert".to_owned(), alert.to_owned()));
                l.push(("level".to_owned(), lvl.to_owned()));
                raised.get_or_create(&l).inc_by(n);
            }
            for status in db.alerts() {
                let mut l = labels.clone();
                l.push(("alert".to_owned(), status.alert.label().to_owned()));
                level.get_or_create(&l).set(match status.level {
                    crate::alerts::Level::Ok => 0.0,
                    crate::alerts::Level::Warn => 1.0,
                    crate::alerts::Level::Critical => 2.0,
                });
            }
        }
        put(
            &mut e,
            "dbservice_alerts",
            "Alerts raised (a WARN or ERROR line each): utilization, waiting, errors, by level",
            &raised,
        )?;
        put(
            &mut e,
            "dbservice_alert_level",
            "Each alert's current level: 0 ok, 1 warn, 2 critical",
            &level,
        )?;
        for (i, (name, help, hist)) in histograms(first_db.instruments()).into_iter().enumerate() {
            if labelled_by_pool {
                let mut m = e.encode_descriptor(name, help, None, hist.metric_type())?;
                for (labels, _, db) in &services {
                    if let Some((_, _, h)) = histograms(db.instruments()).get(i) {
                        h.encode(m.encode_family(labels)?)?;
                    }
                }
            } else {
                put(&mut e, name, help, hist)?;
            }
        }
        encode_replicas(&mut e, &owners)
    }
}

/// The read-replica families of every pool that has replicas: where reads went, and each
/// replica's rotation and lag.
fn encode_replicas(e: &mut DescriptorEncoder, owners: &[(Labels, &DbService)]) -> std::fmt::Result {
    let with: Vec<(&Labels, ReplicaStats)> = owners
        .iter()
        .filter_map(|(labels, db)| db.replica_stats().map(|s| (labels, s)))
        .collect();
    if with.is_empty() {
        return Ok(());
    }
    let reads = Family::<Labels, Counter>::default();
    let rotation = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let lag = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for (labels, stats) in &with {
        for (outcome, n) in stats.reads.labelled() {
            let mut l = (*labels).clone();
            l.push(("outcome".to_owned(), outcome.to_owned()));
            reads.get_or_create(&l).inc_by(n);
        }
        for r in &stats.replicas {
            let mut l = (*labels).clone();
            l.push(("replica".to_owned(), r.name.clone()));
            rotation
                .get_or_create(&l)
                .set(if r.in_rotation { 1.0 } else { 0.0 });
            if let Some(seconds) = r.lag_seconds {
                lag.get_or_create(&l).set(seconds);
            }
        }
    }
    put(
        e,
        "dbservice_replica_reads",
        "Reads through db.read(): served by a replica (at once or after waiting for it to replay), or by the primary and why",
        &reads,
    )?;
    put(
        e,
        "dbservice_replica_in_rotation",
        "1 while the replica takes reads, 0 while it is out (down, erroring, or lagging past replica_max_lag)",
        &rotation,
    )?;
    put(
        e,
        "dbservice_replica_lag_seconds",
        "How far behind the primary the replica's last check found it",
        &lag,
    )
}
