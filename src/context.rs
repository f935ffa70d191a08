//! Session context for row-level security: a few `app.*` settings that travel with every
//! statement run through [`DbService::with_context`](crate::DbService::with_context), as
//! `SET LOCAL` inside that statement's own transaction, so nothing of them outlives it.
//!
//! ```no_run
//! # async fn f(db: dbservice::DbService) -> Result<(), Box<dyn std::error::Error>> {
//! use dbservice::context::SessionContext;
//! use sea_orm::ConnectionTrait;
//! let tenant = db.with_context(SessionContext::new([("app.tenant_id", "42")])?)?;
//! // One round trip: `SET LOCAL app.tenant_id = '42'; UPDATE ...` in one message.
//! tenant.execute_unprepared("UPDATE accounts SET balance_cents = 0").await?;
//! // BEGIN carries the setting: every statement of the body sees it.
//! tenant.transaction(async |tx| tx.execute_unprepared("DELETE FROM transfers").await).await?;
//! # Ok(()) }
//! ```
//!
//! How the settings reach the server (PostgreSQL only):
//!
//! - in a transaction (`.transaction(...)`, `.begin(...)`, batch writes): in the `BEGIN`
//!   message, after the transaction's own settings; no extra round trip;
//! - a statement outside a transaction: one simple-protocol message, the `SET LOCAL`s in front
//!   of the statement with its values written in as typed literals (the `pgbouncer=true`
//!   writer), which PostgreSQL runs as one implicit transaction; one round trip, no prepared
//!   statement (the server parses and plans it each time);
//! - a stream: the same one message, read row by row;
//! - behind PgBouncer (`pgbouncer=true`): the same, after the pool's session settings.
//!
//! Names are `app.` followed by a lower-case identifier; values are text, at most
//! [`MAX_VALUE_BYTES`] bytes, without NUL; both are checked when the context is built, and
//! values are written as literals by the same code that writes every value under
//! `pgbouncer=true` (quotes doubled, backslashes in an escape string), never spliced.
//!
//! With `require_context=true` (a pool parameter) a statement, transaction, stream or batch
//! run without a context is refused on the client: see CONNECTION_POOLING.md, "Tenant context
//! and row-level security".

mod guard;
// Read by the instruments, which sit below the rest of this module.
pub(crate) mod seen;

use std::sync::Arc;

pub(crate) use self::guard::check_text;

/// The prefix every setting name must carry: PostgreSQL's custom (placeholder) settings need
/// a dot, and `app.` keeps them apart from the server's own and from extensions'.
pub const NAME_PREFIX: &str = "app.";

/// The longest setting name, in bytes (PostgreSQL's identifier length).
pub const MAX_NAME_BYTES: usize = 63;

/// The longest value, in bytes: a context travels with every statement, and an identifier
/// or a few claims fit well within it.
pub const MAX_VALUE_BYTES: usize = 4096;

/// The most settings in one context.
pub const MAX_SETTINGS: usize = 16;

/// Why a context could not be built or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// The name is not `app.` followed by a lower-case identifier.
    #[error(
        "session context: setting name `{name}` is not allowed: names are `app.` followed by a \
         lower-case identifier (letters a-z, digits, `_`; at most {MAX_NAME_BYTES} bytes in all), \
         e.g. `app.tenant_id`"
    )]
    Name {
        /// The name as given (cut to 80 characters, control characters escaped).
        name: String,
    },
    /// The value holds a NUL character, which PostgreSQL refuses in any text.
    #[error(
        "session context: the value of `{name}` holds a NUL character (\\0), which PostgreSQL refuses in text"
    )]
    Nul {
        /// The setting's name.
        name: String,
    },
    /// The value is longer than [`MAX_VALUE_BYTES`].
    #[error(
        "session context: the value of `{name}` is {bytes} bytes; at most {MAX_VALUE_BYTES} are allowed"
    )]
    TooLong {
        /// The setting's name.
        name: String,
        /// The value's length in bytes.
        bytes: usize,
    },
    /// More than [`MAX_SETTINGS`] settings.
    #[error("session context: {count} settings; at most {MAX_SETTINGS} are allowed")]
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// A context without any setting.
    #[error("session context: no setting given; a context needs at least one `app.*` setting")]
    Empty,
    /// The database has no session settings to carry it (MySQL, SQLite), or this build has no
    /// PostgreSQL driver.
    #[error(
        "session context needs PostgreSQL (custom settings and row-level security); this pool \
         is {backend}"
    )]
    Unsupported {
        /// The pool's backend.
        backend: &'static str,
    },
}

/// A validated set of `app.*` settings (see the [module docs](self)). Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionContext {
    inner: Arc<Settings>,
}

#[derive(PartialEq, Eq)]
struct Settings {
    /// In the order given; a name given twice keeps its last value.
    pairs: Vec<(String, String)>,
    /// `SET LOCAL app.x = '...'; ` for each, built once.
    sql: String,
}

impl std::fmt::Debug for SessionContext {
    /// Names only: values may identify a tenant or a user, and a `Debug` line lands in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionContext")
            .field("names", &self.names().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl SessionContext {
    /// A context of `settings` (`(name, value)` pairs), each checked: see [`ContextError`].
    pub fn new<N, V>(settings: impl IntoIterator<Item = (N, V)>) -> Result<Self, ContextError>
    where
        N: AsRef<str>,
        V: AsRef<str>,
    {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in settings {
            let (name, value) = (name.as_ref(), value.as_ref());
            check_name(name)?;
            check_value(name, value)?;
            match pairs.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => value.clone_into(&mut slot.1),
                None => pairs.push((name.to_owned(), value.to_owned())),
            }
            if pairs.len() > MAX_SETTINGS {
                return Err(ContextError::TooMany { count: pairs.len() });
            }
        }
        if pairs.is_empty() {
            return Err(ContextError::Empty);
        }
        let sql = set_local(&pairs)?;
        Ok(Self {
            inner: Arc::new(Settings { pairs, sql }),
        })
    }

    /// The one-setting context most backends need: `app.tenant_id` (or another name) = `id`.
    pub fn tenant(name: &str, id: i64) -> Result<Self, ContextError> {
        Self::new([(name, id.to_string())])
    }

    /// The settings' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> + Clone {
        self.inner.pairs.iter().map(|(n, _)| n.as_str())
    }

    /// A setting's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.inner
            .pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `SET LOCAL` statements, each ended by `; `.
    pub(crate) fn sql(&self) -> &str {
        &self.inner.sql
    }
}

fn check_name(name: &str) -> Result<(), ContextError> {
    // Cut and escaped: the name lands in an error message, and a log line.
    let bad = || ContextError::Name {
        name: name.chars().take(80).flat_map(char::escape_debug).collect(),
    };
    let rest = name.strip_prefix(NAME_PREFIX).ok_or_else(bad)?;
    let mut chars = rest.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !first_ok || !rest_ok || name.len() > MAX_NAME_BYTES {
        return Err(bad());
    }
    Ok(())
}

fn check_value(name: &str, value: &str) -> Result<(), ContextError> {
    if value.contains('\0') {
        return Err(ContextError::Nul {
            name: name.to_owned(),
        });
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(ContextError::TooLong {
            name: name.to_owned(),
            bytes: value.len(),
        });
    }
    Ok(())
}

/// `SET LOCAL app."name" = 'value'; ` per setting. The name was checked to be `app.` and an
/// identifier of lower-case letters, digits and `_`; its second part is quoted all the same,
/// so that a reserved word (`app.user`, `app.order`) is a name, not syntax (quoting a
/// lower-case identifier does not change it). The value is written as a literal by the pool's
/// literal writer.
#[cfg(feature = "postgres")]
fn set_local(pairs: &[(String, String)]) -> Result<String, ContextError> {
    let mut sql = String::new();
    for (name, value) in pairs {
        let literal = crate::pool::text_literal(value)
            .map_err(|_| ContextError::Nul { name: name.clone() })?;
        sql.push_str("SET LOCAL app.\"");
        sql.push_str(name.strip_prefix(NAME_PREFIX).unwrap_or(name));
        sql.push_str("\" = ");
        sql.push_str(&literal);
        sql.push_str("; ");
    }
    Ok(sql)
}

/// Without PostgreSQL a context can be built but not used
/// ([`DbService::with_context`](crate::DbService::with_context) refuses it).
#[cfg(not(feature = "postgres"))]
fn set_local(_: &[(String, String)]) -> Result<String, ContextError> {
    Ok(String::new())
}

/// The error for work refused under `require_context` (`what`: the statement or the
/// transaction, as the caller would recognise it); the caller counts it
/// ([`Instruments::on_context_refused`](crate::observe::Instruments::on_context_refused)).
pub(crate) fn refused(what: &str) -> sea_orm::DbErr {
    sea_orm::DbErr::Custom(format!(
        "require_context is on and {what} has no session context: run it through \
         db.with_context(ctx) (see CONNECTION_POOLING.md, \"Tenant context and row-level \
         security\")"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_app_identifiers() {
        for good in ["app.tenant_id", "app._x", "app.a1"] {
            assert!(SessionContext::new([(good, "1")]).is_ok(), "{good}");
        }
        let long = format!("app.{}", "a".repeat(60));
        for bad in [
            "tenant_id",
            "app.",
            "app.Tenant",
            "app.1a",
            "app.a-b",
            "app.a b",
            "app.a;DROP TABLE x",
            "app.a.b",
            "APP.a",
            "search_path",
            "app.a'",
            long.as_str(),
        ] {
            assert!(
                matches!(
                    SessionContext::new([(bad, "1")]),
                    Err(ContextError::Name { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn values_are_checked_and_written_as_literals() {
        assert_eq!(
            SessionContext::new([("app.a", "x\0y")]),
            Err(ContextError::Nul {
                name: "app.a".into()
            })
        );
        let big = "x".repeat(10 * 1024);
        assert!(matches!(
            SessionContext::new([("app.a", big.as_str())]),
            Err(ContextError::TooLong { bytes: 10240, .. })
        ));
        assert_eq!(
            SessionContext::new(Vec::<(&str, &str)>::new()),
            Err(ContextError::Empty)
        );
        let many: Vec<(String, &str)> = (0..17).map(|i| (format!("app.n{i}"), "1")).collect();
        assert!(matches!(
            SessionContext::new(many),
            Err(ContextError::TooMany { .. })
        ));
        let ctx = SessionContext::new([("app.a", "1"), ("app.b", "it's"), ("app.a", "2")])
            .expect("valid");
        assert_eq!(ctx.names().collect::<Vec<_>>(), ["app.a", "app.b"]);
        assert_eq!(ctx.get("app.a"), Some("2"));
        #[cfg(feature = "postgres")]
        assert_eq!(
            ctx.sql(),
            "SET LOCAL app.\"a\" = '2'; SET LOCAL app.\"b\" = 'it''s'; "
        );
        assert!(!format!("{ctx:?}").contains("it's"));
    }
}
