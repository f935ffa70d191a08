//! The replicas of one primary: which are in rotation, how far each has replayed, and the
//! choice of a replica for one read.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use sea_orm::{DbBackend, DbErr, Statement};
use tokio::sync::watch;

use super::stats::{ReadCounts, ReplicaStats, ReplicaStatus};
use crate::classify::ErrorKind;
use crate::config::replica::ReplicaConfig;
use crate::endpoint::Endpoint;
use crate::endpoint::{HighWater, WalPosition};
use crate::pool::{Op, Output};

/// How often a read waiting for a replica to replay looks again when another read is already
/// asking the replica (one question in flight per replica).
const RECHECK: Duration = Duration::from_millis(2);

/// Less than this left of `replica_wait`: no question is worth asking.
const MIN_QUESTION: Duration = Duration::from_millis(1);

/// A replica's replay position only.
const REPLAY_SQL: &str = "SELECT pg_last_wal_replay_lsn()::text";

/// One replica: its own [`Endpoint`] (pool, statistics, alerts) and what the checks found.
pub(crate) struct Replica {
    pub name: String,
    pub endpoint: Endpoint,
    /// The replay position the server last reported (its latest answer wins, lower or not: a
    /// server rebuilt or replaced behind the URL reports less); waiters watch it.
    replay: watch::Sender<u64>,
    /// The pool's count of connections opened when that answer was asked for. Once the pool
    /// opens another, the answer vouches for no connection made since (it may reach another
    /// server) until the server is asked again.
    replay_epoch: AtomicU64,
    /// One replay question in flight per replica.
    asking: tokio::sync::Mutex<()>,
    in_rotation: AtomicBool,
    state: Mutex<State>,
    inflight: AtomicU32,
    served: AtomicU64,
}

#[derive(Debug, Clone, Default)]
struct State {
    /// Why it is out of rotation (`None` while in).
    out_because: Option<String>,
    lag: Option<Duration>,
    checked_at: Option<SystemTime>,
    /// Since when checks have seen it behind what it has received (for the lag estimate).
    behind_since: Option<Instant>,
}

/// Why a read goes to the primary.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fallback {
    Lagging,
    Unavailable,
    ReplicaError,
}

#[derive(Default)]
struct Counters {
    replica: AtomicU64,
    after_wait: AtomicU64,
    lagging: AtomicU64,
    unavailable: AtomicU64,
    replica_error: AtomicU64,
}

/// The replicas of one primary.
pub(crate) struct Replicas {
    pub list: Vec<Replica>,
    pub config: ReplicaConfig,
    pub high_water: std::sync::Arc<HighWater>,
    /// The furthest position the primary was seen at when asked to check a client's token
    /// (ahead of this instance's own writes): tokens up to it need no question.
    pub primary_seen: HighWater,
    next: AtomicUsize,
    counters: Counters,
    pub closed: AtomicBool,
}

/// A replica chosen for one read; counts it in flight until dropped.
pub(crate) struct Chosen<'a> {
    pub replica: &'a Replica,
    pub waited: bool,
}

impl<'a> Chosen<'a> {
    fn new(replica: &'a Replica, waited: bool) -> Self {
        replica.inflight.fetch_add(1, Ordering::Relaxed);
        Self { replica, waited }
    }
}

impl Drop for Chosen<'_> {
    fn drop(&mut self) {
        self.replica.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Replica {
    pub fn new(name: String, endpoint: Endpoint) -> Self {
        Self {
            name,
            endpoint,
            replay: watch::Sender::new(0),
            replay_epoch: AtomicU64::new(0),
            asking: tokio::sync::Mutex::new(()),
            in_rotation: AtomicBool::new(false),
            state: Mutex::new(State {
                out_because: Some("not checked yet".into()),
                ..State::default()
            }),
            inflight: AtomicU32::new(0),
            served: AtomicU64::new(0),
        }
    }

    pub fn in_rotation(&self) -> bool {
        self.in_rotation.load(Ordering::Acquire)
    }

    /// The last reported replay position (as shown in the statistics).
    pub fn replayed(&self) -> u64 {
        *self.replay.borrow()
    }

    /// Connections the replica's pool has opened so far.
    fn opened(&self) -> u64 {
        self.endpoint.instruments().opened.load(Ordering::Acquire)
    }

    /// What a read may rely on without asking: the reported position while no connection was
    /// opened since it was asked for, else nothing.
    pub fn trusted(&self) -> u64 {
        if self.opened() == self.replay_epoch.load(Ordering::Acquire) {
            self.replayed()
        } else {
            0
        }
    }

    /// Records the server's answer to a question asked when the pool had opened `epoch`
    /// connections.
    pub fn saw_replayed(&self, at: u64, epoch: u64) {
        self.replay_epoch.store(epoch, Ordering::Release);
        self.replay.send_if_modified(|p| {
            let changed = at != *p;
            if at < *p {
                tracing::warn!(
                    replica = %self.name,
                    reported = %WalPosition(at),
                    before = %WalPosition(*p),
                    "replica reports a lower replay position than before (rebuilt, restored or \
                     replaced); reads wait for it to replay what they need"
                );
            }
            *p = at;
            changed
        });
    }

    /// After a read on a connection that may be new: whether the server still has `need`
    /// (asked again only when the pool opened a connection since the position was learned).
    pub async fn still_there(&self, need: u64, deadline: Instant) -> bool {
        if self.opened() == self.replay_epoch.load(Ordering::Acquire) {
            return true;
        }
        // A fresh answer is worth a round trip even when the wait is spent: without it the
        // read goes to the primary.
        let bound = deadline
            .saturating_duration_since(Instant::now())
            .max(self.endpoint.config().pool().limits.health_check_timeout);
        let epoch = self.opened();
        match self.ask_replayed(bound).await {
            Ok(at) => {
                self.saw_replayed(at, epoch);
                at >= need
            }
            Err(_) => false,
        }
    }

    /// Takes the replica out of rotation (logged once per change).
    pub fn take_out(&self, why: String) {
        let was_in = self.in_rotation.swap(false, Ordering::AcqRel);
        if was_in {
            tracing::warn!(replica = %self.name, reason = %why, "replica out of rotation; its reads go to the primary");
        }
        if let Ok(mut s) = self.state.lock() {
            s.out_because = Some(why);
        }
    }

    /// Puts it (back) in rotation after a passing check.
    fn put_in(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.out_because = None;
        }
        if !self.in_rotation.swap(true, Ordering::AcqRel) {
            tracing::info!(replica = %self.name, "replica in rotation");
        }
    }

    /// Records a passing check's findings and decides rotation: `lag` beyond `max_lag` keeps
    /// it out.
    pub fn checked(
        &self,
        replayed: u64,
        epoch: u64,
        received: Option<u64>,
        since_replay: Option<Duration>,
        primary_at: u64,
        max_lag: Duration,
    ) {
        self.saw_replayed(replayed, epoch);
        let now = Instant::now();
        let lag = {
            let Ok(mut s) = self.state.lock() else {
                return;
            };
            // Behind what it received, or behind this instance's own writes: the second also
            // catches a replica whose stream broke (it replays all it received, and stays).
            let behind = received.is_some_and(|r| r > replayed) || primary_at > replayed;
            // Two estimates, each too high in one case: the time since the last replayed
            // commit overstates lag after the primary was idle; the time since checks first saw
            // it behind overstates it for a replica always slightly behind. Both are upper
            // bounds; the smaller is taken.
            let lag = if behind {
                let since = *s.behind_since.get_or_insert(now);
                let seen = now.saturating_duration_since(since);
                Some(since_replay.map_or(seen, |t| t.min(seen)))
            } else {
                s.behind_since = None;
                Some(Duration::ZERO)
            };
            s.lag = lag;
            s.checked_at = Some(SystemTime::now());
            lag
        };
        match lag {
            Some(l) if l > max_lag => self.take_out(format!(
                "lagging {:.1} s behind the primary (replica_max_lag {:.1} s)",
                l.as_secs_f64(),
                max_lag.as_secs_f64()
            )),
            _ => {
                if self.endpoint.phase() == crate::endpoint::Phase::Starting {
                    self.endpoint.mark_ready();
                }
                self.put_in()
            }
        }
    }

    /// A failed check: out of rotation.
    pub fn check_failed(&self, why: String) {
        if let Ok(mut s) = self.state.lock() {
            s.checked_at = Some(SystemTime::now());
            s.lag = None;
        }
        self.take_out(why);
    }

    /// Asks the replica how far it has replayed, within `bound`.
    async fn ask_replayed(&self, bound: Duration) -> Result<u64, DbErr> {
        let stmt = Statement::from_string(DbBackend::Postgres, REPLAY_SQL);
        let asked = self
            .endpoint
            .conn()
            .run_within(Op::One(&stmt), Some(bound), "");
        let row = match tokio::time::timeout(bound, asked).await {
            Ok(Ok(Output::One(row))) => row,
            Ok(Ok(_)) => return Err(crate::pool::unexpected()),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(DbErr::Custom(format!(
                    "no answer from the replica within {bound:?}"
                )));
            }
        };
        let text: Option<String> = row.and_then(|r| r.try_get_by_index(0).ok());
        text.and_then(|t| t.parse::<WalPosition>().ok())
            .map(|p| p.0)
            .ok_or_else(|| DbErr::Custom("the server is not replaying WAL (not a replica)".into()))
    }

    /// Waits until the replica has replayed `need`, asking it (one question in flight for
    /// all readers), until `deadline`. Returns whether it got there.
    async fn wait_for(&self, need: u64, deadline: Instant) -> bool {
        let mut seen = self.replay.subscribe();
        loop {
            seen.borrow_and_update();
            if self.trusted() >= need {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || !self.in_rotation() {
                return false;
            }
            let left = deadline - now;
            if left < MIN_QUESTION {
                // Not even a round trip left: the read goes to the primary.
                return false;
            }
            if let Ok(_asking) = self.asking.try_lock() {
                let epoch = self.opened();
                match self.ask_replayed(left).await {
                    Ok(at) => self.saw_replayed(at, epoch),
                    Err(e) => {
                        // Only a replica that is gone leaves rotation here; one that is busy
                        // or slow to answer within this read's budget is not at fault.
                        if matches!(
                            ErrorKind::of(&e),
                            ErrorKind::Connection | ErrorKind::PoolClosed
                        ) {
                            self.take_out(format!("replay position check failed: {e}"));
                        }
                        return false;
                    }
                }
                if self.trusted() >= need {
                    return true;
                }
                // Still behind: give replay a moment before the next question, holding the
                // turn so the other readers wait on the answer rather than ask too.
                tokio::time::sleep(RECHECK.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
            } else {
                let _ = tokio::time::timeout(RECHECK.min(left), seen.changed()).await;
            }
        }
    }
}

impl Replicas {
    pub fn new(
        list: Vec<Replica>,
        config: ReplicaConfig,
        high_water: std::sync::Arc<HighWater>,
    ) -> Self {
        Self {
            list,
            config,
            high_water,
            primary_seen: HighWater::default(),
            next: AtomicUsize::new(0),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
        }
    }

    /// Chooses a replica that has replayed `need`, waiting for one (at most until `deadline`)
    /// if none has yet; `Err` says why the read goes to the primary instead. Among those
    /// that qualify, the one with the fewest reads in flight (ties: round robin).
    pub async fn choose(&self, need: u64, deadline: Instant) -> Result<Chosen<'_>, Fallback> {
        let n = self.list.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let rotation = (0..n)
            .filter_map(|i| self.list.get((start + i) % n))
            .filter(|r| r.in_rotation() && r.endpoint.pool().down().is_none());
        let mut best: Option<&Replica> = None;
        let mut furthest: Option<&Replica> = None;
        for r in rotation {
            if r.trusted() >= need {
                if best.is_none_or(|b| {
                    r.inflight.load(Ordering::Relaxed) < b.inflight.load(Ordering::Relaxed)
                }) {
                    best = Some(r);
                }
            } else if furthest.is_none_or(|f| r.trusted() > f.trusted()) {
                furthest = Some(r);
            }
        }
        if let Some(r) = best {
            return Ok(Chosen::new(r, false));
        }
        let Some(r) = furthest else {
            return Err(Fallback::Unavailable);
        };
        if r.wait_for(need, deadline).await {
            Ok(Chosen::new(r, true))
        } else {
            Err(Fallback::Lagging)
        }
    }

    pub fn served(&self, chosen: &Chosen<'_>) {
        chosen.replica.served.fetch_add(1, Ordering::Relaxed);
        let c = if chosen.waited {
            &self.counters.after_wait
        } else {
            &self.counters.replica
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn fell_back(&self, why: Fallback) {
        let c = match why {
            Fallback::Lagging => &self.counters.lagging,
            Fallback::Unavailable => &self.counters.unavailable,
            Fallback::ReplicaError => &self.counters.replica_error,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> ReplicaStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ReplicaStats {
            write_position: WalPosition(self.high_water.get()),
            reads: ReadCounts {
                replica: load(&c.replica),
                replica_after_wait: load(&c.after_wait),
                primary_lagging: load(&c.lagging),
                primary_unavailable: load(&c.unavailable),
                primary_replica_error: load(&c.replica_error),
            },
            replicas: self
                .list
                .iter()
                .map(|r| {
                    let s = r.state.lock().map(|s| s.clone()).unwrap_or_default();
                    ReplicaStatus {
                        name: r.name.clone(),
                        url: r.endpoint.config().redacted_url().to_string(),
                        in_rotation: r.in_rotation(),
                        out_because: s.out_because,
                        lag_seconds: s.lag.map(|l| l.as_secs_f64()),
                        replayed: WalPosition(r.replayed()),
                        reads: load(&r.served),
                        checked_at: s.checked_at,
                    }
                })
                .collect(),
        }
    }
}
