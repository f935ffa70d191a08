//! Read replicas: a streaming replica of a private cluster (`pg_basebackup -R`), paused and
//! killed on purpose. `pg_is_in_recovery()` tells which server answered a read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dbservice::replica::{ReplicaConfig, WalPosition};
use dbservice::{DbService, config::DbConfig, config::Settings};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::support::proxy::FaultProxy;
use crate::support::{
    PgCluster, cluster_with_replica, connected_service, eventually, fresh_pg_database,
    pg_scalar_i64, with_params,
};

fn stmt(sql: &str) -> Statement {
    Statement::from_string(DbBackend::Postgres, sql)
}

/// A connected service on `primary` with `replica`, its replica in rotation.
async fn replicated(
    primary: &PgCluster,
    replica: &PgCluster,
    tune: impl FnOnce(ReplicaConfig) -> ReplicaConfig,
) -> DbService {
    replicated_at(primary, &replica.url("postgres"), tune).await
}

/// [`replicated`] with the replica at `replica_url` (e.g. behind a proxy).
async fn replicated_at(
    primary: &PgCluster,
    replica_url: &str,
    tune: impl FnOnce(ReplicaConfig) -> ReplicaConfig,
) -> DbService {
    let replicas = ReplicaConfig::from_urls(
        &with_params(replica_url, "connection_limit=4&connect_timeout=1s"),
        &[],
    )
    .expect("replica URL");
    let config = DbConfig::from_url(&with_params(
        &primary.url("postgres"),
        "connection_limit=4&query_timeout=5s",
    ))
    .and_then(|c| c.with_replicas(tune(replicas.check_interval(Duration::from_millis(200)))))
    .expect("config");
    let db = DbService::new(config).expect("service");
    db.connect().await.expect("connects");
    assert!(
        eventually(Duration::from_secs(15), || async { in_rotation(&db) }).await,
        "replica never joined rotation: {:?}",
        db.replica_stats()
    );
    db
}

fn in_rotation(db: &DbService) -> bool {
    db.replica_stats()
        .is_some_and(|s| s.replicas.iter().all(|r| r.in_rotation))
}

/// Whether `on` answered from a replica.
async fn from_replica(on: &impl ConnectionTrait) -> bool {
    let row = on
        .query_one_raw(stmt("SELECT pg_is_in_recovery()"))
        .await
        .expect("read")
        .expect("row");
    row.try_get_by_index::<bool>(0).expect("bool")
}

async fn count(on: &impl ConnectionTrait) -> i64 {
    let row = on
        .query_one_raw(stmt("SELECT count(*) FROM notes"))
        .await
        .expect("count")
        .expect("row");
    row.try_get_by_index::<i64>(0).expect("count")
}

/// Read-your-writes while the replica's replay is paused: a read after this instance's write
/// (or with the write's token) shows the write, from the primary; a read that does not need
/// it (`read_any`, or an older token) still goes to the replica, as the replica's own
/// `pg_stat_database` counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_the_writes_they_need_and_the_rest_go_to_the_replica() {
    let (primary, replica) = cluster_with_replica().await;
    let db = replicated(&primary, &replica, |r| {
        r.wait(Duration::from_secs(1))
            .max_lag(Duration::from_secs(60))
    })
    .await;
    assert_eq!(db.write_position(), None, "no write yet");
    db.conn()
        .execute_unprepared("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
        .await
        .expect("create");
    let created = db
        .write_position()
        .expect("a write outside a transaction moves the position");
    // Caught up within replica_wait: the replica serves, and shows the table.
    assert!(from_replica(&db.read()).await);
    assert_eq!(count(&db.read()).await, 0);

    let pause = replica.clone();
    tokio::task::spawn_blocking(move || pause.pause_replay())
        .await
        .expect("pause");
    let before = db.replica_stats().expect("stats").reads;
    db.transaction(async |tx| {
        tx.execute_unprepared("INSERT INTO notes (body) VALUES ('paid')")
            .await
            .map(|_| ())
    })
    .await
    .expect("insert");
    let written = db.write_position().expect("position after commit");
    assert!(written > created, "{written} > {created}");

    // This instance's read shows its write: the paused replica cannot, so the primary serves.
    assert_eq!(count(&db.read()).await, 1);
    assert!(!from_replica(&db.read()).await);
    assert_eq!(count(&db.read_after(written)).await, 1);
    let after = db.replica_stats().expect("stats").reads;
    assert!(
        after.primary_lagging >= before.primary_lagging + 3,
        "{before:?} -> {after:?}"
    );
    // Reads that need nothing (or only the older write) are the replica's, stale as allowed.
    let replica_reads_before = pg_scalar_i64(
        &replica.url("postgres"),
        "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'",
    )
    .await;
    for _ in 0..20 {
        assert_eq!(count(&db.read_any()).await, 0);
    }
    assert!(from_replica(&db.read_any()).await);
    assert_eq!(count(&db.read_after(created)).await, 0);
    assert!(from_replica(&db.read_after(created)).await);
    assert!(db.replica_stats().expect("stats").reads.replica >= after.replica + 23);

    let resume = replica.clone();
    tokio::task::spawn_blocking(move || resume.resume_replay())
        .await
        .expect("resume");
    // Caught up again: the instance's reads go back to the replica.
    assert!(
        eventually(Duration::from_secs(10), || async {
            from_replica(&db.read()).await && count(&db.read()).await == 1
        })
        .await
    );
    assert!(db.close(Duration::from_secs(5)).await);
    // The replica's own statistics (flushed when its sessions end) counted the reads.
    let url = replica.url("postgres");
    assert!(
        eventually(Duration::from_secs(15), || async {
            pg_scalar_i64(
                &url,
                "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'",
            )
            .await
                >= replica_reads_before + 20
        })
        .await,
        "the replica's pg_stat_database did not count the reads"
    );
}

/// A replica further behind than `replica_max_lag` leaves rotation (reads go to the primary
/// without error) and rejoins once it has caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_leaves_rotation_and_returns() {
    let (primary, replica) = cluster_with_replica().await;
    let db = replicated(&primary, &replica, |r| r.max_lag(Duration::from_secs(1))).await;
    db.conn()
        .execute_unprepared("CREATE TABLE notes (id serial PRIMARY KEY, body text)")
        .await
        .expect("create");
    let pause = replica.clone();
    tokio::task::spawn_blocking(move || pause.pause_replay())
        .await
        .expect("pause");
    // Writes keep coming while replay stands still.
    let out = eventually(Duration::from_secs(15), || async {
        db.conn()
            .execute_unprepared("INSERT INTO notes (body) VALUES ('x')")
            .await
            .expect("insert");
        !in_rotation(&db)
    })
    .await;
    let stats = db.replica_stats().expect("stats");
    assert!(out, "still in rotation: {stats:?}");
    let why = stats.replicas[0].out_because.clone().unwrap_or_default();
    assert!(
        why.contains("lagging") && why.contains("replica_max_lag"),
        "{why}"
    );
    // Out of rotation: even a read that needs nothing goes to the primary, at once.
    let started = Instant::now();
    assert!(!from_replica(&db.read_any()).await);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(db.replica_stats().expect("stats").reads.primary_unavailable >= 1);

    let resume = replica.clone();
    tokio::task::spawn_blocking(move || resume.resume_replay())
        .await
        .expect("resume");
    assert!(
        eventually(Duration::from_secs(15), || async { in_rotation(&db) }).await,
        "{:?}",
        db.replica_stats()
    );
    assert!(from_replica(&db.read_any()).await);
    db.close(Duration::from_secs(5)).await;
}

/// The replica is killed under read load: no read fails, none waits long, the primary stays
/// ready; started again, the replica rejoins rotation and serves reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_costs_no_read_and_rejoins() {
    let (primary, replica) = cluster_with_replica().await;
    let db = replicated(&primary, &replica, |r| r).await;
    db.conn()
        .execute_unprepared("CREATE TABLE notes (id serial PRIMARY KEY, body text)")
        .await
        .expect("create");
    // `read_any` does not wait for the table: let the replica replay it first.
    assert!(
        eventually(Duration::from_secs(10), || async {
            from_replica(&db.read()).await
        })
        .await
    );
    let db = Arc::new(db);
    let load = Duration::from_secs(4);
    let readers: Vec<_> = (0..6)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed, mut slowest) = (0u32, Vec::new(), Duration::ZERO);
                let until = Instant::now() + load;
                while Instant::now() < until {
                    let started = Instant::now();
                    let reader = if i % 2 == 0 { db.read() } else { db.read_any() };
                    match reader
                        .query_one_raw(stmt("SELECT count(*) FROM notes"))
                        .await
                    {
                        Ok(_) => ok += 1,
                        Err(e) => failed.push(e.to_string()),
                    }
                    slowest = slowest.max(started.elapsed());
                }
                (ok, failed, slowest)
            })
        })
        .collect();
    // The replica dies once the readers have been served by it for a while.
    assert!(
        eventually(Duration::from_secs(10), || async {
            db.replica_stats().is_some_and(|s| s.reads.replica > 50)
        })
        .await
    );
    let kill = replica.clone();
    tokio::task::spawn_blocking(move || kill.kill())
        .await
        .expect("kill");
    let mut total = 0;
    for r in readers {
        let (ok, failed, slowest) = r.await.expect("reader");
        assert!(failed.is_empty(), "failed reads: {failed:?}");
        // Well within query_timeout (5 s): a dead replica is left at once, not waited for.
        assert!(slowest < Duration::from_secs(2), "slowest read {slowest:?}");
        total += ok;
    }
    assert!(total > 100, "only {total} reads");
    let stats = db.replica_stats().expect("stats");
    assert!(!stats.replicas[0].in_rotation, "{stats:?}");
    assert!(
        stats.reads.primary_replica_error + stats.reads.primary_unavailable > 0,
        "{stats:?}"
    );
    assert!(
        db.readiness().await.result.is_ok(),
        "the primary stays ready"
    );

    let start = replica.clone();
    tokio::task::spawn_blocking(move || start.start_server())
        .await
        .expect("start");
    assert!(
        eventually(Duration::from_secs(30), || async { in_rotation(&db) }).await,
        "{:?}",
        db.replica_stats()
    );
    assert!(from_replica(&db.read_any()).await);
    db.close(Duration::from_secs(5)).await;
}

/// A reader runs reads only, on every backend (here SQLite, without replicas): a write
/// through it is refused with a message that says where it belongs.
#[tokio::test]
async fn a_reader_refuses_writes_on_every_backend() {
    let dir = tempfile::tempdir().expect("dir");
    let db = crate::support::connected_service(&crate::support::sqlite_url(&dir)).await;
    let err = db
        .read()
        .execute_unprepared("CREATE TABLE t (a int)")
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("reads only") && text.contains("`CREATE`"),
        "{text}"
    );
    let err = db
        .read()
        .execute_unprepared("SELECT 1; CREATE TABLE t (a int)")
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("reads only"), "{err}");
    let row = db
        .read()
        .query_one_raw(Statement::from_string(DbBackend::Sqlite, "SELECT 41 + 1"))
        .await
        .expect("read")
        .expect("row");
    assert_eq!(row.try_get_by_index::<i32>(0).expect("int"), 42);
    assert_eq!(db.write_position(), None);
    assert!(db.replica_stats().is_none());
}

/// `DATABASE_REPLICA_URLS` and the replica bounds from the settings; errors name the replica
/// and the parameter, never the password; replicas need PostgreSQL.
#[test]
fn replica_settings_and_their_errors() {
    let dir = tempfile::tempdir().expect("dir");
    let settings = |pairs: &[(&str, &str)]| {
        Settings::from_sources(&crate::support::env_of(pairs), dir.path())
            .and_then(|s| s.db_config(None))
    };
    let config = settings(&[
        ("DATABASE_URL", "postgres://app:secret@primary/app"),
        (
            "DATABASE_REPLICA_URLS",
            "postgres://app:secret@r1/app,\n postgres://app:secret@r2/app?connection_limit=2",
        ),
        ("DBSERVICE_CONNECTION_LIMIT", "7"),
        ("DBSERVICE_REPLICA_WAIT", "250ms"),
        ("DBSERVICE_REPLICA_MAX_LAG", "3s"),
    ])
    .expect("valid");
    let r = config.replicas().expect("replicas");
    assert_eq!(
        (r.len(), r.wait, r.max_lag),
        (2, Duration::from_millis(250), Duration::from_secs(3))
    );
    let shown = serde_json::to_string(&config).expect("json");
    assert!(shown.contains("r2") && !shown.contains("secret"), "{shown}");
    assert!(!format!("{config:?}").contains("secret"));

    let err = settings(&[
        ("DATABASE_URL", "postgres://app:secret@primary/app"),
        (
            "DATABASE_REPLICA_URLS",
            "postgres://app:secret@r1/app postgres://app:secret@r2/app?pool_timeout=soon",
        ),
    ])
    .expect_err("bad replica");
    let text = err.to_string();
    assert!(
        text.contains("replica 2") && text.contains("pool_timeout") && !text.contains("secret"),
        "{text}"
    );
    let err = settings(&[
        ("DATABASE_URL", "mysql://root@127.0.0.1/app"),
        ("DATABASE_REPLICA_URLS", "mysql://root@127.0.0.1/app"),
    ])
    .expect_err("not PostgreSQL");
    assert!(err.to_string().contains("PostgreSQL"), "{err}");
    let err = settings(&[
        ("DATABASE_URL", "postgres://app@primary/app"),
        ("DATABASE_REPLICA_URLS", "postgres://app@r1/app"),
        ("DBSERVICE_REPLICA_MAX_LAG", "0"),
    ])
    .expect_err("zero lag");
    assert!(err.to_string().contains("replica_max_lag"), "{err}");
    assert!("16/B374D848".parse::<WalPosition>().is_ok());
}

/// With replicas, a write outside a transaction is followed by the position query on the same
/// connection; that clean query must not hide what the write left behind: a raw `BEGIN` left
/// open still gets its connection closed at the next checkout, not handed out mid-transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_position_query_does_not_launder_a_dirty_connection() {
    let (primary, replica) = cluster_with_replica().await;
    let db = replicated(&primary, &replica, |r| r).await;
    let before = db.stats().closed.unclean;
    db.conn().execute_unprepared("BEGIN").await.expect("begin");
    for _ in 0..3 {
        // SAVEPOINT only works inside a transaction block: here it must fail.
        let inside = db.conn().execute_unprepared("SAVEPOINT probe").await;
        assert!(
            inside.is_err(),
            "a caller got a connection inside someone else's transaction"
        );
    }
    assert_eq!(db.stats().closed.unclean, before + 1, "{:?}", db.stats());
    db.close(Duration::from_secs(5)).await;
}

/// The server behind a replica's URL is replaced by another replica of the same primary whose
/// replay is paused behind this instance's write (a rebuilt or restored replica): the position
/// the old server had replayed must not vouch for the new one. Every read that must see the
/// write still sees it; once the new server catches up, the replica serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_replica_is_asked_again_not_trusted() {
    let (primary, replica_a) = cluster_with_replica().await;
    let p = primary.clone();
    let replica_b = Arc::new(
        tokio::task::spawn_blocking(move || p.replica())
            .await
            .expect("second replica starts"),
    );
    let proxy = FaultProxy::start(&replica_a.url("postgres"), Duration::ZERO).await;
    let db = replicated_at(&primary, &proxy.url, |r| {
        r.wait(Duration::from_millis(300))
            .max_lag(Duration::from_secs(60))
    })
    .await;
    db.conn()
        .execute_unprepared("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
        .await
        .expect("create");
    // B has the table, then stops replaying before the write below.
    let b_url = replica_b.url("postgres");
    assert!(
        eventually(Duration::from_secs(10), || async {
            pg_scalar_i64(
                &b_url,
                "SELECT count(*) FROM pg_class WHERE relname = 'notes'",
            )
            .await
                == 1
        })
        .await
    );
    let pause = replica_b.clone();
    tokio::task::spawn_blocking(move || pause.pause_replay())
        .await
        .expect("pause");
    db.conn()
        .execute_unprepared("INSERT INTO notes (body) VALUES ('paid')")
        .await
        .expect("insert");
    let written = db.write_position().expect("position after the write");
    // A (behind the proxy) replays the write and serves it: its position is known.
    assert!(
        eventually(Duration::from_secs(10), || async {
            from_replica(&db.read()).await && count(&db.read()).await == 1
        })
        .await
    );
    assert!(db.replica_stats().expect("stats").replicas[0].replayed >= written);

    // The host behind the URL is replaced: B answers from now on.
    proxy.switch_to(&b_url);
    proxy.reset_all();
    assert!(
        eventually(Duration::from_secs(15), || async {
            in_rotation(&db) && from_replica(&db.read_any()).await
        })
        .await,
        "B never served: {:?}",
        db.replica_stats()
    );
    assert_eq!(count(&db.read_any()).await, 0, "B is the stale server");
    for _ in 0..10 {
        assert_eq!(count(&db.read()).await, 1, "a stale read served as fresh");
        assert_eq!(count(&db.read_after(written)).await, 1);
    }
    let shown = db.replica_stats().expect("stats").replicas[0].replayed;
    assert!(shown < written, "B's position {shown} shown as {written}'s");

    let resume = replica_b.clone();
    tokio::task::spawn_blocking(move || resume.resume_replay())
        .await
        .expect("resume");
    assert!(
        eventually(Duration::from_secs(10), || async {
            from_replica(&db.read()).await && count(&db.read()).await == 1
        })
        .await,
        "{:?}",
        db.replica_stats()
    );
    db.close(Duration::from_secs(5)).await;
}

/// A `read_after` token ahead of everything the primary has written (a forged or corrupted
/// `Db-Position`) is refused at once, naming it; it neither waits `replica_wait` nor takes the
/// read to the primary. A token from another instance's write (ahead of this instance's own)
/// is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_ahead_of_the_primary_is_refused() {
    let (primary, replica) = cluster_with_replica().await;
    let db = replicated(&primary, &replica, |r| r.wait(Duration::from_secs(2))).await;
    db.conn()
        .execute_unprepared("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
        .await
        .expect("create");
    let before = db.replica_stats().expect("stats").reads;
    let ahead: WalPosition = "FFFFFFFF/FFFFFFFF".parse().expect("position");
    let started = Instant::now();
    let err = db
        .read_after(ahead)
        .query_one_raw(stmt("SELECT count(*) FROM notes"))
        .await
        .expect_err("a token ahead of the primary is refused");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(
        text.contains("FFFFFFFF/FFFFFFFF") && text.contains("ahead of the primary"),
        "{text}"
    );
    let refused = db.read_after(ahead).verified().await.expect_err("refused");
    assert_eq!(refused.position(), ahead);
    assert_eq!(
        db.replica_stats().expect("stats").reads,
        before,
        "no read was served"
    );

    // Another instance's write: ahead of this instance's, reached by the primary.
    pg_scalar_i64(
        &primary.url("postgres"),
        "WITH i AS (INSERT INTO notes (body) VALUES ('elsewhere') RETURNING id) \
         SELECT count(*) FROM i",
    )
    .await;
    let elsewhere = WalPosition(
        u64::try_from(
            pg_scalar_i64(
                &primary.url("postgres"),
                "SELECT (pg_current_wal_lsn() - '0/0')::bigint",
            )
            .await,
        )
        .expect("positive"),
    );
    assert!(elsewhere > db.write_position().expect("written"));
    let reader = db.read_after(elsewhere).verified().await.expect("accepted");
    assert_eq!(count(&reader).await, 1);
    db.close(Duration::from_secs(5)).await;
}

/// Reads by their first word that write all the same: a data-modifying `WITH`, a second
/// statement after a `SELECT`, a `SELECT` of a function that writes. The reader refuses them
/// with an error, and the primary is left as it was (no re-run there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_refuses_writes_hidden_in_reads() {
    let (primary, replica) = cluster_with_replica().await;
    let db = replicated(&primary, &replica, |r| r.wait(Duration::from_secs(1))).await;
    db.conn()
        .execute_unprepared(
            "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL); \
             INSERT INTO notes (body) VALUES ('kept')",
        )
        .await
        .expect("create");
    assert!(
        eventually(Duration::from_secs(10), || async {
            from_replica(&db.read()).await && count(&db.read()).await == 1
        })
        .await
    );
    let primary_url = primary.url("postgres");
    let sequence = "SELECT last_value FROM notes_id_seq";
    let at_first = pg_scalar_i64(&primary_url, sequence).await;
    let reader = db.read();
    let cte = reader
        .query_all_raw(stmt(
            "WITH d AS (DELETE FROM notes RETURNING id) SELECT count(*) FROM d",
        ))
        .await;
    let two = reader
        .execute_unprepared("SELECT 1; DELETE FROM notes")
        .await
        .map(|_| ());
    let writing_function = reader
        .query_one_raw(stmt("SELECT nextval('notes_id_seq')"))
        .await;
    assert!(cte.is_err(), "the writing WITH ran: {cte:?}");
    assert!(two.is_err(), "the second statement ran: {two:?}");
    assert!(
        writing_function.is_err(),
        "the writing function ran: {writing_function:?}"
    );
    let text = format!("{cte:?} {two:?}");
    assert!(text.contains("reads only"), "{text}");
    assert_eq!(
        pg_scalar_i64(&primary_url, "SELECT count(*) FROM notes").await,
        1,
        "a write went through db.read()"
    );
    assert_eq!(pg_scalar_i64(&primary_url, sequence).await, at_first);
    db.close(Duration::from_secs(5)).await;
}

/// Without replicas a reader runs on the primary: what it can see of a write on the client (a
/// data-modifying `WITH`, several statements, `EXPLAIN ANALYZE` of a write, `SELECT ... INTO`)
/// is refused there too.
#[tokio::test]
async fn a_reader_without_replicas_refuses_hidden_writes() {
    let db = connected_service(&fresh_pg_database().await).await;
    db.conn()
        .execute_unprepared(
            "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL); \
             INSERT INTO notes (body) VALUES ('kept')",
        )
        .await
        .expect("create");
    for sql in [
        "WITH d AS (DELETE FROM notes RETURNING id) SELECT count(*) FROM d",
        "with d as materialized (update notes set body = 'x' returning id) select 1",
        "SELECT 1; DELETE FROM notes",
        "EXPLAIN ANALYZE DELETE FROM notes",
        "SELECT * INTO copied FROM notes",
    ] {
        let err = db
            .read()
            .execute_unprepared(sql)
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("reads only"), "{sql}: {err}");
    }
    // Reads that look alike still run: the words inside quotes, comments and names.
    for sql in [
        "SELECT 'a; DELETE FROM notes' AS body",
        "WITH d AS (SELECT id FROM notes) SELECT count(*) FROM d -- ; delete",
        "SELECT body AS \"delete\" FROM notes;",
        "EXPLAIN SELECT * FROM notes",
    ] {
        db.read()
            .execute_unprepared(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    assert_eq!(count(&db.read()).await, 1);
    assert_eq!(count(db.conn()).await, 1);
    db.close(Duration::from_secs(5)).await;
}
