//! Building the sqlx pool ourselves, one function per backend.
//!
//! We build sqlx's pool directly and hand it to SeaORM (`from_sqlx_*_pool`) rather than going
//! through SeaORM's `ConnectOptions`, because several of its knobs do not mean what their names
//! say (its `connect_timeout` becomes sqlx's acquire timeout; its URL ends up in error text).
//! Owning the pool also gives the service a typed handle for statistics and closing without
//! SeaORM's accessors that panic on the "wrong" backend.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sea_orm::sqlx::{
    self, Connection, Database,
    mysql::{MySqlConnectOptions, MySqlPool},
    pool::PoolOptions as SqlxPoolOptions,
    postgres::{PgConnectOptions, PgPool},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool},
};
use sea_orm::{DatabaseConnection, SqlxMySqlConnector, SqlxPostgresConnector, SqlxSqliteConnector};

use crate::config::ConfigError;
use crate::config::{Backend, DbConfig, PoolOptions};
use crate::observe::Instruments;

/// sqlx needs a finite acquire timeout; "no limit" (`pool_timeout=0`) becomes a year.
const NO_LIMIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The sqlx pool behind the service's `DatabaseConnection`, typed by backend.
#[derive(Clone, Debug)]
pub(crate) enum PoolHandle {
    Postgres(PgPool),
    MySql(MySqlPool),
    Sqlite(SqlitePool),
}

macro_rules! each_pool {
    ($handle:expr, $pool:ident => $body:expr) => {
        match $handle {
            PoolHandle::Postgres($pool) => $body,
            PoolHandle::MySql($pool) => $body,
            PoolHandle::Sqlite($pool) => $body,
        }
    };
}

impl PoolHandle {
    /// Connections currently open (idle and in use).
    pub fn size(&self) -> u32 {
        each_pool!(self, p => p.size())
    }

    /// Connections open and idle.
    pub fn num_idle(&self) -> u32 {
        each_pool!(self, p => u32::try_from(p.num_idle()).unwrap_or(u32::MAX))
    }

    /// Takes a connection from the pool (opening one if needed) and pings it.
    pub async fn probe(&self) -> Result<(), sqlx::Error> {
        each_pool!(self, p => {
            let mut conn = p.acquire().await?;
            conn.ping().await
        })
    }

    /// Opens one connection outside the pool and closes it again. Unlike a pool checkout,
    /// which silently retries refused connections until its deadline and then reports only
    /// "timed out", this returns the real cause (refused, bad password, unknown database) at
    /// once: what the startup loop needs to decide whether to retry and to say why.
    pub async fn connect_direct(&self) -> Result<(), sqlx::Error> {
        use sqlx::ConnectOptions;
        each_pool!(self, p => {
            let conn = p.connect_options().connect().await?;
            conn.close().await
        })
    }

    /// Closes the pool: no new checkouts; waits until every connection is returned and closed.
    pub async fn close(&self) {
        each_pool!(self, p => p.close().await)
    }
}

/// Builds a lazy pool for `config`: no connection is opened until first use.
///
/// Must be called inside a tokio runtime (sqlx spawns its maintenance task here).
pub(crate) fn build(
    config: &DbConfig,
    instruments: &Arc<Instruments>,
) -> Result<(DatabaseConnection, PoolHandle), ConfigError> {
    let url = config.driver_url();
    let p = config.pool();
    let driver_err = |e: sqlx::Error| ConfigError::Driver {
        url: config.redacted_url(),
        message: config.scrub(&e.to_string()),
    };
    let mut built = match config.backend() {
        Backend::Postgres => {
            let opts = postgres_options(PgConnectOptions::from_str(url).map_err(driver_err)?, p);
            let bound = p.ping_timeout;
            let pool = pool_options(p, instruments)
                .after_release({
                    let ins = instruments.clone();
                    move |conn, _meta| Box::pin(release_check_postgres(conn, bound, ins.clone()))
                })
                .connect_lazy_with(opts);
            (
                SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone()),
                PoolHandle::Postgres(pool),
            )
        }
        Backend::MySql => {
            use sqlx::ConnectOptions;
            let mut opts = MySqlConnectOptions::from_str(url)
                .map_err(driver_err)?
                .disable_statement_logging();
            if let Some(n) = p.statement_cache_size {
                opts = opts.statement_cache_capacity(n);
            }
            let bound = p.ping_timeout;
            let session = mysql_session(p);
            let opened = instruments.clone();
            let pool = pool_options(p, instruments)
                .after_connect(move |conn, _meta| {
                    opened.opened.fetch_add(1, Ordering::Relaxed);
                    let session = session.clone();
                    Box::pin(async move {
                        sqlx::raw_sql(sqlx::AssertSqlSafe(session))
                            .execute(&mut *conn)
                            .await
                            .map(|_| ())
                    })
                })
                .after_release({
                    let ins = instruments.clone();
                    move |conn, _meta| Box::pin(release_check_mysql(conn, bound, ins.clone()))
                })
                .connect_lazy_with(opts);
            (
                SqlxMySqlConnector::from_sqlx_mysql_pool(pool.clone()),
                PoolHandle::MySql(pool),
            )
        }
        Backend::Sqlite => {
            use sqlx::ConnectOptions;
            let mut opts = SqliteConnectOptions::from_str(url)
                .map_err(driver_err)?
                .disable_statement_logging();
            let in_memory = opts.get_filename().to_string_lossy().contains("memory");
            if !in_memory {
                // Readers and one writer at a time without blocking each other: what a pool of
                // several connections to one file needs.
                opts = opts.journal_mode(SqliteJournalMode::Wal);
            }
            let bound = p.ping_timeout;
            let pool = pool_options(p, instruments)
                .after_release({
                    let ins = instruments.clone();
                    move |conn, _meta| Box::pin(release_check_ping(conn, bound, ins.clone()))
                })
                .connect_lazy_with(opts);
            (
                SqlxSqliteConnector::from_sqlx_sqlite_pool(pool.clone()),
                PoolHandle::Sqlite(pool),
            )
        }
    };
    let sink = instruments.clone();
    built
        .0
        .set_metric_callback(move |info| sink.on_statement(info));
    Ok(built)
}

fn postgres_options(mut opts: PgConnectOptions, p: &PoolOptions) -> PgConnectOptions {
    use sqlx::ConnectOptions;
    opts = opts
        .application_name(&p.application_name)
        .disable_statement_logging();
    if let Some(n) = p.statement_cache_size {
        opts = opts.statement_cache_capacity(n);
    }
    if p.pgbouncer {
        // PgBouncer (transaction mode) hands each transaction to any server connection, so a
        // cached prepared statement may not exist there; and it rejects unknown startup
        // parameters such as sqlx's `extra_float_digits`.
        opts = opts.statement_cache_capacity(0).extra_float_digits(None);
    }
    // Session settings travel in the startup packet: no extra round trip per connection.
    let mut session: Vec<(&str, String)> = Vec::new();
    if let Some(t) = p.statement_timeout {
        session.push(("statement_timeout", t.as_millis().to_string()));
    }
    if let Some(t) = p.idle_in_transaction_session_timeout {
        session.push((
            "idle_in_transaction_session_timeout",
            t.as_millis().to_string(),
        ));
    }
    if let Some(schema) = &p.schema {
        session.push(("search_path", schema.clone()));
    }
    if !session.is_empty() {
        opts = opts.options(session);
    }
    opts
}

/// The release check, run on connections coming back to the pool before sqlx's own
/// (unbounded) ping, while there are signs of trouble (`Instruments::note_trouble`: a
/// cancelled or timed-out statement or transaction, a failed connection, a probe without an
/// answer; in calm times it is skipped, saving a round trip per query). Bounded by
/// `ping_timeout`: a connection whose server froze or vanished without a FIN would otherwise
/// hold its pool slot forever (sqlx#4349); no answer in time, and it is closed without further
/// I/O. It also flushes what a cancelled statement left behind.
async fn release_check_ping<C: Connection>(
    conn: &mut C,
    bound: Duration,
    instruments: Arc<Instruments>,
) -> Result<bool, sqlx::Error> {
    if !instruments.in_trouble() {
        return Ok(true);
    }
    within(bound, "the release ping", conn.ping())
        .await
        .map(|()| true)
}

/// MySQL/MariaDB session settings, sent once per connection: row-lock waits (the one wait a
/// transaction cannot bound from the client, since sqlx cannot cancel a statement) end on the
/// server once the transaction's budget (`transaction_timeout` + the server's grace, whole
/// seconds, as `innodb_lock_wait_timeout` counts them) is spent, so a timed-out transaction does
/// not leave a statement holding its connection behind. Only numbers are formatted in.
fn mysql_session(p: &PoolOptions) -> String {
    let budget = p
        .transaction_timeout
        .saturating_add(crate::config::SERVER_GRACE);
    let secs = budget.as_secs() + u64::from(budget.subsec_nanos() > 0);
    format!("SET SESSION innodb_lock_wait_timeout = {}", secs.max(1))
}

/// The MySQL/MariaDB release check, while in trouble: like PostgreSQL's, one bounded round trip
/// that proves the connection is outside a transaction (MariaDB's `@@in_transaction`); a
/// connection still inside one (a BEGIN abandoned in flight) is closed. A server that does not
/// know the variable gets a `ROLLBACK` instead, which ends whatever was left open.
async fn release_check_mysql(
    conn: &mut sqlx::MySqlConnection,
    bound: Duration,
    instruments: Arc<Instruments>,
) -> Result<bool, sqlx::Error> {
    if !instruments.in_trouble() {
        return Ok(true);
    }
    use sqlx::Row;
    let check = sqlx::raw_sql("SELECT CAST(@@in_transaction AS SIGNED)").fetch_one(&mut *conn);
    match within(bound, "the release check", check).await {
        Ok(row) => Ok(outside_transaction(row.try_get::<i64, _>(0)? == 0)),
        Err(sqlx::Error::Database(_)) => {
            let rollback = sqlx::raw_sql("ROLLBACK").execute(&mut *conn);
            within(bound, "the release check", rollback)
                .await
                .map(|_| true)
        }
        Err(e) => Err(e),
    }
}

/// The PostgreSQL release check: the same bound, and one round trip that also proves the
/// connection is not inside a transaction. `now()` is the transaction's start and
/// `statement_timestamp()` this statement's; they differ only inside a transaction someone
/// left open (a BEGIN cancelled in flight, sqlx#4393), and such a connection is closed rather
/// than handed to the next caller. Sent with the simple protocol, so both are stamped by the
/// same message.
async fn release_check_postgres(
    conn: &mut sqlx::PgConnection,
    bound: Duration,
    instruments: Arc<Instruments>,
) -> Result<bool, sqlx::Error> {
    if !instruments.in_trouble() {
        return Ok(true);
    }
    use sqlx::Row;
    let check = sqlx::raw_sql("SELECT now() = statement_timestamp()").fetch_one(&mut *conn);
    let row = within(bound, "the release check", check).await?;
    Ok(outside_transaction(row.try_get(0)?))
}

/// Whether a returned connection may go back to the pool, given whether it is outside a
/// transaction; one left inside (a BEGIN cancelled in flight) is closed instead.
fn outside_transaction(clean: bool) -> bool {
    if !clean {
        tracing::warn!("a connection came back inside a transaction; closing it");
    }
    clean
}

/// `work` within `bound`; no answer in time is an I/O error naming `what`, and the caller
/// (sqlx's release path) closes the connection without further I/O.
async fn within<T>(
    bound: Duration,
    what: &str,
    work: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    tokio::time::timeout(bound, work)
        .await
        .unwrap_or_else(|_| Err(unanswered(what)))
}

fn unanswered(what: &str) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer to {what} within ping_timeout"),
    ))
}

fn pool_options<DB: Database>(
    p: &PoolOptions,
    instruments: &Arc<Instruments>,
) -> SqlxPoolOptions<DB> {
    let opened = instruments.clone();
    let opts = SqlxPoolOptions::<DB>::new()
        .after_connect(move |_conn, _meta| {
            opened.opened.fetch_add(1, Ordering::Relaxed);
            Box::pin(async { Ok(()) })
        })
        .max_connections(p.connection_limit)
        .min_connections(p.min_connections)
        .acquire_timeout(p.pool_timeout.unwrap_or(NO_LIMIT))
        .idle_timeout(p.idle_timeout)
        .max_lifetime(p.max_lifetime);
    let threshold = p.ping_after_idle;
    let bound = p.ping_timeout;
    // A ping per checkout is an extra round trip per query (20-25 % of single-row read
    // throughput here); a connection used moments ago is almost certainly alive. Two kinds
    // are pinged: connections idle for `ping_after_idle` (0: all), and connections opened
    // before the last connection failure (after a restart or a network break, every connection
    // of that age is suspect: one failed request evicts the rest before they are handed out).
    let suspects = instruments.clone();
    let max_lifetime = p.max_lifetime;
    opts.test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            let retire = max_lifetime.is_some_and(|l| suspects.past_jittered_lifetime(meta.age, l));
            let suspect = meta.idle_for >= threshold || suspects.predates_last_failure(meta.age);
            Box::pin(async move {
                if retire {
                    // Closed here, before anyone uses it; sqlx hands out or opens another.
                    return Ok(false);
                }
                if suspect {
                    match tokio::time::timeout(bound, conn.ping()).await {
                        Ok(result) => result?,
                        Err(_) => return Ok(false),
                    }
                }
                Ok(true)
            })
        })
}
