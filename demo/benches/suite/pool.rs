//! Pool-level load: C tasks looping an operation for T seconds; the read and transfer
//! variants; `pgbench` as the machine's limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dbservice::Isolation;
use dbservice::{DbService, WithContext};
use dbservice_demo::entities::{accounts, transfers};
use sea_orm::sqlx::{self, postgres::PgPoolOptions};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DbErr, EntityTrait, IsolationLevel, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};

use crate::stats::Sample;

/// Rows in `accounts`; ids are 1..=ROWS.
pub const ROWS: i64 = 100_000;

/// A pool under test.
#[derive(Clone)]
pub enum Client {
    /// `DbService` with our defaults (except the pool size under test).
    Ours(DbService),
    /// `db.with_context(ctx)` on a [`Client::Ours`]: each read one simple-protocol message,
    /// `SET LOCAL app.tenant_id = '42'; SELECT ...` with the id written in as a typed literal.
    OursContext(WithContext),
    /// [`Client::Ours`] whose tasks run under a subscriber that records the library's spans
    /// (`dbservice::spans::*`): see [`spans_recorded`].
    OursTraced(DbService, tracing::Dispatch),
    /// `Database::connect(url)`.
    SeaOrmDefaults(DatabaseConnection),
    /// Bare SeaORM with our pool settings: size, no statement logging, ping on checkout only
    /// after `ping_after_idle`.
    SeaOrmLikeOurs(DatabaseConnection),
    /// `PgPoolOptions::new()`: sqlx's defaults.
    RawSqlx(sqlx::PgPool),
    /// deadpool-postgres over tokio-postgres, fast recycling, a cached prepared statement:
    /// the Rust ceiling.
    DeadpoolPostgres(deadpool_postgres::Pool),
}

/// The pool-level read variants, in the order the tables print them.
pub const READ_VARIANTS: [&str; 9] = [
    "DbService (our defaults)",
    "bare SeaORM, its defaults",
    "bare SeaORM, configured like ours",
    "raw sqlx, its defaults",
    "deadpool-postgres (tokio-postgres), the Rust ceiling",
    "DbService, max_uses=50000 and leak detection (10 s)",
    "DbService, pgbouncer=true, through PgBouncer",
    "DbService, pgbouncer=true, direct",
    "DbService, spans recorded (tracing-opentelemetry, no exporter)",
];

/// The variant whose tasks record the library's spans (not in the scaling grid).
pub const TRACED: usize = 8;

/// A subscriber that records the library's spans as an exporting service would, but exports
/// nothing: `tracing-opentelemetry` on an SDK tracer provider without an exporter (spans are
/// built, sampled and ended), the demo's exporter filter (INFO, the drivers at WARN). Applied
/// per task (`WithSubscriber`), so nothing global changes. The suite always builds with the
/// demo's `otel` feature (its self dev-dependency turns it on for tests and benches).
pub fn spans_recorded() -> tracing::Dispatch {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let filter = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("sqlx", LevelFilter::WARN)
        .with_target("sea_orm", LevelFilter::WARN);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("bench"))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_filter(filter);
    tracing::Dispatch::new(tracing_subscriber::registry().with(layer))
}

/// PgBouncer's URL, when the suite started one (variant 6 needs it).
pub static BOUNCER_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Whether variant `i` can run here.
pub fn available(i: usize) -> bool {
    i != 6 || BOUNCER_URL.get().is_some()
}

const READ_SQL: &str = "SELECT id, owner, balance_cents FROM accounts WHERE id = $1";

impl Client {
    /// Opens the variant `index` of [`READ_VARIANTS`] with a pool of `size`.
    pub async fn open(index: usize, url: &str, size: u32) -> Client {
        match index {
            0 | 5 | TRACED => {
                let extra = if index == 5 {
                    "&max_uses=50000&leak_detection_threshold=10s"
                } else {
                    ""
                };
                let db = DbService::new(
                    dbservice::config::DbConfig::from_url(&format!(
                        "{url}?connection_limit={size}{extra}"
                    ))
                    .expect("valid URL"),
                )
                .expect("service");
                db.connect().await.expect("connects");
                if index == TRACED {
                    Client::OursTraced(db, spans_recorded())
                } else {
                    Client::Ours(db)
                }
            }
            1 => {
                let mut o = ConnectOptions::new(url);
                // SeaORM's default size is sqlx's (10); set it only where the grid says so.
                o.max_connections(size);
                Client::SeaOrmDefaults(Database::connect(o).await.expect("SeaORM"))
            }
            2 => Client::SeaOrmLikeOurs(like_ours(url, size).await),
            // pgbouncer=true: every statement one simple-protocol message, values inlined;
            // through PgBouncer (6) or straight to PostgreSQL (7).
            6 | 7 => {
                let base = match (index, BOUNCER_URL.get()) {
                    (6, Some(b)) => b.as_str(),
                    _ => url,
                };
                let sep = if base.contains('?') { '&' } else { '?' };
                let db = DbService::new(
                    dbservice::config::DbConfig::from_url(&format!(
                        "{base}{sep}connection_limit={size}&pgbouncer=true"
                    ))
                    .expect("valid URL"),
                )
                .expect("service");
                db.connect().await.expect("connects");
                Client::Ours(db)
            }
            4 => {
                use deadpool_postgres::{ManagerConfig, PoolConfig, RecyclingMethod, Runtime};
                let mut cfg = deadpool_postgres::Config::new();
                cfg.url = Some(url.to_owned());
                cfg.pool = Some(PoolConfig::new(size as usize));
                cfg.manager = Some(ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                });
                Client::DeadpoolPostgres(
                    cfg.create_pool(Some(Runtime::Tokio1), tokio_postgres::NoTls)
                        .expect("deadpool-postgres"),
                )
            }
            _ => Client::RawSqlx(
                PgPoolOptions::new()
                    .max_connections(size)
                    .connect(url)
                    .await
                    .expect("raw sqlx"),
            ),
        }
    }

    pub async fn close(self) {
        match self {
            Client::Ours(db) | Client::OursTraced(db, _) => {
                let _ = db.close(Duration::from_secs(5)).await;
            }
            // Its DbService is a `Client::Ours` of its own, closed there.
            Client::OursContext(_) => {}
            Client::SeaOrmDefaults(c) | Client::SeaOrmLikeOurs(c) => {
                let _ = c.close().await;
            }
            Client::RawSqlx(p) => p.close().await,
            Client::DeadpoolPostgres(p) => p.close(),
        }
    }

    /// One single-row read by primary key; true if the row came back.
    pub async fn read(&self, id: i64) -> bool {
        match self {
            Client::Ours(db) | Client::OursTraced(db, _) => matches!(
                accounts::Entity::find_by_id(id).one(db.conn()).await,
                Ok(Some(_))
            ),
            Client::OursContext(ctx) => {
                matches!(accounts::Entity::find_by_id(id).one(ctx).await, Ok(Some(_)))
            }
            Client::SeaOrmDefaults(c) | Client::SeaOrmLikeOurs(c) => {
                matches!(accounts::Entity::find_by_id(id).one(c).await, Ok(Some(_)))
            }
            Client::RawSqlx(pool) => matches!(
                sqlx::query_as::<_, (i64, String, i64)>(READ_SQL)
                    .bind(id)
                    .fetch_optional(pool)
                    .await,
                Ok(Some(_))
            ),
            Client::DeadpoolPostgres(pool) => {
                let Ok(c) = pool.get().await else {
                    return false;
                };
                let Ok(st) = c.prepare_cached(READ_SQL).await else {
                    return false;
                };
                matches!(c.query_opt(&st, &[&id]).await, Ok(Some(_)))
            }
        }
    }

    /// One transfer of 1 cent between two accounts, READ COMMITTED, rows locked in id order:
    /// through `db.transaction` (server-side guards on) for ours, `begin_with_config` for
    /// bare SeaORM. Raw sqlx is not part of the transfer mix.
    pub async fn transfer(&self, from: i64, to: i64) -> bool {
        match self {
            Client::Ours(db) => {
                let opts = db.tx_options().isolation(Isolation::ReadCommitted);
                // `async move`: a borrowing async closure is not `Send` enough for `tokio::spawn`
                // (rustc's higher-ranked Send limitation; see CONNECTION_POOLING.md).
                db.transaction_with(opts, async move |tx| transfer_body(tx, from, to).await)
                    .await
                    .is_ok()
            }
            Client::SeaOrmDefaults(c) | Client::SeaOrmLikeOurs(c) => {
                bare_transfer(c, from, to).await.is_ok()
            }
            Client::RawSqlx(_)
            | Client::DeadpoolPostgres(_)
            | Client::OursTraced(..)
            | Client::OursContext(_) => false,
        }
    }
}

/// Bare SeaORM with our pool settings.
pub async fn like_ours(url: &str, size: u32) -> DatabaseConnection {
    let mut o = ConnectOptions::new(url);
    o.max_connections(size)
        .sqlx_logging(false)
        .test_before_acquire_if_idle_for(Duration::from_secs(10));
    Database::connect(o).await.expect("SeaORM like ours")
}

/// A transfer as a SeaORM user writes it without the service; returns the recorded transfer.
pub async fn bare_transfer(
    c: &DatabaseConnection,
    from: i64,
    to: i64,
) -> Result<transfers::Model, DbErr> {
    let txn = c
        .begin_with_config(Some(IsolationLevel::ReadCommitted), None)
        .await?;
    let created = transfer_body(&txn, from, to).await?;
    txn.commit().await?;
    Ok(created)
}

/// The demo's transfer without the idempotency key: lock both rows in id order, check the
/// balance, move the money, record the transfer.
pub async fn transfer_body(
    txn: &impl ConnectionTrait,
    from: i64,
    to: i64,
) -> Result<transfers::Model, DbErr> {
    let ids = [Ord::min(from, to), Ord::max(from, to)];
    let rows = accounts::Entity::find()
        .filter(accounts::Column::Id.is_in(ids))
        .order_by_asc(accounts::Column::Id)
        .lock_exclusive()
        .all(txn)
        .await?;
    let from_row = rows
        .iter()
        .find(|a| a.id == from)
        .ok_or_else(|| DbErr::RecordNotFound(format!("account {from}")))?;
    if from_row.balance_cents < 1 || !rows.iter().any(|a| a.id == to) {
        return Err(DbErr::Custom(
            "insufficient funds or no such account".into(),
        ));
    }
    for (id, delta) in [(from, -1i64), (to, 1)] {
        accounts::add_to_balance(txn, id, delta).await?;
    }
    transfers::ActiveModel {
        from_account_id: Set(from),
        to_account_id: Set(to),
        amount_cents: Set(1),
        idempotency_key: Set(None),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(txn)
    .await
}

/// What each task does per iteration.
#[derive(Clone, Copy)]
pub enum Work {
    Read,
    Transfer,
}

/// Runs `tasks` concurrent loops of `work` against `client` for `duration`. Every loop is
/// bounded: it stops at the deadline, and each operation is bounded by the client's own
/// timeouts (ours) or by the deadline check after it returns.
pub async fn run(client: &Client, work: Work, tasks: usize, duration: Duration) -> Sample {
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = crate::stats::cpu_micros("self");
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (client, stop) = (client.clone(), stop.clone());
            // The traced variant's tasks run under its subscriber; the others under none.
            let dispatch = match &client {
                Client::OursTraced(_, d) => d.clone(),
                _ => tracing::Dispatch::none(),
            };
            tokio::spawn(tracing::instrument::WithSubscriber::with_subscriber(
                async move {
                    let mut rng = fastrand::Rng::with_seed(t as u64 ^ 0x5eed);
                    let mut latencies = Vec::with_capacity(1 << 14);
                    let mut errors = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let op = Instant::now();
                        let ok = match work {
                            Work::Read => client.read(rng.i64(1..=ROWS)).await,
                            Work::Transfer => {
                                let from = rng.i64(1..=ROWS);
                                let to = 1 + (from + rng.i64(0..ROWS - 1)) % ROWS;
                                client.transfer(from, to).await
                            }
                        };
                        if ok {
                            latencies.push(op.elapsed().as_micros() as u32);
                        } else {
                            errors += 1;
                        }
                    }
                    (latencies, errors)
                },
                dispatch,
            ))
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for h in handles {
        if let Ok((lat, err)) = h.await {
            all.extend(lat);
            errors += err;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    Sample::from_latencies(all, errors, elapsed).with_cpu(
        cpu_before,
        crate::stats::cpu_micros("self"),
        elapsed,
    )
}

/// `pgbench -M <mode>` select-by-id with `clients` for `seconds`: transactions per second.
/// `mode` is `prepared`, or `simple` through PgBouncer's transaction mode.
pub fn pgbench(url: &str, clients: u32, seconds: u64, mode: &str) -> Option<f64> {
    let script = std::env::temp_dir().join(format!("dbservice-bench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        format!(
            "\\set id random(1, {ROWS})\nSELECT id, owner, balance_cents FROM accounts WHERE id = :id;\n"
        ),
    )
    .ok()?;
    let bin = crate::postgres_bin("pgbench")?;
    let out = std::process::Command::new(bin)
        .args(["-n", "-M", mode, "-j", "2", "-c"])
        .arg(clients.to_string())
        .arg("-T")
        .arg(seconds.to_string())
        .arg("-f")
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
