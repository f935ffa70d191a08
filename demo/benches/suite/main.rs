//! The benchmark suite: where dbservice stands against bare SeaORM, raw sqlx and PostgreSQL's
//! own limit. Not a test: it prints figures (medians over alternating rounds, ratios paired
//! within a round) and writes a plot; it fails on nothing but a broken set-up.
//!
//! ```sh
//! scripts/bench            # installs wrk if missing, then: cargo bench --bench suite
//! cargo bench --bench suite -- --quick       # one short round, a smoke run (under a minute)
//! cargo bench --bench suite -- --full-grid   # every C x N cell of the scaling grid
//! ```
//!
//! Options: `--rounds N`, `--seconds S`, `--only pool,context,tx,http,grid,replica,batch,failover`
//! (`pool` includes `context`, the session context's rows). `BENCH_DATABASE_URL`
//! points it at an existing PostgreSQL; otherwise it starts a private cluster (the test
//! harness's). `BENCH_OUT` is where the report and the plot go (default: the workspace's `target/bench`).
//! Everything talks to 127.0.0.1 only.

mod batch;
mod context;
mod failover;
mod grid;
mod http;
mod minimal;
mod options;
mod plot;
mod pool;
mod replica;
mod report;
mod stats;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dbservice::{DbService, config::DbConfig};
use dbservice_testkit::pg_cluster;
use sea_orm::ConnectionTrait;

use grid::{Cell, scaling_grid, write_plot};
use options::Opts;
use pool::{Client, READ_VARIANTS, ROWS, Work};
use report::{Report, report};
use stats::{Sample, Series, TABLE_HEAD, paired};

/// Where the report and the plot go by default: the workspace's `target/bench` (cargo runs
/// the bench in the demo's folder).
const DEFAULT_OUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench");

/// Concurrent tasks (and wrk connections) and pool size of the main comparison.
const TASKS: usize = 64;
const POOL: u32 = 10;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve-minimal") {
        let (mode, port, url) = match &args[i + 1..] {
            [mode, port, url, ..] => (mode, port.parse().expect("port"), url),
            _ => panic!("--serve-minimal MODE PORT URL"),
        };
        if let Err(e) = minimal::serve(mode, port, url) {
            eprintln!("minimal server: {e}");
            std::process::exit(1);
        }
        return;
    }
    let opts = Opts::parse(&args);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(opts));
}

/// Path of a PostgreSQL server program (`pgbench`, `postgres`).
pub fn postgres_bin(name: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop()
}

/// Migrates the schema at `url` and loads `rows` accounts (ids 1..=rows, 1,000,000 cents each).
async fn load(url: &str, rows: i64) {
    let setup = DbService::new(DbConfig::from_url(url).expect("valid URL")).expect("service");
    setup
        .start(|db| async move { dbservice::migrate::run::<migration::Migrator>(&db).await })
        .await
        .expect("migrated");
    setup
        .conn()
        .execute_unprepared(&format!(
            "TRUNCATE transfers, accounts RESTART IDENTITY CASCADE; \
             INSERT INTO accounts (owner, balance_cents) \
             SELECT 'owner-' || g, 1000000 FROM generate_series(1, {rows}) g;"
        ))
        .await
        .expect("load the accounts");
    // VACUUM cannot run inside the implicit transaction of a multi-statement string.
    setup
        .conn()
        .execute_unprepared("VACUUM ANALYZE accounts")
        .await
        .expect("vacuum");
    setup.close(Duration::from_secs(5)).await;
}

/// The demo exporting its traces and metrics over OTLP to the in-process receiver (every
/// other setting at its default), when the suite is built with the demo's `otel` feature.
#[cfg(feature = "otel")]
fn otlp_server(
    receiver: Option<&dbservice_testkit::otlp::OtlpReceiver>,
    url: &str,
    dir: &Path,
) -> Option<http::Server> {
    let endpoint = receiver?.endpoint();
    Some(http::Server::demo(
        http::OTLP_DEMO,
        url,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
        dir,
    ))
}

/// Built without the demo's `otel` feature: no exporting server (the report says n/a).
#[cfg(not(feature = "otel"))]
fn otlp_server(_receiver: Option<&()>, _url: &str, _dir: &Path) -> Option<http::Server> {
    None
}

fn log(round: usize, s: &Series) {
    if let Some(r) = s.rounds.last() {
        eprintln!(
            "round {round}: {:<52} {:>8.0}/s  p99 {:>7.2} ms  errors {}",
            s.name, r.ops_per_sec, r.p99_ms, r.errors
        );
    }
}

async fn run(opts: Opts) {
    let mut owned: Option<Arc<pg_cluster::PgCluster>> = None;
    // Kept until the end: dropping it stops PgBouncer.
    let _bouncer;
    let url = match std::env::var("BENCH_DATABASE_URL") {
        Ok(u) if !u.is_empty() => {
            _bouncer = None;
            u
        }
        _ => {
            let cluster = Arc::new(
                tokio::task::spawn_blocking(pg_cluster::PgCluster::start)
                    .await
                    .expect("private cluster"),
            );
            owned = Some(cluster.clone());
            // PgBouncer in transaction mode in front of it, as many server connections as
            // the pool under test has (skipped, with a note, where none is installed).
            let c = cluster.clone();
            let bouncer = tokio::task::spawn_blocking(move || {
                dbservice_testkit::pgbouncer::PgBouncer::start(&c, POOL, "")
            })
            .await
            .expect("pgbouncer");
            if let Some(b) = &bouncer {
                let _ = pool::BOUNCER_URL.set(b.url("postgres"));
            }
            _bouncer = bouncer;
            cluster.url("postgres")
        }
    };
    let out_dir = PathBuf::from(std::env::var("BENCH_OUT").unwrap_or_else(|_| DEFAULT_OUT.into()));
    std::fs::create_dir_all(&out_dir).expect("output directory");
    let work_dir = tempfile::tempdir().expect("temp dir");
    load(&url, ROWS).await;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let our_default_size = (cores * 2 + 1) as u32;
    let seconds = Duration::from_secs(opts.seconds);
    eprintln!(
        "{} round(s) of {} s per variant; {TASKS} tasks over a pool of {POOL} at pool level",
        opts.rounds, opts.seconds
    );

    // Everything opens once and stays open across rounds; only the loaded one is busy.
    let mut clients = Vec::new();
    if opts.runs("pool") || opts.runs("tx") {
        for i in 0..READ_VARIANTS.len() {
            clients.push(if pool::available(i) && (i < 3 || opts.runs("pool")) {
                Some(Client::open(i, &url, POOL).await)
            } else {
                None
            });
        }
    }
    // The session context's rows: the same read without and with a context, back to back.
    let mut contexts = if opts.runs("pool") || opts.runs("context") {
        Some(context::ContextBench::open(&url, POOL).await)
    } else {
        None
    };
    let mut reads: Vec<Series> = READ_VARIANTS.iter().map(|n| Series::new(*n)).collect();
    let mut transfers: Vec<Series> = [
        "DbService db.transaction (guards on)",
        "bare SeaORM transaction, its defaults",
        "bare SeaORM transaction, configured like ours",
    ]
    .iter()
    .map(|n| Series::new(*n))
    .collect();
    let mut pgbench16 = Series::new("pgbench -M prepared, 16 clients");
    let mut pgbench64 = Series::new("pgbench -M prepared, 64 clients");
    let mut pgbench_simple = Series::new("pgbench -M simple, 16 clients, direct");
    let mut pgbench_bouncer = Series::new("pgbench -M simple, 16 clients, through PgBouncer");

    // The destination of the exporting demo's spans and metrics: answers at once, keeps nothing.
    #[cfg(feature = "otel")]
    let otlp = opts
        .runs("http")
        .then(dbservice_testkit::otlp::OtlpReceiver::start_discarding);
    #[cfg(not(feature = "otel"))]
    let otlp: Option<()> = None;
    let servers = if opts.runs("http") {
        let like_ours = format!("like-ours:{our_default_size}");
        vec![
            http::Server::demo("demo, our defaults", &url, &[], work_dir.path()),
            http::Server::demo(
                "demo, metrics and request log off",
                &url,
                &[("DBSERVICE_METRICS", "false"), ("RUST_LOG", "warn")],
                work_dir.path(),
            ),
            http::Server::minimal("minimal actix + SeaORM, its defaults", "defaults", &url),
            http::Server::minimal(
                "minimal actix + SeaORM, configured like ours",
                &like_ours,
                &url,
            ),
            // The worker layout's worth: the demo with actix's one worker per core.
            http::Server::demo(
                "demo, one HTTP worker per core (actix's default)",
                &url,
                &[("DBSERVICE_HTTP_WORKERS", &cores.to_string())],
                work_dir.path(),
            ),
        ]
        .into_iter()
        .chain(otlp_server(otlp.as_ref(), &url, work_dir.path()))
        .chain(pool::BOUNCER_URL.get().map(|b| {
            http::Server::demo(
                "demo through PgBouncer (pgbouncer=true)",
                &format!("{b}?pgbouncer=true"),
                &[("DATABASE_URL_DIRECT", url.as_str())],
                work_dir.path(),
            )
        }))
        .collect::<Vec<_>>()
    } else {
        Vec::new()
    };
    let (get_lua, post_lua) = http::write_scripts(work_dir.path());
    let mut gets: Vec<Series> = servers
        .iter()
        .map(|s| Series::new(format!("GET /api/accounts/{{id}}: {}", s.name)))
        .collect();
    // The transfers go to the demo (our defaults) and both minimal servers.
    let post_targets = [0usize, 2, 3];
    let mut posts: Vec<Series> = post_targets
        .iter()
        .filter_map(|&i| servers.get(i))
        .map(|s| Series::new(format!("POST /api/transfers: {}", s.name)))
        .collect();
    let mut ready_latencies = Vec::new();
    let mut not_ready = 0u64;

    for round in 1..=opts.rounds {
        if opts.runs("pool") {
            for (i, (client, series)) in clients.iter().zip(reads.iter_mut()).enumerate() {
                let Some(client) = client.as_ref().filter(|_| opts.runs_variant(i)) else {
                    continue;
                };
                series
                    .rounds
                    .push(pool::run(client, Work::Read, TASKS, seconds).await);
                log(round, series);
            }
        }
        if let Some(c) = contexts.as_mut() {
            c.round(round, TASKS, seconds).await;
        }
        if opts.runs("pool") || opts.runs("http") {
            let through = pool::BOUNCER_URL.get().cloned();
            let mut runs = vec![
                (16, &mut pgbench16, url.clone(), "prepared"),
                (64, &mut pgbench64, url.clone(), "prepared"),
            ];
            if let (Some(b), true) = (through, opts.runs("pool")) {
                runs.push((16, &mut pgbench_simple, url.clone(), "simple"));
                runs.push((16, &mut pgbench_bouncer, b, "simple"));
            }
            for (clients_n, series, u, mode) in runs {
                let s = opts.seconds;
                let tps =
                    tokio::task::spawn_blocking(move || pool::pgbench(&u, clients_n, s, mode))
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or(0.0);
                series.rounds.push(Sample {
                    ops_per_sec: tps,
                    ..Sample::default()
                });
                log(round, series);
            }
        }
        if opts.runs("tx") {
            for (client, series) in clients.iter().take(3).flatten().zip(transfers.iter_mut()) {
                series
                    .rounds
                    .push(pool::run(client, Work::Transfer, TASKS, seconds).await);
                log(round, series);
            }
        }
        if opts.runs("http") {
            for (i, (server, series)) in servers.iter().zip(gets.iter_mut()).enumerate() {
                let (port, script, secs) = (server.port, get_lua.clone(), opts.seconds);
                // Readiness sampled while the read load saturates the demo's pool.
                let stop = Arc::new(AtomicBool::new(false));
                let sampler = (i == 0).then(|| {
                    let stop = stop.clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(500));
                        http::sample_readiness(port, Duration::from_millis(50), &stop)
                    })
                });
                let sample = tokio::task::block_in_place(|| {
                    http::wrk(server, "/api/accounts/", &script, TASKS as u32, secs)
                });
                stop.store(true, Ordering::Relaxed);
                if let Some(Ok((lat, bad))) = sampler.map(|s| s.join()) {
                    ready_latencies.extend(lat);
                    not_ready += bad;
                }
                series.rounds.push(sample);
                log(round, series);
            }
            for (&i, series) in post_targets.iter().zip(posts.iter_mut()) {
                let sample = tokio::task::block_in_place(|| {
                    http::wrk(
                        &servers[i],
                        "/api/transfers",
                        &post_lua,
                        TASKS as u32,
                        opts.seconds,
                    )
                });
                series.rounds.push(sample);
                log(round, series);
            }
        }
    }
    let rss: Vec<(String, Option<f64>)> = servers
        .iter()
        .map(|s| (s.name.to_owned(), s.peak_rss_mib()))
        .collect();
    drop(servers);
    for c in clients.drain(..).flatten() {
        c.close().await;
    }
    let context_rows = match contexts {
        Some(c) => {
            let rows = c.series.clone();
            c.close().await;
            rows
        }
        None => Vec::new(),
    };

    let grid = if opts.runs("grid") {
        scaling_grid(&opts, &url).await
    } else {
        Vec::new()
    };

    let replica_section = if opts.runs("replica") {
        replica::section(&opts, owned.as_ref(), &url, work_dir.path(), TASKS as u32).await
    } else {
        String::new()
    };

    let batch_section = if opts.runs("batch") {
        batch::section(&opts, &url).await
    } else {
        String::new()
    };

    let failover_section = if opts.runs("failover") {
        failover::section(&opts, work_dir.path()).await
    } else {
        String::new()
    };

    let readiness = Sample::from_latencies(ready_latencies, not_ready, 1.0);
    let mut report = report(
        &opts,
        &Report {
            reads: &reads,
            contexts: &context_rows,
            transfers: &transfers,
            gets: &gets,
            posts: &posts,
            pgbench16: &pgbench16,
            pgbench64: &pgbench64,
            pgbench_simple: &pgbench_simple,
            pgbench_bouncer: &pgbench_bouncer,
            readiness: &readiness,
            rss: &rss,
            grid: &grid,
            our_default_size,
        },
    );
    report.push_str(&replica_section);
    report.push_str(&batch_section);
    report.push_str(&failover_section);
    println!("\n{report}");
    let report_path = out_dir.join("report.md");
    std::fs::write(&report_path, &report).expect("write the report");
    if !grid.is_empty() {
        let svg = out_dir.join("scaling.svg");
        match write_plot(&svg, &grid) {
            Ok(()) => eprintln!("plot: {}", svg.display()),
            Err(e) => eprintln!("plot failed: {e}"),
        }
    }
    eprintln!("report: {}", report_path.display());
}
