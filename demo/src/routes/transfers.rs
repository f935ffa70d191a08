//! `POST /api/transfers` (optional `Idempotency-Key`) and
//! `GET /api/transfers?account_id=&limit=&after=`.
//!
//! A transfer runs in one transaction that first locks both account rows in id order
//! (`SELECT ... FOR UPDATE` on PostgreSQL and MySQL; on SQLite a no-op write that takes the
//! database's write lock, since SQLite locks the whole file and a read-then-write transaction
//! would fail with "database is locked" instead of waiting). Locking in id order means two
//! opposite transfers queue instead of deadlocking. With the rows locked, the balance check and
//! the two updates cannot interleave with another transfer, so money is never lost and no
//! balance goes negative (a CHECK constraint backs this up).
//!
//! The idempotency check runs inside the same transaction, after the locks: a retry of a
//! transfer that committed sees it and gets the original back (201, `Idempotent-Replayed: true`)
//! without moving money again; a concurrent duplicate that slips past the check hits the unique
//! index, rolls back, and is answered with the original too.
//!
//! With tenancy on, all of it runs in the request's tenant [`Scope`]: the locking SELECT sees
//! only the tenant's accounts, so a transfer from or to another tenant's account is a 404
//! like one naming a missing account, and the transfer row is the tenant's.
//!
//! The transaction runs through
//! [`DbService::transaction_with`](dbservice::DbService::transaction_with), so it is bounded
//! by `transaction_max_wait` (503) and `transaction_timeout` (504), and a client that disconnects
//! mid-request cannot leave it half-done: it commits or rolls back as a whole.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbBackend,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
};
use serde::Deserialize;

use super::accounts::Page;
use super::consistency::{reader, tell_position};
use super::{MAX_BALANCE_CENTS, ObjectBody, from_object, page_limit};
use crate::entities::{accounts, transfers};
use crate::tenancy::Scope;
use dbservice::http::ApiError;
use dbservice::{Isolation, TxError};

/// Body of `POST /api/transfers`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTransfer {
    from_account_id: i64,
    to_account_id: i64,
    amount_cents: i64,
}

/// Query of `GET /api/transfers`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    account_id: Option<i64>,
    limit: Option<u64>,
    after: Option<i64>,
}

enum Outcome {
    Created(transfers::Model),
    Replayed(transfers::Model),
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(raw) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = raw
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.chars().all(|c| c.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 printable ASCII characters",
            )
        })?;
    Ok(Some(key.to_owned()))
}

fn validate(t: &NewTransfer) -> Result<(), ApiError> {
    if !(1..=MAX_BALANCE_CENTS).contains(&t.amount_cents) {
        return Err(ApiError::bad_request(
            "invalid_amount",
            format!(
                "amount_cents must be from 1 to {MAX_BALANCE_CENTS}, got {}",
                t.amount_cents
            ),
        ));
    }
    if t.from_account_id == t.to_account_id {
        return Err(ApiError::unprocessable(
            "same_account",
            format!(
                "cannot transfer from account {} to itself",
                t.from_account_id
            ),
        ));
    }
    Ok(())
}

pub(crate) async fn create(
    db: Scope,
    req: HttpRequest,
    body: ObjectBody,
) -> Result<HttpResponse, ApiError> {
    let t: NewTransfer = from_object(body)?;
    validate(&t)?;
    let key = idempotency_key(&req)?;
    let outcome = run_transfer(&db, &t, key.as_deref()).await?;
    let mut response = HttpResponse::Created();
    tell_position(db.service(), &mut response);
    Ok(match outcome {
        Outcome::Created(t) => response.json(t),
        Outcome::Replayed(t) => response
            .insert_header(("Idempotent-Replayed", "true"))
            .json(t),
    })
}

/// What can stop a transfer inside its transaction.
#[derive(Debug, thiserror::Error)]
enum TransferError {
    /// A database error; kept as the source so serialization failures are retried.
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// A business-rule or input error, answered as is.
    #[error("{0}")]
    Api(ApiError),
    /// Another request with the same `Idempotency-Key` committed first.
    #[error("duplicate idempotency key")]
    DuplicateKey,
}

impl From<ApiError> for TransferError {
    fn from(e: ApiError) -> Self {
        TransferError::Api(e)
    }
}

async fn run_transfer(db: &Scope, t: &NewTransfer, key: Option<&str>) -> Result<Outcome, ApiError> {
    // Row locks in id order under READ COMMITTED (see the module docs); retries cover the
    // rare deadlock the database may still report.
    let opts = db
        .service()
        .tx_options()
        .isolation(Isolation::ReadCommitted)
        .retries(3);
    let result = db
        .transaction_with(opts, async |txn| {
            transfer_in(txn, t, key, db.tenant_id()).await
        })
        .await;
    match result {
        Ok(outcome) => Ok(outcome),
        Err(TxError::Aborted(TransferError::DuplicateKey)) => {
            let Some(key) = key else {
                return Err(ApiError::internal(
                    &"unique violation without an idempotency key",
                ));
            };
            // A concurrent request with the same key committed first: answer like a retry.
            let original = find_by_key(db, key).await?.ok_or_else(|| {
                ApiError::conflict(
                    "idempotency_conflict",
                    "the idempotency key is being used concurrently",
                )
            })?;
            replay(original, t)
        }
        Err(TxError::Aborted(TransferError::Api(e))) => Err(e),
        Err(TxError::CommitOutcomeUnknown(why)) => resolve_unknown(db, t, key, why).await,
        Err(TxError::Aborted(TransferError::Db(e))) | Err(TxError::Database(e)) => Err(e.into()),
        Err(other) => Err(other.into()),
    }
}

/// A COMMIT whose answer never came: with an idempotency key the transfer can be looked up
/// (found: it committed, answered as a replay); otherwise, or if it is not (yet) visible, the
/// client is told the outcome is unknown and to retry with the same key, which cannot move the
/// money twice.
async fn resolve_unknown(
    db: &Scope,
    t: &NewTransfer,
    key: Option<&str>,
    why: String,
) -> Result<Outcome, ApiError> {
    let unknown = || ApiError::from(TxError::<TransferError>::CommitOutcomeUnknown(why.clone()));
    let Some(key) = key else {
        return Err(unknown());
    };
    match find_by_key(db, key).await {
        Ok(Some(original)) => replay(original, t),
        Ok(None) | Err(_) => Err(unknown()),
    }
}

fn replay(original: transfers::Model, t: &NewTransfer) -> Result<Outcome, ApiError> {
    if original.from_account_id != t.from_account_id
        || original.to_account_id != t.to_account_id
        || original.amount_cents != t.amount_cents
    {
        return Err(ApiError::conflict(
            "idempotency_key_reused",
            "this Idempotency-Key was already used for a different transfer",
        ));
    }
    Ok(Outcome::Replayed(original))
}

async fn find_by_key(
    conn: &impl ConnectionTrait,
    key: &str,
) -> Result<Option<transfers::Model>, sea_orm::DbErr> {
    transfers::Entity::find()
        .filter(transfers::Column::IdempotencyKey.eq(key))
        .one(conn)
        .await
}

async fn transfer_in(
    txn: &dbservice::Transaction,
    t: &NewTransfer,
    key: Option<&str>,
    tenant_id: i64,
) -> Result<Outcome, TransferError> {
    let ids = [
        Ord::min(t.from_account_id, t.to_account_id),
        Ord::max(t.from_account_id, t.to_account_id),
    ];
    let mut lock = accounts::Entity::find()
        .filter(accounts::Column::Id.is_in(ids))
        .order_by_asc(accounts::Column::Id);
    if txn.get_database_backend() == DbBackend::Sqlite {
        // Take SQLite's write lock before any read (see the module docs).
        accounts::Entity::update_many()
            .col_expr(
                accounts::Column::BalanceCents,
                Expr::col(accounts::Column::BalanceCents),
            )
            .filter(accounts::Column::Id.is_in(ids))
            .exec(txn)
            .await?;
    } else {
        lock = lock.lock_exclusive();
    }
    let rows = lock.all(txn).await?;

    if let Some(key) = key
        && let Some(original) = find_by_key(txn, key).await?
    {
        return Ok(replay(original, t)?);
    }

    let find = |id: i64| {
        rows.iter().find(|a| a.id == id).ok_or_else(|| {
            ApiError::not_found("account_not_found", format!("account {id} does not exist"))
        })
    };
    let from = find(t.from_account_id)?;
    let to = find(t.to_account_id)?;
    if to
        .balance_cents
        .checked_add(t.amount_cents)
        .is_none_or(|sum| sum > MAX_BALANCE_CENTS)
    {
        return Err(ApiError::unprocessable(
            "balance_limit_exceeded",
            format!(
                "account {} holds {} cents; receiving {} would exceed the limit of {MAX_BALANCE_CENTS}",
                to.id, to.balance_cents, t.amount_cents
            ),
        )
        .into());
    }
    if from.balance_cents < t.amount_cents {
        return Err(ApiError::unprocessable(
            "insufficient_funds",
            format!(
                "account {} has {} cents, cannot transfer {}",
                from.id, from.balance_cents, t.amount_cents
            ),
        )
        .into());
    }

    for (id, delta) in [
        (t.from_account_id, -t.amount_cents),
        (t.to_account_id, t.amount_cents),
    ] {
        accounts::add_to_balance(txn, id, delta).await?;
    }
    let created = transfers::ActiveModel {
        from_account_id: Set(t.from_account_id),
        to_account_id: Set(t.to_account_id),
        amount_cents: Set(t.amount_cents),
        idempotency_key: Set(key.map(str::to_owned)),
        created_at: Set(Utc::now()),
        tenant_id: Set(tenant_id),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(|e| match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) if key.is_some() => TransferError::DuplicateKey,
        _ => TransferError::Db(e),
    })?;
    Ok(Outcome::Created(created))
}

pub(crate) async fn list(
    db: Scope,
    req: HttpRequest,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let read = reader(&db, &req).await?;
    let limit = page_limit(q.limit)?;
    let mut query = transfers::Entity::find().order_by_asc(transfers::Column::Id);
    if let Some(account) = q.account_id {
        if accounts::Entity::find_by_id(account)
            .one(&read)
            .await?
            .is_none()
        {
            return Err(ApiError::not_found(
                "account_not_found",
                format!("account {account} does not exist"),
            ));
        }
        query = query.filter(
            Condition::any()
                .add(transfers::Column::FromAccountId.eq(account))
                .add(transfers::Column::ToAccountId.eq(account)),
        );
    }
    if let Some(after) = q.after {
        query = query.filter(transfers::Column::Id.gt(after));
    }
    let items = query.limit(limit).all(&read).await?;
    let next_after = (items.len() as u64 == limit)
        .then(|| items.last().map(|t| t.id))
        .flatten();
    Ok(HttpResponse::Ok().json(Page { items, next_after }))
}
