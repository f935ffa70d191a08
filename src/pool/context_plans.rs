//! A statement run with a session context outside a transaction, on a pool with the statement
//! cache on: `SET LOCAL ...; EXECUTE name(args)` in one simple-protocol message (one round
//! trip; PostgreSQL runs the message as one implicit transaction, so the settings end with it),
//! where `name` is a statement this connection prepared with SQL's `PREPARE`, once, with the
//! types the prepared path declares for its values (the `pgbouncer=true` writer's: sqlx's,
//! but `int2` for an `i8` and `unknown` for an untyped `NULL`). The server plans it as it
//! plans a prepared statement (custom plans first, then a generic one when that is no worse)
//! instead of parsing and planning inlined text every time.
//!
//! The `PREPARE` is sent by the extended protocol, which takes one statement: text that holds
//! two is refused there, never run in part without the settings. A statement the server will
//! not prepare (not a single `SELECT`/`INSERT`/`UPDATE`/`DELETE`/`MERGE`/`VALUES`, a parameter
//! whose type it cannot tell, an operator without a match for the declared types) is
//! remembered and sent inlined instead, as under `pgbouncer=true`. The names are the
//! connection's own (`dbservice_ctx_<random>_<n>`, never reused); the session reset, which
//! deallocates SQL-prepared statements, forgets them all. A statement prepared a moment ago
//! and gone at its `EXECUTE` means the server session is shared (a pooler in transaction
//! mode): the pool sends context statements inlined from then on.

// Only PostgreSQL runs statements this way; the bookkeeping exists on every connection.
#![cfg_attr(not(feature = "postgres"), allow(dead_code, unused_imports))]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(feature = "postgres")]
use sea_orm::sqlx::{self, AssertSqlSafe, PgConnection};
#[cfg(feature = "postgres")]
use sea_orm::{DbBackend, Statement, Value};

#[cfg(feature = "postgres")]
use super::inline::{self, Prefix};
#[cfg(feature = "postgres")]
use super::literal::{InlineError, write_argument};
#[cfg(feature = "postgres")]
use super::op::{Op, Output};
#[cfg(feature = "postgres")]
use super::stale::is_stale_statement;
#[cfg(feature = "postgres")]
use crate::sql_text::{self, Token};

/// The statements this connection prepared for context statements, by text and types.
#[derive(Debug)]
pub(crate) struct ContextPlans {
    entries: HashMap<String, Entry>,
    /// Names of evicted statements, deallocated before the next `PREPARE`.
    to_deallocate: Vec<String>,
    /// The next name's number (names are never reused on a connection).
    next: u64,
    /// This connection's own part of every name, random: a name prepared on a server session
    /// another client of a pooler shares is never one of ours.
    nonce: u32,
    /// A use counter, for evicting the least recently used.
    clock: u64,
    cap: usize,
    /// The pool's switch: a statement prepared a moment ago was not on the session that ran
    /// the `EXECUTE` (a pooler in transaction mode shares server sessions): context
    /// statements are sent inlined from then on, on every connection of the pool.
    off: Arc<AtomicBool>,
}

#[derive(Debug)]
struct Entry {
    /// `None`: the server would not prepare it; sent inlined.
    name: Option<String>,
    used: u64,
}

impl ContextPlans {
    /// At most `cap` statements (the pool's `statement_cache_size`, 100 by default); `off`:
    /// the pool's switch (see the field).
    pub fn new(cap: usize, off: Arc<AtomicBool>) -> Self {
        Self {
            entries: HashMap::new(),
            to_deallocate: Vec::new(),
            next: 0,
            nonce: fastrand::u32(..),
            clock: 0,
            cap: cap.max(1),
            off,
        }
    }

    /// The session was reset: every SQL-prepared statement is gone.
    pub fn forget(&mut self) {
        self.entries.clear();
        self.to_deallocate.clear();
    }

    fn get(&mut self, key: &str) -> Option<Option<String>> {
        self.clock += 1;
        let entry = self.entries.get_mut(key)?;
        entry.used = self.clock;
        Some(entry.name.clone())
    }

    /// A new name for `key`, making room first.
    fn name(&mut self) -> String {
        self.next += 1;
        format!("dbservice_ctx_{:08x}_{}", self.nonce, self.next)
    }

    fn insert(&mut self, key: String, name: Option<String>) {
        if self.entries.len() >= self.cap
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            && let Some(entry) = self.entries.remove(&oldest)
        {
            self.to_deallocate.extend(entry.name);
        }
        self.clock += 1;
        let used = self.clock;
        self.entries.insert(key, Entry { name, used });
    }

    /// `key`'s statement is gone or stale on the server; `exists`: still there to deallocate.
    fn drop_entry(&mut self, key: &str, exists: bool) {
        if let Some(entry) = self.entries.remove(key)
            && exists
        {
            self.to_deallocate.extend(entry.name);
        }
    }
}

#[cfg(feature = "postgres")]
/// Whether `sql` is one statement `PREPARE` takes: SQL's preparable statements, and no `;`.
fn preparable(sql: &str) -> bool {
    const WORDS: [&str; 8] = [
        "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "WITH", "VALUES", "TABLE",
    ];
    let mut tokens = sql_text::tokens(sql, DbBackend::Postgres).map(|(_, t)| t);
    let first_ok = matches!(tokens.next(), Some(Token::Word(w)) if WORDS.iter().any(|k| w.eq_ignore_ascii_case(k)));
    first_ok && !tokens.any(|t| t == Token::Punct(';'))
}

#[cfg(feature = "postgres")]
/// The `EXECUTE` arguments and the `PREPARE` types of `stmt`'s values.
fn arguments(values: &[Value]) -> Result<(String, String), InlineError> {
    let (mut args, mut types) = (String::new(), String::new());
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            args.push_str(", ");
            types.push_str(", ");
        }
        types.push_str(write_argument(&mut args, value, i + 1)?);
    }
    Ok((args, types))
}

#[cfg(feature = "postgres")]
/// Runs `op` (`stmt`'s kind) with the context's `SET LOCAL`s (`context`) in one message, as
/// the module docs say; a statement the server would not prepare goes inlined.
pub(crate) async fn run(
    c: &mut PgConnection,
    op: Op<'_>,
    stmt: &Statement,
    context: &str,
    plans: &mut ContextPlans,
) -> Result<Output, sqlx::Error> {
    let inlined = Prefix {
        session: "",
        context,
    };
    if plans.off.load(Ordering::Relaxed) {
        return inline::run(c, op, inlined).await;
    }
    let values: &[Value] = stmt.values.as_ref().map_or(&[], |v| v.0.as_slice());
    let (args, types) = arguments(values)?;
    let key = format!("{types}\n{}", stmt.sql);
    // A stale statement (a migration changed its table's columns, or it was deallocated
    // behind our back) never ran: prepared anew and run once more.
    for attempt in 0..2 {
        let mut fresh = false;
        let name = match plans.get(&key) {
            Some(Some(name)) => name,
            Some(None) => return inline::run(c, op, inlined).await,
            // Read once per connection and statement: the cache answers the next time.
            None if !preparable(&stmt.sql) => {
                plans.insert(key.clone(), None);
                return inline::run(c, op, inlined).await;
            }
            None => match prepare(c, plans, &stmt.sql, &types).await? {
                Prepared::As(name) => {
                    plans.insert(key.clone(), Some(name.clone()));
                    fresh = true;
                    name
                }
                Prepared::Never => {
                    plans.insert(key.clone(), None);
                    return inline::run(c, op, inlined).await;
                }
                // Its answer (a missing table, ...) is the statement's own, this once.
                Prepared::NotNow => return inline::run(c, op, inlined).await,
            },
        };
        let call = if args.is_empty() {
            format!("{context}EXECUTE {name}")
        } else {
            format!("{context}EXECUTE {name}({args})")
        };
        let result = inline::fetch(c, op, call).await;
        let gone = |e: &sqlx::Error| matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("26000"));
        match &result {
            // Prepared a moment ago on this connection and not there: the server session is
            // not the connection's own (a pooler in transaction mode). The EXECUTE never ran.
            Err(e) if fresh && gone(e) => {
                if !plans.off.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "a statement prepared on this connection was gone at once: its server \
                         session is shared (a pooler in transaction mode?); statements with a \
                         session context are sent inlined from now on (set pgbouncer=true \
                         behind PgBouncer)"
                    );
                }
                plans.forget();
                return inline::run(c, op, inlined).await;
            }
            Err(e) if attempt == 0 && is_stale_statement(e) => plans.drop_entry(&key, !gone(e)),
            _ => return result,
        }
    }
    // Not reached: the second attempt returns.
    Err(sqlx::Error::Protocol(
        "a context statement was not run".into(),
    ))
}

/// What became of a `PREPARE`.
#[cfg(feature = "postgres")]
enum Prepared {
    /// Prepared under this name.
    As(String),
    /// Refused for what the statement is (a type the server cannot tell, a syntax `PREPARE`
    /// does not take): sent inlined from now on.
    Never,
    /// Refused for what the database holds now (a table not there yet): sent inlined this
    /// time, and its error is the caller's.
    NotNow,
}

#[cfg(feature = "postgres")]
/// `PREPARE`s `sql` with `types` under a new name, after deallocating the evicted ones (each
/// in a round trip of its own: rare). An error of the connection itself is returned.
async fn prepare(
    c: &mut PgConnection,
    plans: &mut ContextPlans,
    sql: &str,
    types: &str,
) -> Result<Prepared, sqlx::Error> {
    if !plans.to_deallocate.is_empty() {
        let mut deallocate = String::new();
        for old in &plans.to_deallocate {
            deallocate.push_str("DEALLOCATE ");
            deallocate.push_str(old);
            deallocate.push_str("; ");
        }
        match sqlx::raw_sql(AssertSqlSafe(deallocate))
            .execute(&mut *c)
            .await
        {
            // Answered: deallocated, or one of them was gone already (26000, the rest then
            // stays until the session's reset or end).
            Ok(_) | Err(sqlx::Error::Database(_)) => plans.to_deallocate.clear(),
            Err(e) => return Err(e),
        }
    }
    let name = plans.name();
    let prepare = if types.is_empty() {
        format!("PREPARE {name} AS {sql}")
    } else {
        format!("PREPARE {name}({types}) AS {sql}")
    };
    // By the extended protocol: the server takes one statement there, so text that a reading
    // of its tokens took for one but holds two is refused (42601), never run in part here,
    // without the context.
    let outcome = sqlx::query(AssertSqlSafe(prepare))
        .persistent(false)
        .execute(&mut *c)
        .await;
    match outcome {
        Ok(_) => Ok(Prepared::As(name)),
        // What the statement is, with these types: a syntax error (or several statements),
        // an indeterminate or ambiguous parameter type, an operator or function without a
        // match for the declared types, a type mismatch, a feature not supported.
        Err(sqlx::Error::Database(db))
            if matches!(
                db.code().as_deref(),
                Some("42601" | "42P18" | "42P08" | "42883" | "42804" | "42846" | "42725" | "0A000")
            ) =>
        {
            Ok(Prepared::Never)
        }
        Err(sqlx::Error::Database(_)) => Ok(Prepared::NotNow),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "postgres")]
    #[test]
    fn only_single_preparable_statements_are_prepared() {
        assert!(preparable("SELECT * FROM t WHERE id = $1"));
        assert!(preparable("with x as (select 1) select * from x"));
        assert!(preparable("INSERT INTO t VALUES ($1) RETURNING id"));
        assert!(preparable("SELECT ';' FROM t"));
        assert!(!preparable("SELECT 1; DELETE FROM t"));
        assert!(!preparable("SELECT 1;"));
        assert!(!preparable("SHOW work_mem"));
        assert!(!preparable("CALL p()"));
        assert!(!preparable("(SELECT 1)"));
    }

    #[test]
    fn the_least_recently_used_is_evicted_and_deallocated_later() {
        let mut plans = ContextPlans::new(2, Arc::default());
        plans.insert("a".into(), Some("n1".into()));
        plans.insert("b".into(), Some("n2".into()));
        assert_eq!(plans.get("a"), Some(Some("n1".into())));
        plans.insert("c".into(), None);
        assert_eq!(plans.get("b"), None);
        assert_eq!(plans.to_deallocate, ["n2"]);
        plans.drop_entry("a", false);
        assert_eq!(plans.to_deallocate, ["n2"]);
        plans.forget();
        assert!(plans.to_deallocate.is_empty() && plans.get("c").is_none());
        assert_ne!(plans.name(), plans.name());
    }
}
