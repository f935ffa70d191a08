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

use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::sqlx::{self, ConnectOptions};

use super::raw::{self, Opened, RawConn};
use super::reach::HostsFailed;
use super::role::{Need, Role, ask_role, ask_session};
use crate::config::{HostSpec, LoadBalanceHosts, TargetSessionAttrs};
use crate::stats::{HostReport, HostsReport};

/// A host found bad (refused, unreachable, not matching) within this long is tried after the
/// others, so that a dead first host does not cost every new connection a `connect_timeout`
/// (pgJDBC's `hostRecheckSeconds`, with its default).
const RECHECK: Duration = Duration::from_secs(10);

/// What a host was last found to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostState {
    /// Not tried yet.
    Unknown,
    /// Its last connection was kept.
    Matching,
    /// It answered but was passed over (or marked after a write it refused).
    Mismatch(String),
    /// It could not be reached.
    Unreachable(String),
}

impl HostState {
    pub fn label(&self) -> &'static str {
        match self {
            HostState::Unknown => "unknown",
            HostState::Matching => "matching",
            HostState::Mismatch(_) => "mismatch",
            HostState::Unreachable(_) => "unreachable",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            HostState::Mismatch(r) | HostState::Unreachable(r) => Some(r),
            _ => None,
        }
    }

    fn bad(&self) -> bool {
        matches!(self, HostState::Mismatch(_) | HostState::Unreachable(_))
    }
}

/// One candidate host.
#[derive(Debug)]
pub(crate) struct Host {
    pub spec: HostSpec,
    pub opts: PgConnectOptions,
    state: Mutex<(HostState, Instant)>,
    /// Bumped when the host is marked: connections opened before are closed.
    epoch: AtomicU64,
    /// A check of a refused write is under way (one at a time).
    verifying: AtomicBool,
    /// Marked for refusing writes: taken back only once a connection finds it writable
    /// (whatever it is found to be meanwhile, unreachable included).
    marked: AtomicBool,
}

/// The hosts of one endpoint and the rules for choosing among them.
#[derive(Debug)]
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
}

impl Host {
    pub fn new(spec: HostSpec, opts: PgConnectOptions) -> Self {
        Self {
            spec,
            opts,
            state: Mutex::new((HostState::Unknown, Instant::now())),
            epoch: AtomicU64::new(0),
            verifying: AtomicBool::new(false),
            marked: AtomicBool::new(false),
        }
    }

    pub fn state(&self) -> (HostState, Instant) {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or((HostState::Unknown, Instant::now()))
    }

    fn set(&self, state: HostState) {
        if let Ok(mut s) = self.state.lock()
            && s.0 != state
        {
            *s = (state, Instant::now());
        }
    }

    fn marked(&self) -> bool {
        self.marked.load(Ordering::Acquire)
    }

    fn recently_bad(&self) -> bool {
        let (state, since) = self.state();
        state.bad() && since.elapsed() < RECHECK
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }
}

impl Topology {
    pub fn new(
        hosts: Vec<Host>,
        attrs: TargetSessionAttrs,
        balance: LoadBalanceHosts,
        wants_writes: bool,
    ) -> Self {
        Self {
            hosts,
            attrs,
            balance,
            wants_writes,
            current: Mutex::new(None),
            changes: AtomicU64::new(0),
            lost: AtomicBool::new(false),
        }
    }

    /// How many connection attempts one connect may make (each within `connect_timeout`).
    pub fn attempts(&self) -> u32 {
        let passes = if self.attrs == TargetSessionAttrs::PreferStandby {
            2
        } else {
            1
        };
        u32::try_from(self.hosts.len().max(1))
            .unwrap_or(u32::MAX)
            .saturating_mul(passes)
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

    /// The options of the host the pool is on (the first before any connection).
    pub fn preferred(&self) -> PgConnectOptions {
        let i = self.current().map_or(0, |(i, _)| i);
        self.hosts
            .get(i)
            .or(self.hosts.first())
            .map_or_else(PgConnectOptions::new_without_pgpass, |h| h.opts.clone())
    }

    /// The order this connect tries the hosts in: as written (hosts found bad lately last),
    /// or shuffled.
    fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.hosts.len()).collect();
        match self.balance {
            LoadBalanceHosts::Random => fastrand::shuffle(&mut order),
            LoadBalanceHosts::Disable => {
                order.sort_by_key(|&i| self.hosts.get(i).is_some_and(Host::recently_bad));
            }
        }
        order
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
        for &second_pass in passes {
            for i in self.order() {
                let Some(host) = self.hosts.get(i) else {
                    continue;
                };
                match self
                    .try_host(i, host, second_pass, connect_timeout, inline)
                    .await
                {
                    Ok(opened) => {
                        self.kept(i, host, opened.epoch);
                        return Ok(opened);
                    }
                    Err(Attempt::Mismatch(why)) => {
                        mismatch = true;
                        transient = true;
                        host.set(HostState::Mismatch(why.clone()));
                        causes.push(format!("{} {why}", host.spec));
                    }
                    Err(Attempt::Failed(e)) => {
                        let why = scrub(&e);
                        transient |= crate::classify::is_transient(&e);
                        host.set(HostState::Unreachable(why.clone()));
                        causes.push(format!("{} {why}", host.spec));
                        only = Some(e);
                    }
                    Err(Attempt::TimedOut) => {
                        transient = true;
                        let why = format!(
                            "no connection within connect_timeout ({})",
                            humantime::format_duration(connect_timeout)
                        );
                        host.set(HostState::Unreachable(why.clone()));
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

    /// A connection was kept on `host`: note it, and say so when the pool moved.
    fn kept(&self, i: usize, host: &Host, epoch: u64) {
        if host.epoch() != epoch {
            // Marked while this connection was being checked: the mark stands (the connection
            // is closed when it comes back).
            return;
        }
        // A marked host passed a check that asked for a writable session.
        host.marked.store(false, Ordering::Release);
        host.set(HostState::Matching);
        let Ok(mut current) = self.current.lock() else {
            return;
        };
        let moved = current.is_none_or(|(c, _)| c != i);
        let had = *current;
        if moved {
            *current = Some((i, Instant::now()));
            // Shuffled hosts move with every connection: no news there.
            if had.is_some() && self.balance == LoadBalanceHosts::Disable {
                self.changes.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(current);
        if self.lost.swap(false, Ordering::AcqRel) {
            tracing::info!(host = %host.spec, "a matching server again: connections go to {}", host.spec);
        } else if let Some((from, _)) =
            had.filter(|_| moved && self.balance == LoadBalanceHosts::Disable)
        {
            let from = self
                .hosts
                .get(from)
                .map(|h| h.spec.label())
                .unwrap_or_default();
            tracing::info!(host = %host.spec, from = %from, "connections now go to {}", host.spec);
        }
    }

    async fn try_host(
        &self,
        i: usize,
        host: &Host,
        second_pass: bool,
        bound: Duration,
        inline: bool,
    ) -> Result<Opened, Attempt> {
        let started = Instant::now();
        let epoch = host.epoch();
        let mut raw = match tokio::time::timeout(bound, host.opts.connect()).await {
            Ok(Ok(c)) => RawConn::Postgres(c),
            Ok(Err(e)) => return Err(Attempt::Failed(e)),
            Err(_) => return Err(Attempt::TimedOut),
        };
        let need = self.need(host, second_pass);
        let left = bound.saturating_sub(started.elapsed());
        let (session, role) = match (inline, need) {
            // Behind PgBouncer and nothing to check: no round trip at all.
            (true, None) => (None, None),
            (true, Some(_)) => (None, ask_role(&mut raw, left).await),
            (false, _) => ask_session(&mut raw, left).await,
        };
        if let Some(need) = need {
            let verdict = match role {
                Some(role) => need.judge(role),
                None => Err("did not say whether it is a standby or read-only".to_owned()),
            };
            if let Err(why) = verdict {
                raw::close(raw, Duration::from_millis(200)).await;
                return Err(Attempt::Mismatch(why));
            }
        }
        Ok(Opened {
            raw,
            host: i,
            epoch,
            session,
        })
    }

    /// What `host`'s session must be in this pass, if anything.
    fn need(&self, host: &Host, second_pass: bool) -> Option<Need> {
        let by_attrs = match self.attrs {
            TargetSessionAttrs::Any => None,
            TargetSessionAttrs::ReadWrite => Some(Need::Writable),
            TargetSessionAttrs::ReadOnly => Some(Need::ReadOnly),
            TargetSessionAttrs::Primary => Some(Need::Primary),
            TargetSessionAttrs::Standby => Some(Need::Standby),
            TargetSessionAttrs::PreferStandby if second_pass => None,
            TargetSessionAttrs::PreferStandby => Some(Need::Standby),
        };
        // A host marked for refusing writes is taken back only once it accepts them.
        if self.wants_writes && host.marked() {
            return Some(match by_attrs {
                Some(Need::Primary) => Need::WritablePrimary,
                _ => Need::Writable,
            });
        }
        by_attrs
    }

    /// Marks `host` as no longer matching: its connections close (idle ones when the pool's
    /// maintenance runs, busy ones at check-in) and new connections go elsewhere. Returns
    /// whether this changed anything.
    pub fn mark(&self, i: usize, why: &str) -> bool {
        let Some(host) = self.hosts.get(i) else {
            return false;
        };
        let was = host.marked.swap(true, Ordering::AcqRel);
        host.set(HostState::Mismatch(why.to_owned()));
        host.epoch.fetch_add(1, Ordering::AcqRel);
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

    /// The hosts as last found, for `/health/db`.
    pub fn report(&self) -> HostsReport {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let current = self.current();
        HostsReport {
            target_session_attrs: self.attrs.to_string(),
            load_balance_hosts: self.balance.to_string(),
            current: current.and_then(|(i, _)| self.hosts.get(i).map(|h| h.spec.label())),
            current_since_ms: current.map(|(_, ago)| ms(ago)),
            changes: self.changes.load(Ordering::Relaxed),
            hosts: self
                .hosts
                .iter()
                .map(|h| {
                    let (state, since) = h.state();
                    HostReport {
                        host: h.spec.label(),
                        state: state.label(),
                        reason: state.reason().map(str::to_owned),
                        since_ms: ms(since.elapsed()),
                    }
                })
                .collect(),
        }
    }

    /// Claims the one check of a refused write on `host`; `None` when one is under way.
    pub fn claim_verify(&self, i: usize) -> Option<VerifyGuard<'_>> {
        let host = self.hosts.get(i)?;
        (!host.verifying.swap(true, Ordering::AcqRel)).then_some(VerifyGuard(host))
    }

    /// Whether `host` is read-only now, on a connection of its own within `bound`: a write
    /// refused as read-only may have been the caller's own `SET TRANSACTION READ ONLY`, which
    /// must not evict a healthy host.
    pub async fn read_only_now(&self, i: usize, bound: Duration) -> Option<Role> {
        let host = self.hosts.get(i)?;
        let check = async {
            let mut raw = RawConn::Postgres(host.opts.connect().await.ok()?);
            let role = ask_role(&mut raw, bound).await;
            raw::close(raw, Duration::from_millis(200)).await;
            role
        };
        tokio::time::timeout(bound, check).await.ok().flatten()
    }
}

/// Releases the claim of [`Topology::claim_verify`].
pub(crate) struct VerifyGuard<'a>(&'a Host);

impl Drop for VerifyGuard<'_> {
    fn drop(&mut self) {
        self.0.verifying.store(false, Ordering::Release);
    }
}

enum Attempt {
    Mismatch(String),
    Failed(sqlx::Error),
    TimedOut,
}
