//! Pool-level benchmark: single-row reads by primary key with random ids, C tasks over a pool
//! of N, in alternating rounds (A B C D A B C D ...) so machine noise hits every variant alike,
//! plus `pgbench -M prepared` on the same table as the machine's limit. Prints a Markdown
//! table of medians and ratios. Not a test: run it with
//!
//! ```sh
//! cargo bench --bench pool            # 3 rounds of 10 s per variant
//! cargo bench --bench pool -- --quick # 1 round of 3 s, a smoke run
//! ```
//!
//! `BENCH_DATABASE_URL` points it at an existing PostgreSQL; otherwise it starts a private
//! cluster (the test harness's). Everything talks to 127.0.0.1 only.

// The test harness's private cluster, reused as is; the bench needs only part of it.
#[allow(dead_code)]
#[path = "../tests/api/support/pg_cluster.rs"]
mod pg_cluster;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dbservice::demo::entities::accounts;
use dbservice::{DbConfig, DbService};
use sea_orm::sqlx::{self, postgres::PgPoolOptions};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, EntityTrait};

/// `pg_cluster` builds URLs with this password (trust auth ignores it).
const PASSWORD: &str = "bench";
const ROWS: i64 = 100_000;
const TASKS: usize = 64;
const POOL: u32 = 10;

#[derive(Clone)]
enum Variant {
    Ours(DbService),
    SeaOrmDefaults(DatabaseConnection),
    SeaOrmLikeOurs(DatabaseConnection),
    RawSqlx(sqlx::PgPool),
}

impl Variant {
    fn name(&self) -> &'static str {
        match self {
            Variant::Ours(_) => "DbService (our defaults)",
            Variant::SeaOrmDefaults(_) => "bare SeaORM, its defaults",
            Variant::SeaOrmLikeOurs(_) => "bare SeaORM, configured like ours",
            Variant::RawSqlx(_) => "raw sqlx, its defaults",
        }
    }

    async fn read(&self, id: i64) -> Result<bool, String> {
        let found = match self {
            Variant::Ours(db) => accounts::Entity::find_by_id(id)
                .one(db.conn())
                .await
                .map(|a| a.is_some()),
            Variant::SeaOrmDefaults(c) | Variant::SeaOrmLikeOurs(c) => {
                accounts::Entity::find_by_id(id)
                    .one(c)
                    .await
                    .map(|a| a.is_some())
            }
            Variant::RawSqlx(pool) => {
                return sqlx::query_as::<_, (i64, String, i64)>(
                    "SELECT id, owner, balance_cents FROM accounts WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(pool)
                .await
                .map(|r| r.is_some())
                .map_err(|e| e.to_string());
            }
        };
        found.map_err(|e| e.to_string())
    }
}

struct RoundResult {
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: u64,
}

async fn run_round(variant: &Variant, duration: Duration) -> RoundResult {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (variant, stop) = (variant.clone(), stop.clone());
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(t as u64);
                let mut latencies = Vec::with_capacity(1 << 14);
                let mut errors = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let op = Instant::now();
                    match variant.read(rng.i64(1..=ROWS)).await {
                        Ok(true) => latencies.push(op.elapsed().as_micros() as u32),
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((lat, err)) = t.await {
            all.extend(lat);
            errors += err;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let at = |q: f64| {
        all.get(((all.len().saturating_sub(1)) as f64 * q) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    RoundResult {
        ops_per_sec: all.len() as f64 / elapsed,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: all.last().copied().unwrap_or(0) as f64 / 1000.0,
        errors,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `pgbench -M prepared` select-by-id at `clients`; returns transactions per second.
fn pgbench(url: &str, clients: u32, seconds: u64) -> Option<f64> {
    let script = std::env::temp_dir().join(format!("dbservice-bench-{}.sql", std::process::id()));
    std::fs::write(&script, format!("\\set id random(1, {ROWS})\nSELECT id, owner, balance_cents FROM accounts WHERE id = :id;\n")).ok()?;
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin/pgbench"))
        .find(|p| p.exists())?;
    let out = std::process::Command::new(bin)
        .args([
            "-n",
            "-M",
            "prepared",
            "-j",
            "2",
            "-c",
            &clients.to_string(),
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| {
            l.trim_start_matches("tps = ")
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, seconds) = if quick { (1, 3) } else { (3, 10) };
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

    // Schema and data, through the service itself.
    let setup = DbService::new(DbConfig::from_url(&url).expect("valid URL")).expect("service");
    setup
        .start(|db| async move { dbservice::migrate::run::<migration::Migrator>(&db).await })
        .await
        .expect("migrated");
    setup
        .conn()
        .execute_unprepared(&format!(
            "TRUNCATE transfers, accounts RESTART IDENTITY CASCADE; \
             INSERT INTO accounts (owner, balance_cents) SELECT 'owner-' || g, 1000 FROM generate_series(1, {ROWS}) g;"
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

    let ours = DbService::new(
        DbConfig::from_url(&format!("{url}?connection_limit={POOL}")).expect("valid"),
    )
    .expect("service");
    ours.connect().await.expect("connects");
    let defaults = Database::connect(url.as_str())
        .await
        .expect("SeaORM defaults");
    let mut like_ours = ConnectOptions::new(url.as_str());
    like_ours
        .max_connections(POOL)
        .sqlx_logging(false)
        .test_before_acquire_if_idle_for(Duration::from_secs(10));
    let like_ours = Database::connect(like_ours)
        .await
        .expect("SeaORM like ours");
    let raw = PgPoolOptions::new()
        .max_connections(POOL)
        .connect(&url)
        .await
        .expect("raw sqlx");
    let variants = [
        Variant::Ours(ours),
        Variant::SeaOrmDefaults(defaults),
        Variant::SeaOrmLikeOurs(like_ours),
        Variant::RawSqlx(raw),
    ];

    eprintln!("{rounds} round(s) of {seconds} s per variant, {TASKS} tasks over a pool of {POOL}");
    let mut results: Vec<Vec<RoundResult>> = variants.iter().map(|_| Vec::new()).collect();
    let mut limits = Vec::new();
    for round in 0..rounds {
        for (i, v) in variants.iter().enumerate() {
            let r = run_round(v, Duration::from_secs(seconds)).await;
            eprintln!(
                "round {}: {:<36} {:>9.0} ops/s  p99 {:>6.2} ms  errors {}",
                round + 1,
                v.name(),
                r.ops_per_sec,
                r.p99_ms,
                r.errors
            );
            results[i].push(r);
        }
        let (u, s) = (url.clone(), seconds);
        if let Ok(Some(tps)) = tokio::task::spawn_blocking(move || pgbench(&u, 16, s)).await {
            eprintln!(
                "round {}: pgbench -M prepared, 16 clients          {tps:>9.0} tps",
                round + 1
            );
            limits.push(tps);
        }
    }

    let limit = median(limits);
    let ops: Vec<f64> = results
        .iter()
        .map(|r| median(r.iter().map(|x| x.ops_per_sec).collect()))
        .collect();
    // Ratios paired within each round, then the median over rounds.
    let paired = |a: usize, b: usize| {
        median(
            results[a]
                .iter()
                .zip(&results[b])
                .map(|(x, y)| x.ops_per_sec / y.ops_per_sec)
                .collect(),
        )
    };
    println!("\n| variant | ops/s | p50 ms | p99 ms | max ms | errors | × pgbench (16 clients) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (i, v) in variants.iter().enumerate() {
        let r = &results[i];
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.2} |",
            v.name(),
            ops[i],
            median(r.iter().map(|x| x.p50_ms).collect()),
            median(r.iter().map(|x| x.p99_ms).collect()),
            r.iter().map(|x| x.max_ms).fold(0.0, f64::max),
            r.iter().map(|x| x.errors).sum::<u64>(),
            if limit > 0.0 {
                ops[i] / limit
            } else {
                f64::NAN
            },
        );
    }
    println!("| pgbench -M prepared, 16 clients | {limit:.0} | | | | | 1.00 |");
    println!("\n| ratio (paired within rounds, median) | value |\n|---|---:|");
    println!(
        "| ours / bare SeaORM configured like ours | {:.2} |",
        paired(0, 2)
    );
    println!(
        "| ours (defaults) / bare SeaORM (defaults) | {:.2} |",
        paired(0, 1)
    );
    println!("| ours / raw sqlx | {:.2} |", paired(0, 3));
}
