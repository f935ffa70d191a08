//! The hosts of a PostgreSQL endpoint and which of them a new connection goes to: libpq's
//! multi-host rules (`target_session_attrs`, `load_balance_hosts`), what each host was found to
//! be, and the marking of a host that stopped matching (a failover, a server turned
//! read-only), whose connections then close (idle ones at once, busy ones at check-in).
//!
//! A new connection learns its server's role in the round trip that already names its session
//! for cancels ([`session_sql`]), so a single-host URL pays nothing for any of this.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::sqlx;
use sea_orm::sqlx::postgres::PgConnectOptions;

use super::host::{Attempting, Host, HostState, VerifyGuard, millis};
use super::login::{LoggedIn, Login};
use super::raw::{self, Opened, RawConn};
use super::reach::HostsFailed;
use super::role::{Need, Role, ask_role, ask_session};

mod current;
use crate::config::{LoadBalanceHosts, TargetSessionAttrs};
use crate::stats::HostsReport;

/// What follows the pool to the host it moves to (see [`Topology::follow`]).
pub(crate) type Follower = Box<dyn Fn(&PgConnectOptions) + Send + Sync>;

/// The hosts of one endpoint and the rules for choosing among them.
pub(crate) struct Topology {
    pub hosts: Vec<Host>,
    pub attrs: TargetSessionAttrs,
    pub balance: LoadBalanceHosts,
    /// The pool writes: a write refused as read-only marks its host.
    pub wants_writes: bool,
    /// The host of the last connection kept, and since when.
    current: Mutex<Option<(usize, Instant)>>,
    pub changes: AtomicU64,
    /// No host matched, or the one in use was marked: said once at WARN, and once at INFO
    /// when a connection is kept again.
    lost: AtomicBool,
    /// Told the new host's options when the pool moves (see [`Topology::follow`]).
    follower: std::sync::OnceLock<Follower>,
    /// The credentials of each new connection.
    pub login: Login,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("hosts", &self.hosts)
            .field("attrs", &self.attrs)
            .field("balance", &self.balance)
            .finish_non_exhaustive()
    }
}

impl Topology {
    pub fn new(
        hosts: Vec<Host>,
        attrs: TargetSessionAttrs,
        balance: LoadBalanceHosts,
        wants_writes: bool,
        login: Login,
    ) -> Self {
        Self {
            hosts,
            attrs,
            balance,
            wants_writes,
            current: Mutex::new(None),
            changes: AtomicU64::new(0),
            lost: AtomicBool::new(false),
            follower: std::sync::OnceLock::new(),
            login,
        }
    }

    /// How many connection attempts one connect may make (each within `connect_timeout`).
    pub fn attempts(&self) -> u32 {
        let passes = 1 + u32::from(self.attrs == TargetSessionAttrs::PreferStandby);
        u32::try_from(self.hosts.len().max(1))
            .unwrap_or(u32::MAX)
            .saturating_mul(passes)
    }

    /// Whether the pool must be on a writable primary whatever happens (`read-write`,
    /// `primary`): then readiness asks the role, since a ping passes on a standby.
    pub fn strict(&self) -> bool {
        self.wants_writes
            && matches!(
                self.attrs,
                TargetSessionAttrs::ReadWrite | TargetSessionAttrs::Primary
            )
    }

    /// Whether a server of `role` on `host` is still what the pool needs.
    pub fn judge(&self, host: usize, role: Role) -> Result<(), String> {
        match self.hosts.get(host) {
            Some(h) => self.need(h, false).map_or(Ok(()), |n| n.judge(role)),
            None => Ok(()),
        }
    }

    /// How logs and errors name `host`.
    pub fn label(&self, host: usize) -> String {
        self.hosts
            .get(host)
            .map(|h| h.spec.label())
            .unwrap_or_default()
    }

    /// Whether a connection opened on `host` at `epoch` is still on a host the pool may use.
    pub fn current_epoch(&self, host: usize, epoch: u64) -> bool {
        self.hosts.get(host).is_none_or(|h| h.epoch() == epoch)
    }

    /// The host of the last connection kept, and how long ago that changed.
    pub fn current(&self) -> Option<(usize, Duration)> {
        self.current
            .lock()
            .ok()
            .and_then(|c| c.map(|(i, at)| (i, at.elapsed())))
    }

    /// The order this connect tries the hosts in: as written (hosts found bad lately last),
    /// or shuffled.
    fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.hosts.len()).collect();
        if self.balance == LoadBalanceHosts::Random {
            fastrand::shuffle(&mut order);
        }
        // Stable: the written (or shuffled) order among the good and among the bad. The keys
        // are read once (a key changing mid-sort would make the order inconsistent).
        let (good, bad): (Vec<usize>, Vec<usize>) = order
            .into_iter()
            .partition(|&i| !self.hosts.get(i).is_some_and(Host::recently_bad));
        good.into_iter().chain(bad).collect()
    }

    /// Opens a connection to the first host whose session matches, each attempt (connect and
    /// check) within `connect_timeout`; `inline` when statements go through PgBouncer, where
    /// a backend names no stable session and the role is asked only when it matters.
    pub async fn connect(
        &self,
        connect_timeout: Duration,
        inline: bool,
        scrub: &(dyn Fn(&sqlx::Error) -> String + Sync),
    ) -> Result<Opened, sqlx::Error> {
        let passes: &[bool] = if self.attrs == TargetSessionAttrs::PreferStandby {
            &[false, true]
        } else {
            &[false]
        };
        let mut causes: Vec<String> = Vec::new();
        let mut mismatch = false;
        let mut transient = false;
        let mut only: Option<sqlx::Error> = None;
        // Hosts that could not be reached in this connect's first pass are not tried again in
        // the second (a dead standby would cost `prefer-standby` two `connect_timeout`s).
        let mut unreachable = vec![false; self.hosts.len()];
        for &second_pass in passes {
            for i in self.order() {
                let Some(host) = self.hosts.get(i) else {
                    continue;
                };
                if unreachable.get(i).copied().unwrap_or(false) {
                    continue;
                }
                let mut attempting = Attempting { host, done: false };
                let attempt = self
                    .try_host(i, host, second_pass, connect_timeout, inline)
                    .await;
                attempting.done = true;
                match attempt {
                    Ok((opened, logged_in)) => {
                        if self.kept(i, host, opened.epoch, &logged_in) {
                            return Ok(opened);
                        }
                        // Marked while this connection was being checked: not handed out.
                        raw::close(opened.raw, Duration::from_millis(200)).await;
                        mismatch = true;
                        transient = true;
                        let (state, _) = host.state();
                        let why = state.reason().unwrap_or("was left while connecting");
                        causes.push(format!("{} {why}", host.spec));
                    }
                    Err(Attempt::Mismatch(why)) => {
                        mismatch = true;
                        transient = true;
                        host.failed(HostState::Mismatch(why.clone()), true);
                        causes.push(format!("{} {why}", host.spec));
                    }
                    Err(Attempt::Failed(e)) => {
                        let why = scrub(&e);
                        transient |= crate::classify::is_transient(&e);
                        // A server that answered "full" is up: not a reason to try it last.
                        let full = crate::classify::is_server_full(&e);
                        host.failed(HostState::Unreachable(why.clone()), !full);
                        mark_unreachable(&mut unreachable, i);
                        causes.push(format!("{} {why}", host.spec));
                        only = Some(e);
                    }
                    Err(Attempt::NoAnswer(why)) => {
                        transient = true;
                        host.failed(HostState::Unreachable(why.clone()), true);
                        mark_unreachable(&mut unreachable, i);
                        causes.push(format!("{} {why}", host.spec));
                    }
                    Err(Attempt::TimedOut) => {
                        transient = true;
                        let why = format!(
                            "no connection within connect_timeout ({})",
                            humantime::format_duration(connect_timeout)
                        );
                        host.failed(HostState::Unreachable(why.clone()), true);
                        mark_unreachable(&mut unreachable, i);
                        causes.push(format!("{} {why}", host.spec));
                    }
                }
            }
        }
        // One host that failed as a driver error: that error as it is (its SQLSTATE decides
        // whether the startup retries), as before hosts were lists.
        if self.hosts.len() == 1
            && !mismatch
            && let Some(e) = only
        {
            return Err(e);
        }
        if mismatch && !self.lost.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                target_session_attrs = %self.attrs,
                causes = %causes.join("; "),
                "no host matches; callers fail fast until one does (checked again with backoff)"
            );
        }
        let summary = if mismatch {
            format!(
                "no host matches target_session_attrs={}{}: {}",
                self.attrs,
                if self.wants_writes && self.attrs == TargetSessionAttrs::Any {
                    " (a writable server)"
                } else {
                    ""
                },
                causes.join("; ")
            )
        } else {
            causes.join("; ")
        };
        Err(sqlx::Error::Io(std::io::Error::other(HostsFailed {
            summary,
            mismatch,
            transient,
        })))
    }

    async fn try_host(
        &self,
        i: usize,
        host: &Host,
        second_pass: bool,
        bound: Duration,
        inline: bool,
    ) -> Result<(Opened, LoggedIn), Attempt> {
        let started = Instant::now();
        // Boxed: the login's future (a provider's, a retry's) would otherwise sit inline in
        // every caller's, deep enough to overflow a test thread's stack in debug builds.
        let connecting = Box::pin(self.login.connect(&host.opts, Some(&host.spec.host), bound));
        let (mut raw, logged_in) = match tokio::time::timeout(bound, connecting).await {
            Ok(Ok((c, logged_in))) => (RawConn::Postgres(c), logged_in),
            Ok(Err(e)) => return Err(Attempt::Failed(e)),
            Err(_) => return Err(Attempt::TimedOut),
        };
        // One snapshot: the check asked for and the epoch it vouches for go together.
        let (epoch, marked) = host.snapshot();
        let need = self.need_for(marked, second_pass);
        let left = bound.saturating_sub(started.elapsed());
        let (session, role) = match (inline, need) {
            // Behind PgBouncer and nothing to check: no round trip at all.
            (true, None) => (None, None),
            (true, Some(_)) => (None, ask_role(&mut raw, left).await),
            (false, _) => ask_session(&mut raw, left).await,
        };
        if role.is_some_and(|r| !r.read_only) {
            host.saw_writable();
        }
        if let Some(need) = need {
            let Some(role) = role else {
                // No verdict: the server did not answer the question in time (or failed it),
                // which says it is slow or broken, not that it is the wrong kind.
                raw::close(raw, Duration::from_millis(200)).await;
                return Err(Attempt::NoAnswer(
                    "did not say whether it is a standby or read-only (no answer in time, or an error)"
                        .to_owned(),
                ));
            };
            if let Err(why) = need.judge(role) {
                raw::close(raw, Duration::from_millis(200)).await;
                return Err(Attempt::Mismatch(why));
            }
        }
        Ok((
            Opened {
                raw,
                host: i,
                epoch,
                session,
            },
            logged_in,
        ))
    }

    /// What `host`'s session must be in this pass, if anything.
    fn need(&self, host: &Host, second_pass: bool) -> Option<Need> {
        self.need_for(host.marked(), second_pass)
    }

    /// [`need`](Self::need) for a host marked or not.
    fn need_for(&self, marked: bool, second_pass: bool) -> Option<Need> {
        Need::of(self.attrs, second_pass, self.wants_writes && marked)
    }

    /// Marks `host` as no longer matching: its connections close (idle ones when the pool's
    /// maintenance runs, busy ones at check-in) and new connections go elsewhere. Returns
    /// whether this changed anything.
    pub fn mark(&self, i: usize, why: &str) -> bool {
        let Some(host) = self.hosts.get(i) else {
            return false;
        };
        let was = host.mark(why);
        if !was {
            self.changes.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut current) = self.current.lock()
                && current.is_some_and(|(c, _)| c == i)
            {
                *current = None;
            }
            self.lost.store(true, Ordering::Release);
            tracing::warn!(
                host = %host.spec,
                reason = %why,
                "{} {why}: closing its connections; new connections try the other hosts",
                host.spec
            );
        }
        !was
    }

    /// Notes that a check after a refused write found `host` writable (the refusal was the
    /// caller's own, or the name now leads elsewhere): no new check for a while.
    pub fn verified(&self, i: usize) {
        if let Some(host) = self.hosts.get(i) {
            host.verified();
        }
    }

    /// Whether a refused write on `host` calls for a check: not while one is fresh, and not
    /// for the only host when it never accepted a write (a role or database that is read-only
    /// by configuration: marking it would lock the pool out for good).
    pub fn needs_verify(&self, i: usize) -> bool {
        self.hosts
            .get(i)
            .is_some_and(|h| h.needs_verify() && (self.hosts.len() > 1 || h.seen_writable()))
    }

    /// The hosts as last found, for `/health/db`.
    pub fn report(&self) -> HostsReport {
        let current = self.current();
        HostsReport {
            target_session_attrs: self.attrs.to_string(),
            load_balance_hosts: self.balance.to_string(),
            current: current.and_then(|(i, _)| self.hosts.get(i).map(|h| h.spec.label())),
            current_since_ms: current.map(|(_, ago)| millis(ago)),
            changes: self.changes.load(Ordering::Relaxed),
            hosts: self.hosts.iter().map(Host::report).collect(),
        }
    }

    /// Claims the one check of a refused write on `host`; `None` when one is under way.
    pub fn claim_verify(&self, i: usize) -> Option<VerifyGuard<'_>> {
        self.hosts.get(i)?.claim_verify()
    }

    /// What `host` is now, on a connection of its own within `bound` (see
    /// [`Host::role_now`]).
    pub async fn read_only_now(&self, i: usize, bound: Duration) -> Option<Role> {
        self.hosts.get(i)?.role_now(&self.login, bound).await
    }
}

fn mark_unreachable(list: &mut [bool], i: usize) {
    if let Some(slot) = list.get_mut(i) {
        *slot = true;
    }
}

enum Attempt {
    /// It answered, and is not what the pool needs.
    Mismatch(String),
    Failed(sqlx::Error),
    /// Connected, but the question of its role went unanswered.
    NoAnswer(String),
    TimedOut,
}
