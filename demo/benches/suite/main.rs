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
//! Options: `--rounds N`, `--seconds S`, `--only pool,tx,http,grid`. `BENCH_DATABASE_URL`
//! points it at an existing PostgreSQL; otherwise it starts a private cluster (the test
//! harness's). `BENCH_OUT` is where the report and the plot go (default `target/bench`).
//! Everything talks to 127.0.0.1 only.

mod http;
mod minimal;
mod plot;
mod pool;
mod stats;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dbservice::{DbConfig, DbService};
use dbservice_testkit::pg_cluster;
use sea_orm::ConnectionTrait;

use pool::{Client, READ_VARIANTS, ROWS, Work};
use stats::{Sample, Series, TABLE_HEAD, paired};

/// Concurrent tasks (and wrk connections) and pool size of the main comparison.
const TASKS: usize = 64;
const POOL: u32 = 10;

struct Opts {
    rounds: usize,
    seconds: u64,
    grid_seconds: u64,
    quick: bool,
    full_grid: bool,
    only: Option<Vec<String>>,
}

impl Opts {
    fn parse(args: &[String]) -> Opts {
        let quick = args.iter().any(|a| a == "--quick");
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let number = |flag: &str, default: u64| {
            value(flag).map_or(default, |v| {
                v.parse().unwrap_or_else(|_| {
                    eprintln!("bench: {flag} expects a whole number, got {v:?}");
                    std::process::exit(2)
                })
            })
        };
        let (rounds, seconds) = if quick { (1, 2) } else { (3, 10) };
        Opts {
            rounds: number("--rounds", rounds) as usize,
            seconds: number("--seconds", seconds),
            grid_seconds: if quick { 1 } else { 5 },
            quick,
            full_grid: args.iter().any(|a| a == "--full-grid"),
            only: value("--only").map(|v| v.split(',').map(str::to_owned).collect()),
        }
    }

    fn runs(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|s| s == section))
    }
}

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

async fn load(url: &str) {
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
             SELECT 'owner-' || g, 1000000 FROM generate_series(1, {ROWS}) g;"
        ))
        .await
        .expect("load 100,000 accounts");
    // VACUUM cannot run inside the implicit transaction of a multi-statement string.
    setup
        .conn()
        .execute_unprepared("VACUUM ANALYZE accounts")
        .await
        .expect("vacuum");
    setup.close(Duration::from_secs(5)).await;
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
    let cluster;
    let url = match std::env::var("BENCH_DATABASE_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            cluster = tokio::task::spawn_blocking(pg_cluster::PgCluster::start)
                .await
                .expect("private cluster");
            cluster.url("postgres")
        }
    };
    let out_dir =
        PathBuf::from(std::env::var("BENCH_OUT").unwrap_or_else(|_| "target/bench".into()));
    std::fs::create_dir_all(&out_dir).expect("output directory");
    let work_dir = tempfile::tempdir().expect("temp dir");
    load(&url).await;
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
            clients.push(Client::open(i, &url, POOL).await);
        }
    }
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
            for (client, series) in clients.iter().zip(reads.iter_mut()) {
                series
                    .rounds
                    .push(pool::run(client, Work::Read, TASKS, seconds).await);
                log(round, series);
            }
        }
        if opts.runs("pool") || opts.runs("http") {
            for (clients_n, series) in [(16, &mut pgbench16), (64, &mut pgbench64)] {
                let (u, s) = (url.clone(), opts.seconds);
                let tps = tokio::task::spawn_blocking(move || pool::pgbench(&u, clients_n, s))
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
            for (client, series) in clients.iter().take(3).zip(transfers.iter_mut()) {
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
    for c in clients.drain(..) {
        c.close().await;
    }

    let grid = if opts.runs("grid") {
        scaling_grid(&opts, &url).await
    } else {
        Vec::new()
    };

    let readiness = Sample::from_latencies(ready_latencies, not_ready, 1.0);
    let report = report(
        &opts,
        &Report {
            reads: &reads,
            transfers: &transfers,
            gets: &gets,
            posts: &posts,
            pgbench16: &pgbench16,
            pgbench64: &pgbench64,
            readiness: &readiness,
            rss: &rss,
            grid: &grid,
            our_default_size,
        },
    );
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

/// One cell of the scaling grid.
struct Cell {
    variant: usize,
    tasks: usize,
    pool: u32,
    sample: Sample,
}

async fn scaling_grid(opts: &Opts, url: &str) -> Vec<Cell> {
    let all_c = [8usize, 32, 64, 256];
    let cs: &[usize] = if opts.quick { &[8, 64, 256] } else { &all_c };
    let mut plan: Vec<(usize, usize, u32)> = Vec::new();
    // Every variant across concurrency at N = 10 (the plot); ours across pool sizes too.
    for &c in cs {
        for v in 0..READ_VARIANTS.len() {
            plan.push((v, c, POOL));
        }
    }
    let ns: Vec<u32> = if opts.quick {
        vec![5, 20]
    } else {
        vec![5, 20, 50]
    };
    let variants = if opts.full_grid {
        0..READ_VARIANTS.len()
    } else {
        0..1
    };
    for &c in if opts.quick {
        &[64usize][..]
    } else {
        &all_c[..]
    } {
        for &n in &ns {
            for v in variants.clone() {
                plan.push((v, c, n));
            }
        }
    }
    let mut cells = Vec::new();
    for (variant, tasks, size) in plan {
        let client = Client::open(variant, url, size).await;
        let sample = pool::run(
            &client,
            Work::Read,
            tasks,
            Duration::from_secs(opts.grid_seconds),
        )
        .await;
        client.close().await;
        eprintln!(
            "grid: {:<36} C={tasks:<4} N={size:<3} {:>8.0} ops/s  p99 {:>7.2} ms",
            READ_VARIANTS[variant], sample.ops_per_sec, sample.p99_ms
        );
        cells.push(Cell {
            variant,
            tasks,
            pool: size,
            sample,
        });
    }
    cells
}

fn write_plot(path: &Path, grid: &[Cell]) -> Result<(), Box<dyn std::error::Error>> {
    let mut lines: Vec<plot::Line> = READ_VARIANTS
        .iter()
        .enumerate()
        .map(|(v, name)| plot::Line {
            name: format!("{name}, N={POOL}"),
            points: grid
                .iter()
                .filter(|c| c.variant == v && c.pool == POOL)
                .map(|c| (c.tasks as u32, c.sample.ops_per_sec, c.sample.p99_ms))
                .collect(),
        })
        .collect();
    let mut sizes: Vec<u32> = grid
        .iter()
        .filter(|c| c.variant == 0)
        .map(|c| c.pool)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    for n in sizes.into_iter().filter(|n| *n != POOL) {
        let points: Vec<_> = grid
            .iter()
            .filter(|c| c.variant == 0 && c.pool == n)
            .map(|c| (c.tasks as u32, c.sample.ops_per_sec, c.sample.p99_ms))
            .collect();
        if points.len() > 1 {
            lines.push(plot::Line {
                name: format!("{}, N={n}", READ_VARIANTS[0]),
                points,
            });
        }
    }
    lines.retain(|l| !l.points.is_empty());
    plot::write(
        path,
        "Single-row reads by primary key: throughput and p99 against concurrency",
        &lines,
    )
}

struct Report<'a> {
    reads: &'a [Series],
    transfers: &'a [Series],
    gets: &'a [Series],
    posts: &'a [Series],
    pgbench16: &'a Series,
    pgbench64: &'a Series,
    readiness: &'a Sample,
    rss: &'a [(String, Option<f64>)],
    grid: &'a [Cell],
    our_default_size: u32,
}

fn report(opts: &Opts, r: &Report) -> String {
    let limit = r.pgbench16.ops();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} round(s) of {} s per variant, alternating; medians over rounds (max: the worst \
         round); × pgbench 16 = throughput over pgbench's 16-client median. Our default pool \
         size here: {} (cores × 2 + 1).\n",
        opts.rounds, opts.seconds, r.our_default_size
    );
    let table = |s: &mut String, title: &str, rows: &[&Series]| {
        if rows.iter().all(|x| x.rounds.is_empty()) {
            return;
        }
        let _ = writeln!(s, "### {title}\n\n{TABLE_HEAD}");
        for row in rows {
            if !row.rounds.is_empty() {
                let _ = writeln!(s, "{}", row.row(limit));
            }
        }
        let _ = writeln!(s);
    };
    let mut pool_rows: Vec<&Series> = r.reads.iter().collect();
    pool_rows.extend([r.pgbench16, r.pgbench64]);
    table(
        &mut s,
        &format!("Pool level: single-row read by id, {TASKS} tasks, pool of {POOL}"),
        &pool_rows,
    );
    table(
        &mut s,
        &format!(
            "Pool level: transfers (read-modify-write transaction), {TASKS} tasks, pool of {POOL}"
        ),
        &r.transfers.iter().collect::<Vec<_>>(),
    );
    table(
        &mut s,
        &format!("HTTP level: wrk, {TASKS} connections, 2 threads"),
        &r.gets.iter().chain(r.posts).collect::<Vec<_>>(),
    );
    if !r.gets.is_empty() {
        let _ = writeln!(
            s,
            "`/health/ready` during the demo's read load (every 50 ms, new connection each): \
             p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} samples; {} answers other than 200.\n",
            r.readiness.p50_ms,
            r.readiness.p99_ms,
            r.readiness.max_ms,
            r.readiness.ops_per_sec as u64,
            r.readiness.errors
        );
        let _ = writeln!(s, "Peak RSS (VmHWM) after all HTTP rounds:\n");
        for (name, mib) in r.rss {
            let _ = writeln!(
                s,
                "- {name}: {}",
                mib.map_or("n/a".into(), |m| format!("{m:.1} MiB"))
            );
        }
        let _ = writeln!(s);
    }

    // (name, numerator, denominator, target): each pair measured in the same rounds.
    let pairs: [(&str, Option<&Series>, Option<&Series>, &str); 13] = [
        (
            "pool: ours / bare SeaORM configured like ours",
            r.reads.first(),
            r.reads.get(2),
            "≥ 0.97",
        ),
        (
            "pool: ours / bare SeaORM, its defaults",
            r.reads.first(),
            r.reads.get(1),
            "",
        ),
        ("pool: ours / raw sqlx", r.reads.first(), r.reads.get(3), ""),
        (
            "pool: ours / pgbench 16",
            r.reads.first(),
            Some(r.pgbench16),
            "",
        ),
        (
            "transfers: db.transaction / bare SeaORM like ours",
            r.transfers.first(),
            r.transfers.get(2),
            "≥ 0.95",
        ),
        (
            "transfers: db.transaction / bare SeaORM defaults",
            r.transfers.first(),
            r.transfers.get(1),
            "",
        ),
        (
            "HTTP GET: demo / minimal configured like ours",
            r.gets.first(),
            r.gets.get(3),
            "≥ 0.95",
        ),
        (
            "HTTP GET: demo (our defaults) / minimal (SeaORM defaults)",
            r.gets.first(),
            r.gets.get(2),
            "≥ 1.3",
        ),
        (
            "HTTP GET: demo / pgbench 16",
            r.gets.first(),
            Some(r.pgbench16),
            "≥ 0.30",
        ),
        (
            "HTTP GET: metrics and request log on / off",
            r.gets.first(),
            r.gets.get(1),
            "≥ 0.95",
        ),
        (
            "HTTP GET: demo, half the cores as workers / one per core",
            r.gets.first(),
            r.gets.get(4),
            "",
        ),
        (
            "HTTP POST: demo / minimal configured like ours",
            r.posts.first(),
            r.posts.get(2),
            "≥ 0.95",
        ),
        (
            "HTTP POST: demo / minimal, SeaORM defaults",
            r.posts.first(),
            r.posts.get(1),
            "",
        ),
    ];
    let ratios: Vec<(&str, f64, &str)> = pairs
        .into_iter()
        .filter_map(|(name, a, b, target)| match (a, b) {
            (Some(a), Some(b)) if !a.rounds.is_empty() && !b.rounds.is_empty() => {
                Some((name, paired(a, b), target))
            }
            _ => None,
        })
        .collect();
    if !ratios.is_empty() {
        let _ = writeln!(
            s,
            "### Ratios (paired within each round, median over rounds)\n"
        );
        let _ = writeln!(s, "| ratio | value | target |\n|---|---:|---|");
        for (name, v, target) in &ratios {
            let _ = writeln!(s, "| {name} | {v:.2} | {target} |");
        }
        let _ = writeln!(s);
    }

    if !r.grid.is_empty() {
        let secs = opts.grid_seconds;
        let _ = writeln!(
            s,
            "### Scaling: ops/s and p99 (ms) by concurrent tasks C and pool size N ({secs} s per cell)\n"
        );
        let _ = writeln!(
            s,
            "| variant | N | C | ops/s | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        let mut cells: Vec<&Cell> = r.grid.iter().collect();
        cells.sort_by_key(|c| (c.variant, c.pool, c.tasks));
        for c in cells {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} |",
                READ_VARIANTS[c.variant],
                c.pool,
                c.tasks,
                c.sample.ops_per_sec,
                c.sample.p50_ms,
                c.sample.p99_ms,
                c.sample.max_ms
            );
        }
    }
    s
}
