//! BEGIN, bounded by `max_wait`, and the PostgreSQL settings that give the server the
//! transaction's budget.

use std::panic::Location;
use std::time::{Duration, Instant};

use sea_orm::{AccessMode, DbErr, IsolationLevel};
use tracing::Instrument;

use super::bump;
use super::error::TxError;
use super::handle::Transaction;
use super::options::TxOptions;
use crate::classify::{AcquireError, sqlstate};
use crate::pool::{Op, Site, session_sql, to_db_err};
use crate::service::DbService;

impl DbService {
    /// Takes a connection and begins the transaction (on PostgreSQL with its settings, see
    /// [`session_sql::begin`], in the same round trip) within `wait`: `max_wait`, or what is
    /// left of it for a retry after a lost server ([`TxError::MaxWait`] names `max_wait`). A
    /// BEGIN abandoned in flight leaves its connection marked inside a transaction, and it is
    /// closed rather than handed out again (sqlx#4393 cannot happen here). `started` is when
    /// the transaction's `timeout` began to run.
    pub(super) async fn begin_guarded(
        &self,
        opts: &TxOptions,
        wait: Duration,
        started: Instant,
        site: Site,
        context: &str,
    ) -> Result<Transaction, TxError<std::convert::Infallible>> {
        let max_wait = || {
            bump(&self.tx_counters().max_wait);
            TxError::MaxWait(opts.max_wait)
        };
        let mut conn = match self.pool().acquire(Some(wait), site).await {
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
        let pool = self.config().pool();
        let statements = session_sql::begin(
            self.backend_kind(),
            &session_sql::Begin {
                isolation: opts.isolation.map(IsolationLevel::from),
                access: opts.read_only.then_some(AccessMode::ReadOnly),
                remaining: opts.timeout.saturating_sub(started.elapsed()),
                // A session is not ours behind PgBouncer: its settings go with the BEGIN.
                session: pool.session.pgbouncer.then_some(pool),
                context,
            },
        );
        conn.set_in_transaction(true);
        conn.set_read_only_transaction(opts.read_only);
        let remaining = wait.saturating_sub(started.elapsed());
        let begun = tokio::time::timeout(remaining, async {
            for sql in &statements {
                conn.run(Op::Unprepared(sql), None).await?;
            }
            Ok::<(), DbErr>(())
        })
        .await;
        match begun {
            Ok(Ok(())) => {
                let mut tx = Transaction::new(conn, started, opts.timeout, self.clone());
                tx.carries_context = !context.is_empty();
                Ok(tx)
            }
            // No answer within the wait: the connection is closed when dropped here, since it
            // may be inside a transaction.
            Err(_) => Err(max_wait()),
            Ok(Err(e)) => {
                self.instruments().on_error(&e);
                if sqlstate(&e).is_some() {
                    // The server answered; end whatever was begun so the connection stays usable.
                    let bound = self.config().pool().limits.ping_timeout;
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
        self.begin_in(opts, Some(Location::caller()), None)
    }

    /// [`begin`](Self::begin) with a session context (none: refused under
    /// `require_context`), `site` being the caller's location.
    pub(crate) async fn begin_in(
        &self,
        opts: TxOptions,
        site: Site,
        context: Option<crate::context::SessionContext>,
    ) -> Result<Transaction, TxError<std::convert::Infallible>> {
        if context.is_none() && self.conn().requires_context() {
            return Err(TxError::Database(self.refuse_transaction(site)));
        }
        let context = context.as_ref().map_or("", |c| c.sql());
        let started = Instant::now();
        let span = crate::trace::spans::transaction(
            &self.pool().shared().trace,
            opts.isolation.map(super::Isolation::label),
            opts.read_only,
        );
        crate::trace::spans::attempt(&span, 1);
        // Boxed: its checkout, BEGIN and their spans are a large future, and the caller's
        // own future (a handler's, a test's, on a 2 MiB thread stack in debug builds) would
        // otherwise hold it inline.
        let begun = Box::pin(self.begin_guarded(&opts, opts.max_wait, started, site, context))
            .instrument(span.clone())
            .await;
        if begun.is_err() {
            crate::trace::spans::transaction_ended(&span, super::outcome(&begun));
        }
        begun.map(|tx| tx.with_span(span, true))
    }

    /// The error for a transaction refused under `require_context`, naming where it began.
    pub(super) fn refuse_transaction(&self, site: Site) -> DbErr {
        let what = match site {
            Some(at) => format!("the transaction begun at {at}"),
            None => "the transaction".to_owned(),
        };
        self.instruments().on_context_refused();
        crate::context::refused(&what)
    }
}
