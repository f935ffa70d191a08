//! `POST /api/accounts`, `GET /api/accounts/{id}`, `GET /api/accounts?limit=&after=`.
//!
//! With tenancy on, each runs in the request's tenant [`Scope`]: row-level security shows it
//! only the tenant's accounts (another tenant's id is a 404 like a missing one), and the
//! accounts it opens are the tenant's.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};

use super::consistency::{reader, tell_position};
use super::{MAX_BALANCE_CENTS, ObjectBody, from_object, page_limit};
use crate::entities::accounts;
use crate::tenancy::Scope;
use dbservice::http::ApiError;

/// Body of `POST /api/accounts`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    owner: String,
    balance_cents: i64,
}

/// Body of `POST /api/accounts/batch`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccounts {
    accounts: Vec<NewAccount>,
}

/// The most accounts one `POST /api/accounts/batch` may open.
pub const MAX_BATCH: usize = 10_000;

/// Query of `GET /api/accounts`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<u64>,
    after: Option<i64>,
}

/// A page of results with the cursor for the next one (`null` on the last page).
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub(crate) items: Vec<T>,
    pub(crate) next_after: Option<i64>,
}

pub(crate) async fn create(db: Scope, body: ObjectBody) -> Result<HttpResponse, ApiError> {
    let NewAccount {
        owner,
        balance_cents,
    } = from_object(body)?;
    let (owner, balance_cents) = validated(owner, balance_cents, None)?;
    let account = accounts::ActiveModel {
        owner: Set(owner),
        balance_cents: Set(balance_cents),
        created_at: Set(Utc::now()),
        tenant_id: Set(db.tenant_id()),
        ..Default::default()
    }
    .insert(&db)
    .await?;
    let mut response = HttpResponse::Created();
    tell_position(db.service(), &mut response);
    Ok(response
        .insert_header(("Location", format!("/api/accounts/{}", account.id)))
        .json(account))
}

/// The owner trimmed and the balance, or a 400 naming the field (and the row of a batch).
fn validated(
    owner: String,
    balance_cents: i64,
    row: Option<usize>,
) -> Result<(String, i64), ApiError> {
    let at = row.map(|i| format!("accounts[{i}]: ")).unwrap_or_default();
    let owner = owner.trim().to_owned();
    // Control characters (a NUL byte above all, which PostgreSQL text cannot hold) have no
    // place in a name and would otherwise surface as a 500.
    if owner.is_empty() || owner.chars().count() > 200 || owner.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_owner",
            format!("{at}owner must be 1 to 200 characters, without control characters"),
        ));
    }
    if !(0..=MAX_BALANCE_CENTS).contains(&balance_cents) {
        return Err(ApiError::bad_request(
            "invalid_balance",
            format!("{at}balance_cents must be from 0 to {MAX_BALANCE_CENTS}, got {balance_cents}"),
        ));
    }
    Ok((owner, balance_cents))
}

/// `POST /api/accounts/batch`: opens up to [`MAX_BATCH`] accounts in one transaction, all or
/// nothing (chunked `INSERT`s, or `COPY` on PostgreSQL from 1000 rows).
pub(crate) async fn create_batch(db: Scope, body: ObjectBody) -> Result<HttpResponse, ApiError> {
    let NewAccounts { accounts: wanted } = from_object(body)?;
    if wanted.is_empty() || wanted.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "invalid_batch",
            format!(
                "accounts must hold 1 to {MAX_BATCH} accounts, got {}",
                wanted.len()
            ),
        ));
    }
    let now = Utc::now();
    let mut models = Vec::with_capacity(wanted.len());
    for (i, a) in wanted.into_iter().enumerate() {
        let (owner, balance_cents) = validated(a.owner, a.balance_cents, Some(i))?;
        models.push(accounts::ActiveModel {
            owner: Set(owner),
            balance_cents: Set(balance_cents),
            created_at: Set(now),
            tenant_id: Set(db.tenant_id()),
            ..Default::default()
        });
    }
    let done = db
        .insert_batch(models, dbservice::batch::BatchOptions::default())
        .await?;
    let mut response = HttpResponse::Created();
    tell_position(db.service(), &mut response);
    Ok(response.json(serde_json::json!({
        "inserted": done.rows,
        "statements": done.statements,
        "method": done.method,
    })))
}

pub(crate) async fn get(
    db: Scope,
    req: HttpRequest,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let account = accounts::Entity::find_by_id(id)
        .one(&reader(&db, &req).await?)
        .await?
        .ok_or_else(|| {
            ApiError::not_found("account_not_found", format!("account {id} does not exist"))
        })?;
    Ok(HttpResponse::Ok().json(account))
}

pub(crate) async fn list(
    db: Scope,
    req: HttpRequest,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let read = reader(&db, &req).await?;
    let limit = page_limit(q.limit)?;
    let mut query = accounts::Entity::find().order_by_asc(accounts::Column::Id);
    if let Some(after) = q.after {
        query = query.filter(accounts::Column::Id.gt(after));
    }
    let items = query.limit(limit).all(&read).await?;
    let next_after = (items.len() as u64 == limit)
        .then(|| items.last().map(|a| a.id))
        .flatten();
    Ok(HttpResponse::Ok().json(Page { items, next_after }))
}
