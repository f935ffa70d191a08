//! What each backend's sessions are told, in one place: the settings sent when a connection
//! opens, the `SET LOCAL`s that carry them per statement behind PgBouncer, the statements that
//! begin a transaction, and the reset of a connection handed back dirty. Only numbers,
//! validated schema names and SeaORM's fixed keywords are formatted into this SQL.

use crate::config::PoolOptions;

/// The session settings as `SET LOCAL` statements for the front of each message behind
/// PgBouncer (where a session is not ours): `statement_timeout`,
/// `idle_in_transaction_session_timeout`, `search_path`. Only numbers and validated schema
/// names are formatted in.
pub(crate) fn session_prefix(p: &PoolOptions) -> String {
    let mut s = String::new();
    if let Some(t) = p.statement_timeout {
        s.push_str(&format!(
            "SET LOCAL statement_timeout = {}; ",
            t.as_millis()
        ));
    }
    if let Some(t) = p.idle_in_transaction_session_timeout {
        s.push_str(&format!(
            "SET LOCAL idle_in_transaction_session_timeout = {}; ",
            t.as_millis()
        ));
    }
    if let Some(schema) = &p.schema {
        s.push_str(&format!("SET LOCAL search_path TO {schema}; "));
    }
    s
}
