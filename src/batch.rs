//! Batch writes at high throughput: many SeaORM active models inserted in one bounded
//! transaction, all or nothing, either as multi-row `INSERT`s in chunks that respect the
//! backend's bind-parameter limit, or on PostgreSQL as one `COPY ... FROM STDIN`.
//!
//! ```no_run
//! # async fn run(db: dbservice::DbService, rows: Vec<impl sea_orm::ActiveModelTrait + Clone + Send + Sync + 'static>) -> Result<(), dbservice::batch::BatchError> {
//! use dbservice::batch::BatchOptions;
//! let done = db.insert_batch(rows, BatchOptions::default()).await?;
//! println!("{} rows in {} statement(s) by {:?}", done.rows, done.statements, done.method);
//! # Ok(()) }
//! ```

use sea_orm::sea_query::Value;
use sea_orm::{ActiveModelTrait, DbErr, EntityName, EntityTrait, IdenStatic, Iterable};
use serde::Serialize;

use crate::config::Backend;
use crate::context::SessionContext;
use crate::service::DbService;
use crate::transaction::{Transaction, TxError, TxOptions};

/// PostgreSQL's limit on bind parameters in one statement (an `i16` count on the wire).
const POSTGRES_BIND_LIMIT: usize = 65_535;
/// MySQL's and MariaDB's limit on placeholders in one prepared statement.
const MYSQL_BIND_LIMIT: usize = 65_535;
/// SQLite's default `SQLITE_MAX_VARIABLE_NUMBER` (since 3.32).
const SQLITE_BIND_LIMIT: usize = 32_766;

/// Rows per `INSERT` by default (see [`BatchOptions::max_chunk_rows`]).
const DEFAULT_CHUNK_ROWS: usize = 1000;

/// How the rows reach the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchMethod {
    /// Multi-row `INSERT ... VALUES (...), (...)`, as many rows per statement as the bind
    /// limit (or `max_chunk_rows`) allows. Every backend.
    Insert,
    /// `COPY table (columns) FROM STDIN`, one round trip of data (PostgreSQL only).
    Copy,
}

/// How to write a batch.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct BatchOptions {
    /// The method; `None` picks `Copy` on PostgreSQL from `copy_from_rows` rows up, else
    /// `Insert`.
    pub method: Option<BatchMethod>,
    /// Rows per `INSERT` at most (besides the bind limit). Default: 1000, measured fastest
    /// (BENCHMARKS.md: 1.4× the rows/s of statements filled to the bind limit, whose building
    /// and parsing cost grows faster than the round trips they save; 1.5× chunks of 100).
    /// `usize::MAX` fills each statement to the bind limit.
    pub max_chunk_rows: Option<usize>,
    /// Where `method: None` switches to `Copy` on PostgreSQL. Default: 1000 rows.
    pub copy_from_rows: usize,
    /// The transaction's bounds; default: the service's (`transaction_max_wait`,
    /// `transaction_timeout`). A large batch may need a longer `timeout`.
    pub tx: Option<TxOptions>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            method: None,
            max_chunk_rows: Some(DEFAULT_CHUNK_ROWS),
            copy_from_rows: 1000,
            tx: None,
        }
    }
}

impl BatchOptions {
    /// Forces a method.
    pub fn method(mut self, method: BatchMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Caps the rows per `INSERT`.
    pub fn max_chunk_rows(mut self, rows: usize) -> Self {
        self.max_chunk_rows = Some(rows.max(1));
        self
    }

    /// The transaction's bounds.
    pub fn tx(mut self, opts: TxOptions) -> Self {
        self.tx = Some(opts);
        self
    }
}

/// What a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BatchOutcome {
    /// Rows written.
    pub rows: u64,
    /// Statements sent (`INSERT`s, or 1 for `COPY`).
    pub statements: u32,
    /// How.
    pub method: BatchMethod,
}

/// Why a batch was not written. Nothing was: the transaction rolled back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The request cannot be carried out as asked (e.g. `COPY` on SQLite, a value `COPY`
    /// cannot write); nothing was sent.
    #[error("batch: {0}")]
    Unsupported(String),
    /// The transaction failed (a row violated a constraint, a bound passed, ...).
    #[error(transparent)]
    Transaction(#[from] TxError<DbErr>),
}

fn bind_limit(backend: Backend) -> usize {
    match backend {
        Backend::Postgres => POSTGRES_BIND_LIMIT,
        Backend::MySql => MYSQL_BIND_LIMIT,
        Backend::Sqlite => SQLITE_BIND_LIMIT,
    }
}

/// The columns with a value (`Set` or `Unchanged`, as SeaORM's `insert_many` writes them) in
/// any of `models`, in the entity's order.
fn set_columns<A: ActiveModelTrait>(models: &[A]) -> Vec<<A::Entity as EntityTrait>::Column> {
    <A::Entity as EntityTrait>::Column::iter()
        .filter(|c| models.iter().any(|m| !m.get(*c).is_not_set()))
        .collect()
}

/// Rows per `INSERT`: as many as the bind limit allows for `columns` columns, capped.
pub fn chunk_rows(backend: Backend, columns: usize, cap: Option<usize>) -> usize {
    let by_limit = (bind_limit(backend) / columns.max(1)).max(1);
    cap.map_or(by_limit, |c| c.clamp(1, by_limit))
}

impl DbService {
    /// Inserts `models` in one transaction, all or nothing (see [`crate::batch`]). Chunked
    /// `INSERT`s respect the backend's bind-parameter limit; on PostgreSQL large batches go
    /// through `COPY`. The transaction is bounded like any other (`opts.tx`, else the
    /// service's defaults) and retried on serialization failures.
    pub async fn insert_batch<A>(
        &self,
        models: Vec<A>,
        opts: BatchOptions,
    ) -> Result<BatchOutcome, BatchError>
    where
        A: ActiveModelTrait + Clone + Send + Sync + 'static,
    {
        self.insert_batch_in(models, opts, None).await
    }

    /// [`insert_batch`](Self::insert_batch) with a session context (none: refused under
    /// `require_context`). With one, `method: None` picks `Insert`: PostgreSQL refuses
    /// `COPY FROM` into a table under row-level security, which a context is usually for.
    pub(crate) async fn insert_batch_in<A>(
        &self,
        models: Vec<A>,
        opts: BatchOptions,
        context: Option<SessionContext>,
    ) -> Result<BatchOutcome, BatchError>
    where
        A: ActiveModelTrait + Clone + Send + Sync + 'static,
    {
        if context.is_none() && self.conn().requires_context() {
            self.instruments().on_context_refused();
            let refused = crate::context::refused("the batch write");
            return Err(BatchError::Transaction(TxError::Database(refused)));
        }
        let backend = self.backend();
        let forced = opts.method.is_some();
        let method = match opts.method {
            Some(m) => m,
            None if backend == Backend::Postgres
                && context.is_none()
                && models.len() >= opts.copy_from_rows =>
            {
                BatchMethod::Copy
            }
            None => BatchMethod::Insert,
        };
        if models.is_empty() {
            return Ok(BatchOutcome {
                rows: 0,
                statements: 0,
                method,
            });
        }
        let columns = set_columns(&models);
        if columns.is_empty() {
            return Err(BatchError::Unsupported(
                "no column is set in any row".into(),
            ));
        }
        let tx = opts.tx.unwrap_or_else(|| self.tx_options());
        if method == BatchMethod::Copy {
            if backend != Backend::Postgres {
                return Err(BatchError::Unsupported(format!(
                    "COPY needs PostgreSQL; this is {}: use BatchMethod::Insert",
                    backend.name()
                )));
            }
            match copy_text(&models, &columns) {
                Ok((statement, data)) => {
                    let (statement, data) = (&statement, &data);
                    let rows = self
                        .run_transaction(
                            tx,
                            async |t: &Transaction| t.copy_in(statement, data).await,
                            None,
                            context.clone(),
                        )
                        .await?;
                    return Ok(BatchOutcome {
                        rows,
                        statements: 1,
                        method,
                    });
                }
                Err(e) if forced => return Err(e),
                // Chosen automatically for rows COPY cannot write (a type it does not know,
                // rows with different columns): the same batch by INSERT, as a smaller one.
                Err(_) => {}
            }
        }
        let per = chunk_rows(backend, columns.len(), opts.max_chunk_rows);
        let models = &models;
        let insert = async |t: &Transaction| {
            let mut rows = 0;
            let mut statements = 0;
            for chunk in models.chunks(per) {
                rows += A::Entity::insert_many(chunk.iter().cloned())
                    .exec_without_returning(t)
                    .await?;
                statements += 1;
            }
            Ok::<_, DbErr>((rows, statements))
        };
        let (rows, statements) = self.run_transaction(tx, insert, None, context).await?;
        Ok(BatchOutcome {
            rows,
            statements,
            method: BatchMethod::Insert,
        })
    }
}

/// A quoted identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The `COPY` statement and its data in PostgreSQL's text format: tab-separated, `\N` for
/// NULL, backslash escapes.
fn copy_text<A: ActiveModelTrait>(
    models: &[A],
    columns: &[<A::Entity as EntityTrait>::Column],
) -> Result<(String, Vec<u8>), BatchError> {
    let entity = A::Entity::default();
    let table = match entity.schema_name() {
        Some(schema) => format!("{}.{}", ident(schema), ident(entity.table_name())),
        None => ident(entity.table_name()),
    };
    let names: Vec<String> = columns.iter().map(|c| ident(c.as_str())).collect();
    let statement = format!("COPY {table} ({}) FROM STDIN", names.join(", "));
    let mut data = Vec::with_capacity(models.len() * 32 * columns.len());
    for (i, model) in models.iter().enumerate() {
        for (j, column) in columns.iter().enumerate() {
            if j > 0 {
                data.push(b'\t');
            }
            let Some(value) = model.get(*column).into_value() else {
                return Err(BatchError::Unsupported(format!(
                    "row {i} does not set column `{}`, which other rows set; COPY writes the \
                     same columns for every row",
                    column.as_str()
                )));
            };
            write_copy_value(&mut data, &value).map_err(|kind| {
                BatchError::Unsupported(format!(
                    "COPY cannot write a {kind} (column `{}`); use BatchMethod::Insert",
                    column.as_str()
                ))
            })?;
        }
        data.push(b'\n');
    }
    Ok((statement, data))
}

/// One value in COPY's text format; `Err` names a type it cannot write.
fn write_copy_value(out: &mut Vec<u8>, value: &Value) -> Result<(), &'static str> {
    use std::io::Write;
    macro_rules! plain {
        ($v:expr) => {
            match $v {
                Some(x) => {
                    let _ = write!(out, "{x}");
                }
                None => out.extend_from_slice(b"\\N"),
            }
        };
    }
    match value {
        Value::Bool(v) => match v {
            Some(b) => out.push(if *b { b't' } else { b'f' }),
            None => out.extend_from_slice(b"\\N"),
        },
        Value::TinyInt(v) => plain!(v),
        Value::SmallInt(v) => plain!(v),
        Value::Int(v) => plain!(v),
        Value::BigInt(v) => plain!(v),
        Value::TinyUnsigned(v) => plain!(v),
        Value::SmallUnsigned(v) => plain!(v),
        Value::Unsigned(v) => plain!(v),
        Value::BigUnsigned(v) => plain!(v),
        Value::Float(v) => plain!(v),
        Value::Double(v) => plain!(v),
        Value::Char(v) => match v {
            Some(c) => escape(out, c.encode_utf8(&mut [0; 4])),
            None => out.extend_from_slice(b"\\N"),
        },
        Value::String(v) => match v {
            Some(s) => escape(out, s),
            None => out.extend_from_slice(b"\\N"),
        },
        Value::Bytes(v) => match v {
            Some(bytes) => {
                // bytea's hex form, its backslash doubled for COPY.
                out.extend_from_slice(b"\\\\x");
                for b in bytes {
                    let _ = write!(out, "{b:02x}");
                }
            }
            None => out.extend_from_slice(b"\\N"),
        },
        Value::ChronoDate(v) => plain!(v),
        Value::ChronoTime(v) => plain!(v),
        Value::ChronoDateTime(v) => plain!(v.map(|t| t.format("%Y-%m-%d %H:%M:%S%.f"))),
        Value::ChronoDateTimeUtc(v) => plain!(v.map(|t| t.to_rfc3339())),
        Value::ChronoDateTimeLocal(v) => plain!(v.map(|t| t.to_rfc3339())),
        Value::ChronoDateTimeWithTimeZone(v) => plain!(v.map(|t| t.to_rfc3339())),
        _ => return Err("value of this type"),
    }
    Ok(())
}

/// Text with COPY's escapes: backslash, tab, newline, carriage return.
fn escape(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_each_backends_bind_limit() {
        assert_eq!(chunk_rows(Backend::Postgres, 3, None), 21_845);
        assert_eq!(chunk_rows(Backend::Sqlite, 3, None), 10_922);
        assert_eq!(chunk_rows(Backend::MySql, 4, Some(100)), 100);
        assert_eq!(chunk_rows(Backend::Sqlite, 40_000, None), 1);
    }

    #[test]
    fn copy_text_escapes_what_would_split_a_row() {
        let mut out = Vec::new();
        escape(&mut out, "a\tb\nc\\d\re");
        assert_eq!(out, b"a\\tb\\nc\\\\d\\re");
        let mut out = Vec::new();
        for v in [
            Value::String(None),
            Value::Bool(Some(true)),
            Value::Bytes(Some(vec![0, 255])),
        ] {
            assert_eq!(write_copy_value(&mut out, &v), Ok(()), "{v:?}");
        }
        assert_eq!(out, b"\\Nt\\\\x00ff");
    }
}
