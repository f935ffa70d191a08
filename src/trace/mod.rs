//! OpenTelemetry-shaped `tracing` spans for database work, named and attributed by the stable
//! [database client semantic conventions]. The library only creates them; whoever installs
//! the process's subscriber decides whether they are kept (a `tracing-opentelemetry` layer
//! exports them, `RUST_LOG` filters them by target). A span no subscriber wants costs an
//! atomic load: nothing is read from the SQL text, formatted or allocated for it.
//!
//! | span (`otel.name`) | target | when | attributes |
//! |---|---|---|---|
//! | `{db.operation.name} {db.collection.name}` (`SELECT accounts`), kind CLIENT | [`STATEMENT_TARGET`] | each statement, on `db.conn()`, in transactions (`BEGIN` and `COMMIT` too), on replicas, in batch writes (`COPY` included) and streams | `db.system.name`, `db.namespace`, `db.query.text`, `db.operation.name`, `db.collection.name`, `server.address`, `server.port`, `dbservice.node`; on failure `db.response.status_code` (SQLSTATE), `error.type`, `otel.status_code=error` |
//! | `transaction`, kind INTERNAL | [`TRANSACTION_TARGET`] | each `db.transaction(...)` / `db.begin()` | `db.system.name`, `db.namespace`, `dbservice.transaction.isolation`, `dbservice.transaction.attempts`, `dbservice.transaction.outcome` (`committed`, `rolled_back`, `failed`, `timeout`); a `retry` event per retried attempt |
//! | `db.client.connection.wait`, kind INTERNAL | [`WAIT_TARGET`] | a checkout that did not complete at once: it queued behind other callers, or its connection needed a round trip first (a ping after idle, a state check) or had to be opened | `db.client.connection.pool.name`, `db.system.name`, `error.type` on a timeout |
//!
//! `db.query.text` is the statement as sent with placeholders (`$1`, `?`): bound values never
//! appear, and under `pgbouncer=true` (values inlined on the wire) it is still the placeholder
//! form. Text run unprepared (`execute_unprepared`) has its string and number literals
//! replaced by `?`. The text is cut at [`QUERY_TEXT_LIMIT`] bytes (at a character boundary).
//!
//! `dbservice.node` is `primary` or `replica`; with `server.address`/`server.port` it tells
//! which node served a read.
//!
//! [database client semantic conventions]: https://opentelemetry.io/docs/specs/semconv/database/database-spans/

pub(crate) mod spans;
pub(crate) mod summary;

/// The `tracing` target of statement spans.
pub const STATEMENT_TARGET: &str = "dbservice::spans::statement";
/// The `tracing` target of transaction spans.
pub const TRANSACTION_TARGET: &str = "dbservice::spans::transaction";
/// The `tracing` target of connection-wait spans.
pub const WAIT_TARGET: &str = "dbservice::spans::wait";
/// `db.query.text` is cut at this many bytes.
pub const QUERY_TEXT_LIMIT: usize = 2048;
