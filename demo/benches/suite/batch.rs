//! Batch writes, rows per second: one `INSERT` per row, `insert_batch` by chunked `INSERT`
//! (at the bind limit, and 100 rows per statement, a common hand-written size), `insert_batch`
//! by `COPY`, and psql's `COPY ... FROM STDIN` of the same rows as the limit.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use dbservice::batch::{BatchMethod, BatchOptions};
use dbservice::{DbService, TxOptions, config::DbConfig};
use dbservice_demo::entities::accounts;
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, ConnectionTrait};

use crate::options::Opts;
use crate::stats::median;

fn models(n: usize, tag: &str) -> Vec<accounts::ActiveModel> {
    let now = Utc::now();
    (0..n)
        .map(|i| accounts::ActiveModel {
            owner: Set(format!("bench-batch-{tag}-{i}")),
            balance_cents: Set(i as i64),
            created_at: Set(now),
            ..Default::default()
        })
        .collect()
}

async fn clean(db: &DbService) {
    let _ = db
        .conn()
        .execute_unprepared("DELETE FROM accounts WHERE owner LIKE 'bench-batch-%'")
        .await;
}

/// psql's own `COPY FROM STDIN` of `n` rows; seconds taken, or `None` without psql.
fn psql_copy(url: &str, n: usize) -> Option<f64> {
    let psql = crate::postgres_bin("psql")?;
    let mut data = String::with_capacity(n * 32);
    let now = Utc::now().to_rfc3339();
    for i in 0..n {
        let _ = writeln!(data, "bench-batch-psql-{i}\t{i}\t{now}");
    }
    let started = Instant::now();
    let mut child = Command::new(psql)
        .args([
            url,
            "-q",
            "-c",
            "COPY accounts (owner, balance_cents, created_at) FROM STDIN",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(data.as_bytes()).ok()?;
    let ok = child.wait().ok()?.success();
    ok.then(|| started.elapsed().as_secs_f64())
}

/// Runs the section; returns its Markdown.
pub(crate) async fn section(opts: &Opts, url: &str) -> String {
    let db = DbService::new(DbConfig::from_url(url).expect("valid URL")).expect("service");
    db.connect().await.expect("connects");
    let (batch_rows, single_rows) = if opts.quick {
        (20_000, 1_000)
    } else {
        (100_000, 5_000)
    };
    let tx = TxOptions::default().timeout(Duration::from_secs(300));
    let methods: [(&str, usize); 6] = [
        ("one INSERT per row (db.conn())", single_rows),
        ("insert_batch, chunked INSERT at the bind limit", batch_rows),
        (
            "insert_batch, chunked INSERT of 100 rows (seed 000)",
            batch_rows,
        ),
        ("insert_batch, chunked INSERT of 1000 rows", batch_rows),
        ("insert_batch, COPY", batch_rows),
        ("psql COPY FROM STDIN (the limit)", batch_rows),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); methods.len()];
    for round in 1..=opts.rounds {
        for (i, (name, n)) in methods.iter().enumerate() {
            clean(&db).await;
            let started = Instant::now();
            let ok = match i {
                0 => {
                    let mut ok = true;
                    for m in models(*n, "row") {
                        ok &= m.insert(db.conn()).await.is_ok();
                    }
                    ok
                }
                1 => db
                    .insert_batch(
                        models(*n, "insert"),
                        BatchOptions::default()
                            .method(BatchMethod::Insert)
                            .max_chunk_rows(usize::MAX)
                            .tx(tx),
                    )
                    .await
                    .is_ok(),
                2 | 3 => db
                    .insert_batch(
                        models(*n, "chunk"),
                        BatchOptions::default()
                            .method(BatchMethod::Insert)
                            .max_chunk_rows(if i == 2 { 100 } else { 1000 })
                            .tx(tx),
                    )
                    .await
                    .is_ok(),
                4 => db
                    .insert_batch(
                        models(*n, "copy"),
                        BatchOptions::default().method(BatchMethod::Copy).tx(tx),
                    )
                    .await
                    .is_ok(),
                _ => {
                    let (u, n) = (url.to_owned(), *n);
                    match tokio::task::spawn_blocking(move || psql_copy(&u, n)).await {
                        Ok(Some(secs)) => {
                            rates[i].push(n as f64 / secs);
                            eprintln!(
                                "round {round}: batch {name:<52} {:>9.0} rows/s",
                                n as f64 / secs
                            );
                        }
                        _ => eprintln!("round {round}: batch {name}: psql not available"),
                    }
                    continue;
                }
            };
            let secs = started.elapsed().as_secs_f64();
            if ok {
                rates[i].push(*n as f64 / secs);
                eprintln!(
                    "round {round}: batch {name:<52} {:>9.0} rows/s",
                    *n as f64 / secs
                );
            } else {
                eprintln!("round {round}: batch {name}: failed");
            }
        }
    }
    clean(&db).await;
    db.close(Duration::from_secs(5)).await;
    let limit = median(rates.last().cloned().unwrap_or_default());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Batch writes: rows per second into `accounts` (3 columns, 100,000 rows loaded)\n\n\
         | method | rows per run | rows/s (median) | × psql COPY |\n|---|---:|---:|---:|"
    );
    for ((name, n), r) in methods.iter().zip(&rates) {
        let rate = median(r.clone());
        let _ = writeln!(
            out,
            "| {name} | {n} | {rate:.0} | {} |",
            if limit > 0.0 {
                format!("{:.2}", rate / limit)
            } else {
                "n/a".into()
            }
        );
    }
    out.push('\n');
    out
}
