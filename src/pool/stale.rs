//! Whether a statement the server had prepared no longer matches it: sqlx's cached
//! statements ([`super::plans`]) and the context's SQL-prepared ones
//! ([`super::context_plans`]) meet the same errors.

use sea_orm::sqlx;

/// Whether `e` says a cached statement no longer matches the server: a changed result type
/// (0A000 from `RevalidateCachedQuery`; 0A000 alone also means any unsupported feature) or a
/// statement that no longer exists (26000).
pub(crate) fn is_stale_statement(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    match db.code().as_deref() {
        Some("26000") => true,
        #[cfg(feature = "postgres")]
        Some("0A000") => db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|pg| pg.routine() == Some("RevalidateCachedQuery")),
        _ => false,
    }
}
