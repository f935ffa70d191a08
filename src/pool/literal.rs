//! A value written as a PostgreSQL literal of the type the prepared path would declare for it
//! (see [`inline`](super::inline)), or the reason it cannot be written faithfully.

use std::fmt::Write as _;

use chrono::{Datelike, Timelike};
use sea_orm::Value;
use sea_orm::sea_query::{ArrayType, OptionEnum};
use sea_orm::sqlx;

/// Why a statement could not be written with its values inlined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InlineError {
    /// `$0` in the SQL.
    #[error("the statement uses $0; placeholders start at $1")]
    ZeroPlaceholder,
    /// A placeholder beyond the values given.
    #[error("the statement uses ${highest} but has {count} value(s)")]
    MissingValue {
        /// The placeholder's number.
        highest: String,
        /// How many values the statement has.
        count: usize,
    },
    /// Text with a NUL character, which PostgreSQL refuses in any text value.
    #[error(
        "${param}: text with a NUL character (\\0) cannot be sent to PostgreSQL, which refuses \
         NUL in text values; remove it or send the data as bytes (bytea)"
    )]
    Nul {
        /// The placeholder's number.
        param: usize,
    },
    /// A value outside the range of the PostgreSQL type it is sent as.
    #[error("${param}: {value} does not fit PostgreSQL's {ty}")]
    OutOfRange {
        /// The placeholder's number.
        param: usize,
        /// The value as Rust prints it.
        value: String,
        /// The PostgreSQL type it would be sent as.
        ty: &'static str,
    },
    /// A kind of value this writer does not know how to write faithfully.
    #[error(
        "${param}: a {kind} value cannot be written into SQL as a literal, as statements are \
         sent with pgbouncer=true, and with a session context outside a transaction; cast it \
         to text in the query, or bind it: on a connection without pgbouncer=true, or inside \
         a transaction (the context's `.transaction(..)`)"
    )]
    Unsupported {
        /// The placeholder's number.
        param: usize,
        /// The kind of value.
        kind: String,
    },
}

impl From<InlineError> for sqlx::Error {
    fn from(e: InlineError) -> Self {
        sqlx::Error::Encode(Box::new(e))
    }
}

/// Writes `value` (placeholder number `param`) as a literal of the type the prepared path
/// declares for it.
pub(super) fn write_value(
    out: &mut String,
    value: &Value,
    param: usize,
) -> Result<(), InlineError> {
    match literal(value, param)? {
        Literal::Bare(s) => out.push_str(&s),
        Literal::Cast(s, ty) => {
            let _ = write!(out, "({s}::{ty})");
        }
    }
    Ok(())
}

/// Writes `value` (placeholder number `param`) as [`write_value`] does, for an `EXECUTE`, and
/// returns the type to declare for its parameter in the `PREPARE`: the type the prepared path
/// binds it as (sqlx's), so the statement means the same either way; `unknown` for an
/// untyped `NULL`.
pub(super) fn write_argument(
    out: &mut String,
    value: &Value,
    param: usize,
) -> Result<&'static str, InlineError> {
    Ok(match literal(value, param)? {
        Literal::Cast(s, ty) => {
            let _ = write!(out, "({s}::{ty})");
            ty
        }
        Literal::Bare(s) => {
            out.push_str(&s);
            match value {
                Value::Bool(_) => "bool",
                Value::Enum(OptionEnum::None(_)) => "unknown",
                _ => "text",
            }
        }
    })
}

/// A value's SQL: bare (untyped text, `NULL`, `true`), or an expression and the type to
/// cast it to.
enum Literal {
    Bare(String),
    Cast(String, &'static str),
}

fn typed(ty: &'static str, text: Option<String>) -> Literal {
    Literal::Cast(text.unwrap_or_else(|| "NULL".to_owned()), ty)
}

fn number<T: ToString>(ty: &'static str, n: Option<T>) -> Literal {
    typed(ty, n.map(|n| quoted(&n.to_string())))
}

#[allow(unreachable_patterns)] // Other crates' features may add variants to `Value`.
fn literal(value: &Value, param: usize) -> Result<Literal, InlineError> {
    Ok(match value {
        Value::Bool(b) => match b {
            Some(b) => Literal::Bare(b.to_string()),
            None => typed("bool", None),
        },
        // sqlx sends an i8 as PostgreSQL's one-byte "char"; a smallint is what is meant.
        Value::TinyInt(n) => number("int2", *n),
        Value::SmallInt(n) => number("int2", *n),
        Value::Int(n) => number("int4", *n),
        Value::BigInt(n) => number("int8", *n),
        Value::TinyUnsigned(n) => number("int2", *n),
        Value::SmallUnsigned(n) => number("int4", *n),
        Value::Unsigned(n) => number("int8", *n),
        Value::BigUnsigned(n) => match n {
            Some(n) if i64::try_from(*n).is_err() => {
                return Err(InlineError::OutOfRange {
                    param,
                    value: n.to_string(),
                    ty: "bigint",
                });
            }
            _ => number("int8", *n),
        },
        Value::Float(f) => typed("float4", f.map(float_literal)),
        Value::Double(f) => typed("float8", f.map(float_literal)),
        Value::String(s) => bare_text(s.as_deref(), param)?,
        Value::Enum(OptionEnum::Some(e)) => bare_text(Some(e.value.as_ref()), param)?,
        Value::Enum(OptionEnum::None(_)) => Literal::Bare("NULL".to_owned()),
        Value::Char(c) => bare_text(c.map(|c| c.to_string()).as_deref(), param)?,
        Value::Bytes(b) => typed("bytea", b.as_deref().map(bytea)),
        Value::Json(j) => typed(
            "jsonb",
            match j {
                Some(j) => Some(text(&j.to_string(), param)?),
                None => None,
            },
        ),
        Value::ChronoDate(d) => typed(
            "date",
            d.map(|d| quoted(&date(d.year(), d.month(), d.day()))),
        ),
        Value::ChronoTime(t) => typed(
            "time",
            t.map(|t| {
                quoted(&time_of_day(
                    i64::from(t.num_seconds_from_midnight()) * 1_000_000
                        + i64::from(t.nanosecond() / 1000),
                ))
            }),
        ),
        Value::ChronoDateTime(t) => typed(
            "timestamp",
            timestamp(t.map(|t| t.and_utc().timestamp_micros()), "", param)?,
        ),
        Value::ChronoDateTimeUtc(t) => typed(
            "timestamptz",
            timestamp(t.map(|t| t.timestamp_micros()), "+00", param)?,
        ),
        Value::ChronoDateTimeLocal(t) => typed(
            "timestamptz",
            timestamp(t.map(|t| t.timestamp_micros()), "+00", param)?,
        ),
        Value::ChronoDateTimeWithTimeZone(t) => typed(
            "timestamptz",
            timestamp(t.map(|t| t.timestamp_micros()), "+00", param)?,
        ),
        Value::TimeDate(d) => typed(
            "date",
            d.map(|d| {
                quoted(&date(
                    d.year(),
                    u32::from(u8::from(d.month())),
                    u32::from(d.day()),
                ))
            }),
        ),
        Value::TimeTime(t) => typed(
            "time",
            t.map(|t| {
                let (h, m, s, micro) = t.as_hms_micro();
                quoted(&time_of_day(
                    (i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s)) * 1_000_000
                        + i64::from(micro),
                ))
            }),
        ),
        Value::TimeDateTime(t) => typed(
            "timestamp",
            timestamp(
                t.map(|t| micros(t.assume_utc().unix_timestamp_nanos())),
                "",
                param,
            )?,
        ),
        Value::TimeDateTimeWithTimeZone(t) => typed(
            "timestamptz",
            timestamp(t.map(|t| micros(t.unix_timestamp_nanos())), "+00", param)?,
        ),
        Value::Uuid(u) => typed("uuid", u.map(|u| quoted(&u.hyphenated().to_string()))),
        Value::Decimal(d) => typed("numeric", d.map(|d| quoted(&d.to_string()))),
        Value::Array(ty, items) => {
            let elem = array_element_type(ty).ok_or_else(|| InlineError::Unsupported {
                param,
                kind: format!("{ty:?} array"),
            })?;
            let array_ty = array_type(elem);
            match items.as_deref().map(Vec::as_slice) {
                None => typed(array_ty, None),
                Some([]) => typed(array_ty, Some("'{}'".to_owned())),
                Some(items) => {
                    let mut s = String::from("ARRAY[");
                    for (k, item) in items.iter().enumerate() {
                        if k > 0 {
                            s.push_str(", ");
                        }
                        write_value(&mut s, item, param)?;
                    }
                    s.push(']');
                    typed(array_ty, Some(s))
                }
            }
        }
        other => {
            return Err(InlineError::Unsupported {
                param,
                kind: format!("{other:?}")
                    .split('(')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
    })
}

/// A float's literal text, written in its own width (`{:e}` is the shortest text that reads
/// back to the same `f32` or `f64`); NaN, the infinities and their signs are the same in both.
fn float_literal<F: std::fmt::LowerExp + Into<f64> + Copy>(f: F) -> String {
    let wide: f64 = f.into();
    float(
        wide.is_nan(),
        wide.is_infinite(),
        wide.is_sign_negative(),
        format!("{f:e}"),
    )
}

fn float(nan: bool, infinite: bool, negative: bool, shortest: String) -> String {
    match (nan, infinite, negative) {
        (true, _, _) => quoted("NaN"),
        (false, true, false) => quoted("Infinity"),
        (false, true, true) => quoted("-Infinity"),
        // `{:e}` is the shortest text that reads back as the same float, -0 included.
        _ => quoted(&shortest),
    }
}

/// Untyped text (or `NULL`), as lenient about its use as a bound text parameter is.
fn bare_text(s: Option<&str>, param: usize) -> Result<Literal, InlineError> {
    Ok(Literal::Bare(match s {
        Some(s) => text(s, param)?,
        None => "NULL".to_owned(),
    }))
}

/// `s` as a text literal (see [`text`]): how a session context's values are written.
pub(crate) fn text_literal(s: &str) -> Result<String, InlineError> {
    text(s, 1)
}

/// A string literal that reads the same whatever `standard_conforming_strings` says: a
/// plain one when there is no backslash, else an escape string (`E'...'`).
fn text(s: &str, param: usize) -> Result<String, InlineError> {
    if s.contains('\0') {
        return Err(InlineError::Nul { param });
    }
    let mut out = String::with_capacity(s.len() + 3);
    if s.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    Ok(out)
}

/// For text known to hold neither NUL, quotes nor backslashes (numbers, dates, uuids).
fn quoted(s: &str) -> String {
    format!("'{s}'")
}

/// `bytea`'s hex input in an escape string, so that the backslash means the same whatever
/// `standard_conforming_strings` says.
fn bytea(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2 + 6);
    s.push_str("E'\\\\x");
    for byte in b {
        let _ = write!(s, "{byte:02x}");
    }
    s.push('\'');
    s
}

/// PostgreSQL's spelling of a date: no year 0 and no negative years, but `BC`.
fn date(year: i32, month: u32, day: u32) -> String {
    if year <= 0 {
        format!("{:04}-{month:02}-{day:02} BC", 1 - i64::from(year))
    } else {
        format!("{year:04}-{month:02}-{day:02}")
    }
}

fn time_of_day(micros: i64) -> String {
    let (secs, micro) = (micros / 1_000_000, micros % 1_000_000);
    format!(
        "{:02}:{:02}:{:02}.{micro:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Nanoseconds to microseconds, rounding down (as the prepared path truncates them).
fn micros(nanos: i128) -> i64 {
    i64::try_from(nanos.div_euclid(1000)).unwrap_or(i64::MAX)
}

/// A timestamp given as microseconds since the Unix epoch (UTC), `zone` after the time.
fn timestamp(micros: Option<i64>, zone: &str, param: usize) -> Result<Option<String>, InlineError> {
    let Some(micros) = micros else {
        return Ok(None);
    };
    let t = chrono::DateTime::from_timestamp_micros(micros).ok_or(InlineError::OutOfRange {
        param,
        value: format!("{micros} µs since 1970"),
        ty: "timestamp",
    })?;
    let d = date(t.year(), t.month(), t.day());
    let (day, bc) = match d.strip_suffix(" BC") {
        Some(day) => (day.to_owned(), " BC"),
        None => (d, ""),
    };
    let of_day =
        i64::from(t.num_seconds_from_midnight()) * 1_000_000 + i64::from(t.nanosecond() / 1000);
    Ok(Some(quoted(&format!(
        "{day} {}{zone}{bc}",
        time_of_day(of_day)
    ))))
}

/// The PostgreSQL element type the prepared path sends an array of `ty` as.
#[allow(unreachable_patterns)] // Other crates' features may add variants to `ArrayType`.
fn array_element_type(ty: &ArrayType) -> Option<&'static str> {
    Some(match ty {
        ArrayType::Bool => "bool",
        ArrayType::TinyInt | ArrayType::SmallInt | ArrayType::TinyUnsigned => "int2",
        ArrayType::Int | ArrayType::SmallUnsigned => "int4",
        ArrayType::BigInt | ArrayType::Unsigned | ArrayType::BigUnsigned => "int8",
        ArrayType::Float => "float4",
        ArrayType::Double => "float8",
        ArrayType::String | ArrayType::Enum(_) | ArrayType::Char => "text",
        ArrayType::Bytes => "bytea",
        ArrayType::Json => "jsonb",
        ArrayType::ChronoDate | ArrayType::TimeDate => "date",
        ArrayType::ChronoTime | ArrayType::TimeTime => "time",
        ArrayType::ChronoDateTime | ArrayType::TimeDateTime => "timestamp",
        ArrayType::ChronoDateTimeUtc
        | ArrayType::ChronoDateTimeLocal
        | ArrayType::ChronoDateTimeWithTimeZone
        | ArrayType::TimeDateTimeWithTimeZone => "timestamptz",
        ArrayType::Uuid => "uuid",
        ArrayType::Decimal => "numeric",
        _ => return None,
    })
}

fn array_type(elem: &'static str) -> &'static str {
    match elem {
        "bool" => "bool[]",
        "int2" => "int2[]",
        "int4" => "int4[]",
        "int8" => "int8[]",
        "float4" => "float4[]",
        "float8" => "float8[]",
        "bytea" => "bytea[]",
        "jsonb" => "jsonb[]",
        "date" => "date[]",
        "time" => "time[]",
        "timestamp" => "timestamp[]",
        "timestamptz" => "timestamptz[]",
        "uuid" => "uuid[]",
        "numeric" => "numeric[]",
        _ => "text[]",
    }
}
