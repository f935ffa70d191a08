//! `pgbouncer=true`: a statement's values written into its SQL as literals, so that it
//! travels as one simple-protocol message. Each literal carries the type the prepared path
//! would declare for the same value (sqlx's parameter types), so the server sees the same
//! value of the same type either way; what cannot be written faithfully is refused.
//!
//! sea-query's own writer (`inject_parameters`) is not used: it writes NaN and infinities
//! bare, drops the type of floats and integers, escapes NUL as `\0` (so `"\0" + "41"` reads
//! back as `!`), writes `bytea` in a form that depends on `standard_conforming_strings`, and
//! panics on a non-ASCII `char`.

use sea_orm::sqlx::{self, AssertSqlSafe, PgConnection};
use sea_orm::{DbBackend, Statement, Value};

use super::literal::{InlineError, write_value};
use super::op::{Mode, Op, Output};
use crate::sql_text::{self, Token};

/// Runs `op` as one simple-protocol message, `prefix` in front: the session's `SET LOCAL`s
/// behind PgBouncer, then a session context's.
pub(crate) async fn run(
    c: &mut PgConnection,
    op: Op<'_>,
    prefix: Prefix<'_>,
) -> Result<Output, sqlx::Error> {
    let body = match op {
        Op::Unprepared(sql) | Op::UnpreparedRows(sql) => sql.to_owned(),
        Op::Execute(s) | Op::One(s) | Op::All(s) => inline(s)?,
    };
    fetch(c, op, prefixed(prefix, body)).await
}

/// Sends `sql` as one simple-protocol message and reads what `op` wants of it.
pub(crate) async fn fetch(
    c: &mut PgConnection,
    op: Op<'_>,
    sql: String,
) -> Result<Output, sqlx::Error> {
    let q = sqlx::raw_sql(AssertSqlSafe(sql));
    match op {
        Op::Execute(_) | Op::Unprepared(_) => {
            q.execute(&mut *c).await.map(|r| Output::Exec(r.into()))
        }
        Op::One(_) => q
            .fetch_optional(&mut *c)
            .await
            .map(|r| Output::One(r.map(Into::into))),
        Op::All(_) | Op::UnpreparedRows(_) => q
            .fetch_all(&mut *c)
            .await
            .map(|rows| Output::All(rows.into_iter().map(Into::into).collect())),
    }
}

/// What goes in front of a statement sent as one message: the pool's session settings
/// (behind PgBouncer) and a session context's `SET LOCAL`s, each possibly empty.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Prefix<'a> {
    pub session: &'a str,
    pub context: &'a str,
}

impl Prefix<'_> {
    pub fn is_empty(&self) -> bool {
        self.session.is_empty() && self.context.is_empty()
    }
}

/// How a statement goes to PostgreSQL in `mode`: `None` as a statement of the extended
/// protocol (prepared, or the unnamed one), `Some` as one simple-protocol message behind this
/// prefix: behind PgBouncer always, elsewhere when a session context travels with it. Inside
/// our own transaction its BEGIN carried every setting, the context's included.
pub(crate) fn message_prefix<'a>(
    mode: &'a Mode,
    in_tx: bool,
    context: &'a str,
) -> Option<Prefix<'a>> {
    let context = if in_tx { "" } else { context };
    match mode {
        Mode::Inline { prefix } => Some(Prefix {
            session: if in_tx { "" } else { prefix },
            context,
        }),
        Mode::Prepared | Mode::Unnamed if context.is_empty() => None,
        Mode::Prepared | Mode::Unnamed => Some(Prefix {
            session: "",
            context,
        }),
    }
}

/// `body` behind `prefix`, without copying when there is no prefix.
pub(crate) fn prefixed(prefix: Prefix<'_>, body: String) -> String {
    if prefix.is_empty() {
        body
    } else {
        let mut out =
            String::with_capacity(prefix.session.len() + prefix.context.len() + body.len());
        out.push_str(prefix.session);
        out.push_str(prefix.context);
        out.push_str(&body);
        out
    }
}

/// `stmt` with each `$N` outside literals, quoted identifiers and comments replaced by its
/// value as a literal.
pub(crate) fn inline(stmt: &Statement) -> Result<String, InlineError> {
    let values: &[Value] = stmt.values.as_ref().map_or(&[], |v| v.0.as_slice());
    let sql = stmt.sql.as_str();
    let mut out = String::with_capacity(sql.len() + 24 * values.len());
    let mut copied = 0;
    for (at, token) in sql_text::tokens(sql, DbBackend::Postgres) {
        let Token::Param(digits) = token else {
            continue;
        };
        let n: usize = digits.parse().unwrap_or(usize::MAX);
        if n == 0 {
            return Err(InlineError::ZeroPlaceholder);
        }
        let value = values.get(n - 1).ok_or_else(|| InlineError::MissingValue {
            highest: digits.to_owned(),
            count: values.len(),
        })?;
        out.push_str(sql.get(copied..at).unwrap_or_default());
        if out.as_bytes().last().is_some_and(|&c| is_ident(c)) {
            out.push(' ');
        }
        write_value(&mut out, value, n)?;
        copied = at + 1 + digits.len();
    }
    out.push_str(sql.get(copied..).unwrap_or_default());
    Ok(out)
}

/// A byte that would join a literal written right after it into one word.
fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(sea_orm::DbBackend::Postgres, sql, values)
    }

    #[test]
    fn placeholders_are_bounded_before_values_are_written_in() {
        let ints = |n: i32| (0..n).map(Into::into).collect::<Vec<Value>>();
        assert_eq!(
            inline(&stmt("SELECT $0", ints(1))),
            Err(InlineError::ZeroPlaceholder)
        );
        assert!(matches!(
            inline(&stmt("SELECT $1, $2", ints(1))),
            Err(InlineError::MissingValue { .. })
        ));
        assert!(matches!(
            inline(&stmt("SELECT $99999999999999999999999", ints(1))),
            Err(InlineError::MissingValue { .. })
        ));
        assert_eq!(
            inline(&stmt("SELECT $1, $2", ints(2))).ok().as_deref(),
            Some("SELECT ('0'::int4), ('1'::int4)")
        );
    }

    #[test]
    fn only_real_placeholders_are_replaced() {
        let one = || vec![Value::from("v")];
        for sql in [
            "SELECT '$1', $1",
            "SELECT E'\\'$1', $1",
            "SELECT \"a$1\", $1",
            "SELECT a$1, $1",
            "SELECT $$ $1 $$, $1",
            "SELECT $t$ $1 $t$, $1",
            "SELECT 1 -- $1\n, $1",
            "SELECT /* $1 /* $1 */ $1 */ $1",
        ] {
            let out = inline(&stmt(sql, one())).expect("inlined");
            assert_eq!(out.matches("'v'").count(), 1, "{sql} -> {out}");
            assert!(out.ends_with("'v'"), "{sql} -> {out}");
        }
    }

    #[test]
    fn literals_keep_value_and_type() {
        let lit = |v: Value| inline(&stmt("SELECT $1", vec![v])).expect("inlined");
        assert_eq!(lit(f64::NAN.into()), "SELECT ('NaN'::float8)");
        assert_eq!(
            lit(f32::NEG_INFINITY.into()),
            "SELECT ('-Infinity'::float4)"
        );
        assert_eq!(lit((-0.0f32).into()), "SELECT ('-0e0'::float4)");
        assert_eq!(lit('é'.into()), "SELECT 'é'");
        assert_eq!(lit("a\\'b".into()), "SELECT E'a\\\\''b'");
        assert_eq!(lit(vec![0u8, 255].into()), "SELECT (E'\\\\x00ff'::bytea)");
        assert_eq!(
            lit(i64::MIN.into()),
            "SELECT ('-9223372036854775808'::int8)"
        );
        assert_eq!(
            inline(&stmt("SELECT $1", vec!["\u{0}41".into()])),
            Err(InlineError::Nul { param: 1 })
        );
        assert!(matches!(
            inline(&stmt("SELECT $1", vec![u64::MAX.into()])),
            Err(InlineError::OutOfRange { .. })
        ));
    }
}
