//! What each backend's sessions are told, in one place: the settings a PostgreSQL connection
//! opens with (its startup packet) or, behind PgBouncer, carries as `SET LOCAL`s at the front
//! of each message; MySQL's session setting; the statements that begin a transaction; and the
//! checks and reset of a connection handed back dirty. Only numbers, validated schema names
//! and SeaORM's fixed keywords are formatted into this SQL.

use std::time::Duration;

use sea_orm::{AccessMode, DbBackend, IsolationLevel};

use crate::config::{PoolOptions, SERVER_GRACE};

/// PostgreSQL: whether the session is outside a transaction (`now()` is the transaction's
/// start, and equals the statement's own time only in the implicit transaction of this one).
pub(crate) const PG_OUTSIDE_TRANSACTION: &str =
    "SELECT pg_catalog.now() = pg_catalog.statement_timestamp()";

/// The PostgreSQL reset of a session a caller may have changed: one simple-protocol message.
/// The first statement's first column proves the session is outside a transaction (see
/// [`PG_OUTSIDE_TRANSACTION`]); the third lists the caller's named statements. Qualified with
/// `pg_catalog.`, so that nothing the caller created in its `search_path` stands in for them.
pub(crate) const PG_RESET: &str = "SELECT pg_catalog.now() = pg_catalog.statement_timestamp(), \
    (SELECT pg_catalog.pg_advisory_unlock_all()) IS NULL, \
    (SELECT pg_catalog.string_agg('DEALLOCATE ' || pg_catalog.quote_ident(name), '; ') \
     FROM pg_catalog.pg_prepared_statements WHERE from_sql); \
    SET SESSION AUTHORIZATION DEFAULT; RESET ROLE; RESET ALL; CLOSE ALL; UNLISTEN *; \
    DISCARD TEMP; DISCARD SEQUENCES";

/// MariaDB: whether the session is inside a transaction (a MySQL server without the variable
/// answers with an error).
#[cfg(feature = "mysql")]
pub(crate) const MYSQL_IN_TRANSACTION: &str = "SELECT CAST(@@in_transaction AS SIGNED)";

/// The PostgreSQL session settings that travel in the startup packet (no extra round trip per
/// connection): `statement_timeout`, `idle_in_transaction_session_timeout`, `search_path` and
/// the server's TCP keepalives. Empty behind PgBouncer, where a session is not ours (and
/// PgBouncer refuses `options`): the settings go with each statement instead
/// ([`session_prefix`]).
#[cfg(feature = "postgres")]
pub(crate) fn postgres_startup(p: &PoolOptions) -> Vec<(&'static str, String)> {
    let mut session: Vec<(&str, String)> = Vec::new();
    if p.session.pgbouncer {
        return session;
    }
    if let Some(t) = p.deadlines.statement_timeout {
        session.push(("statement_timeout", t.as_millis().to_string()));
    }
    if let Some(t) = p.deadlines.idle_in_transaction_session_timeout {
        session.push((
            "idle_in_transaction_session_timeout",
            t.as_millis().to_string(),
        ));
    }
    if let Some(schema) = &p.session.schema {
        session.push(("search_path", schema.clone()));
    }
    if p.limits.keepalive {
        // The server probes a quiet client after keepalive_idle, then every interval, and
        // gives up after 3 unanswered probes: a vanished client's backend is freed within
        // about keepalive_idle + 3 intervals. (Ignored by the server on Unix sockets.)
        let idle = p.limits.keepalive_idle.as_secs().max(1);
        session.push(("tcp_keepalives_idle", idle.to_string()));
        session.push((
            "tcp_keepalives_interval",
            (idle / 6).clamp(1, 10).to_string(),
        ));
        session.push(("tcp_keepalives_count", "3".to_owned()));
    }
    session
}

/// The session settings as `SET LOCAL` statements for the front of each message behind
/// PgBouncer (where a session is not ours): `statement_timeout`,
/// `idle_in_transaction_session_timeout`, `search_path`. Only numbers and validated schema
/// names are formatted in.
pub(crate) fn session_prefix(p: &PoolOptions) -> String {
    let mut s = String::new();
    if let Some(t) = p.deadlines.statement_timeout {
        s.push_str(&format!(
            "SET LOCAL statement_timeout = {}; ",
            t.as_millis()
        ));
    }
    if let Some(t) = p.deadlines.idle_in_transaction_session_timeout {
        s.push_str(&format!(
            "SET LOCAL idle_in_transaction_session_timeout = {}; ",
            t.as_millis()
        ));
    }
    if let Some(schema) = &p.session.schema {
        s.push_str(&format!("SET LOCAL search_path TO {schema}; "));
    }
    s
}

/// MySQL/MariaDB session settings, sent once per connection: row-lock waits (the one wait a
/// transaction cannot bound from the client, since sqlx cannot cancel a statement) end on the
/// server once the transaction's budget (`transaction_timeout` + the server's grace, whole
/// seconds, as `innodb_lock_wait_timeout` counts them) is spent, so a timed-out transaction does
/// not leave a statement holding its connection behind.
#[cfg(feature = "mysql")]
pub(crate) fn mysql_session(p: &PoolOptions) -> String {
    let budget = p
        .transactions
        .transaction_timeout
        .saturating_add(SERVER_GRACE);
    let secs = budget.as_secs() + u64::from(budget.subsec_nanos() > 0);
    format!("SET SESSION innodb_lock_wait_timeout = {}", secs.max(1))
}

/// How a transaction begins: its isolation level and access mode, what is left of its
/// `timeout`, and (behind PgBouncer) the session settings it must carry itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Begin<'a> {
    pub isolation: Option<IsolationLevel>,
    pub access: Option<AccessMode>,
    /// The transaction's `timeout` less what has passed already.
    pub remaining: Duration,
    /// `Some` behind PgBouncer: the pool's session settings, sent inside the transaction.
    pub session: Option<&'a PoolOptions>,
    /// A session context's `SET LOCAL`s (PostgreSQL; empty for none).
    pub context: &'a str,
}

/// The statements that begin a transaction, each one round trip. PostgreSQL: one
/// simple-protocol message with `BEGIN`, behind PgBouncer the session settings
/// ([`session_prefix`]), a session context's settings, the isolation level and access mode (what SeaORM would send as a `SET
/// TRANSACTION` of its own), and the transaction's budget for the server (see
/// [`settings_after_begin`]). MySQL/MariaDB: the isolation level applies to the next
/// transaction only, then `START TRANSACTION`. SQLite: `BEGIN`.
pub(crate) fn begin(backend: DbBackend, b: &Begin<'_>) -> Vec<String> {
    match backend {
        DbBackend::Postgres => {
            // The transaction's own budget, set after the session settings, overrides their
            // statement_timeout.
            let session = b.session.map(session_prefix).unwrap_or_default();
            vec![format!(
                "BEGIN; {session}{}{}",
                b.context,
                settings_after_begin(b.isolation, b.access, b.remaining)
            )]
        }
        DbBackend::MySql => {
            let mut v = Vec::new();
            if let Some(level) = b.isolation {
                v.push(format!("SET TRANSACTION ISOLATION LEVEL {level}"));
            }
            v.push(match b.access {
                Some(mode) => format!("START TRANSACTION {mode}"),
                None => "START TRANSACTION".to_owned(),
            });
            v
        }
        _ => vec!["BEGIN".to_owned()],
    }
}

/// The PostgreSQL settings of a transaction just begun: the isolation level and access mode,
/// and the transaction's remaining budget plus [`SERVER_GRACE`] as `statement_timeout` and
/// `idle_in_transaction_session_timeout`, so a stuck statement or a stalled client cannot hold
/// locks past the timeout. `SET LOCAL`: gone at COMMIT/ROLLBACK, and safe behind PgBouncer in
/// transaction mode.
fn settings_after_begin(
    isolation: Option<IsolationLevel>,
    access: Option<AccessMode>,
    remaining: Duration,
) -> String {
    let ms = remaining.saturating_add(SERVER_GRACE).as_millis();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_begin_behind_pgbouncer_carries_the_session_before_the_transactions_budget() {
        let mut p = PoolOptions::default();
        p.session.pgbouncer = true;
        p.deadlines.statement_timeout = Some(Duration::from_secs(5));
        let begin = Begin {
            isolation: Some(IsolationLevel::Serializable),
            access: None,
            remaining: Duration::from_secs(2),
            session: Some(&p),
            context: "SET LOCAL app.tenant_id = '7'; ",
        };
        let grace = Duration::from_secs(2)
            .saturating_add(SERVER_GRACE)
            .as_millis();
        assert_eq!(
            super::begin(DbBackend::Postgres, &begin),
            vec![format!(
                "BEGIN; SET LOCAL statement_timeout = 5000; SET LOCAL app.tenant_id = '7'; \
                 SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SET LOCAL statement_timeout = {grace}; \
                 SET LOCAL idle_in_transaction_session_timeout = {grace}"
            )]
        );
        assert!(postgres_startup(&p).is_empty());
        let direct = Begin {
            session: None,
            ..begin
        };
        assert_eq!(
            super::begin(DbBackend::MySql, &direct),
            vec![
                "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE".to_owned(),
                "START TRANSACTION".to_owned()
            ]
        );
    }
}
