//! Savepoints: a nested unit inside a transaction.

use sea_orm::{DatabaseTransaction, TransactionTrait};

use super::error::TxError;

/// Runs `body` in a savepoint of `txn`: on error only the savepoint's work is undone and the
/// outer transaction continues.
pub async fn savepoint<F, T, E>(txn: &DatabaseTransaction, body: F) -> Result<T, TxError<E>>
where
    F: AsyncFnOnce(&DatabaseTransaction) -> Result<T, E> + Send,
    T: Send,
    E: Send,
{
    let inner = txn.begin().await.map_err(TxError::Database)?;
    match body(&inner).await {
        Ok(value) => {
            inner.commit().await.map_err(TxError::Database)?;
            Ok(value)
        }
        Err(e) => {
            inner.rollback().await.map_err(TxError::Database)?;
            Err(TxError::Aborted(e))
        }
    }
}
