//! Whether a database is behind (refuse) or ahead of (warn) the build that checks it, read
//! without writing: an application that does not migrate may not have the right to.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use sea_orm_migration::MigratorTrait;

use super::MigrateError;
use crate::service::DbService;

/// What [`check`] found on a database that is not behind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Checked {
    /// How many of this build's migrations are applied (all of them).
    pub applied: usize,
    /// Applied migrations this build does not know: a newer image's, during a rollout
    /// (expand/contract). Logged as a WARN; not an error.
    pub ahead: Vec<String>,
}

/// Compares `M`'s migrations with the ones recorded in the database, over
/// `DATABASE_URL_DIRECT` when set. Creates nothing (not even the migration table).
///
/// Fails with [`MigrateError::Behind`] naming the first migration, in order, that is not
/// applied; migrations applied but unknown here are returned in [`Checked::ahead`].
pub async fn check<M: MigratorTrait>(db: &DbService) -> Result<Checked, MigrateError> {
    let conn = db.migration_connection().await;
    let result = compare::<M>(&conn).await;
    let _ = conn.close().await;
    let checked = result.map_err(|e| match e {
        MigrateError::Database(m) => MigrateError::Database(db.config().scrub(&m)),
        other => other,
    })?;
    if !checked.ahead.is_empty() {
        tracing::warn!(
            unknown = ?checked.ahead,
            "the database is ahead of this build: it has migrations this build does not know \
             (a newer image applied them?); starting, since expand/contract keeps the old \
             schema usable"
        );
    }
    Ok(checked)
}

async fn compare<M: MigratorTrait>(conn: &DatabaseConnection) -> Result<Checked, MigrateError> {
    let table = M::migration_table_name().to_string();
    if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(MigrateError::TableName(table));
    }
    let applied = applied_versions(conn, &table).await?;
    let known: Vec<String> = M::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    if let Some(missing) = known.iter().find(|k| !applied.contains(k)) {
        return Err(MigrateError::Behind {
            missing: missing.clone(),
            applied: known.iter().filter(|k| applied.contains(k)).count(),
            known: known.len(),
        });
    }
    Ok(Checked {
        applied: known.len(),
        ahead: applied.into_iter().filter(|a| !known.contains(a)).collect(),
    })
}

/// The versions in the migration table; none when the table does not exist yet.
async fn applied_versions(
    conn: &DatabaseConnection,
    table: &str,
) -> Result<Vec<String>, MigrateError> {
    let backend = conn.get_database_backend();
    let exists = match backend {
        DbBackend::Postgres => format!(
            "SELECT CASE WHEN to_regclass('{table}') IS NULL THEN 0::int8 ELSE 1::int8 END AS n"
        ),
        DbBackend::MySql => format!(
            "SELECT count(*) AS n FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = '{table}'"
        ),
        _ => format!(
            "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = '{table}'"
        ),
    };
    let present = conn
        .query_one_raw(Statement::from_string(backend, exists))
        .await?
        .and_then(|row| row.try_get::<i64>("", "n").ok())
        .unwrap_or(0)
        > 0;
    if !present {
        return Ok(Vec::new());
    }
    let rows = conn
        .query_all_raw(Statement::from_string(
            backend,
            format!("SELECT version FROM {table} ORDER BY version"),
        ))
        .await?;
    rows.iter()
        .map(|row| {
            row.try_get::<String>("", "version")
                .map_err(MigrateError::from)
        })
        .collect()
}
