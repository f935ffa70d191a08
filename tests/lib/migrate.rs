//! `migrate::apply` runs a migration that cannot run in a transaction when it opts out, as
//! CONNECTION_POOLING.md ("Migrations") tells users to ship `CREATE INDEX CONCURRENTLY`.

use std::time::Duration;

use dbservice::migrate;
use sea_orm::{ConnectionTrait, DbErr};
use sea_orm_migration::{MigrationName, MigrationTrait, MigratorTrait, SchemaManager};

use crate::support::{connected_service, fresh_pg_database, pg_scalar_i64, with_params};

struct CreateTable;
impl MigrationName for CreateTable {
    fn name(&self) -> &str {
        "m1_create_items"
    }
}
#[async_trait::async_trait]
impl MigrationTrait for CreateTable {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("CREATE TABLE items (id bigint PRIMARY KEY, at timestamptz)")
            .await
            .map(|_| ())
    }
}

struct IndexConcurrently;
impl MigrationName for IndexConcurrently {
    fn name(&self) -> &str {
        "m2_index_items_concurrently"
    }
}
#[async_trait::async_trait]
impl MigrationTrait for IndexConcurrently {
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("CREATE INDEX CONCURRENTLY IF NOT EXISTS items_at ON items (at)")
            .await
            .map(|_| ())
    }
}

struct Migrator;
#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateTable), Box::new(IndexConcurrently)]
    }
}

#[tokio::test]
async fn a_migration_outside_a_transaction_runs_over_a_real_session() {
    let url = fresh_pg_database().await;
    let db = connected_service(&url).await;
    let applied = migrate::apply::<Migrator>(&db, Duration::from_secs(5))
        .await
        .expect("CREATE INDEX CONCURRENTLY applied");
    assert_eq!(applied, ["m1_create_items", "m2_index_items_concurrently"]);
    let valid = pg_scalar_i64(
        &url,
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE c.relname = 'items_at' AND i.indisvalid",
    )
    .await;
    assert_eq!(valid, 1);
    // Checked afterwards: nothing behind, nothing ahead.
    let checked = migrate::check::<Migrator>(&db).await.expect("not behind");
    assert_eq!((checked.applied, checked.ahead.len()), (2, 0));
    assert!(
        migrate::apply::<Migrator>(&db, Duration::from_secs(5))
            .await
            .expect("again")
            .is_empty()
    );
}

/// Through PgBouncer without `DATABASE_URL_DIRECT` every migration shares the lock's
/// transaction (the old behaviour everywhere): such a migration fails there, as documented.
#[tokio::test]
async fn a_migration_outside_a_transaction_fails_inside_the_locks_transaction() {
    let url = fresh_pg_database().await;
    let db = connected_service(&with_params(&url, "pgbouncer=true")).await;
    let err = migrate::apply::<Migrator>(&db, Duration::from_secs(5))
        .await
        .expect_err("CONCURRENTLY inside a transaction");
    assert!(err.to_string().contains("transaction block"), "{err}");
    // Rolled back whole: not even the first migration stays.
    let tables = pg_scalar_i64(
        &url,
        "SELECT count(*) FROM pg_tables WHERE tablename = 'items'",
    )
    .await;
    assert_eq!(tables, 0);
}
