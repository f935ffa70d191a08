//! The pool's metrics under OpenTelemetry's names (`dbservice::otel`), read back through the
//! SDK's in-memory exporter as a collector would receive them: they move with load, statements
//! carry their table and their SQLSTATE, and no bound value reaches an attribute.

use std::collections::BTreeMap;
use std::time::Duration;

use dbservice::{DbService, Pools};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::support::{connected_service as service, fresh_pg_database, with_params};

/// One exported data point, flattened: a sum's value, or a histogram's count and sum.
#[derive(Debug, Clone)]
struct Point {
    name: String,
    unit: String,
    attributes: BTreeMap<String, String>,
    /// A sum's value; a histogram's count.
    value: f64,
    /// A histogram's sum (0 for a sum).
    sum: f64,
}

impl Point {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// A meter provider of the test's own with an in-memory exporter, flushed on demand.
struct Otel {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

impl Otel {
    fn new() -> Self {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        Self { provider, exporter }
    }

    fn meter(&self) -> opentelemetry::metrics::Meter {
        self.provider.meter("dbservice-tests")
    }

    /// Everything the provider holds now (cumulative), as data points.
    async fn collect(&self) -> Vec<Point> {
        self.exporter.reset();
        // The flush waits for the reader's own thread: off the runtime's workers.
        let provider = self.provider.clone();
        tokio::task::spawn_blocking(move || provider.force_flush())
            .await
            .expect("flush task")
            .expect("flush");
        let exported = self.exporter.get_finished_metrics().expect("exported");
        let mut points = Vec::new();
        for resource in &exported {
            for scope in resource.scope_metrics() {
                for metric in scope.metrics() {
                    flatten(metric, &mut points);
                }
            }
        }
        points
    }
}

fn attributes<'a>(
    kvs: impl Iterator<Item = &'a opentelemetry::KeyValue>,
) -> BTreeMap<String, String> {
    kvs.map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

fn flatten(metric: &opentelemetry_sdk::metrics::data::Metric, out: &mut Vec<Point>) {
    let point = |attributes, value: f64, sum: f64| Point {
        name: metric.name().to_owned(),
        unit: metric.unit().to_owned(),
        attributes,
        value,
        sum,
    };
    match metric.data() {
        AggregatedMetrics::I64(MetricData::Sum(s)) => {
            for p in s.data_points() {
                out.push(point(attributes(p.attributes()), p.value() as f64, 0.0));
            }
        }
        AggregatedMetrics::U64(MetricData::Sum(s)) => {
            for p in s.data_points() {
                out.push(point(attributes(p.attributes()), p.value() as f64, 0.0));
            }
        }
        AggregatedMetrics::F64(MetricData::Histogram(h)) => {
            for p in h.data_points() {
                out.push(point(attributes(p.attributes()), p.count() as f64, p.sum()));
            }
        }
        other => panic!("{}: unexpected data {other:?}", metric.name()),
    }
}

/// The points of `name` whose attributes include every pair of `with`.
fn find<'a>(points: &'a [Point], name: &str, with: &[(&str, &str)]) -> Vec<&'a Point> {
    points
        .iter()
        .filter(|p| p.name == name && with.iter().all(|(k, v)| p.attr(k) == Some(*v)))
        .collect()
}

/// The value of the single point of `name` with `with`.
fn value(points: &[Point], name: &str, with: &[(&str, &str)]) -> f64 {
    let found = find(points, name, with);
    assert_eq!(found.len(), 1, "{name} {with:?}: {points:#?}");
    found.first().map_or(0.0, |p| p.value)
}

fn sql(s: &str) -> Statement {
    Statement::from_string(DbBackend::Postgres, s)
}

/// The name of the database at the end of `url`.
fn database_of(url: &str) -> String {
    let path = url.rsplit('/').next().unwrap_or_default();
    path.split('?').next().unwrap_or_default().to_owned()
}

const PRIMARY: &[(&str, &str)] = &[("db.client.connection.pool.name", "primary")];

/// With two connections and eight callers each sleeping 0.2 s: while they run the exporter
/// sees both connections `used` and callers pending; afterwards the waits, the creations and
/// the hold times are there, each statement with its table, a failing one with its SQLSTATE,
/// and the distinctive value bound into a statement in no attribute at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_metrics_arrive_under_otel_names_and_move_with_load() {
    let url = fresh_pg_database().await;
    let db = service(&with_params(&url, "connection_limit=2&min_connections=0")).await;
    let otel = Otel::new();
    dbservice::otel::instrument(&Pools::new(db.clone()), &otel.meter());

    db.conn()
        .execute_unprepared("CREATE TABLE otel_items (id int PRIMARY KEY, label text NOT NULL)")
        .await
        .expect("create table");
    let load = tokio::spawn({
        let db = db.clone();
        async move {
            futures::future::join_all(
                (0..8).map(|_| db.conn().execute_raw(sql("SELECT pg_sleep(0.2)"))),
            )
            .await
        }
    });
    let count = "db.client.connection.count";
    let state = "db.client.connection.state";
    let pool = "db.client.connection.pool.name";
    // Read until both connections show as used (opening the second may take a moment on a
    // loaded machine); the load lasts 8 × 0.2 s over two connections, 0.8 s at least.
    let mut during = otel.collect().await;
    let polled = std::time::Instant::now();
    while value(&during, count, &[(pool, "primary"), (state, "used")]) < 2.0
        && polled.elapsed() < Duration::from_millis(600)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        during = otel.collect().await;
    }
    assert_eq!(
        value(&during, count, &[(pool, "primary"), (state, "used")]),
        2.0,
        "both connections in use: {during:#?}"
    );
    assert!(
        value(&during, "db.client.connection.pending_requests", PRIMARY) > 0.0,
        "callers queue for the two connections: {during:#?}"
    );
    let results = load.await.expect("load task");
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    // A bound value no attribute may carry, and a failing statement (unique violation).
    let secret = "otel-bound-value-5f3a9c";
    let insert = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO otel_items (id, label) VALUES ($1, $2)",
        [1.into(), secret.into()],
    );
    db.conn().execute_raw(insert.clone()).await.expect("insert");
    let duplicate = db
        .conn()
        .execute_raw(insert)
        .await
        .expect_err("duplicate key");
    assert_eq!(
        dbservice::classify::sqlstate(&duplicate).as_deref(),
        Some("23505")
    );
    db.conn()
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id FROM otel_items WHERE label = $1",
            [secret.into()],
        ))
        .await
        .expect("select");

    let after = otel.collect().await;
    let wait = find(&after, "db.client.connection.wait_time", PRIMARY);
    assert!(
        wait.iter().any(|p| p.value >= 8.0 && p.sum >= 0.2),
        "every checkout timed, the queued ones waiting ~0.2 s or more: {wait:#?}"
    );
    let created = find(&after, "db.client.connection.create_time", PRIMARY);
    // The first connection was opened by `connect`, before the instruments existed; the
    // second under load.
    assert!(created.iter().any(|p| p.value >= 1.0), "{created:#?}");
    let used = find(&after, "db.client.connection.use_time", PRIMARY);
    assert!(used.iter().any(|p| p.sum >= 8.0 * 0.2), "{used:#?}");
    for p in wait.iter().chain(&created).chain(&used) {
        assert_eq!(p.unit, "s", "{p:?}");
    }
    assert_eq!(value(&after, "db.client.connection.max", PRIMARY), 2.0);
    assert_eq!(value(&after, "db.client.connection.idle.min", PRIMARY), 0.0);
    assert_eq!(
        value(&after, count, &[(pool, "primary"), (state, "used")]),
        0.0,
        "all given back"
    );
    assert_eq!(
        value(&after, "db.client.connection.pending_requests", PRIMARY),
        0.0
    );
    assert_eq!(value(&after, "db.client.connection.timeouts", PRIMARY), 0.0);
    let units: BTreeMap<&str, &str> = after
        .iter()
        .map(|p| (p.name.as_str(), p.unit.as_str()))
        .collect();
    assert_eq!(units.get(count), Some(&"{connection}"));
    assert_eq!(
        units.get("db.client.connection.pending_requests"),
        Some(&"{request}")
    );
    assert_eq!(
        units.get("db.client.connection.timeouts"),
        Some(&"{timeout}")
    );

    let duration = "db.client.operation.duration";
    let database = database_of(&url);
    let inserts = find(
        &after,
        duration,
        &[
            (pool, "primary"),
            ("db.system.name", "postgresql"),
            ("db.namespace", &database),
            ("db.operation.name", "INSERT"),
            ("db.collection.name", "otel_items"),
        ],
    );
    let ok: Vec<_> = inserts
        .iter()
        .filter(|p| p.attr("error.type").is_none())
        .collect();
    let failed: Vec<_> = inserts
        .iter()
        .filter(|p| p.attr("error.type") == Some("23505"))
        .collect();
    assert_eq!(ok.len(), 1, "{inserts:#?}");
    assert_eq!(
        failed.len(),
        1,
        "the duplicate typed by its SQLSTATE: {inserts:#?}"
    );
    assert!(
        failed
            .iter()
            .all(|p| p.attr("db.response.status_code") == Some("23505"))
    );
    assert!(
        inserts
            .iter()
            .all(|p| p.attr("server.address").is_some() && p.attr("server.port").is_some()),
        "{inserts:#?}"
    );
    assert_eq!(
        find(
            &after,
            duration,
            &[
                ("db.operation.name", "SELECT"),
                ("db.collection.name", "otel_items")
            ]
        )
        .len(),
        1,
        "{after:#?}"
    );
    assert!(
        find(&after, duration, &[("db.operation.name", "SELECT")])
            .iter()
            .any(|p| p.value >= 8.0)
    );
    for p in &after {
        assert!(
            p.attributes
                .iter()
                .all(|(k, v)| !k.contains(secret) && !v.contains(secret)),
            "a bound value in an attribute: {p:?}"
        );
    }
    assert!(db.close(Duration::from_secs(5)).await);
}

/// A caller who gets no connection within `pool_timeout` is counted in
/// `db.client.connection.timeouts`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_timeout_is_counted() {
    let url = fresh_pg_database().await;
    let db = service(&with_params(&url, "connection_limit=1&pool_timeout=200ms")).await;
    let otel = Otel::new();
    dbservice::otel::instrument_service(&db, &otel.meter());
    let holder = db
        .begin(dbservice::TxOptions::default())
        .await
        .expect("the only connection");
    let refused = db.conn().execute_raw(sql("SELECT 1")).await;
    assert!(refused.is_err(), "no connection within pool_timeout");
    let points = otel.collect().await;
    assert_eq!(
        value(&points, "db.client.connection.timeouts", PRIMARY),
        1.0,
        "{points:#?}"
    );
    holder.rollback().await.expect("rollback");
    assert!(db.close(Duration::from_secs(5)).await);
}

/// A pool nobody instrumented records nothing, even beside one that is on the same meter; and
/// instrumenting a pool twice reports it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_instrumented_pools_report_and_each_once() {
    let url = fresh_pg_database().await;
    let instrumented = service(&with_params(&url, "connection_limit=2")).await;
    let other: DbService = service(&with_params(&url, "connection_limit=3")).await;
    other.set_name("other");
    let otel = Otel::new();
    let meter = otel.meter();
    dbservice::otel::instrument_service(&instrumented, &meter);
    dbservice::otel::instrument(&Pools::new(instrumented.clone()), &meter);
    for db in [&instrumented, &other] {
        for _ in 0..5 {
            db.conn()
                .execute_raw(sql("SELECT 1"))
                .await
                .expect("select");
        }
    }
    let points = otel.collect().await;
    assert!(!points.is_empty());
    assert!(
        points
            .iter()
            .all(|p| p.attr("db.client.connection.pool.name") == Some("primary")),
        "only the instrumented pool: {points:#?}"
    );
    assert_eq!(value(&points, "db.client.connection.max", PRIMARY), 2.0);
    let selects = find(
        &points,
        "db.client.operation.duration",
        &[("db.operation.name", "SELECT")],
    );
    assert_eq!(
        selects.iter().map(|p| p.value).sum::<f64>(),
        5.0,
        "each statement recorded once: {selects:#?}"
    );

    // With no instrument call at all, the meter has nothing.
    let bare = Otel::new();
    let _unused = bare.meter();
    for _ in 0..3 {
        other
            .conn()
            .execute_raw(sql("SELECT 1"))
            .await
            .expect("select");
    }
    assert!(bare.collect().await.is_empty());
    assert!(instrumented.close(Duration::from_secs(5)).await);
    assert!(other.close(Duration::from_secs(5)).await);
}
