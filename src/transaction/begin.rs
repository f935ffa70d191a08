//! BEGIN in a task its caller cannot cancel, bounded by `max_wait`, and the PostgreSQL
//! settings that give the server the transaction's budget.

use std::time::{Duration, Instant};

use sea_orm::{AccessMode, ConnectionTrait, DbBackend, DbErr, IsolationLevel, TransactionTrait};

use super::bump;
use super::error::TxError;
use super::handle::{Open, Transaction};
use super::options::TxOptions;
use crate::config::SERVER_GRACE;
use crate::service::DbService;
use crate::stats::TxCounters;

impl DbService {
    /// Acquires a connection and runs `BEGIN` (and on PostgreSQL the transaction's settings,
    /// see [`settings_after_begin`]) within `max_wait`, in a task the caller cannot cancel (a
    /// cancelled BEGIN would poison the connection: sqlx#4393). If nobody takes the
    /// transaction (max_wait passed, or the caller was dropped), that task rolls it back.
    /// `started` is when the transaction's `timeout` began to run.
    pub(super) async fn begin_guarded(
        &self,
        opts: &TxOptions,
        started: Instant,
    ) -> Result<Open, TxError<std::convert::Infallible>> {
        let max_wait = |counters: &TxCounters| {
            bump(&counters.max_wait);
            TxError::MaxWait(opts.max_wait)
        };
        // The measured wait for a connection (see `gate`), bounded by max_wait.
        let permit = match self.gate().enter(Some(opts.max_wait)).await {
            Ok(p) => p,
            Err(DbErr::ConnectionAcquire(_)) => return Err(max_wait(self.tx_counters())),
            Err(e) => return Err(TxError::Database(e)),
        };
        let conn = self.conn().raw().clone();
        let isolation = opts.isolation.map(IsolationLevel::from);
        let access = opts.read_only.then_some(AccessMode::ReadOnly);
        let (begin_isolation, begin_access, settings) = match self.backend_kind() {
            DbBackend::Sqlite => (None, None, None),
            // SeaORM would send `SET TRANSACTION` as a round trip of its own; it goes into
            // the one settings message instead.
            DbBackend::Postgres => (None, None, Some((isolation, access, opts.timeout))),
            _ => (isolation, access, None),
        };
        let (deliver, receive) = tokio::sync::oneshot::channel();
        let bound = self.config().pool().ping_timeout;
        let give_up = opts.max_wait.saturating_add(bound);
        self.tasks().spawn(async move {
            // Bounded: a BEGIN the server never answers is abandoned; the release check then
            // closes the connection (it is inside a transaction or does not answer).
            let work = async {
                let txn = conn
                    .begin_with_config(begin_isolation, begin_access)
                    .await?;
                if let Some((isolation, access, timeout)) = settings {
                    let sql = settings_after_begin(isolation, access, timeout, started.elapsed());
                    if let Err(e) = txn.execute_unprepared(&sql).await {
                        let _ = txn.rollback().await;
                        return Err(e);
                    }
                }
                Ok(txn)
            };
            let begun = tokio::time::timeout(give_up, work)
                .await
                .unwrap_or_else(|_| {
                    Err(DbErr::ConnectionAcquire(
                        sea_orm::error::ConnAcquireErr::Timeout,
                    ))
                });
            if let Err(Ok(txn)) = deliver.send(begun) {
                let _ = tokio::time::timeout(bound, txn.rollback()).await;
            }
        });
        let remaining = opts.max_wait.saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, receive).await {
            Ok(Ok(Ok(txn))) => Ok(Open {
                txn: Some(txn),
                permit: Some(permit),
                bound,
                instruments: self.instruments_arc(),
                tasks: self.tasks().clone(),
            }),
            Ok(Ok(Err(DbErr::ConnectionAcquire(_)))) | Err(_) => {
                // A BEGIN may still be in flight on a connection we no longer wait for.
                self.instruments().note_trouble();
                Err(max_wait(self.tx_counters()))
            }
            Ok(Ok(Err(e))) => {
                self.instruments().on_error(&e);
                Err(TxError::Database(e))
            }
            Ok(Err(_)) => Err(TxError::Database(DbErr::Custom(
                "the BEGIN task died".into(),
            ))),
        }
    }

    /// Begins a transaction with `opts` and returns a handle: use it (it derefs to SeaORM's
    /// `DatabaseTransaction`) and [`commit`](Transaction::commit) it. Dropping the handle rolls
    /// back (explicitly, in a spawned task). `max_wait` bounds the begin; `timeout` is enforced
    /// by the server on PostgreSQL (statements and idle time inside the transaction) and by
    /// `commit`, which rolls back and returns [`TxError::Timeout`] once it has passed.
    /// `retries` does not apply: only the closure form can re-run your code.
    pub async fn begin(
        &self,
        opts: TxOptions,
    ) -> Result<Transaction, TxError<std::convert::Infallible>> {
        let started = Instant::now();
        let open = self.begin_guarded(&opts, started).await?;
        Ok(Transaction {
            open,
            started,
            timeout: opts.timeout,
            db: self.clone(),
        })
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
