//! Making a used connection fit for the next caller: cancel what its caller abandoned on the
//! server, prove it is outside a transaction, and reset a session a caller may have changed.
//!
//! This runs at check-in, in a task of the service's that holds the connection (it still
//! counts as in use), so a lock or a listener does not stay with an idle connection and the
//! next caller does not pay the round trip; and again at checkout for anything the task could
//! not finish. A connection that cannot be proven clean is closed, never handed out.
//!
//! The reset, per backend:
//! - **PostgreSQL**: one simple-protocol message that proves the session is outside a
//!   transaction and undoes everything `DISCARD ALL` does except dropping sqlx's own prepared
//!   statements (which would cost a re-prepare of every statement on the next use): `SET
//!   SESSION AUTHORIZATION DEFAULT; RESET ROLE; RESET ALL` (back to the settings the connection
//!   started with, ours included: they travel in the startup packet), `CLOSE ALL`, `UNLISTEN
//!   *`, `pg_advisory_unlock_all()`, `DISCARD TEMP`, `DISCARD SEQUENCES`; then, only if the
//!   caller `PREPARE`d some, a second message `DEALLOCATE`s those (and only those: sqlx's are
//!   not `from_sql`). A caller's `DEALLOCATE`/`DISCARD` also clears sqlx's statement cache.
//!   Behind PgBouncer (`pgbouncer=true`) the session belongs to PgBouncer, and nothing is sent.
//! - **MySQL/MariaDB**: sqlx cannot send `COM_RESET_CONNECTION`, so a connection whose session
//!   may have changed is closed and replaced (counted as `unclean`).
//! - **SQLite**: a `ROLLBACK` ends whatever transaction a caller left open (its state lives in
//!   this process); a changed session (a `PRAGMA`, a `TEMP` table, an `ATTACH`) closes the
//!   connection, except on an in-memory database, which closing would lose.
// Some parameters, imports and helpers serve only PostgreSQL (PgBouncer, statement modes, resets).
#![cfg_attr(not(feature = "postgres"), allow(unused))]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use deadpool::managed::Object;
use sea_orm::sqlx::{self, AssertSqlSafe, Connection, Row};

use super::conn::Conn;
use super::op::Mode;
use super::raw::{RawConn, SessionId};
#[cfg(feature = "mysql")]
use super::session_sql::MYSQL_IN_TRANSACTION;
use super::session_sql::{PG_OUTSIDE_TRANSACTION, PG_RESET};
use super::{Manager, Shared};
use crate::stats::CloseReason;

/// Why a connection is not fit to be handed out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unfit {
    /// It failed or did not answer in time.
    #[error("{0}")]
    Broken(String),
    /// It is inside a transaction someone left open, or its session cannot be reset here.
    #[error("{0}")]
    Unclean(&'static str),
}

impl Unfit {
    pub fn reason(&self) -> CloseReason {
        match self {
            Unfit::Broken(_) => CloseReason::Broken,
            Unfit::Unclean(_) => CloseReason::Unclean,
        }
    }
}

/// Whether `conn` needs any of this before the next caller.
pub(super) fn needs_care(conn: &Conn) -> bool {
    conn.in_flight || conn.suspect || conn.tainted
}

/// At check-in: a connection that needs care is cared for in a task holding it, and goes
/// back to the pool when fit (closed otherwise). While the pool is closing, or where the task
/// cannot run (its runtime is gone), it goes back as it is, still marked, and the checkout
/// (or the close) deals with it.
pub(super) fn at_check_in(mut obj: Object<Manager>, shared: &Arc<Shared>) {
    if shared.closing.load(Ordering::Acquire) {
        return;
    }
    let task_shared = shared.clone();
    shared.tasks.spawn(async move {
        if let Err(unfit) = make_fit(&task_shared, &mut obj).await {
            tracing::debug!(reason = %unfit, "closing a connection that could not be made fit");
            obj.retire(unfit.reason());
            drop(Object::take(obj));
        }
    });
}

/// Cancels, checks and resets `conn` as it needs, each step bounded (`connect_timeout` for the
/// cancel, `ping_timeout` for each round trip).
pub(super) async fn make_fit(shared: &Arc<Shared>, conn: &mut Conn) -> Result<(), Unfit> {
    if conn.in_flight {
        cancel(shared, conn, shared.limits.connect_timeout).await;
        if conn.broken {
            return Err(Unfit::Broken(
                "its abandoned statement could not be cancelled".into(),
            ));
        }
    }
    if conn.cancelled {
        drain(shared, conn).await?;
        conn.cancelled = false;
    }
    if !(conn.suspect || conn.tainted) {
        return Ok(());
    }
    shared
        .instruments
        .state_checks
        .fetch_add(1, Ordering::Relaxed);
    let bound = shared.limits.ping_timeout;
    let inline = matches!(*conn.mode, Mode::Inline { .. });
    let tainted = conn.tainted;
    let stale = conn.stale_statements;
    #[cfg(feature = "sqlite")]
    let in_memory = shared.in_memory;
    let Some(raw) = conn.raw.as_mut() else {
        return Err(Unfit::Broken("taken".into()));
    };
    let work = async {
        match raw {
            #[cfg(feature = "postgres")]
            RawConn::Postgres(c) if tainted && !inline => reset_postgres(c, stale).await,
            #[cfg(feature = "postgres")]
            RawConn::Postgres(c) => postgres_outside_transaction(c).await,
            #[cfg(feature = "mysql")]
            RawConn::MySql(_) if tainted => Err(Unfit::Unclean("its session may have changed")),
            #[cfg(feature = "mysql")]
            RawConn::MySql(c) => mysql_outside_transaction(c).await,
            #[cfg(feature = "sqlite")]
            RawConn::Sqlite(c) => {
                // "cannot rollback - no transaction is active" is a clean connection's answer.
                match sqlx::raw_sql("ROLLBACK").execute(&mut *c).await {
                    Ok(_) => {}
                    Err(sqlx::Error::Database(e)) if e.message().contains("no transaction") => {}
                    Err(e) => return Err(broken("rollback", &e)),
                }
                if tainted && !in_memory {
                    Err(Unfit::Unclean("its session may have changed"))
                } else {
                    Ok(())
                }
            }
        }
    };
    match tokio::time::timeout(bound, work).await {
        Ok(Ok(())) => {
            if tainted {
                shared
                    .instruments
                    .session_resets
                    .fetch_add(1, Ordering::Relaxed);
                // The reset deallocated every SQL-prepared statement, the context's too.
                conn.context_plans.forget();
            }
            conn.suspect = false;
            conn.tainted = false;
            conn.stale_statements = false;
            conn.in_tx = false;
            Ok(())
        }
        Ok(Err(unfit)) => {
            if matches!(unfit, Unfit::Unclean(_)) {
                tracing::warn!(reason = %unfit, "closing a connection instead of reusing it");
            } else {
                shared.instruments.connection_failed();
            }
            Err(unfit)
        }
        Err(_) => Err(Unfit::Broken(format!(
            "no answer to the check within ping_timeout ({bound:?})"
        ))),
    }
}

/// Reads what the abandoned statement still sends: its rows, then its answer, usually the
/// error of its cancellation (57014), which belongs to it and not to the connection.
pub(super) async fn drain(shared: &Shared, conn: &mut Conn) -> Result<(), Unfit> {
    let bound = shared.limits.ping_timeout;
    let Some(raw) = conn.raw.as_mut() else {
        return Err(Unfit::Broken("taken".into()));
    };
    let drained = tokio::time::timeout(bound, async {
        for _ in 0..3 {
            match super::raw::ping(raw).await {
                Ok(()) => return Ok(()),
                Err(sqlx::Error::Database(_)) => {}
                Err(e) => return Err(broken("drain", &e)),
            }
        }
        Err(Unfit::Broken("errors kept coming after a cancel".into()))
    })
    .await;
    drained.unwrap_or_else(|_| {
        Err(Unfit::Broken(format!(
            "the abandoned statement did not end within ping_timeout ({bound:?})"
        )))
    })
}

fn broken(what: &str, e: &sqlx::Error) -> Unfit {
    Unfit::Broken(format!("{what} failed: {e}"))
}

/// An error answer inside a transaction block someone left (25P02: aborted) is unclean;
/// anything else means the connection failed.
fn pg_failure(e: sqlx::Error) -> Unfit {
    match &e {
        sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("25")) => {
            Unfit::Unclean("it was left inside a transaction")
        }
        _ => broken("check", &e),
    }
}

#[cfg(feature = "postgres")]
async fn postgres_outside_transaction(c: &mut sqlx::PgConnection) -> Result<(), Unfit> {
    let row = sqlx::raw_sql(PG_OUTSIDE_TRANSACTION)
        .fetch_one(&mut *c)
        .await
        .map_err(pg_failure)?;
    match row.try_get::<bool, _>(0) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Unfit::Unclean("it was left inside a transaction")),
        Err(e) => Err(broken("check", &e)),
    }
}

#[cfg(feature = "postgres")]
async fn reset_postgres(c: &mut sqlx::PgConnection, stale: bool) -> Result<(), Unfit> {
    let rows = sqlx::raw_sql(PG_RESET)
        .fetch_all(&mut *c)
        .await
        .map_err(pg_failure)?;
    let Some(first) = rows.first() else {
        return Err(Unfit::Broken("the reset returned no row".into()));
    };
    if !first
        .try_get::<bool, _>(0)
        .map_err(|e| broken("reset", &e))?
    {
        return Err(Unfit::Unclean("it was left inside a transaction"));
    }
    // The server wrote the statements, quoting the names itself.
    let deallocate: Option<String> = first.try_get(2).map_err(|e| broken("reset", &e))?;
    if let Some(sql) = deallocate {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *c)
            .await
            .map_err(|e| broken("DEALLOCATE", &e))?;
    }
    if stale {
        c.clear_cached_statements()
            .await
            .map_err(|e| broken("clearing the statement cache", &e))?;
    }
    Ok(())
}

/// MariaDB reports `@@in_transaction`; a MySQL server without it gets a `ROLLBACK`, which ends
/// whatever was left open.
#[cfg(feature = "mysql")]
async fn mysql_outside_transaction(c: &mut sqlx::MySqlConnection) -> Result<(), Unfit> {
    match sqlx::raw_sql(MYSQL_IN_TRANSACTION).fetch_one(&mut *c).await {
        Ok(row) => match row.try_get::<i64, _>(0) {
            Ok(0) => Ok(()),
            Ok(_) => Err(Unfit::Unclean("it was left inside a transaction")),
            Err(e) => Err(broken("check", &e)),
        },
        Err(sqlx::Error::Database(_)) => sqlx::raw_sql("ROLLBACK")
            .execute(&mut *c)
            .await
            .map(|_| ())
            .map_err(|e| broken("rollback", &e)),
        Err(e) => Err(broken("check", &e)),
    }
}

/// Asks the server to cancel what `conn` may still be running, over a connection of its own
/// (PostgreSQL's `pg_cancel_backend`, MySQL's `KILL QUERY`) opened within `connect_timeout`,
/// at most two at a time per pool (each is one more server connection).
///
/// The caller waits at most `wait`. Until the cancel is known to have gone through, the
/// connection counts as broken: if the wait ends first, or its caller is dropped meanwhile,
/// the connection is closed rather than reused, so that a late cancel can never stop the next
/// caller's statement. Where no session is known (behind PgBouncer) the connection is closed
/// likewise: PgBouncer then closes its server connection, and the server's
/// `statement_timeout` (or `client_connection_check_interval`) ends the statement. SQLite's
/// statements run in this process and end with them.
pub(super) async fn cancel(shared: &Arc<Shared>, conn: &mut Conn, wait: Duration) {
    #[cfg(feature = "sqlite")]
    if matches!(conn.raw, Some(RawConn::Sqlite(_))) {
        conn.in_flight = false;
        return;
    }
    conn.broken = true;
    conn.in_flight = false;
    let host = conn.host;
    let Some(session) = conn.session.clone() else {
        return;
    };
    let Ok(slot) = shared.cancel_slots.clone().try_acquire_owned() else {
        tracing::debug!("two cancels under way already; closing the connection instead");
        return;
    };
    let task_shared = shared.clone();
    let task = shared.tasks.spawn(async move {
        let _slot = slot;
        send_cancel(&task_shared, &session, host).await
    });
    match tokio::time::timeout(wait, task).await {
        Ok(Ok(true)) => {
            conn.broken = false;
            conn.cancelled = true;
        }
        Ok(_) => {}
        Err(_) => {
            tracing::debug!(
                ?wait,
                "the cancel is still under way; closing the connection"
            );
        }
    }
}

/// Sends the cancel for `session` within `connect_timeout`; whether it reached that session.
async fn send_cancel(shared: &Shared, session: &SessionId, host: usize) -> bool {
    let bound = shared.limits.connect_timeout;
    let id = session.id;
    let sent = tokio::time::timeout(bound, async {
        let mut side = shared.connector.open(host).await?;
        let result = match &mut side {
            #[cfg(feature = "postgres")]
            RawConn::Postgres(c) => sqlx::query(
                "SELECT pg_catalog.pg_cancel_backend(pid) FROM pg_catalog.pg_stat_activity \
                 WHERE pid = $1 AND backend_start = $2::timestamptz",
            )
            .bind(i32::try_from(id).unwrap_or(-1))
            .bind(session.proof.as_str())
            .fetch_optional(&mut *c)
            .await
            .map(|row| row.is_some()),
            #[cfg(feature = "mysql")]
            RawConn::MySql(c) => {
                let here: Option<String> =
                    sqlx::query_scalar("SELECT CONCAT(@@hostname, ':', @@port)")
                        .fetch_one(&mut *c)
                        .await?;
                if here.as_deref() == Some(session.proof.as_str()) {
                    sqlx::raw_sql(AssertSqlSafe(format!("KILL QUERY {id}")))
                        .execute(&mut *c)
                        .await
                        .map(|_| true)
                } else {
                    Ok(false)
                }
            }
            #[cfg(feature = "sqlite")]
            RawConn::Sqlite(_) => Ok(false),
        };
        super::raw::close(side, shared.limits.ping_timeout).await;
        result
    })
    .await;
    match sent {
        Ok(Ok(true)) => {
            shared.instruments.cancels.fetch_add(1, Ordering::Relaxed);
            true
        }
        Ok(Ok(false)) => {
            tracing::warn!(
                "the cancel's connection reached another server than the statement's; closing its connection instead"
            );
            false
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %shared.describe(&e), "could not cancel an abandoned statement; closing its connection");
            false
        }
        Err(_) => {
            tracing::warn!(bound = ?bound, "no cancel within connect_timeout; closing the connection");
            false
        }
    }
}

/// The session `raw` is, for cancels (MySQL; PostgreSQL's is named while its host is
/// checked, see [`super::topology`]); `None` on SQLite.
pub(super) async fn session_id(raw: &mut RawConn, bound: Duration) -> Option<SessionId> {
    let ask = async {
        let row: Option<(i64, String)> = match raw {
            #[cfg(feature = "postgres")]
            RawConn::Postgres(_) => None,
            #[cfg(feature = "mysql")]
            RawConn::MySql(c) => sqlx::raw_sql(
                "SELECT CAST(CONNECTION_ID() AS SIGNED), CONCAT(@@hostname, ':', @@port)",
            )
            .fetch_one(&mut *c)
            .await
            .ok()
            .and_then(|r| {
                Some((
                    r.try_get::<i64, _>(0).ok()?,
                    r.try_get::<String, _>(1).ok()?,
                ))
            }),
            #[cfg(feature = "sqlite")]
            RawConn::Sqlite(_) => None,
        };
        let (id, proof) = row?;
        Some(SessionId {
            id: u64::try_from(id).ok()?,
            proof,
        })
    };
    tokio::time::timeout(bound, ask).await.ok().flatten()
}
