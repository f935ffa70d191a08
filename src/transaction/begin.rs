//! BEGIN, bounded by `max_wait`, and the PostgreSQL settings that give the server the
//! transaction's budget.

use std::panic::Location;
use std::time::{Duration, Instant};

use sea_orm::{AccessMode, DbBackend, DbErr, IsolationLevel};

use super::bump;
use super::error::TxError;
use super::handle::Transaction;
use super::options::TxOptions;
use crate::classify::{AcquireError, sqlstate};
use crate::config::SERVER_GRACE;
use crate::pool::{Op, Site, to_db_err};
use crate::service::DbService;

impl DbService {
    /// Takes a connection and begins the transaction (on PostgreSQL with its settings, see
    /// [`begin_sql`], in the same round trip) within `max_wait`. A BEGIN abandoned in flight
    /// leaves its connection marked inside a transaction, and it is closed rather than handed
    /// out again (sqlx#4393 cannot happen here). `started` is when the transaction's
    /// `timeout` began to run.
    pub(super) async fn begin_guarded(
        &self,
        opts: &TxOptions,
        started: Instant,
        site: Site,
    ) -> Result<Transaction, TxError<std::convert::Infallible>> {
        let max_wait = || {
            bump(&self.tx_counters().max_wait);
            TxError::MaxWait(opts.max_wait)
        };
        let mut conn = match self.pool().acquire(Some(opts.max_wait), site).await {
            Ok(c) => c,
            Err(AcquireError::Saturated { .. }) => {
                self.instruments()
                    .on_error(&sea_orm::DbErr::ConnectionAcquire(
                        sea_orm::error::ConnAcquireErr::Timeout,
                    ));
                return Err(max_wait());
            }
            Err(e) => {
                let e = to_db_err(e);
                self.instruments().on_error(&e);
                return Err(TxError::Database(e));
            }
        };
        let mut statements = begin_sql(self.backend_kind(), opts, started.elapsed());
        if self.config().pool().pgbouncer
            && let Some(first) = statements.first_mut()
        {
            // The session settings for this transaction (a session is not ours behind
            // PgBouncer); the transaction's own budget below overrides statement_timeout.
            *first = first.replacen(
                "BEGIN; ",
                &format!(
                    "BEGIN; {}",
                    crate::pool::session_sql::session_prefix(self.config().pool())
                ),
                1,
            );
        }
        conn.set_in_transaction(true);
        let remaining = opts.max_wait.saturating_sub(started.elapsed());
        let begun = tokio::time::timeout(remaining, async {
            for sql in &statements {
                conn.run(Op::Unprepared(sql), None).await?;
            }
            Ok::<(), DbErr>(())
        })
        .await;
        match begun {
            Ok(Ok(())) => Ok(Transaction::new(conn, started, opts.timeout, self.clone())),
            // No answer within max_wait: the connection is closed when dropped here, since it
            // may be inside a transaction.
            Err(_) => Err(max_wait()),
            Ok(Err(e)) => {
                self.instruments().on_error(&e);
                if sqlstate(&e).is_some() {
                    // The server answered; end whatever was begun so the connection stays usable.
                    let bound = self.config().pool().ping_timeout;
                    if conn
                        .run(Op::Unprepared("ROLLBACK"), Some(bound))
                        .await
                        .is_ok()
                    {
                        conn.set_in_transaction(false);
                    }
                }
                Err(TxError::Database(e))
            }
        }
    }

    /// Begins a transaction with `opts` and returns a handle: pass `&tx` to SeaORM calls and
    /// [`commit`](Transaction::commit) it. Dropping the handle rolls back (explicitly, in a
    /// spawned task). `max_wait` bounds the begin; `timeout` is enforced by the server on
    /// PostgreSQL (statements and idle time inside the transaction) and by `commit`, which
    /// rolls back and returns [`TxError::Timeout`] once it has passed. `retries` does not
    /// apply: only the closure form can re-run your code. The caller's source location is
    /// what leak detection reports if the transaction is held past
    /// `leak_detection_threshold`.
    #[track_caller]
    pub fn begin(
        &self,
        opts: TxOptions,
    ) -> impl Future<Output = Result<Transaction, TxError<std::convert::Infallible>>> + '_ {
        let site = Some(Location::caller());
        async move {
            let started = Instant::now();
            self.begin_guarded(&opts, started, site).await
        }
    }
}

/// The statements that begin a transaction, each one round trip. PostgreSQL: one
/// simple-protocol message with `BEGIN`, the isolation level and access mode (what SeaORM
/// would send as a `SET TRANSACTION` of its own), and the transaction's budget for the server
/// (see [`settings_after_begin`]). MySQL/MariaDB: the isolation level applies to the next
/// transaction only, then `START TRANSACTION`. SQLite: `BEGIN`.
fn begin_sql(backend: DbBackend, opts: &TxOptions, elapsed: Duration) -> Vec<String> {
    let isolation = opts.isolation.map(IsolationLevel::from);
    let access = opts.read_only.then_some(AccessMode::ReadOnly);
    match backend {
        DbBackend::Postgres => vec![format!(
            "BEGIN; {}",
            settings_after_begin(isolation, access, opts.timeout, elapsed)
        )],
        DbBackend::MySql => {
            let mut v = Vec::new();
            if let Some(level) = isolation {
                v.push(format!("SET TRANSACTION ISOLATION LEVEL {level}"));
            }
            v.push(match access {
                Some(mode) => format!("START TRANSACTION {mode}"),
                None => "START TRANSACTION".to_owned(),
            });
            v
        }
        _ => vec!["BEGIN".to_owned()],
    }
}

/// The PostgreSQL settings of a transaction just begun, as one simple-protocol message (one
/// round trip, several statements): the isolation level and access mode (what SeaORM would send
/// as a `SET TRANSACTION` of its own), and the transaction's remaining budget plus
/// [`SERVER_GRACE`] as `statement_timeout` and `idle_in_transaction_session_timeout`, so a stuck
/// statement or a stalled client cannot hold locks past the timeout. `SET LOCAL`: gone at
/// COMMIT/ROLLBACK, and safe behind PgBouncer in transaction mode. Only numbers and SeaORM's
/// fixed keywords are formatted in.
fn settings_after_begin(
    isolation: Option<IsolationLevel>,
    access: Option<AccessMode>,
    timeout: Duration,
    elapsed: Duration,
) -> String {
    let ms = timeout
        .saturating_sub(elapsed)
        .saturating_add(SERVER_GRACE)
        .as_millis();
    let level = isolation.map(|l| format!(" ISOLATION LEVEL {l}"));
    let mode = access.map(|m| format!(" {m}"));
    let set_transaction = match (level, mode) {
        (None, None) => String::new(),
        (l, m) => format!(
            "SET TRANSACTION{}{}; ",
            l.unwrap_or_default(),
            m.unwrap_or_default()
        ),
    };
    format!(
        "{set_transaction}SET LOCAL statement_timeout = {ms}; \
         SET LOCAL idle_in_transaction_session_timeout = {ms}"
    )
}
