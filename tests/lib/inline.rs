//! `pgbouncer=true` writes values into the SQL and sends one simple-protocol message: what
//! arrives must equal what the prepared path binds (value and type), what cannot be written
//! faithfully is refused with an error (never a panic), and streams take the same path as
//! every other statement.

use std::time::Duration;

use dbservice::DbService;
use futures::StreamExt;
use sea_orm::prelude::{Decimal, Uuid};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, StreamTrait, Value};

use crate::support::{
    cluster_with_pgbouncer, connected_service as service, fresh_pg_database, with_params,
};

fn with_value(sql: &str, v: Value) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, [v])
}

/// The server's text of `$1` sent as `ty` (the prepared path: sqlx leaves the type of a
/// bare `$1` to the server, which takes it for text).
async fn seen_as(db: &DbService, v: &Value, ty: &str) -> Result<Option<String>, DbErr> {
    let row = db
        .conn()
        .query_one_raw(with_value(&format!("SELECT ($1::{ty})::text"), v.clone()))
        .await?
        .ok_or_else(|| DbErr::Custom("no row".into()))?;
    row.try_get_by_index(0)
}

/// The type and the server's text of `$1` as the server received it.
async fn seen(db: &DbService, v: &Value) -> Result<(String, Option<String>), DbErr> {
    let row = db
        .conn()
        .query_one_raw(with_value(
            "SELECT pg_typeof(v)::text, v::text FROM (SELECT $1 AS v) s",
            v.clone(),
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("no row".into()))?;
    Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?))
}

fn chrono_cases() -> Vec<(&'static str, Value)> {
    use sea_orm::prelude::{ChronoDate, ChronoDateTime, ChronoDateTimeUtc, ChronoTime};
    let date = ChronoDate::from_ymd_opt(2024, 2, 29).expect("date");
    let bc = ChronoDate::from_ymd_opt(-43, 3, 15).expect("44 BC");
    let far = ChronoDate::from_ymd_opt(12345, 6, 7).expect("far");
    let time = ChronoTime::from_hms_micro_opt(23, 59, 59, 999_999).expect("time");
    let dt = ChronoDateTime::new(date, time);
    let utc = ChronoDateTimeUtc::from_naive_utc_and_offset(dt, chrono::Utc);
    let offset = chrono::FixedOffset::east_opt(5 * 3600 + 30 * 60)
        .expect("offset")
        .from_utc_datetime(&dt);
    use chrono::TimeZone;
    vec![
        ("date", date.into()),
        ("date BC", bc.into()),
        ("date after 9999", far.into()),
        ("time", time.into()),
        ("timestamp", dt.into()),
        ("timestamp BC", ChronoDateTime::new(bc, time).into()),
        ("timestamptz", utc.into()),
        ("timestamptz +05:30", offset.into()),
        (
            "timestamptz local",
            utc.with_timezone(&chrono::Local).into(),
        ),
    ]
}

/// Every value SeaORM binds, with the edge cases that sea-query's literal writer gets wrong.
fn cases() -> Vec<(&'static str, Value)> {
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let mut cases: Vec<(&'static str, Value)> = vec![
        ("text", "plain".into()),
        ("text quotes", "O'Brien '' \" ; --".into()),
        ("text backslashes", r"C:\new \' \\ \x41 \041 \u0041".into()),
        ("text unicode", "ünï 中文 😀".into()),
        ("text empty", "".into()),
        ("char ascii", 'a'.into()),
        ("char quote", '\''.into()),
        ("char backslash", '\\'.into()),
        ("char 2-byte", 'é'.into()),
        ("char 4-byte", '😀'.into()),
        ("i16 min", i16::MIN.into()),
        ("i16 max", i16::MAX.into()),
        ("i32 min", i32::MIN.into()),
        ("i32 max", i32::MAX.into()),
        ("i64 min", i64::MIN.into()),
        ("i64 max", i64::MAX.into()),
        ("u8 max", u8::MAX.into()),
        ("u16 max", u16::MAX.into()),
        ("u32 max", u32::MAX.into()),
        ("u64 in range", (i64::MAX as u64).into()),
        ("f32", 1.5f32.into()),
        ("f32 0.1", 0.1f32.into()),
        ("f32 NaN", f32::NAN.into()),
        ("f32 inf", f32::INFINITY.into()),
        ("f32 -inf", f32::NEG_INFINITY.into()),
        ("f32 -0", (-0.0f32).into()),
        ("f32 subnormal", (f32::MIN_POSITIVE / 4.0).into()),
        ("f32 max", f32::MAX.into()),
        ("f64 0.1", 0.1f64.into()),
        ("f64 NaN", f64::NAN.into()),
        ("f64 inf", f64::INFINITY.into()),
        ("f64 -inf", f64::NEG_INFINITY.into()),
        ("f64 -0", (-0.0f64).into()),
        ("f64 subnormal", 5e-324f64.into()),
        ("f64 max", f64::MAX.into()),
        ("f64 min positive", f64::MIN_POSITIVE.into()),
        ("bool true", true.into()),
        ("bool false", false.into()),
        ("bytea all 256", all_bytes.into()),
        ("bytea empty", Vec::<u8>::new().into()),
        ("bytea backslashes", br"\x41\\'".to_vec().into()),
        (
            "json",
            serde_json::json!({"a": "it's \\ \"q\" ü", "n": 1.5, "l": [1, null]}).into(),
        ),
        (
            "uuid",
            Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef).into(),
        ),
        ("decimal scale", Decimal::new(150, 2).into()),
        ("decimal tiny", Decimal::new(-1, 6).into()),
        ("null int", Value::Int(None)),
        ("null bigint", Value::BigInt(None)),
        ("null float", Value::Float(None)),
        ("null double", Value::Double(None)),
        ("null bool", Value::Bool(None)),
        ("null bytea", Value::Bytes(None)),
        ("null uuid", Value::Uuid(None)),
        ("array int", vec![1i32, -2, 3].into()),
        ("array bigint", vec![i64::MIN, 0].into()),
        (
            "array text",
            vec![
                "a'b".to_owned(),
                r"c\d".to_owned(),
                "{x,y}".to_owned(),
                "\"".to_owned(),
            ]
            .into(),
        ),
        ("array empty", Vec::<i64>::new().into()),
        ("array double", vec![f64::NAN, -0.0, 1e300].into()),
        ("array bool", vec![true, false].into()),
    ];
    cases.extend(chrono_cases());
    cases
}

/// Each value of the table arrives through `pgbouncer=true` exactly as through the prepared
/// path (same text on the server, as the type the inline literal carries), with `standard_conforming_strings` on and off;
/// typed values read back in Rust as they were sent.
#[tokio::test]
async fn inlined_values_equal_the_prepared_paths() {
    for conforming in ["on", "off"] {
        let base = fresh_pg_database().await;
        let dbname = base.rsplit('/').next().expect("database name").to_owned();
        {
            use sea_orm::sqlx::{self, Connection};
            let mut admin = sqlx::PgConnection::connect(&base).await.expect("admin");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "ALTER DATABASE \"{dbname}\" SET standard_conforming_strings = {conforming}"
            )))
            .execute(&mut admin)
            .await
            .expect("ALTER DATABASE");
        }
        let prepared = service(&base).await;
        let inline = service(&with_params(&base, "pgbouncer=true")).await;
        let mut differ = Vec::new();
        for (name, v) in cases() {
            let got = seen(&inline, &v).await;
            let ty = got.as_ref().map_or("text".to_owned(), |(ty, _)| ty.clone());
            let want = seen_as(&prepared, &v, &ty).await;
            match (&want, &got) {
                (Ok(w), Ok((_, g))) if w == g => {}
                _ => differ.push(format!(
                    "{name} (scs={conforming}): prepared {want:?}, inline {got:?}"
                )),
            }
        }
        assert!(differ.is_empty(), "{}", differ.join("\n"));

        // What a caller reads back in Rust.
        let back = |v: Value| {
            let inline = inline.clone();
            async move {
                inline
                    .conn()
                    .query_one_raw(with_value("SELECT $1", v))
                    .await
                    .expect("SELECT $1")
                    .expect("row")
            }
        };
        let f = back(0.1f32.into()).await.try_get_by_index::<f32>(0);
        assert_eq!(f.ok(), Some(0.1f32));
        let nan = back(f64::NAN.into()).await.try_get_by_index::<f64>(0);
        assert!(nan.is_ok_and(f64::is_nan));
        let big = back(i64::MIN.into()).await.try_get_by_index::<i64>(0);
        assert_eq!(big.ok(), Some(i64::MIN));
        let c = back('😀'.into()).await.try_get_by_index::<String>(0);
        assert_eq!(c.ok().as_deref(), Some("😀"));
        prepared.close(Duration::from_secs(5)).await;
        inline.close(Duration::from_secs(5)).await;
    }
}

/// What cannot be inlined faithfully is refused with an error that says why, and the
/// connection stays usable: a NUL in text (PostgreSQL refuses it on the prepared path too;
/// sea-query's writer turned `"\0" + "41"` into `!`), a `u64` beyond `bigint`.
#[tokio::test]
async fn values_that_cannot_be_inlined_are_refused() {
    let base = fresh_pg_database().await;
    let prepared = service(&base).await;
    let inline = service(&with_params(&base, "pgbouncer=true&connection_limit=1")).await;
    let nul: Value = "\u{0}41".into();
    assert!(
        seen(&prepared, &nul).await.is_err(),
        "the server refuses NUL"
    );
    let err = seen(&inline, &nul).await.expect_err("NUL refused");
    assert!(err.to_string().contains("NUL"), "{err}");
    assert!(err.to_string().contains("$1"), "{err}");
    let err = seen(&inline, &Value::Char(Some('\0')))
        .await
        .expect_err("NUL char refused");
    assert!(err.to_string().contains("NUL"), "{err}");
    let err = seen(&inline, &u64::MAX.into())
        .await
        .expect_err("u64 beyond bigint refused");
    assert!(err.to_string().contains(&u64::MAX.to_string()), "{err}");
    let arr: Value = vec!["ok".to_owned(), "\u{0}".to_owned()].into();
    assert!(seen(&inline, &arr).await.is_err(), "NUL inside an array");
    // Still serving on its one connection.
    assert_eq!(
        seen(&inline, &"fine".into())
            .await
            .expect("serves")
            .1
            .as_deref(),
        Some("fine")
    );
    prepared.close(Duration::from_secs(5)).await;
    inline.close(Duration::from_secs(5)).await;
}

async fn streamed(db: &DbService, stmt: Statement) -> Result<Vec<i64>, DbErr> {
    let mut rows = db.conn().stream_raw(stmt).await?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().await {
        out.push(row?.try_get_by_index::<i64>(0)?);
    }
    Ok(out)
}

/// Streams through a real PgBouncer (one server connection) from two instances at once:
/// no named statement meets another client's, values are inlined, and the session settings
/// travel with the stream's statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_through_pgbouncer_from_two_instances() {
    let Some((_cluster, bouncer)) = cluster_with_pgbouncer(1, "").await else {
        return;
    };
    let url = with_params(
        &bouncer.url("postgres"),
        "pgbouncer=true&statement_timeout=2s&connection_limit=3",
    );
    let (one, two) = (service(&url).await, service(&url).await);
    let jobs = (0..40i64).map(|i| {
        let db = if i % 2 == 0 { one.clone() } else { two.clone() };
        async move {
            streamed(
                &db,
                Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT g::int8 FROM generate_series(1, $1) g",
                    [(i + 1).into()],
                ),
            )
            .await
            .map(|rows| (i, rows))
        }
    });
    for result in futures::future::join_all(jobs).await {
        let (i, rows) = result.expect("stream through PgBouncer");
        assert_eq!(rows, (1..=i + 1).collect::<Vec<_>>());
    }
    let timeout = streamed(
        &two,
        Statement::from_string(
            DbBackend::Postgres,
            "SELECT setting::int8 FROM pg_settings WHERE name = 'statement_timeout'",
        ),
    )
    .await
    .expect("setting");
    assert_eq!(timeout, vec![2000], "SET LOCAL travels with the stream");
    one.close(Duration::from_secs(5)).await;
    two.close(Duration::from_secs(5)).await;
}

/// With `statement_cache_size=0`, streams leave no prepared statement on the server.
#[tokio::test]
async fn streams_without_statement_cache_leave_no_prepared_statements() {
    let base = fresh_pg_database().await;
    let db = service(&with_params(
        &base,
        "statement_cache_size=0&connection_limit=1",
    ))
    .await;
    for i in 0..20i64 {
        let rows = streamed(
            &db,
            Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!("SELECT $1::int8 + {i}"),
                [i.into()],
            ),
        )
        .await
        .expect("stream");
        assert_eq!(rows, vec![2 * i]);
    }
    let left = db
        .conn()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) FROM pg_prepared_statements",
        ))
        .await
        .expect("count")
        .expect("row")
        .try_get_by_index::<i64>(0)
        .expect("int");
    assert_eq!(left, 0);
    db.close(Duration::from_secs(5)).await;
}
