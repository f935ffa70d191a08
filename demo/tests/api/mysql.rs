//! The ledger suite on MySQL/MariaDB (`TEST_MYSQL_URL`, else the local server as root);
//! skipped with a loud banner when no server answers.

use crate::ledger::ledger_suite;
use crate::support::{fresh_mysql_database, with_params};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_on_mariadb() {
    let Some(url) = fresh_mysql_database().await else {
        return;
    };
    ledger_suite(&with_params(&url, "connection_limit=5")).await;
}
