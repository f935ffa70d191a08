//! Session context (`db.with_context`): every statement sees its `app.*` settings, nothing of
//! them survives its transaction, `require_context` refuses work without one.

use dbservice::context::SessionContext;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::support::{connected_service as service, fresh_pg_database, with_params};

const SETTING: &str = "SELECT current_setting('app.tenant_id', true) AS v";

async fn setting(db: &impl ConnectionTrait) -> Option<String> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, SETTING))
        .await
        .expect("query")
        .expect("row");
    row.try_get_by_index::<Option<String>>(0).expect("column")
}

#[tokio::test]
async fn a_statement_sees_its_context_and_the_next_one_does_not() {
    let url = with_params(&fresh_pg_database().await, "connection_limit=1");
    let db = service(&url).await;
    let tenant = db
        .with_context(SessionContext::tenant("app.tenant_id", 42).expect("context"))
        .expect("postgres");
    assert_eq!(setting(&tenant).await.as_deref(), Some("42"));
    let after = setting(db.conn()).await;
    assert!(after.as_deref().unwrap_or("").is_empty(), "{after:?}");
    let in_tx = tenant
        .transaction(async |tx| Ok::<_, sea_orm::DbErr>(setting(tx).await))
        .await
        .expect("tx");
    assert_eq!(in_tx.as_deref(), Some("42"));
    let after = setting(db.conn()).await;
    assert!(after.as_deref().unwrap_or("").is_empty(), "{after:?}");
}
