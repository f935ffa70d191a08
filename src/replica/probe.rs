//! The background check of every replica: in recovery, replay position, lag. It takes a
//! failing or lagging replica out of rotation and puts a healthy one back.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::join_all;
use sea_orm::{DbBackend, Statement};

use super::set::{Replica, Replicas};
use crate::classify::{ErrorKind, safe_to_rerun, sqlstate};
use crate::endpoint::WalPosition;
use crate::pool::{Op, Output, to_db_err};

/// One round trip: whether the server replays WAL, how far it has replayed and received,
/// and how long ago the last replayed commit happened on the primary.
const STATUS_SQL: &str = "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, \
     pg_last_wal_receive_lsn()::text, \
     EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))::float8";

/// Checks every replica now and then every `replica_check_interval`, until the replicas are
/// closed or dropped. Holds them only weakly between rounds.
pub(crate) async fn run(replicas: Weak<Replicas>) {
    loop {
        let every = {
            let Some(set) = replicas.upgrade() else {
                return;
            };
            if set.closed.load(Ordering::Acquire) {
                return;
            }
            let (max_lag, primary_at) = (set.config.max_lag, set.high_water.get());
            join_all(set.list.iter().map(|r| check(r, max_lag, primary_at))).await;
            set.config.check_interval
        };
        tokio::time::sleep(every).await;
    }
}

/// One replica's check, bounded by its `health_check_timeout` (the wait for a connection
/// included).
async fn check(replica: &Replica, max_lag: Duration, primary_at: u64) {
    let bound = replica.endpoint.config().pool().limits.health_check_timeout;
    let stmt = Statement::from_string(DbBackend::Postgres, STATUS_SQL);
    let epoch = replica
        .endpoint
        .instruments()
        .opened
        .load(Ordering::Acquire);
    // On a connection of its own checkout, to know which of the replica's hosts answered.
    let pool = replica.endpoint.pool();
    let ins = replica.endpoint.instruments();
    let ask = async || {
        // Quiet: a saturated replica is no news here (no verdict this round).
        let mut conn = pool.acquire_quiet(Some(bound)).await.map_err(to_db_err)?;
        let host = conn.host();
        conn.run_untraced(Op::One(&stmt), Some(bound))
            .await
            .map(|out| (out, host))
    };
    let asked = async {
        match ask().await {
            // A connection the server ended while it sat idle (a replica restarted): the
            // question never ran; asked once more on another connection, as reads are.
            Err(e) if safe_to_rerun(sqlstate(&e).as_deref(), STATUS_SQL) => {
                ins.on_error(&e);
                ask().await
            }
            other => other,
        }
        .inspect_err(|e| ins.on_error(e))
    };
    let (row, host) = match tokio::time::timeout(bound, asked).await {
        Ok(Ok((Output::One(Some(row)), host))) => (row, host),
        Ok(Ok(_)) => return replica.check_failed("the status query returned no row".into()),
        // Every connection busy: no verdict this round (reads skip it while it is saturated).
        Ok(Err(e)) if ErrorKind::of(&e) == ErrorKind::PoolTimeout => return,
        Ok(Err(e)) => return replica.check_failed(format!("unreachable: {e}")),
        Err(_) => {
            return replica
                .check_failed(format!("no answer within {bound:?} (health_check_timeout)"));
        }
    };
    let in_recovery: bool = row.try_get_by_index(0).unwrap_or(false);
    let position = |i: usize| {
        row.try_get_by_index::<Option<String>>(i)
            .ok()
            .flatten()
            .and_then(|t| t.parse::<WalPosition>().ok())
            .map(|p| p.0)
    };
    let (Some(replayed), true) = (position(1), in_recovery) else {
        // Promoted: a replica URL that lists other hosts moves to a standby among them.
        pool.leave_host(host, "is not in hot standby mode");
        return replica.check_failed(
            "not a replica: the server is not in recovery (promoted, or the primary's URL)".into(),
        );
    };
    let since_replay = row
        .try_get_by_index::<Option<f64>>(3)
        .ok()
        .flatten()
        .map(|s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX));
    replica.checked(
        replayed,
        epoch,
        position(2),
        since_replay,
        primary_at,
        max_lag,
    );
}
