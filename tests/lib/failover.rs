//! Databases that move: multi-host URLs with `target_session_attrs`, a host that turns
//! read-only under a running service, an unreachable first host. A private primary with a
//! streaming replica; `pg_is_in_recovery()` tells which server answered.

use std::time::{Duration, Instant};

use dbservice::classify::ErrorKind;
use dbservice::{DbService, config::DbConfig};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

use crate::support::proxy::FaultProxy;
use crate::support::{PASSWORD, cluster_with_replica, eventually, private_cluster};

fn stmt(sql: &str) -> Statement {
    Statement::from_string(DbBackend::Postgres, sql)
}

/// `postgres://…@127.0.0.1:p1,127.0.0.1:p2/postgres?query`, the hosts in the order given.
fn hosts_url(ports: &[u16], query: &str) -> String {
    let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    format!(
        "postgres://postgres:{PASSWORD}@{}/postgres?{query}",
        hosts.join(",")
    )
}

async fn service(url: &str) -> DbService {
    let db = DbService::new(DbConfig::from_url(url).expect("config")).expect("service");
    db.connect().await.expect("connects");
    db
}

/// Whether the server that answered is a standby.
async fn on_standby(db: &DbService) -> Result<bool, DbErr> {
    let row = db
        .conn()
        .query_one_raw(stmt("SELECT pg_is_in_recovery()"))
        .await?
        .ok_or_else(|| DbErr::Custom("no row".into()))?;
    row.try_get_by_index::<bool>(0)
}

async fn write(db: &DbService) -> Result<(), DbErr> {
    db.conn()
        .execute_unprepared(
            "CREATE TABLE IF NOT EXISTS moves (id serial PRIMARY KEY); INSERT INTO moves DEFAULT VALUES",
        )
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_target_session_attrs_picks_its_server_with_the_standby_listed_first() {
    let (primary, standby) = cluster_with_replica().await;
    let ports = [standby.port, primary.port];
    for (attrs, wants_standby) in [
        ("read-write", false),
        ("primary", false),
        ("read-only", true),
        ("standby", true),
        ("prefer-standby", true),
    ] {
        let db = service(&hosts_url(
            &ports,
            &format!("target_session_attrs={attrs}&connection_limit=2"),
        ))
        .await;
        assert_eq!(
            on_standby(&db).await.expect("read"),
            wants_standby,
            "target_session_attrs={attrs}"
        );
        let hosts = db.hosts().expect("a PostgreSQL pool reports its hosts");
        let expected = format!(
            "127.0.0.1:{}",
            if wants_standby { ports[0] } else { ports[1] }
        );
        assert_eq!(
            hosts.current.as_deref(),
            Some(expected.as_str()),
            "{hosts:?}"
        );
        assert_eq!(hosts.hosts.len(), 2, "{hosts:?}");
        db.close(Duration::from_secs(5)).await;
    }

    // prefer-standby takes the primary when no standby answers.
    let stopped = standby.clone();
    tokio::task::spawn_blocking(move || stopped.stop_server())
        .await
        .expect("standby stops");
    let db = service(&hosts_url(
        &ports,
        "target_session_attrs=prefer-standby&connection_limit=2&connect_timeout=2s",
    ))
    .await;
    assert!(
        !on_standby(&db).await.expect("read"),
        "fell back to the primary"
    );
    // …while `standby` has nowhere to go, and says why for each host.
    let config = DbConfig::from_url(&hosts_url(
        &ports,
        "target_session_attrs=standby&connect_retry_timeout=0&connect_timeout=2s",
    ))
    .expect("config");
    let err = DbService::new(config)
        .expect("service")
        .connect()
        .await
        .expect_err("no standby");
    let text = err.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{}", ports[0]))
            && text.contains(&format!("127.0.0.1:{}", ports[1]))
            && text.contains("not in hot standby mode"),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
    db.close(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_by_a_standby_moves_the_pool_to_the_writable_host() {
    let (primary, standby) = cluster_with_replica().await;
    // `any` (the default) keeps the first host that answers: the standby.
    let db = service(&hosts_url(
        &[standby.port, primary.port],
        "connection_limit=3&pool_timeout=5s",
    ))
    .await;
    assert!(
        on_standby(&db).await.expect("read"),
        "landed on the standby"
    );
    // Refused as read-only, so run once more on another connection (it may then already be
    // on the primary); if it still fails, it is retry-able like a connection failure: the
    // demo answers 503, never 500.
    if let Err(refused) = write(&db).await {
        assert_eq!(ErrorKind::of(&refused), ErrorKind::Connection, "{refused}");
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            write(&db).await.is_ok()
        })
        .await,
        "writes went to the primary: {:?}",
        db.hosts()
    );
    assert!(!on_standby(&db).await.expect("read"));
    let stats = db.stats();
    assert!(stats.closed.host_mismatch >= 1, "{:?}", stats.closed);
    assert!(stats.topology_changes >= 1, "{stats:?}");
    let hosts = db.hosts().expect("hosts");
    assert_eq!(hosts.hosts[0].state, "mismatch", "{hosts:?}");
    assert_eq!(
        hosts.current.as_deref(),
        Some(format!("127.0.0.1:{}", primary.port).as_str())
    );
    db.close(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_turned_read_only_fails_fast_and_comes_back_without_a_restart() {
    let cluster = private_cluster().await;
    let db = service(&format!(
        "{}?connection_limit=3&pool_timeout=5s",
        cluster.url("postgres")
    ))
    .await;
    write(&db).await.expect("writable");
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.set_read_only(true))
        .await
        .expect("read-only");

    // The open connections see it at their next write; the host is checked and marked.
    let refused = write(&db).await.expect_err("read-only now");
    assert_eq!(ErrorKind::of(&refused), ErrorKind::Connection, "{refused}");
    assert!(
        eventually(Duration::from_secs(10), || async {
            db.stats().database_down
        })
        .await,
        "the pool knows it has no writable server: {:?}",
        db.stats()
    );
    assert!(
        db.stats().closed.host_mismatch >= 1,
        "{:?}",
        db.stats().closed
    );
    // Fast and honest: no pool_timeout wait, the cause names the host.
    let started = Instant::now();
    let err = write(&db).await.expect_err("still read-only");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ErrorKind::of(&err), ErrorKind::Connection, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{}", cluster.port)) && text.contains("read-only"),
        "{text}"
    );
    assert!(
        db.readiness().await.result.is_err(),
        "not ready while read-only"
    );

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.set_read_only(false))
        .await
        .expect("writable again");
    assert!(
        eventually(Duration::from_secs(10), || async {
            write(&db).await.is_ok()
        })
        .await,
        "writes came back with no restart: {:?}",
        db.hosts()
    );
    assert!(db.readiness().await.result.is_ok());
    db.close(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_first_host_costs_one_connect_timeout() {
    let cluster = private_cluster().await;
    let hole = FaultProxy::start(&cluster.url("postgres"), Duration::ZERO).await;
    hole.blackhole(true);
    let hole_port = url::Url::parse(&hole.url)
        .ok()
        .and_then(|u| u.port())
        .expect("proxy port");
    let started = Instant::now();
    let db = service(&hosts_url(
        &[hole_port, cluster.port],
        "connect_timeout=1s&connection_limit=4&pool_timeout=10s",
    ))
    .await;
    let startup = started.elapsed();
    assert!(
        startup < Duration::from_secs(4),
        "startup took {startup:?}; one connect_timeout for the dead host"
    );
    // New connections now try the dead host last: four at once, none waits a second.
    let started = Instant::now();
    let held = futures_util::future::join_all((0..4).map(|_| async {
        db.transaction(async |tx| {
            tx.execute_raw(stmt("SELECT pg_sleep(0.2)")).await?;
            Ok::<_, DbErr>(())
        })
        .await
    }))
    .await;
    assert!(held.iter().all(Result::is_ok), "{held:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let hosts = db.hosts().expect("hosts");
    assert_eq!(hosts.hosts[0].state, "unreachable", "{hosts:?}");
    db.close(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_read_write_readiness_sees_a_read_only_server_without_any_write() {
    let cluster = private_cluster().await;
    let db = service(&format!(
        "{}?target_session_attrs=read-write&connection_limit=2",
        cluster.url("postgres")
    ))
    .await;
    assert!(db.readiness().await.result.is_ok());
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.set_read_only(true))
        .await
        .expect("read-only");
    // A ping passes on a read-only server; readiness asks the role instead.
    assert!(
        eventually(Duration::from_secs(5), || async {
            db.readiness().await.result.is_err()
        })
        .await,
        "readiness failed without a write"
    );
    // The host is left in the background, right after the failed check.
    assert!(
        eventually(Duration::from_secs(5), || async {
            db.hosts().is_some_and(|h| h.hosts[0].state == "mismatch") && db.stats().database_down
        })
        .await,
        "{:?} {:?}",
        db.hosts(),
        db.stats()
    );
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.set_read_only(false))
        .await
        .expect("writable");
    assert!(
        eventually(Duration::from_secs(10), || async {
            db.readiness().await.result.is_ok()
        })
        .await,
        "ready again with no restart"
    );
    db.close(Duration::from_secs(5)).await;
}
