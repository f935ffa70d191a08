//! The migration lock, waited for within a bound, and who holds it when the bound runs out.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Statement};

use super::{MigrateError, PG_LOCK_KEY};

/// The `GET_LOCK` name on MySQL/MariaDB.
pub(super) const MYSQL_LOCK_NAME: &str = "dbservice_migrations";

/// The first pause between tries; doubled up to [`MAX_PAUSE`], so a lock released early is
/// noticed quickly and a long wait costs few queries.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// How long the PostgreSQL lock is held.
#[derive(Debug, Clone, Copy)]
pub(super) enum Scope {
    /// Until unlocked or the session ends (needs a real session, not PgBouncer's).
    Session,
    /// Until the surrounding transaction ends (works through PgBouncer's transaction mode).
    Transaction,
}

/// Takes the PostgreSQL advisory lock, trying with backoff until `bound` has passed. A
/// `pg_try_*` loop rather than `pg_advisory_lock` under `lock_timeout`: the wait is bounded
/// on our side, and we can say who holds the lock when it runs out.
pub(super) async fn postgres<C: ConnectionTrait>(
    conn: &C,
    scope: Scope,
    bound: Duration,
) -> Result<(), MigrateError> {
    let function = match scope {
        Scope::Session => "pg_try_advisory_lock",
        Scope::Transaction => "pg_try_advisory_xact_lock",
    };
    let sql = format!("SELECT {function}({PG_LOCK_KEY}) AS got");
    let started = Instant::now();
    let mut pause = FIRST_PAUSE;
    let mut announced = false;
    loop {
        let got = conn
            .query_one_raw(Statement::from_string(
                conn.get_database_backend(),
                sql.clone(),
            ))
            .await?
            .and_then(|row| row.try_get::<bool>("", "got").ok())
            .unwrap_or(false);
        if got {
            return Ok(());
        }
        let waited = started.elapsed();
        if waited >= bound {
            return Err(MigrateError::LockTimeout {
                lock: format!("PostgreSQL advisory lock {PG_LOCK_KEY}"),
                holder: postgres_holder(conn).await,
                waited,
                bound,
            });
        }
        if !announced {
            announced = true;
            // Awaited outside the macro: its arguments live across the await otherwise, and
            // they are not Send.
            let holder = postgres_holder(conn).await;
            tracing::info!(
                holder = %holder,
                migrate_lock_timeout = ?bound,
                "waiting for the migration lock"
            );
        }
        tokio::time::sleep(pause.min(bound.saturating_sub(waited))).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Who holds the advisory lock on this database, from `pg_locks` and `pg_stat_activity`
/// (a role without `pg_read_all_stats` sees other roles' pids but not their details).
async fn postgres_holder<C: ConnectionTrait>(conn: &C) -> String {
    // A bigint key is stored as classid (high 32 bits), objid (low 32 bits), objsubid 1.
    let (class, object) = (PG_LOCK_KEY >> 32, PG_LOCK_KEY & 0xffff_ffff);
    let sql = format!(
        "SELECT format('pid %s (application_name ''%s'', client %s, state %s, connected since %s)', \
                a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'), \
                coalesce(a.state, 'unknown'), coalesce(a.backend_start::text, 'unknown')) AS who \
         FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = {class}::oid \
           AND l.objid = {object}::oid AND l.objsubid = 1 \
           AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())"
    );
    let found = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await;
    match found {
        Ok(Some(row)) => row
            .try_get::<String>("", "who")
            .unwrap_or_else(|_| "an unknown session".to_owned()),
        Ok(None) => "a session that has just released it".to_owned(),
        Err(e) => format!("an unknown session (cannot read pg_locks: {e})"),
    }
}

/// Takes the MySQL/MariaDB named lock, waiting at most `bound` (whole seconds, rounded up).
pub(super) async fn mysql<C: ConnectionTrait>(
    conn: &C,
    bound: Duration,
) -> Result<(), MigrateError> {
    let started = Instant::now();
    let seconds = bound.as_secs() + u64::from(bound.subsec_nanos() > 0);
    let got = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            format!("SELECT GET_LOCK('{MYSQL_LOCK_NAME}', {seconds}) AS got"),
        ))
        .await?
        .and_then(|row| row.try_get::<Option<i64>>("", "got").ok().flatten());
    if got == Some(1) {
        return Ok(());
    }
    let holder = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            format!("SELECT IS_USED_LOCK('{MYSQL_LOCK_NAME}') AS who"),
        ))
        .await
        .ok()
        .flatten()
        .and_then(|row| row.try_get::<Option<i64>>("", "who").ok().flatten())
        .map_or_else(
            || "an unknown connection".to_owned(),
            |id| format!("connection id {id}"),
        );
    Err(MigrateError::LockTimeout {
        lock: format!("MySQL GET_LOCK '{MYSQL_LOCK_NAME}'"),
        holder,
        waited: started.elapsed(),
        bound,
    })
}
