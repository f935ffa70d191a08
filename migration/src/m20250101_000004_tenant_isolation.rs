//! Tenancy: a `tenant_id` on accounts and transfers (0 = no tenant: the rows from before, and
//! every row written while the demo's tenancy is off), and on PostgreSQL row-level security
//! that shows a session only its tenant's rows.
//!
//! The policy reads the session setting `app.tenant_id` (set per statement by
//! `db.with_context(..)`); a session without it is tenant 0, so a server with tenancy off keeps
//! working for any role, the table owner included (FORCE subjects the owner to the policy too,
//! which is what makes an owner role usable by tenants). Superusers and BYPASSRLS roles are
//! never bound by a policy: the demo refuses to serve tenants as one. MySQL and SQLite get the
//! column only; the demo refuses tenancy there.
//!
//! On PostgreSQL an `Idempotency-Key` is unique per tenant, `(tenant_id, idempotency_key)`,
//! instead of across the table: a unique check sees past the policy, so a key unique across
//! tenants would refuse a tenant a key another tenant used (a 409 it cannot resolve, since the
//! other tenant's row is invisible to it) and tell it that the key is in use elsewhere. With
//! tenancy off every row is tenant 0's, so the index is as strict as the single-column one. MySQL
//! and SQLite keep the single-column constraint: every row there is tenant 0's.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The tables that carry a tenant.
const TABLES: [&str; 2] = ["accounts", "transfers"];

/// The single-column unique constraint of migration 000002 (`.unique_key()` on the column:
/// PostgreSQL names it `<table>_<column>_key`).
const KEY_UNIQUE_ACROSS_TENANTS: &str = "transfers_idempotency_key_key";

/// Its replacement on PostgreSQL: a key is unique within its tenant.
const KEY_UNIQUE_PER_TENANT: &str = "idx_transfers_tenant_idempotency_key";

/// The session's tenant: `app.tenant_id`, or 0 when the setting is unset or empty (`true`:
/// an unset setting is NULL instead of an error; a setting once set in a session reads as
/// `''` after its transaction, hence the `nullif`).
const CURRENT_TENANT: &str =
    "coalesce(nullif(current_setting('app.tenant_id', true), '')::bigint, 0)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .add_column(
                            ColumnDef::new(Alias::new("tenant_id"))
                                .big_integer()
                                .not_null()
                                .default(0),
                        )
                        .to_owned(),
                )
                .await?;
        }
        // A tenant's keyset pages: WHERE tenant_id = ? AND id > ? ORDER BY id.
        manager
            .create_index(
                Index::create()
                    .name("idx_accounts_tenant")
                    .table(Alias::new("accounts"))
                    .col(Alias::new("tenant_id"))
                    .col(Alias::new("id"))
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            // The per-tenant key before the key across tenants goes (one transaction: PostgreSQL
            // migrations run in one, so no moment is without either).
            manager
                .create_index(
                    Index::create()
                        .name(KEY_UNIQUE_PER_TENANT)
                        .table(Alias::new("transfers"))
                        .col(Alias::new("tenant_id"))
                        .col(Alias::new("idempotency_key"))
                        .unique()
                        .to_owned(),
                )
                .await?;
            let db = manager.get_connection();
            // No IF EXISTS: were the constraint named otherwise, the key would stay unique across
            // tenants, and the migration must fail rather than leave it so.
            db.execute_unprepared(&format!(
                "ALTER TABLE transfers DROP CONSTRAINT {KEY_UNIQUE_ACROSS_TENANTS}"
            ))
            .await?;
            for table in TABLES {
                db.execute_unprepared(&format!(
                    "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY; \
                     ALTER TABLE {table} FORCE ROW LEVEL SECURITY; \
                     CREATE POLICY tenant_isolation ON {table} \
                     USING (tenant_id = {CURRENT_TENANT}) \
                     WITH CHECK (tenant_id = {CURRENT_TENANT})"
                ))
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            for table in TABLES {
                db.execute_unprepared(&format!(
                    "DROP POLICY IF EXISTS tenant_isolation ON {table}; \
                     ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY; \
                     ALTER TABLE {table} DISABLE ROW LEVEL SECURITY"
                ))
                .await?;
            }
            // The key unique across tenants again; this fails, naming the key, if two tenants
            // have used the same one (undoing that is a decision about data, not a migration's).
            db.execute_unprepared(&format!(
                "ALTER TABLE transfers ADD CONSTRAINT {KEY_UNIQUE_ACROSS_TENANTS} \
                 UNIQUE (idempotency_key); \
                 DROP INDEX {KEY_UNIQUE_PER_TENANT}"
            ))
            .await?;
        }
        // Before the column: SQLite cannot drop an indexed column.
        manager
            .drop_index(
                Index::drop()
                    .name("idx_accounts_tenant")
                    .table(Alias::new("accounts"))
                    .to_owned(),
            )
            .await?;
        for table in TABLES {
            db.execute_unprepared(&format!("ALTER TABLE {table} DROP COLUMN tenant_id"))
                .await?;
        }
        Ok(())
    }
}
