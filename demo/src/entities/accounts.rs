//! `accounts(id, owner, balance_cents >= 0, created_at, tenant_id)`.

use sea_orm::entity::prelude::*;
use serde::Serialize;

/// An account row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, utoipa::ToSchema)]
#[schema(as = Account)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Who owns it.
    pub owner: String,
    /// Balance in cents; never negative (a CHECK constraint guards it too).
    pub balance_cents: i64,
    /// Creation time (UTC).
    #[schema(value_type = String, format = DateTime)]
    pub created_at: ChronoDateTimeUtc,
    /// The tenant the row belongs to; 0 when written with tenancy off. Not in the JSON: a
    /// tenant names itself in every request, and sees no other tenant's rows.
    #[serde(skip)]
    pub tenant_id: i64,
}

/// No relations are navigated from accounts.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Adds `delta` cents to account `id`'s balance (negative: a debit) in one UPDATE, relative to
/// the stored value, so it composes with the row lock a transfer holds.
pub async fn add_to_balance(
    conn: &impl sea_orm::ConnectionTrait,
    id: i64,
    delta: i64,
) -> Result<(), sea_orm::DbErr> {
    use sea_orm::sea_query::{Expr, ExprTrait};
    use sea_orm::{ColumnTrait, QueryFilter};
    Entity::update_many()
        .col_expr(
            Column::BalanceCents,
            Expr::col(Column::BalanceCents).add(delta),
        )
        .filter(Column::Id.eq(id))
        .exec(conn)
        .await
        .map(|_| ())
}
