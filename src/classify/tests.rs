use super::*;

#[test]
fn only_harmless_statements_are_rerun() {
    assert!(safe_to_rerun(Some("57P05"), "INSERT INTO t VALUES (1)"));
    assert!(safe_to_rerun(Some("57P01"), "  select 1"));
    assert!(!safe_to_rerun(Some("57P01"), "INSERT INTO t VALUES (1)"));
    assert!(!safe_to_rerun(
        Some("57P01"),
        "WITH x AS (DELETE FROM t) SELECT 1"
    ));
    assert!(!safe_to_rerun(Some("23505"), "SELECT 1"));
    assert!(!safe_to_rerun(None, "SELECT 1"));
    // A write refused by a read-only server changed nothing.
    assert!(safe_to_rerun(Some("25006"), "INSERT INTO t VALUES (1)"));
}

/// A server's error with `code`, as the driver reports it.
#[derive(Debug)]
struct ServerError(&'static str);

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "server error {}", self.0)
    }
}

impl std::error::Error for ServerError {}

impl sqlx::error::DatabaseError for ServerError {
    fn message(&self) -> &str {
        "server error"
    }
    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.0.into())
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn kind(&self) -> sqlx::error::ErrorKind {
        sqlx::error::ErrorKind::Other
    }
}

fn exec_err(e: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(std::sync::Arc::new(e)))
}

/// A statement's error the server answered with SQLSTATE `code`.
pub(crate) fn server(code: &'static str) -> DbErr {
    exec_err(sqlx::Error::Database(Box::new(ServerError(code))))
}

fn io(kind: std::io::ErrorKind) -> DbErr {
    exec_err(sqlx::Error::Io(kind.into()))
}

#[test]
fn a_read_only_server_is_a_connection_error_not_a_query_error() {
    assert_eq!(ErrorKind::of(&server("25006")), ErrorKind::Connection);
    // Its neighbours in class 25 stay what they were.
    assert_eq!(ErrorKind::of(&server("25001")), ErrorKind::Query);
    assert_eq!(ErrorKind::of(&server("25P02")), ErrorKind::Query);
}

#[test]
fn a_lost_server_is_told_from_a_failed_statement() {
    for code in [
        "25006", "57P01", "57P02", "57P03", "08006", "08003", "08P01",
    ] {
        assert!(is_server_lost(&server(code)), "{code}");
    }
    for code in [
        "40001", "23505", "42P01", "57014", "25P02", "25P03", "53300",
    ] {
        assert!(!is_server_lost(&server(code)), "{code}");
    }
    assert!(is_server_lost(&io(std::io::ErrorKind::ConnectionReset)));
    assert!(is_server_lost(&io(std::io::ErrorKind::UnexpectedEof)));
    assert!(is_server_lost(&exec_err(sqlx::Error::Protocol(
        "unexpected message".into()
    ))));
    assert!(is_server_lost(&exec_err(sqlx::Error::WorkerCrashed)));
    // A statement unanswered within query_timeout may be a slow one on a healthy server.
    assert!(!is_server_lost(&query_deadline_passed(
        Duration::from_secs(1)
    )));
    assert!(!is_server_lost(&DbErr::Custom("a bug".into())));
    assert!(!is_server_lost(&exec_err(sqlx::Error::PoolClosed)));
    // The pool's refusals: only "unreachable" is about the server.
    let unreachable = acquire_failed(AcquireError::Unreachable {
        waited: Duration::ZERO,
        fail_fast: true,
        ago: Duration::from_millis(10),
        cause: "db1:5432 in recovery".into(),
    });
    assert!(is_server_lost(&unreachable));
    let saturated = acquire_failed(AcquireError::Saturated {
        waited: Duration::from_secs(1),
        busy: 1,
        max: 1,
        waiting: 0,
        longest_hold: None,
        held_at: None,
    });
    assert!(!is_server_lost(&saturated));
    assert!(!is_server_lost(&acquire_failed(AcquireError::Closed)));
    assert!(!is_server_lost(&DbErr::ConnectionAcquire(
        sea_orm::error::ConnAcquireErr::Timeout
    )));
}

#[test]
fn a_server_out_of_slots_is_told_from_an_unreachable_one() {
    // PostgreSQL: max_connections, the superuser reserve, per-role and per-database limits.
    assert!(refused_for_want_of_slots(
        Some("53300"),
        None,
        "sorry, too many clients already"
    ));
    assert!(refused_for_want_of_slots(
        Some("53300"),
        None,
        "remaining connection slots are reserved for roles with the SUPERUSER attribute"
    ));
    // PgBouncer 1.18: max_client_conn as a protocol violation.
    assert!(refused_for_want_of_slots(
        Some("08P01"),
        None,
        "no more connections allowed (max_client_conn)"
    ));
    // MySQL/MariaDB.
    assert!(refused_for_want_of_slots(
        Some("08004"),
        Some(1040),
        "Too many connections"
    ));
    assert!(refused_for_want_of_slots(
        Some("42000"),
        Some(1226),
        "User 'app' has exceeded the 'max_user_connections' resource (current value: 2)"
    ));
    // Not full: starting up, bad password, unknown database, PgBouncer's other refusals.
    assert!(!refused_for_want_of_slots(
        Some("57P03"),
        None,
        "the database system is starting up"
    ));
    assert!(!refused_for_want_of_slots(
        Some("28P01"),
        None,
        "password authentication failed for user \"app\""
    ));
    assert!(!refused_for_want_of_slots(
        Some("08P01"),
        None,
        "server login has been failing, try again later (server_login_retry)"
    ));
    assert!(!refused_for_want_of_slots(
        Some("28000"),
        Some(1045),
        "Access denied for user 'app'"
    ));
}
