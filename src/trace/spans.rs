//! Building the spans of [`crate::trace`]: their static attributes, computed once per pool, and
//! the per-statement ones, computed only when a subscriber wants the span.

use std::borrow::Cow;

use sea_orm::{DbBackend, DbErr, Statement, sqlx};
use tracing::field::Empty;
use tracing::{Level, Span};

use super::summary::summarize;
use super::{QUERY_TEXT_LIMIT, STATEMENT_TARGET, TRANSACTION_TARGET, WAIT_TARGET};
use crate::classify::ErrorKind;
use crate::config::DbConfig;
use crate::sql_text::{Token, tokens};

/// Which node a pool talks to (`dbservice.node`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    Primary,
    Replica,
}

/// A pool's attributes, the same on every span it makes.
#[derive(Debug, Clone)]
pub(crate) struct PoolAttrs {
    pub backend: DbBackend,
    pub system: &'static str,
    pub namespace: Option<String>,
    /// Each host of the endpoint (PostgreSQL's multi-host URLs), else the URL's one.
    hosts: Vec<(String, u16)>,
    node: &'static str,
}

/// A statement's text, and whether its values travel bound (then the text has placeholders
/// and is shown as is; otherwise it may have values typed in, and its literals are masked).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Text<'a> {
    pub sql: &'a str,
    pub parameterized: bool,
}

impl<'a> Text<'a> {
    /// The text of `stmt`: parameterized when it carries bound values.
    pub fn statement(stmt: &'a Statement) -> Self {
        Self {
            sql: &stmt.sql,
            parameterized: stmt.values.as_ref().is_some_and(|v| !v.0.is_empty()),
        }
    }

    /// Our own text, which holds no value (COPY's, PostgreSQL only).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub fn internal(sql: &'a str) -> Self {
        Self {
            sql,
            parameterized: true,
        }
    }

    /// What spans and log lines show: cut at [`QUERY_TEXT_LIMIT`] bytes, literals masked
    /// unless parameterized.
    pub fn shown(&self, backend: DbBackend) -> Cow<'a, str> {
        query_text(self.sql, self.parameterized, backend)
    }
}

impl PoolAttrs {
    pub fn new(config: &DbConfig, node: Node) -> Self {
        let backend = config.backend().dialect();
        let system = config.backend().otel_system();
        let hosts = if config.hosts().is_empty() {
            config.first_server().into_iter().collect()
        } else {
            config
                .hosts()
                .iter()
                .map(|h| (h.host.clone(), h.port))
                .collect()
        };
        Self {
            backend,
            system,
            namespace: config.database_name(),
            hosts,
            node: match node {
                Node::Primary => "primary",
                Node::Replica => "replica",
            },
        }
    }

    /// The first server the endpoint names (`server.address`, `server.port`).
    #[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
    pub fn first_server(&self) -> Option<&(String, u16)> {
        self.hosts.first()
    }

    fn server(&self, host: usize) -> Option<&(String, u16)> {
        self.hosts.get(host).or_else(|| self.hosts.first())
    }
}

/// The span of one statement on the connection to host number `host`, or a disabled span
/// when no subscriber wants it (then the text is not read at all).
pub(crate) fn statement(attrs: &PoolAttrs, host: usize, text: Text<'_>) -> Span {
    if !tracing::enabled!(target: STATEMENT_TARGET, Level::INFO) {
        return Span::none();
    }
    let summary = summarize(text.sql, attrs.backend);
    let text = text.shown(attrs.backend);
    let server = attrs.server(host);
    tracing::info_span!(
        target: STATEMENT_TARGET,
        "db.statement",
        otel.name = %summary.span_name(attrs.system),
        otel.kind = "client",
        otel.status_code = Empty,
        db.system.name = attrs.system,
        db.namespace = attrs.namespace.as_deref(),
        db.query.text = %text,
        db.operation.name = summary.operation.as_deref(),
        db.collection.name = summary.collection.as_deref(),
        server.address = server.map(|s| s.0.as_str()),
        server.port = server.map(|s| i64::from(s.1)),
        dbservice.node = attrs.node,
        db.response.status_code = Empty,
        error.type = Empty,
    )
}

/// Marks its span `cancelled` when dropped before [`finished`](Self::finished): the caller's
/// future was dropped mid-statement (or mid-transaction).
pub(crate) struct Unfinished<'a> {
    span: &'a Span,
    done: bool,
    transaction: bool,
}

impl<'a> Unfinished<'a> {
    /// For a statement's span (`error.type=cancelled`).
    pub fn statement(span: &'a Span) -> Self {
        Self {
            span,
            done: false,
            transaction: false,
        }
    }

    /// For a transaction's span (`dbservice.transaction.outcome=cancelled`).
    pub fn transaction(span: &'a Span) -> Self {
        Self {
            span,
            done: false,
            transaction: true,
        }
    }

    pub fn finished(&mut self) {
        self.done = true;
    }
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.transaction {
            transaction_ended(self.span, "cancelled");
        } else {
            record_failure(self.span, "cancelled");
        }
    }
}

/// Records a failed statement's SQLSTATE (or the kind of failure) on its span.
pub(crate) fn failed(span: &Span, error: &DbErr) {
    if !span.is_disabled() {
        record_error(span, error_of_db(error));
    }
}

/// [`failed`] for a driver error not yet wrapped.
pub(crate) fn failed_sqlx(span: &Span, error: &sqlx::Error) {
    if !span.is_disabled() {
        record_error(span, error_of_driver(error));
    }
}

fn record_error(span: &Span, (kind, code): (Cow<'static, str>, Option<String>)) {
    if let Some(code) = &code {
        span.record("db.response.status_code", code.as_str());
    }
    span.record("error.type", kind.as_ref());
    span.record("otel.status_code", "error");
}

/// A failure's `error.type` and `db.response.status_code`, the same on spans and metrics: the
/// SQLSTATE when the server answered, else the error kind's label (`query_timeout`,
/// `connection`, ...): a short, bounded name, never the message, which may quote values.
pub(crate) fn error_of_db(error: &DbErr) -> (Cow<'static, str>, Option<String>) {
    match crate::classify::sqlstate(error) {
        Some(code) => (Cow::Owned(code.clone()), Some(code)),
        None => (Cow::Borrowed(ErrorKind::of(error).label()), None),
    }
}

/// [`error_of_db`] for a driver error not yet wrapped.
pub(crate) fn error_of_driver(error: &sqlx::Error) -> (Cow<'static, str>, Option<String>) {
    let kind = match error {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => return (Cow::Owned(code.to_string()), Some(code.into_owned())),
            None => ErrorKind::Query,
        },
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => ErrorKind::QueryTimeout,
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
            ErrorKind::Connection
        }
        sqlx::Error::PoolTimedOut => ErrorKind::PoolTimeout,
        sqlx::Error::PoolClosed => ErrorKind::PoolClosed,
        _ => return (Cow::Borrowed("_OTHER"), None),
    };
    (Cow::Borrowed(kind.label()), None)
}

/// `db.query.text`: `sql` cut at [`QUERY_TEXT_LIMIT`] bytes (at a character boundary), then,
/// unless `parameterized`, its literals masked. Cut first, so a huge text costs no more than
/// the limit; a literal the cut splits is unterminated and so masked to the end.
fn query_text(sql: &str, parameterized: bool, backend: DbBackend) -> Cow<'_, str> {
    let mut cut = sql.len().min(QUERY_TEXT_LIMIT);
    while !sql.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = sql.get(..cut).unwrap_or_default();
    if parameterized {
        Cow::Borrowed(head)
    } else {
        mask_literals(head, backend)
    }
}

/// `sql` with each string literal and number replaced by `?` (OpenTelemetry's sanitization of
/// text that is not parameterized): a value typed into the SQL is still a value.
pub(crate) fn mask_literals(sql: &str, backend: DbBackend) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut it = tokens(sql, backend);
    while let Some((start, token)) = it.next() {
        let end = it.end();
        let literal = match token {
            Token::Quoted => {
                let first = sql.as_bytes().get(start).copied();
                // A name is quoted with `"` (MySQL: a string; SQLite: a string where no column
                // has that name, so masked too), `` ` `` or `[`; anything else quoted ('...',
                // $tag$...$tag$) is a string.
                match first {
                    Some(b'"') => backend != DbBackend::Postgres,
                    Some(b'`' | b'[') => false,
                    _ => true,
                }
            }
            Token::Word(w) => w.as_bytes().first().is_some_and(u8::is_ascii_digit),
            _ => false,
        };
        if literal {
            let buf = out.get_or_insert_with(|| String::with_capacity(sql.len()));
            buf.push_str(sql.get(copied..start).unwrap_or_default());
            buf.push('?');
            copied = end;
        }
    }
    match out {
        None => Cow::Borrowed(sql),
        Some(mut buf) => {
            buf.push_str(sql.get(copied..).unwrap_or_default());
            Cow::Owned(buf)
        }
    }
}

/// The span of a transaction (`db.transaction(...)` or `db.begin()`).
pub(crate) fn transaction(attrs: &PoolAttrs, isolation: Option<&str>, read_only: bool) -> Span {
    tracing::info_span!(
        target: TRANSACTION_TARGET,
        "db.transaction",
        otel.name = "transaction",
        otel.kind = "internal",
        otel.status_code = Empty,
        db.system.name = attrs.system,
        db.namespace = attrs.namespace.as_deref(),
        dbservice.transaction.isolation = isolation.unwrap_or("default"),
        dbservice.transaction.read_only = read_only,
        dbservice.transaction.attempts = Empty,
        dbservice.transaction.outcome = Empty,
        error.type = Empty,
    )
}

/// Records the attempt under way (the closure form may run its body more than once).
pub(crate) fn attempt(span: &Span, attempts: u32) {
    if !span.is_disabled() {
        span.record("dbservice.transaction.attempts", attempts);
    }
}

/// A `retry` event on a transaction's span: why (`conflict`, `server_lost`) and after how long.
pub(crate) fn retry(span: &Span, cause: &'static str, delay: std::time::Duration) {
    if span.is_disabled() {
        return;
    }
    tracing::info!(
        target: TRANSACTION_TARGET,
        parent: span,
        cause,
        delay_ms = delay.as_millis() as u64,
        "retry"
    );
}

/// Records how a transaction ended on its span (see [`crate::transaction::outcome`]).
pub(crate) fn transaction_ended(span: &Span, outcome: &'static str) {
    if span.is_disabled() {
        return;
    }
    span.record("dbservice.transaction.outcome", outcome);
    if !matches!(outcome, "committed" | "rolled_back" | "abandoned") {
        span.record("error.type", outcome);
        span.record("otel.status_code", "error");
    }
}

/// The span of a checkout that had to wait.
pub(crate) fn wait(attrs: &PoolAttrs, pool_name: &str) -> Span {
    tracing::info_span!(
        target: WAIT_TARGET,
        "db.client.connection.wait",
        otel.name = "db.client.connection.wait",
        otel.kind = "internal",
        otel.status_code = Empty,
        db.system.name = attrs.system,
        db.client.connection.pool.name = pool_name,
        error.type = Empty,
    )
}

/// Records on a span (a wait's, or a stream's cut off) that it ended in `kind`.
pub(crate) fn record_failure(span: &Span, kind: &'static str) {
    if span.is_disabled() {
        return;
    }
    span.record("error.type", kind);
    span.record("otel.status_code", "error");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_of_unprepared_text_are_masked() {
        let pg = DbBackend::Postgres;
        assert_eq!(
            mask_literals("SET LOCAL app.tenant = 'acme'; SELECT 42, \"x\"", pg),
            "SET LOCAL app.tenant = ?; SELECT ?, \"x\""
        );
        assert_eq!(mask_literals("SELECT $q$secret$q$", pg), "SELECT ?");
        assert_eq!(mask_literals("SELECT E'it\\'s'", pg), "SELECT E?");
        assert_eq!(
            mask_literals("SELECT \"secret\" FROM `t`", DbBackend::MySql),
            "SELECT ? FROM `t`"
        );
        assert_eq!(mask_literals("BEGIN", pg), "BEGIN");
        assert!(matches!(mask_literals("COMMIT", pg), Cow::Borrowed(_)));
        // Names with digits are names; a parameter is kept.
        assert_eq!(
            mask_literals("SELECT t1.a FROM t1 WHERE b = $1", pg),
            "SELECT t1.a FROM t1 WHERE b = $1"
        );
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        let sql = format!("SELECT '{}'", "é".repeat(QUERY_TEXT_LIMIT));
        let text = query_text(&sql, true, DbBackend::Postgres);
        assert!(text.len() <= QUERY_TEXT_LIMIT && text.len() >= QUERY_TEXT_LIMIT - 1);
        assert!(text.starts_with("SELECT 'é"));
    }
}
