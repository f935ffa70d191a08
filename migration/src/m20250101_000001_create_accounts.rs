use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .if_not_exists()
                    .col(big_integer(Accounts::Id).auto_increment().primary_key())
                    .col(string_len(Accounts::Owner, 200))
                    .col(
                        big_integer(Accounts::BalanceCents)
                            .check(Expr::col(Accounts::BalanceCents).gte(0)),
                    )
                    .col(
                        timestamp_with_time_zone(Accounts::CreatedAt)
                            .default(Expr::current_timestamp()),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Accounts::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum Accounts {
    Table,
    Id,
    Owner,
    BalanceCents,
    CreatedAt,
}
