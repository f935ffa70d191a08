use sea_orm_migration::{prelude::*, schema::*};

use crate::m20250101_000001_create_accounts::Accounts;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Transfers::Table)
                    .if_not_exists()
                    .col(big_integer(Transfers::Id).auto_increment().primary_key())
                    .col(big_integer(Transfers::FromAccountId))
                    .col(big_integer(Transfers::ToAccountId))
                    .col(
                        big_integer(Transfers::AmountCents)
                            .check(Expr::col(Transfers::AmountCents).gt(0)),
                    )
                    .col(string_len_null(Transfers::IdempotencyKey, 255).unique_key())
                    .col(
                        timestamp_with_time_zone(Transfers::CreatedAt)
                            .default(Expr::current_timestamp()),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_transfers_from")
                            .from(Transfers::Table, Transfers::FromAccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_transfers_to")
                            .from(Transfers::Table, Transfers::ToAccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // Listing an account's transfers by keyset: WHERE from = ? / to = ? AND id > ?.
        for (name, col) in [
            ("idx_transfers_from", Transfers::FromAccountId),
            ("idx_transfers_to", Transfers::ToAccountId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .if_not_exists()
                        .name(name)
                        .table(Transfers::Table)
                        .col(col)
                        .col(Transfers::Id)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Transfers::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Transfers {
    Table,
    Id,
    FromAccountId,
    ToAccountId,
    AmountCents,
    IdempotencyKey,
    CreatedAt,
}
