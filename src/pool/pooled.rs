//! A checked-out connection: runs statements with the bookkeeping that lets a clean one go
//! back without I/O, and on release records the hold and retires what is spent.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use deadpool::managed::Object;
use sea_orm::{DbErr, RuntimeErr, sqlx};

use super::conn::Conn;
use super::effects::{Context, drops_statements, leaves_transaction_state_alone, taints};
use super::holds::Site;
use super::op::{Mode, Op, Output};
use super::plans;
use super::raw::{self, RawConn};
use super::{Manager, Shared, tidy};
use crate::classify::query_deadline_passed;
use crate::stats::CloseReason;
use crate::trace::spans::{self, Text};
use tracing::Instrument;

/// A connection taken from the pool; goes back when dropped.
pub(crate) struct Pooled {
    obj: Option<Object<Manager>>,
    since: Instant,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled")
            .field("held", &self.since.elapsed())
            .finish_non_exhaustive()
    }
}

/// Whether a driver error leaves the connection unusable.
fn breaks_connection(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("57P")),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// A write refused because the session is read-only (SQLSTATE 25006).
fn is_read_only_refusal(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("25006"))
}

impl Pooled {
    pub(super) fn new(
        mut obj: Object<Manager>,
        site: Site,
        now: Instant,
        shared: &Arc<Shared>,
    ) -> Self {
        obj.uses += 1;
        obj.hold.begin(site, now);
        obj.instruments().active.fetch_add(1, Ordering::Relaxed);
        Self {
            obj: Some(obj),
            since: now,
            shared: shared.clone(),
        }
    }

    pub(crate) fn conn(&mut self) -> Option<&mut Conn> {
        self.obj.as_deref_mut()
    }

    /// Runs one statement within `deadline`, counted and timed, in a statement span (see
    /// [`crate::trace`]) under the caller's current span; see [`Conn::suspect`].
    pub async fn run(&mut self, op: Op<'_>, deadline: Option<Duration>) -> Result<Output, DbErr> {
        self.run_in(op, deadline, "").await
    }

    /// [`run`](Self::run) with a session context's `SET LOCAL`s (`context`, empty for none):
    /// outside a transaction they go in front of the statement, in the same message (see
    /// [`crate::context`]); inside one, BEGIN carried them.
    pub async fn run_in(
        &mut self,
        op: Op<'_>,
        deadline: Option<Duration>,
        context: &str,
    ) -> Result<Output, DbErr> {
        let span = spans::statement(&self.shared.trace, self.host(), op.text());
        // A caller that goes away mid-statement (a timeout around it, a client gone) leaves a
        // span that says so rather than one that looks like a success. One path whether the
        // span is wanted or not (a disabled span costs a check per poll): two would each hold
        // the statement's future, doubling what every caller's future carries.
        let mut unfinished = spans::Unfinished::statement(&span);
        let result = self
            .run_op(op, deadline, context)
            .instrument(span.clone())
            .await;
        unfinished.finished();
        if let Err(e) = &result {
            spans::failed(&span, e);
        }
        result
    }

    /// [`run`](Self::run) for the service's own bookkeeping outside any caller's work (the
    /// replica probe): no span, so it makes no trace of its own every interval.
    pub async fn run_untraced(
        &mut self,
        op: Op<'_>,
        deadline: Option<Duration>,
    ) -> Result<Output, DbErr> {
        self.run_op(op, deadline, "").await
    }

    async fn run_op(
        &mut self,
        op: Op<'_>,
        deadline: Option<Duration>,
        context: &str,
    ) -> Result<Output, DbErr> {
        let Some(conn) = self.obj.as_deref_mut() else {
            return Err(DbErr::Custom("the connection was already released".into()));
        };
        if conn.in_flight {
            // An earlier statement on this checkout was dropped mid-flight: stop it on the
            // server before this one queues behind it.
            let wait = self.shared.limits.ping_timeout;
            tidy::cancel(&self.shared, conn, wait).await;
        }
        if conn.cancelled && !conn.broken {
            // The cancelled statement's answer (57014) belongs to it, not to this statement.
            if tidy::drain(&self.shared, conn).await.is_err() {
                conn.broken = true;
            }
            conn.cancelled = false;
        }
        if conn.broken {
            return Err(DbErr::Custom(
                "the connection was closed after an abandoned statement".into(),
            ));
        }
        let at = Context {
            postgres: conn.raw.as_ref().is_some_and(RawConn::is_postgres),
            in_tx: conn.in_tx,
        };
        let Some(raw) = conn.raw.as_mut() else {
            return Err(DbErr::Custom("the connection was already closed".into()));
        };
        // Sticky within a checkout: a statement that left the session changed (SET, BEGIN, ...)
        // keeps the connection suspect even if a clean statement follows on it (the write
        // position query after a write, for one); only a check, or the end of our own
        // transaction, clears it.
        let dirty_before = conn.suspect;
        conn.suspect = true;
        let text = op.text();
        let sql = text.sql;
        // Sent as text (values written in) is not one statement by protocol.
        let single = !matches!(op, Op::Unprepared(_) | Op::UnpreparedRows(_))
            && !matches!(*conn.mode, Mode::Inline { .. })
            && (conn.in_tx || context.is_empty());
        // Marked before it runs, so that a statement abandoned mid-flight counts too.
        if taints(sql, single, at) {
            conn.tainted = true;
            conn.stale_statements |= drops_statements(sql);
        }
        conn.in_flight = true;
        let started = Instant::now();
        let work = plans::run(
            raw,
            op,
            &conn.mode,
            conn.in_tx,
            &mut conn.plans,
            context,
            &mut conn.context_plans,
        );
        let outcome = match deadline {
            Some(d) => tokio::time::timeout(d, work).await.map_err(|_| d),
            None => Ok(work.await),
        };
        if outcome.is_ok() {
            conn.in_flight = false;
        }
        let clean_after = |conn: &Conn| {
            !dirty_before && !conn.in_tx && leaves_transaction_state_alone(sql, single)
        };
        let result = match outcome {
            // Abandoned mid-flight: cancelled on the server now (its locks, and an autocommit
            // write that must not commit after its caller was told it failed); stays suspect,
            // so the answer is drained and checked before the connection's next use.
            Err(d) => {
                // The caller waits for the cancel at most ping_timeout more.
                let wait = self.shared.limits.ping_timeout;
                tidy::cancel(&self.shared, conn, wait).await;
                Err(query_deadline_passed(d))
            }
            Ok(Ok(out)) => {
                conn.suspect = !clean_after(conn);
                Ok(out)
            }
            Ok(Err(e)) => {
                if breaks_connection(&e) {
                    conn.broken = true;
                } else if is_read_only_refusal(&e) && !conn.read_only_tx {
                    // On a pool that writes, the server may have turned read-only under us (a
                    // failover), or a name may now lead elsewhere: this connection is closed
                    // when it comes back, and the host is checked on a connection of its own
                    // (so a caller's own read-only transaction does not evict a healthy host).
                    conn.refused_write = self.shared.write_refused(conn);
                    conn.suspect = !clean_after(conn);
                } else if matches!(e, sqlx::Error::Database(_)) {
                    // The server answered: the session is as the error left it.
                    conn.suspect = !clean_after(conn);
                }
                Err(wrap(op, e))
            }
        };
        conn.instruments()
            .on_statement(text, started.elapsed(), result.as_ref().err());
        result
    }

    /// A statement span for `text` on this connection (see [`crate::trace`]).
    pub(crate) fn statement_span(&self, text: Text<'_>) -> tracing::Span {
        spans::statement(&self.shared.trace, self.host(), text)
    }

    /// Which of the endpoint's hosts the connection is on.
    pub fn host(&self) -> usize {
        self.obj.as_deref().map_or(0, |c| c.host)
    }

    /// Marks the connection as inside a transaction we began (or not, once it ended).
    pub fn set_in_transaction(&mut self, inside: bool) {
        if let Some(conn) = self.conn() {
            conn.in_tx = inside;
            conn.suspect = inside;
            if !inside {
                conn.read_only_tx = false;
            }
        }
    }

    /// The transaction we began is read-only: a write refused there (25006) is the caller's
    /// own, not news about the server.
    pub fn set_read_only_transaction(&mut self, read_only: bool) {
        if let Some(conn) = self.conn() {
            conn.read_only_tx = read_only;
        }
    }

    /// A liveness round trip within `bound`. Where the pool must be on a writable primary
    /// (`target_session_attrs` = `read-write` or `primary`), the round trip asks the server's
    /// role instead, and a server that no longer matches (a ping passes on a standby) has its
    /// host left (see [`Shared::leave_host`]) and fails the check.
    pub async fn ping(&mut self, bound: Duration) -> Result<(), sqlx::Error> {
        let shared = self.shared.clone();
        let Some(conn) = self.conn() else {
            return Err(sqlx::Error::PoolClosed);
        };
        let host = conn.host;
        let Some(raw) = conn.raw.as_mut() else {
            return Err(sqlx::Error::PoolClosed);
        };
        #[cfg(feature = "postgres")]
        if let Some(t) = shared.connector.topology().filter(|t| t.strict())
            && raw.is_postgres()
        {
            let asked = tokio::time::timeout(bound, super::role::role_of(raw)).await;
            return match asked {
                Ok(Ok(role)) => match t.judge(host, role) {
                    Ok(()) => Ok(()),
                    Err(why) => {
                        let label = t.label(host);
                        // In the background: leaving may open a connection per host, and the
                        // check must answer within its bound.
                        let (leaving, reason) = (shared.clone(), why.clone());
                        shared
                            .tasks
                            .spawn(async move { leaving.leave_host(host, &reason).await });
                        Err(sqlx::Error::Io(std::io::Error::other(
                            super::reach::HostsFailed {
                                summary: format!("{label} {why}"),
                                mismatch: true,
                                transient: true,
                            },
                        )))
                    }
                },
                Ok(Err(e)) => Err(e),
                Err(_) => Err(no_answer(bound)),
            };
        }
        let _ = (host, &shared);
        match tokio::time::timeout(bound, raw::ping(raw)).await {
            Ok(r) => r,
            Err(_) => Err(no_answer(bound)),
        }
    }
}

fn no_answer(bound: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer to a ping within {bound:?}"),
    ))
}

fn wrap(op: Op<'_>, e: sqlx::Error) -> DbErr {
    let e = RuntimeErr::SqlxError(Arc::new(e));
    if op.is_query() {
        DbErr::Query(e)
    } else {
        DbErr::Exec(e)
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(mut obj) = self.obj.take() else {
            return;
        };
        let now = Instant::now();
        let ins = obj.instruments();
        ins.active.fetch_sub(1, Ordering::Relaxed);
        ins.on_hold(now.saturating_duration_since(self.since));
        obj.hold.end();
        obj.released = now;
        obj.alive_at = now;
        let retire = if obj.broken {
            Some(CloseReason::Broken)
        } else if obj.suspect && obj.in_tx && !obj.in_flight {
            // Left inside a transaction (its end never completed): no one gets it again.
            Some(CloseReason::Unclean)
        } else if (obj.refused_write || self.shared.host_left(&obj)) && !obj.in_flight {
            Some(CloseReason::HostMismatch)
        } else if self.shared.evicted(&obj) && !obj.in_flight {
            Some(CloseReason::Evicted)
        } else if obj.in_flight {
            // Cancelled first (below), so that its statement stops on the server.
            None
        } else {
            obj.worn_out()
        };
        if let Some(reason) = retire {
            obj.retire(reason);
            // Leaves the pool through the manager's `detach`.
            drop(Object::take(obj));
        } else if tidy::needs_care(&obj) {
            // Made fit in the background; back to the pool when it is (the checkout does it
            // if no task can be started).
            tidy::at_check_in(obj, &self.shared);
        }
    }
}
