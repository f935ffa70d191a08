//! The OpenTelemetry-shaped spans (`dbservice::trace`), read by a subscriber of the test's own
//! on a real PostgreSQL: names, attributes, nesting, failures, and that no bound value is
//! ever part of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dbservice::{DbService, TxOptions, config::DbConfig};
use futures::StreamExt;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, StreamTrait};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::support::{fresh_pg_database, with_params};

/// A value no span, event or attribute may ever show.
const SECRET: &str = "s3cr3t-owner-7731";

/// A closed span as the test's subscriber saw it.
#[derive(Debug, Clone, Default)]
struct Seen {
    seq: u64,
    parent: Option<u64>,
    target: String,
    fields: HashMap<String, String>,
    events: Vec<HashMap<String, String>>,
}

impl Seen {
    fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
    fn name(&self) -> &str {
        self.get("otel.name").unwrap_or_default()
    }
}

#[derive(Default)]
struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

struct Open {
    seen: Seen,
}

#[derive(Clone, Default)]
struct Capture {
    closed: Arc<Mutex<Vec<Seen>>>,
    seq: Arc<std::sync::atomic::AtomicU64>,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let Some(span) = ctx.span(id) else { return };
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<Open>().map(|o| o.seen.seq));
        let seen = Seen {
            seq: self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            parent,
            target: attrs.metadata().target().to_owned(),
            fields: fields.0,
            events: Vec::new(),
        };
        span.extensions_mut().insert(Open { seen });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(open) = span.extensions_mut().get_mut::<Open>() {
            open.seen.fields.extend(fields.0);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(open) = span.extensions_mut().get_mut::<Open>() {
            open.seen.events.push(fields.0);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if let Some(open) = span.extensions_mut().remove::<Open>() {
            self.closed.lock().expect("capture lock").push(open.seen);
        }
    }
}

impl Capture {
    fn spans(&self) -> Vec<Seen> {
        self.closed.lock().expect("capture lock").clone()
    }

    /// Every statement span.
    fn statements(&self) -> Vec<Seen> {
        self.spans()
            .into_iter()
            .filter(|s| s.target == dbservice::trace::STATEMENT_TARGET)
            .collect()
    }

    /// Nothing captured shows [`SECRET`].
    fn assert_no_secret(&self) {
        for s in self.spans() {
            let all = format!("{:?} {:?}", s.fields, s.events);
            assert!(
                !all.contains(SECRET),
                "a bound value leaked into a span: {all}"
            );
        }
    }
}

/// Runs `test` with a subscriber that captures spans on this thread (the test runtime is
/// current-thread, so the service's own tasks run here too).
async fn captured<F: Future<Output = ()>>(test: impl FnOnce(Capture) -> F) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    test(capture).await;
}

async fn service(url: &str) -> DbService {
    let db = DbService::new(DbConfig::from_url(url).expect("url")).expect("service");
    db.connect().await.expect("connects");
    db.conn()
        .execute_unprepared(
            "CREATE TABLE IF NOT EXISTS accounts (id BIGSERIAL PRIMARY KEY, owner TEXT UNIQUE NOT NULL, balance_cents BIGINT NOT NULL DEFAULT 0)",
        )
        .await
        .expect("table");
    db
}

fn insert(owner: &str) -> Statement {
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        r#"INSERT INTO "accounts" ("owner") VALUES ($1)"#,
        [owner.into()],
    )
}

#[tokio::test(flavor = "current_thread")]
async fn statements_carry_the_conventions_attributes_and_never_a_value() {
    let url = fresh_pg_database().await;
    let db = service(&url).await;
    let database = url.rsplit('/').next().expect("a database name").to_owned();
    captured(|spans| async move {
        db.conn().execute_raw(insert(SECRET)).await.expect("insert");
        let failed = db.conn().execute_raw(insert(SECRET)).await;
        assert!(failed.is_err(), "the duplicate owner is refused");
        let rows = db
            .conn()
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                r#"SELECT "id", "owner" FROM "accounts" WHERE "owner" = $1"#,
                [SECRET.into()],
            ))
            .await
            .expect("select");
        assert_eq!(rows.len(), 1);

        let all = spans.statements();
        let ok = all
            .iter()
            .find(|s| s.name() == "INSERT accounts" && s.get("error.type").is_none())
            .expect("an INSERT span");
        assert_eq!(ok.get("otel.kind"), Some("client"));
        assert_eq!(ok.get("db.system.name"), Some("postgresql"));
        assert_eq!(ok.get("db.namespace"), Some(database.as_str()));
        assert_eq!(ok.get("db.operation.name"), Some("INSERT"));
        assert_eq!(ok.get("db.collection.name"), Some("accounts"));
        assert_eq!(ok.get("server.address"), Some("127.0.0.1"));
        assert!(
            ok.get("server.port")
                .is_some_and(|p| p.parse::<u16>().is_ok())
        );
        assert_eq!(ok.get("dbservice.node"), Some("primary"));
        assert_eq!(
            ok.get("db.query.text"),
            Some(r#"INSERT INTO "accounts" ("owner") VALUES ($1)"#)
        );

        let bad = all
            .iter()
            .find(|s| s.name() == "INSERT accounts" && s.get("error.type").is_some())
            .expect("the failed INSERT's span");
        assert_eq!(bad.get("db.response.status_code"), Some("23505"));
        assert_eq!(bad.get("error.type"), Some("23505"));
        assert_eq!(bad.get("otel.status_code"), Some("error"));

        let select = all
            .iter()
            .find(|s| s.name() == "SELECT accounts")
            .expect("a SELECT span");
        assert_eq!(select.get("db.operation.name"), Some("SELECT"));
        spans.assert_no_secret();
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_transaction_span_holds_its_statements_and_records_retries() {
    let url = fresh_pg_database().await;
    let db = service(&url).await;
    captured(|spans| async move {
        let parent = tracing::info_span!("request");
        let mut tries = 0;
        let done = tracing::Instrument::instrument(
            db.transaction(async |tx| {
                tries += 1;
                tx.execute_raw(insert(&format!("{SECRET}-{tries}"))).await?;
                if tries == 1 {
                    // A serialization failure on the first attempt: retried.
                    tx.execute_unprepared(
                        "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$",
                    )
                    .await?;
                }
                tx.execute_unprepared("UPDATE accounts SET balance_cents = balance_cents + 5")
                    .await?;
                Ok::<_, DbErr>(())
            }),
            parent.clone(),
        )
        .await;
        drop(parent);
        done.expect("committed on the second attempt");

        let all = spans.spans();
        let tx = all
            .iter()
            .find(|s| s.target == dbservice::trace::TRANSACTION_TARGET)
            .expect("a transaction span");
        assert_eq!(tx.name(), "transaction");
        assert_eq!(tx.get("dbservice.transaction.outcome"), Some("committed"));
        assert_eq!(tx.get("dbservice.transaction.attempts"), Some("2"));
        assert_eq!(tx.get("dbservice.transaction.isolation"), Some("default"));
        let parent_seq = all
            .iter()
            .find(|s| s.target == module_path!())
            .map(|s| s.seq);
        assert_eq!(tx.parent, parent_seq, "nested under the caller's span");
        assert!(
            tx.events
                .iter()
                .any(|e| e.get("cause").map(String::as_str) == Some("conflict")),
            "a retry event: {:?}",
            tx.events
        );
        let inside: Vec<&Seen> = all
            .iter()
            .filter(|s| s.parent == Some(tx.seq) && s.target == dbservice::trace::STATEMENT_TARGET)
            .collect();
        let names: Vec<&str> = inside.iter().map(|s| s.name()).collect();
        assert!(names.contains(&"BEGIN"), "{names:?}");
        assert!(names.contains(&"INSERT accounts"), "{names:?}");
        assert!(names.contains(&"UPDATE accounts"), "{names:?}");
        assert!(
            names.contains(&"COMMIT"),
            "the COMMIT is inside too, named so: {names:?}"
        );
        let raised = inside
            .iter()
            .find(|s| s.get("error.type") == Some("40001"))
            .expect("the failing statement's span");
        assert_eq!(raised.get("db.response.status_code"), Some("40001"));
        // Unprepared text has its literals masked.
        assert!(
            inside.iter().any(|s| s.get("db.query.text")
                == Some("UPDATE accounts SET balance_cents = balance_cents + ?")),
            "{inside:#?}"
        );
        spans.assert_no_secret();
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_begun_transaction_has_its_own_span() {
    let url = fresh_pg_database().await;
    let db = service(&url).await;
    captured(|spans| async move {
        let tx = db.begin(TxOptions::default()).await.expect("begin");
        tx.execute_raw(insert(SECRET)).await.expect("insert");
        tx.rollback().await.expect("rollback");
        let all = spans.spans();
        let span = all
            .iter()
            .find(|s| s.target == dbservice::trace::TRANSACTION_TARGET)
            .expect("a transaction span");
        assert_eq!(
            span.get("dbservice.transaction.outcome"),
            Some("rolled_back"),
            "{all:#?}"
        );
        let inside: Vec<&str> = all
            .iter()
            .filter(|s| s.parent == Some(span.seq))
            .map(Seen::name)
            .collect();
        assert!(inside.contains(&"BEGIN"), "{inside:?} {all:#?}");
        assert!(inside.contains(&"INSERT accounts"), "{inside:?}");
        assert!(inside.contains(&"ROLLBACK"), "{inside:?}");
        spans.assert_no_secret();
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_caller_that_waits_for_a_connection_gets_a_wait_span() {
    let url = with_params(
        &fresh_pg_database().await,
        "connection_limit=1&pool_timeout=300ms",
    );
    let db = service(&url).await;
    captured(|spans| async move {
        let holder = db
            .begin(TxOptions::default())
            .await
            .expect("holds the one connection");
        let waited = db.conn().execute_unprepared("SELECT 1").await;
        assert!(waited.is_err(), "the pool of one is held");
        drop(holder);
        // Free again once the dropped transaction's rollback ends (this checkout waits for it
        // within pool_timeout, and may have a wait span of its own, without an error).
        db.conn()
            .execute_unprepared("SELECT 1")
            .await
            .expect("select");
        let waits: Vec<Seen> = spans
            .spans()
            .into_iter()
            .filter(|s| s.target == dbservice::trace::WAIT_TARGET)
            .collect();
        // The checkout that found the pool held waited in vain; a checkout that needed a
        // round trip (a ping after idle) may have a span of its own, without an error.
        let failed: Vec<&Seen> = waits
            .iter()
            .filter(|s| s.get("error.type").is_some())
            .collect();
        assert_eq!(failed.len(), 1, "{waits:#?}");
        assert_eq!(
            failed[0].get("db.client.connection.pool.name"),
            Some("primary")
        );
        assert_eq!(failed[0].get("error.type"), Some("pool_timeout"));
        assert_eq!(failed[0].get("otel.status_code"), Some("error"));
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn pgbouncer_mode_shows_the_placeholder_text_not_the_inlined_one() {
    let url = with_params(&fresh_pg_database().await, "pgbouncer=true");
    let db = service(&url).await;
    captured(|spans| async move {
        db.conn().execute_raw(insert(SECRET)).await.expect("insert");
        let mut rows = db
            .conn()
            .stream_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                r#"SELECT "owner" FROM "accounts" WHERE "owner" = $1"#,
                [SECRET.into()],
            ))
            .await
            .expect("stream");
        let mut n = 0;
        while let Some(row) = rows.next().await {
            row.expect("row");
            n += 1;
        }
        drop(rows);
        assert_eq!(n, 1);
        // The stream's span closes when its reader task ends, just after the last row.
        let closed = crate::support::eventually(Duration::from_secs(5), || async {
            spans
                .statements()
                .iter()
                .any(|s| s.name() == "SELECT accounts")
        })
        .await;
        assert!(closed, "the stream has its span: {:#?}", spans.spans());
        let all = spans.statements();
        let insert = all
            .iter()
            .find(|s| s.name() == "INSERT accounts")
            .expect("the INSERT's span");
        assert_eq!(
            insert.get("db.query.text"),
            Some(r#"INSERT INTO "accounts" ("owner") VALUES ($1)"#)
        );
        assert!(
            all.iter().any(|s| s.name() == "SELECT accounts"),
            "the stream has its span: {all:#?}"
        );
        spans.assert_no_secret();
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_filter_that_turns_the_spans_off_leaves_none() {
    // `RUST_LOG=dbservice::spans=off` (or any filter without them): the statements run and
    // no database span is made, while the caller's own spans still are.
    use tracing_subscriber::Layer;
    let url = fresh_pg_database().await;
    let db = service(&url).await;
    let capture = Capture::default();
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::TRACE)
        .with_target("dbservice::spans", tracing::level_filters::LevelFilter::OFF);
    let subscriber = tracing_subscriber::registry().with(capture.clone().with_filter(filter));
    let _guard = tracing::subscriber::set_default(subscriber);
    let request = tracing::info_span!("request");
    tracing::Instrument::instrument(
        db.transaction(async |tx| tx.execute_raw(insert(SECRET)).await.map(|_| ())),
        request.clone(),
    )
    .await
    .expect("insert");
    drop(request);
    let all = capture.spans();
    assert_eq!(all.len(), 1, "only the caller's span: {all:#?}");
    assert_eq!(all[0].target, module_path!());
}

#[tokio::test(flavor = "current_thread")]
async fn a_replica_read_says_which_node_served_it() {
    use dbservice::replica::ReplicaConfig;
    let (primary, replica) = crate::support::cluster_with_replica().await;
    let replicas = ReplicaConfig::from_urls(
        &with_params(
            &replica.url("postgres"),
            "connection_limit=2&connect_timeout=1s",
        ),
        &[],
    )
    .expect("replica URL")
    .check_interval(Duration::from_millis(200));
    let config = DbConfig::from_url(&with_params(&primary.url("postgres"), "connection_limit=2"))
        .and_then(|c| c.with_replicas(replicas))
        .expect("config");
    let db = DbService::new(config).expect("service");
    db.connect().await.expect("connects");
    let joined = crate::support::eventually(Duration::from_secs(15), || async {
        db.replica_stats()
            .is_some_and(|s| s.replicas.iter().all(|r| r.in_rotation))
    })
    .await;
    assert!(joined, "the replica never joined rotation");
    captured(|spans| async move {
        let row = db
            .read_any()
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT pg_is_in_recovery() AS r",
            ))
            .await
            .expect("read")
            .expect("a row");
        let on_replica: bool = row.try_get("", "r").expect("bool");
        assert!(on_replica, "read_any went to the replica");
        let read = spans
            .statements()
            .into_iter()
            .find(|s| s.get("db.query.text") == Some("SELECT pg_is_in_recovery() AS r"))
            .expect("the read's span");
        assert_eq!(read.get("dbservice.node"), Some("replica"));
        assert_eq!(
            read.get("server.port"),
            Some(replica.port.to_string().as_str())
        );
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn values_typed_into_sql_text_are_masked() {
    let url = fresh_pg_database().await;
    let db = service(&url).await;
    captured(|spans| async move {
        // No bound value: the value sits in the text itself.
        db.conn()
            .execute_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("INSERT INTO accounts (owner, balance_cents) VALUES ('{SECRET}', 4242)"),
            ))
            .await
            .expect("insert");
        let text = spans
            .statements()
            .into_iter()
            .find(|s| s.name() == "INSERT accounts")
            .and_then(|s| s.get("db.query.text").map(str::to_owned))
            .expect("the INSERT's span");
        assert_eq!(
            text,
            "INSERT INTO accounts (owner, balance_cents) VALUES (?, ?)"
        );
        spans.assert_no_secret();
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_transaction_says_so_and_its_rollback_nests_under_it() {
    let url = fresh_pg_database().await;
    let db = service(&url).await;
    captured(|spans| async move {
        let cut = tokio::time::timeout(
            Duration::from_millis(200),
            db.transaction(async |tx| {
                tx.execute_unprepared("SELECT pg_sleep(5)").await?;
                Ok::<_, DbErr>(())
            }),
        )
        .await;
        assert!(cut.is_err(), "the caller gave up");
        // The rollback runs in a task of its own; give it the time to finish.
        let rolled_back = crate::support::eventually(Duration::from_secs(5), || async {
            spans.statements().iter().any(|s| s.name() == "ROLLBACK")
        })
        .await;
        assert!(rolled_back, "{:#?}", spans.spans());
        let all = spans.spans();
        let tx = all
            .iter()
            .find(|s| s.target == dbservice::trace::TRANSACTION_TARGET)
            .expect("the transaction's span");
        assert_eq!(tx.get("dbservice.transaction.outcome"), Some("cancelled"));
        assert_eq!(tx.get("otel.status_code"), Some("error"));
        let sleep = all
            .iter()
            .find(|s| s.get("db.query.text") == Some("SELECT pg_sleep(?)"))
            .expect("the statement's span");
        assert_eq!(sleep.get("error.type"), Some("cancelled"));
        assert_eq!(sleep.parent, Some(tx.seq));
        let rollback = all
            .iter()
            .find(|s| s.name() == "ROLLBACK")
            .expect("the rollback's span");
        assert_eq!(rollback.parent, Some(tx.seq), "not a trace of its own");
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_begun_transaction_that_commits_records_it() {
    let url = fresh_pg_database().await;
    let db = service(&url).await;
    captured(|spans| async move {
        let tx = db.begin(TxOptions::default()).await.expect("begin");
        tx.execute_raw(insert(SECRET)).await.expect("insert");
        tx.commit().await.expect("commit");
        let all = spans.spans();
        let span = all
            .iter()
            .find(|s| s.target == dbservice::trace::TRANSACTION_TARGET)
            .expect("a transaction span");
        assert_eq!(span.get("dbservice.transaction.outcome"), Some("committed"));
        assert_eq!(span.get("otel.status_code"), None);
        assert!(
            all.iter()
                .any(|s| s.parent == Some(span.seq) && s.name() == "COMMIT"),
            "{all:#?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_callers_own_span_inside_a_transaction_stays_the_statements_parent() {
    let url = fresh_pg_database().await;
    let db = service(&url).await;
    captured(|spans| async move {
        db.transaction(async |tx| {
            tracing::Instrument::instrument(
                tx.execute_raw(insert(SECRET)),
                tracing::info_span!("debit"),
            )
            .await
            .map(|_| ())
        })
        .await
        .expect("committed");
        let all = spans.spans();
        let debit = all
            .iter()
            .find(|s| s.target == module_path!())
            .expect("the caller's span");
        let tx = all
            .iter()
            .find(|s| s.target == dbservice::trace::TRANSACTION_TARGET)
            .expect("the transaction's span");
        assert_eq!(debit.parent, Some(tx.seq));
        let insert = all
            .iter()
            .find(|s| s.name() == "INSERT accounts")
            .expect("the INSERT's span");
        assert_eq!(
            insert.parent,
            Some(debit.seq),
            "under the caller's span, not beside it"
        );
    })
    .await;
}
