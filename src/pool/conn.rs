//! One pooled connection: sqlx's own connection type and what the pool knows about it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use super::holds::HoldSlot;
use super::op::Mode;
use super::plans::Plans;
use super::raw::{RawConn, SessionId};
use crate::observe::Instruments;
use crate::stats::CloseReason;

/// A pooled connection and its bookkeeping. `suspect` is the heart of the pool's check-in
/// rule: it is set before every statement and cleared only when the statement completed
/// outside a transaction, so a connection whose statement future was dropped mid-flight, or
/// that was left inside a transaction, is checked (or closed) before anyone gets it again,
/// while a clean one goes back with no I/O at all.
#[derive(Debug)]
pub(crate) struct Conn {
    /// `None` once taken for closing.
    pub raw: Option<RawConn>,
    /// The state on the server is not known to be clean.
    pub suspect: bool,
    /// Inside a transaction we began.
    pub in_tx: bool,
    /// A caller may have changed the session (a `SET`, a role, a lock, a listener, a
    /// temporary table, a named statement): reset before anyone else gets it.
    pub tainted: bool,
    /// A caller may have dropped named statements (`DEALLOCATE`, `DISCARD`): sqlx's own
    /// statement cache is cleared with the reset.
    pub stale_statements: bool,
    /// The statements prepared (SQL's `PREPARE`) for session-context statements.
    pub context_plans: super::context_plans::ContextPlans,
    /// A statement was sent and its answer not read to the end (its caller gave up or was
    /// dropped): it may still run on the server until cancelled.
    pub in_flight: bool,
    /// A cancel was sent for its last statement: the answer still to be read is that
    /// statement's error (57014), not the connection's.
    pub cancelled: bool,
    /// The server session this is (PostgreSQL's backend pid, MySQL's connection id, and what
    /// tells their server apart), the target of a cancel; `None` behind PgBouncer, where a
    /// backend names no stable session.
    pub session: Option<SessionId>,
    /// Which of the endpoint's hosts it is on (PostgreSQL; 0 elsewhere).
    pub host: usize,
    /// That host's epoch when it was opened: a host marked since has its connections closed.
    pub epoch: u64,
    /// The pool's eviction generation when its opening began: a
    /// [`soft_evict`](super::Pool::soft_evict) since closes it.
    pub generation: u64,
    /// Inside a read-only transaction we began.
    pub read_only_tx: bool,
    /// A write on it was refused as read-only outside such a transaction: the server behind it
    /// may not be the writable one any more, so it is closed when it comes back.
    pub refused_write: bool,
    /// Failed in a way that makes it useless (closed when released).
    pub broken: bool,
    /// Checkouts served so far.
    pub uses: u64,
    /// This connection's own (jittered) `max_uses`.
    pub max_uses: Option<u64>,
    /// This connection's own (jittered) `max_lifetime`.
    pub lifetime: Option<Duration>,
    pub opened: Instant,
    /// When it last came back to the pool (the idle clock of `idle_timeout`).
    pub released: Instant,
    /// When it was last known alive: released after use, or answered a ping. The keepalive
    /// and the ping at checkout go by this, so a keepalive ping does not keep an idle
    /// connection from retiring.
    pub alive_at: Instant,
    /// Marked by the keepalive pass: ping it at its next recycle, counted as a keepalive.
    pub keepalive_due: std::sync::atomic::AtomicBool,
    /// Set before the connection is dropped; read by `Drop` to count the close.
    reason: AtomicU8,
    pub hold: Arc<HoldSlot>,
    /// How statements are sent (PostgreSQL).
    pub mode: Arc<Mode>,
    /// Whether its statement cache predates a stale-statement event (see [`super::plans`]).
    pub plans: Plans,
    instruments: Arc<Instruments>,
}

impl Conn {
    pub fn new(
        raw: RawConn,
        max_uses: Option<u64>,
        lifetime: Option<Duration>,
        hold: Arc<HoldSlot>,
        mode: Arc<Mode>,
        plans: Plans,
        instruments: Arc<Instruments>,
    ) -> Self {
        let now = Instant::now();
        Self {
            raw: Some(raw),
            suspect: false,
            in_tx: false,
            tainted: false,
            stale_statements: false,
            context_plans: super::context_plans::ContextPlans::new(1, Arc::default()),
            in_flight: false,
            cancelled: false,
            session: None,
            host: 0,
            epoch: 0,
            generation: 0,
            read_only_tx: false,
            refused_write: false,
            broken: false,
            uses: 0,
            max_uses,
            lifetime,
            opened: now,
            released: now,
            alive_at: now,
            keepalive_due: std::sync::atomic::AtomicBool::new(false),
            reason: AtomicU8::new(CloseReason::Shutdown.index()),
            hold,
            mode,
            plans,
            instruments,
        }
    }

    pub fn instruments(&self) -> &Instruments {
        &self.instruments
    }

    /// Records why this connection is about to be closed (the last reason set wins).
    pub fn retire(&self, reason: CloseReason) {
        self.reason.store(reason.index(), Ordering::Relaxed);
    }

    pub fn reason(&self) -> CloseReason {
        CloseReason::from_index(self.reason.load(Ordering::Relaxed))
    }

    /// The reason to retire it now, if its life or its uses are spent.
    pub fn worn_out(&self) -> Option<CloseReason> {
        if self.lifetime.is_some_and(|l| self.opened.elapsed() >= l) {
            return Some(CloseReason::Lifetime);
        }
        if self.max_uses.is_some_and(|m| self.uses >= m) {
            return Some(CloseReason::MaxUses);
        }
        None
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.instruments.on_closed(self.reason());
    }
}
