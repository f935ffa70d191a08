//! `transfers(id, from_account_id, to_account_id, amount_cents > 0, idempotency_key unique per tenant, created_at, tenant_id)`.

use sea_orm::entity::prelude::*;
use serde::Serialize;

/// A transfer row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, utoipa::ToSchema)]
#[schema(as = Transfer)]
#[sea_orm(table_name = "transfers")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Debited account.
    pub from_account_id: i64,
    /// Credited account.
    pub to_account_id: i64,
    /// Amount in cents, above zero.
    pub amount_cents: i64,
    /// The client's `Idempotency-Key`, unique when present (per tenant on PostgreSQL; every
    /// row is tenant 0's while tenancy is off).
    pub idempotency_key: Option<String>,
    /// Creation time (UTC).
    #[schema(value_type = String, format = DateTime)]
    pub created_at: ChronoDateTimeUtc,
    /// The tenant the row belongs to; 0 when written with tenancy off. Not in the JSON: a
    /// tenant names itself in every request, and sees no other tenant's rows.
    #[serde(skip)]
    pub tenant_id: i64,
}

/// No relations are navigated from transfers.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
