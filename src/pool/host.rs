//! One candidate host of a PostgreSQL endpoint: what it was last found to be, whether it is
//! marked for refusing writes, and the epoch that closes its connections when it is.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::PgConnectOptions;

use super::raw::{self, RawConn};
use super::role::{Role, ask_role};

use crate::config::HostSpec;
use crate::stats::HostReport;

/// A host found bad (refused, unreachable, not matching) within this long is tried after the
/// others, so that a dead first host does not cost every new connection a `connect_timeout`
/// (pgJDBC's `hostRecheckSeconds`, with its default).
pub(super) const RECHECK: Duration = Duration::from_secs(10);

/// A check after a refused write that found the host writable is not repeated for this long
/// (the refusal was the caller's own `SET TRANSACTION READ ONLY`, or a name now leads
/// elsewhere); short, so that a server that really turns read-only soon after is still found.
const VERIFIED_FOR: Duration = Duration::from_secs(1);

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
}

/// What is known of a host, changed only under its lock (so that a mark and a check that
/// passes at the same moment cannot undo each other).
#[derive(Debug)]
struct Known {
    state: HostState,
    /// When `state` last changed (for `/health/db`).
    since: Instant,
    /// When it last failed or was passed over (for the order of the next connect).
    bad_at: Option<Instant>,
    /// Marked for refusing writes: taken back only once a connection finds it writable
    /// (whatever it is found to be meanwhile, unreachable included).
    marked: bool,
    /// When a check found it writable after a refused write (checks are not repeated within
    /// [`VERIFIED_FOR`] of that).
    verified_at: Option<Instant>,
    /// A connection found it writable once: a refused write there is news (a server that
    /// never accepted writes, e.g. a role with `default_transaction_read_only`, is not marked
    /// for refusing one).
    seen_writable: bool,
}

/// One candidate host.
pub(crate) struct Host {
    pub spec: HostSpec,
    pub opts: PgConnectOptions,
    known: Mutex<Known>,
    /// Bumped (under `known`'s lock) when the host is marked: connections opened before are
    /// closed. Read without the lock at every check-in.
    epoch: AtomicU64,
    /// A check of a refused write is under way (one at a time).
    verifying: AtomicBool,
}

impl std::fmt::Debug for Host {
    // By hand: the driver's options would show the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("spec", &self.spec)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// Stamps a host as bad if its attempt is dropped before it ends (its caller gave up
/// waiting): a host too slow to answer within the caller's patience goes last next time.
pub(super) struct Attempting<'a> {
    pub host: &'a Host,
    pub done: bool,
}

impl Drop for Attempting<'_> {
    fn drop(&mut self) {
        if !self.done
            && let Ok(mut k) = self.host.known.lock()
        {
            k.bad_at = Some(Instant::now());
        }
    }
}

impl Host {
    pub fn new(spec: HostSpec, opts: PgConnectOptions) -> Self {
        Self {
            spec,
            opts,
            known: Mutex::new(Known {
                state: HostState::Unknown,
                since: Instant::now(),
                bad_at: None,
                marked: false,
                verified_at: None,
                seen_writable: false,
            }),
            epoch: AtomicU64::new(0),
            verifying: AtomicBool::new(false),
        }
    }

    pub fn state(&self) -> (HostState, Instant) {
        self.known
            .lock()
            .map(|k| (k.state.clone(), k.since))
            .unwrap_or((HostState::Unknown, Instant::now()))
    }

    /// Records a failed or passed-over attempt.
    pub(super) fn failed(&self, state: HostState, bad: bool) {
        if let Ok(mut k) = self.known.lock() {
            if bad {
                k.bad_at = Some(Instant::now());
            }
            if k.state != state {
                k.state = state;
                k.since = Instant::now();
            }
        }
    }

    pub(super) fn marked(&self) -> bool {
        self.known.lock().is_ok_and(|k| k.marked)
    }

    pub(super) fn recently_bad(&self) -> bool {
        self.known
            .lock()
            .is_ok_and(|k| k.bad_at.is_some_and(|t| t.elapsed() < RECHECK))
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The epoch and whether it is marked, read together.
    pub(super) fn snapshot(&self) -> (u64, bool) {
        match self.known.lock() {
            Ok(k) => (self.epoch(), k.marked),
            Err(_) => (self.epoch(), true),
        }
    }

    /// Keeps a connection opened at `epoch` as matching; false when the host was marked
    /// since (then the mark stands and the connection is not kept). Under the lock, so that a
    /// mark at the same moment is not undone.
    pub(super) fn keep(&self, epoch: u64) -> bool {
        let Ok(mut k) = self.known.lock() else {
            return false;
        };
        if self.epoch() != epoch {
            return false;
        }
        // A marked host passed a check that asked for a writable session.
        k.marked = false;
        k.bad_at = None;
        if k.state != HostState::Matching {
            k.state = HostState::Matching;
            k.since = Instant::now();
        }
        true
    }

    /// Marks the host as not matching (`why`) and bumps its epoch, under the lock; returns
    /// whether it was marked already.
    pub(super) fn mark(&self, why: &str) -> bool {
        let Ok(mut k) = self.known.lock() else {
            return true;
        };
        let was = std::mem::replace(&mut k.marked, true);
        k.bad_at = Some(Instant::now());
        k.verified_at = None;
        let state = HostState::Mismatch(why.to_owned());
        if k.state != state {
            k.state = state;
            k.since = Instant::now();
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        was
    }

    /// What the host is now, on a connection of its own within `bound`: a write refused as
    /// read-only may have been the caller's own `SET TRANSACTION READ ONLY`, which must not
    /// evict a healthy host.
    pub(super) async fn role_now(
        &self,
        login: &super::login::Login,
        bound: Duration,
    ) -> Option<Role> {
        let check = async {
            let (conn, _) = login
                .connect(&self.opts, Some(&self.spec.host), bound)
                .await
                .ok()?;
            let mut raw = RawConn::Postgres(conn);
            let role = ask_role(&mut raw, bound).await;
            raw::close(raw, Duration::from_millis(200)).await;
            role
        };
        tokio::time::timeout(bound, check).await.ok().flatten()
    }

    /// This host as last found, for `/health/db`.
    pub(super) fn report(&self) -> HostReport {
        let (state, since) = self.state();
        HostReport {
            host: self.spec.label(),
            state: state.label(),
            reason: state.reason().map(str::to_owned),
            since_ms: millis(since.elapsed()),
        }
    }

    /// A connection found it writable.
    pub(super) fn saw_writable(&self) {
        if let Ok(mut k) = self.known.lock() {
            k.seen_writable = true;
        }
    }

    /// Whether a connection ever found it writable.
    pub(super) fn seen_writable(&self) -> bool {
        self.known.lock().is_ok_and(|k| k.seen_writable)
    }

    /// A check after a refused write found it writable.
    pub(super) fn verified(&self) {
        if let Ok(mut k) = self.known.lock() {
            k.verified_at = Some(Instant::now());
        }
    }

    /// Whether a refused write calls for a check: not while marked or a check is fresh.
    pub(super) fn needs_verify(&self) -> bool {
        self.known
            .lock()
            .is_ok_and(|k| !k.marked && k.verified_at.is_none_or(|t| t.elapsed() >= VERIFIED_FOR))
    }

    /// Claims the one check of a refused write; `None` when one is under way.
    pub(super) fn claim_verify(&self) -> Option<VerifyGuard<'_>> {
        (!self.verifying.swap(true, Ordering::AcqRel)).then_some(VerifyGuard(self))
    }
}

/// Releases the claim of [`Topology::claim_verify`].
pub(crate) struct VerifyGuard<'a>(&'a Host);

impl Drop for VerifyGuard<'_> {
    fn drop(&mut self) {
        self.0.verifying.store(false, Ordering::Release);
    }
}

/// Whole milliseconds, as `/health/db` shows durations.
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
