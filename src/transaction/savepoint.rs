//! Savepoints: a nested unit inside a transaction.

use std::sync::atomic::Ordering;

use sea_orm::ConnectionTrait;

use super::error::TxError;
use super::handle::Transaction;

/// Runs `body` in a savepoint of `tx`: on error only the savepoint's work is undone and the
/// outer transaction continues. Savepoints nest (call `savepoint` again inside `body`).
pub async fn savepoint<F, T, E>(tx: &Transaction, body: F) -> Result<T, TxError<E>>
where
    F: AsyncFnOnce(&Transaction) -> Result<T, E> + Send,
    T: Send,
    E: Send,
{
    let depth = tx.depth.fetch_add(1, Ordering::AcqRel) + 1;
    let name = format!("dbservice_sp_{depth}");
    let result = async {
        tx.execute_unprepared(&format!("SAVEPOINT {name}"))
            .await
            .map_err(TxError::Database)?;
        match body(tx).await {
            Ok(value) => {
                tx.execute_unprepared(&format!("RELEASE SAVEPOINT {name}"))
                    .await
                    .map_err(TxError::Database)?;
                Ok(value)
            }
            Err(e) => {
                tx.execute_unprepared(&format!("ROLLBACK TO SAVEPOINT {name}"))
                    .await
                    .map_err(TxError::Database)?;
                Err(TxError::Aborted(e))
            }
        }
    }
    .await;
    tx.depth.fetch_sub(1, Ordering::AcqRel);
    result
}
