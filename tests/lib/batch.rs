//! Batch writes on all three backends: chunked `INSERT`s at the bind-parameter limit's edge,
//! all or nothing when one row fails, and `COPY` on PostgreSQL.

use std::time::Duration;

use dbservice::batch::{BatchError, BatchMethod, BatchOptions, chunk_rows};
use dbservice::{DbService, config::Backend};
use sea_orm::ActiveValue::Set;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

mod items {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "batch_items")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
        pub qty: i32,
        pub note: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn rows(n: usize, from: usize) -> Vec<items::ActiveModel> {
    (from..from + n)
        .map(|i| items::ActiveModel {
            name: Set(format!("item-{i}")),
            qty: Set(i32::try_from(i % 1000).unwrap_or(0)),
            // Text that COPY must escape, on some rows; NULL on others.
            note: Set((i % 3 != 0).then(|| format!("tab\there\\{i}\nline"))),
            ..Default::default()
        })
        .collect()
}

async fn count(db: &DbService) -> i64 {
    let backend = match db.backend() {
        Backend::Postgres => DbBackend::Postgres,
        Backend::MySql => DbBackend::MySql,
        Backend::Sqlite => DbBackend::Sqlite,
    };
    let row = db
        .conn()
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT COUNT(*) FROM batch_items",
        ))
        .await
        .expect("count")
        .expect("row");
    row.try_get_by_index::<i64>(0).expect("count")
}

async fn create_table(db: &DbService) {
    let sql = match db.backend() {
        Backend::Postgres => {
            "CREATE TABLE batch_items (id serial PRIMARY KEY, name text NOT NULL UNIQUE, \
             qty int NOT NULL CHECK (qty >= 0), note text)"
        }
        Backend::MySql => {
            "CREATE TABLE batch_items (id int AUTO_INCREMENT PRIMARY KEY, name varchar(64) NOT NULL UNIQUE, \
             qty int NOT NULL CHECK (qty >= 0), note text)"
        }
        Backend::Sqlite => {
            "CREATE TABLE batch_items (id integer PRIMARY KEY AUTOINCREMENT, name text NOT NULL UNIQUE, \
             qty int NOT NULL CHECK (qty >= 0), note text)"
        }
    };
    db.conn()
        .execute_unprepared(sql)
        .await
        .expect("create table");
}

/// The checks every backend passes: one row past a chunk's worth of binds takes two
/// statements and lands whole; a failing row leaves nothing behind.
async fn chunked_inserts_are_all_or_nothing(db: &DbService) {
    create_table(db).await;
    let per = chunk_rows(db.backend(), 3, None);
    let tx = dbservice::TxOptions::default().timeout(Duration::from_secs(60));
    let done = db
        .insert_batch(
            rows(per + 1, 0),
            BatchOptions::default()
                .method(BatchMethod::Insert)
                .max_chunk_rows(usize::MAX)
                .tx(tx),
        )
        .await
        .expect("batch");
    assert_eq!(
        (done.rows, done.statements),
        ((per + 1) as u64, 2),
        "{done:?}"
    );
    assert_eq!(count(db).await, (per + 1) as i64);
    // By default, 1000 rows per statement (the bind limit still applies).
    let done = db
        .insert_batch(
            rows(2500, 500_000),
            BatchOptions::default().method(BatchMethod::Insert),
        )
        .await
        .expect("default chunks");
    assert_eq!((done.rows, done.statements), (2500, 3), "{done:?}");
    let base = (per + 1 + 2500) as i64;
    assert_eq!(count(db).await, base);

    // Seed 000's 100 rows per INSERT; the 250th row breaks the CHECK: nothing is kept.
    let mut bad = rows(300, per + 1);
    bad[249] = items::ActiveModel {
        name: Set("negative".into()),
        qty: Set(-1),
        note: Set(None),
        ..Default::default()
    };
    let err = db
        .insert_batch(
            bad,
            BatchOptions::default()
                .method(BatchMethod::Insert)
                .max_chunk_rows(100),
        )
        .await
        .expect_err("a failing row");
    assert!(matches!(err, BatchError::Transaction(_)), "{err}");
    assert_eq!(count(db).await, base, "the first chunks were rolled back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_on_postgres_by_insert_and_by_copy() {
    let db = crate::support::connected_service(&crate::support::fresh_pg_database().await).await;
    chunked_inserts_are_all_or_nothing(&db).await;
    let before = count(&db).await;
    // Auto: a small batch by INSERT, a large one by COPY.
    let small = db
        .insert_batch(rows(10, 100_000), BatchOptions::default())
        .await
        .expect("small");
    assert_eq!((small.method, small.rows), (BatchMethod::Insert, 10));
    let large = db
        .insert_batch(rows(5000, 200_000), BatchOptions::default())
        .await
        .expect("large");
    assert_eq!(
        (large.method, large.rows, large.statements),
        (BatchMethod::Copy, 5000, 1)
    );
    assert_eq!(count(&db).await, before + 5010);
    // COPY wrote the escapes back as they were, and NULLs as NULL.
    let row = db
        .conn()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT note, (SELECT count(*) FROM batch_items WHERE name LIKE 'item-2%' AND note IS NULL) \
             FROM batch_items WHERE name = 'item-200002'",
        ))
        .await
        .expect("read back")
        .expect("row");
    assert_eq!(
        row.try_get_by_index::<Option<String>>(0)
            .expect("note")
            .as_deref(),
        Some("tab\there\\200002\nline")
    );
    assert!(row.try_get_by_index::<i64>(1).expect("nulls") > 1000);
    // A duplicate name in a COPY: nothing of that COPY is kept.
    let mut dup = rows(2000, 300_000);
    dup[1999].name = Set("item-300000".into());
    let err = db
        .insert_batch(dup, BatchOptions::default().method(BatchMethod::Copy))
        .await
        .expect_err("duplicate");
    assert!(
        err.to_string().contains("duplicate") || matches!(err, BatchError::Transaction(_)),
        "{err}"
    );
    assert_eq!(count(&db).await, before + 5010);
    db.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn batches_on_sqlite_and_copy_is_refused_there() {
    let dir = tempfile::tempdir().expect("dir");
    let db = crate::support::connected_service(&crate::support::sqlite_url(&dir)).await;
    chunked_inserts_are_all_or_nothing(&db).await;
    let err = db
        .insert_batch(
            rows(3, 900_000),
            BatchOptions::default().method(BatchMethod::Copy),
        )
        .await
        .expect_err("no COPY on SQLite");
    assert!(
        matches!(err, BatchError::Unsupported(_)) && err.to_string().contains("PostgreSQL"),
        "{err}"
    );
    db.close(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_on_mysql() {
    let Some(url) = crate::support::fresh_mysql_database().await else {
        return;
    };
    let db = crate::support::connected_service(&url).await;
    chunked_inserts_are_all_or_nothing(&db).await;
    db.close(Duration::from_secs(5)).await;
}
