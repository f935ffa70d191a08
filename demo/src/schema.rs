//! The ledger's schema at startup and in `dbservice migrate`: applied under the migration
//! lock, or checked not to be behind this build when another step applies it.

use dbservice::migrate::{self, MigrateError};
use dbservice::{DbService, Error};
use migration::Migrator;

use crate::{DEFAULT_DATABASE_URL, DemoSettings, MigrationSettings};

/// Why the schema is not ready for this build.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Migrations are off at startup and the database lacks one of this build's migrations.
    #[error(
        "{0}; apply the migrations first with `dbservice migrate` (it uses \
         DATABASE_URL_DIRECT when set), or start with migrate=true (DBSERVICE_MIGRATE)"
    )]
    Behind(MigrateError),
    /// Migrating or checking failed otherwise.
    #[error(transparent)]
    Migrate(MigrateError),
}

impl From<MigrateError> for SchemaError {
    fn from(e: MigrateError) -> Self {
        match e {
            MigrateError::Behind { .. } => SchemaError::Behind(e),
            other => SchemaError::Migrate(other),
        }
    }
}

/// The startup step: migrate (`migrate=true`) or check the database is not behind.
pub async fn prepare(db: &DbService, settings: &MigrationSettings) -> Result<(), SchemaError> {
    if settings.at_startup {
        let applied = migrate::apply::<Migrator>(db, settings.lock_timeout).await?;
        tracing::info!(applied = ?applied, "migrations applied at startup (migrate=true)");
    } else {
        let checked = migrate::check::<Migrator>(db).await?;
        tracing::info!(
            applied = checked.applied,
            "schema checked: no pending migrations (migrate=false)"
        );
    }
    Ok(())
}

/// `dbservice migrate`: applies the pending migrations over `DATABASE_URL_DIRECT` (else
/// `DATABASE_URL`) under the lock, waiting for it at most `migrate_lock_timeout`, and returns
/// the names applied. The pool is never connected: the pooled URL (PgBouncer, say) need not
/// be reachable from where this runs.
pub async fn migrate_only(settings: &DemoSettings) -> Result<Vec<String>, Error> {
    let config = settings
        .core
        .migration_db_config(Some(DEFAULT_DATABASE_URL))?;
    let db = DbService::new(config)?;
    let url = db
        .config()
        .redacted_direct_url()
        .unwrap_or_else(|| db.config().redacted_url());
    tracing::info!(
        %url,
        migrate_lock_timeout = ?settings.migrations.lock_timeout,
        "migrating"
    );
    let applied = migrate::apply::<Migrator>(&db, settings.migrations.lock_timeout).await?;
    if applied.is_empty() {
        tracing::info!("no pending migrations: nothing to do");
    } else {
        tracing::info!(
            names = ?applied,
            "applied {} migration(s)",
            applied.len()
        );
    }
    Ok(applied)
}
