//! `POST /api/accounts`, `GET /api/accounts/{id}`, `GET /api/accounts?limit=&after=`.

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
use dbservice::DbService;
use dbservice::http::ApiError;

/// Body of `POST /api/accounts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    owner: String,
    balance_cents: i64,
}

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

pub(crate) async fn create(
    db: web::Data<DbService>,
    body: ObjectBody,
) -> Result<HttpResponse, ApiError> {
    let NewAccount {
        owner,
        balance_cents,
    } = from_object(body)?;
    let owner = owner.trim().to_owned();
    // Control characters (a NUL byte above all, which PostgreSQL text cannot hold) have no
    // place in a name and would otherwise surface as a 500.
    if owner.is_empty() || owner.chars().count() > 200 || owner.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_owner",
            "owner must be 1 to 200 characters, without control characters",
        ));
    }
    if !(0..=MAX_BALANCE_CENTS).contains(&balance_cents) {
        return Err(ApiError::bad_request(
            "invalid_balance",
            format!("balance_cents must be from 0 to {MAX_BALANCE_CENTS}, got {balance_cents}"),
        ));
    }
    let account = accounts::ActiveModel {
        owner: Set(owner),
        balance_cents: Set(balance_cents),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db.conn())
    .await?;
    let mut response = HttpResponse::Created();
    tell_position(&db, &mut response);
    Ok(response
        .insert_header(("Location", format!("/api/accounts/{}", account.id)))
        .json(account))
}

pub(crate) async fn get(
    db: web::Data<DbService>,
    req: HttpRequest,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let account = accounts::Entity::find_by_id(id)
        .one(&reader(&db, &req)?)
        .await?
        .ok_or_else(|| {
            ApiError::not_found("account_not_found", format!("account {id} does not exist"))
        })?;
    Ok(HttpResponse::Ok().json(account))
}

pub(crate) async fn list(
    db: web::Data<DbService>,
    req: HttpRequest,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let read = reader(&db, &req)?;
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
