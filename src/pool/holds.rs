//! Who holds which connection since when: leak detection and the "longest hold" of a pool
//! timeout. One slot per connection, written by its one holder (an uncontended lock per
//! checkout), read by the maintenance task and by a caller that timed out.

use std::panic::Location;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Where a connection was taken: the caller's source location when the API captured it
/// (`#[track_caller]` on [`DbService::begin`](crate::DbService::begin) and
/// [`DbService::transaction`](crate::DbService::transaction)), else `None` (a single statement
/// through [`DbConn`](crate::DbConn)).
pub(crate) type Site = Option<&'static Location<'static>>;

#[derive(Debug, Clone, Copy)]
struct Hold {
    since: Instant,
    site: Site,
    warned: bool,
}

/// The current hold of one connection.
#[derive(Debug, Default)]
pub(crate) struct HoldSlot(Mutex<Option<Hold>>);

impl HoldSlot {
    pub fn begin(&self, site: Site, since: Instant) {
        if let Ok(mut h) = self.0.lock() {
            *h = Some(Hold {
                since,
                site,
                warned: false,
            });
        }
    }

    /// Ends the hold; returns whether it had been reported as a leak.
    pub fn end(&self) -> bool {
        self.0
            .lock()
            .ok()
            .and_then(|mut h| h.take())
            .is_some_and(|h| h.warned)
    }
}

/// The longest current hold, for a pool-timeout message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LongestHold {
    pub held: Duration,
    pub site: Site,
}

/// Every live connection's slot.
#[derive(Debug, Default)]
pub(crate) struct Holds(Mutex<Vec<Weak<HoldSlot>>>);

impl Holds {
    /// A slot for a new connection.
    pub fn register(&self) -> Arc<HoldSlot> {
        let slot = Arc::new(HoldSlot::default());
        if let Ok(mut all) = self.0.lock() {
            all.retain(|w| w.strong_count() > 0);
            all.push(Arc::downgrade(&slot));
        }
        slot
    }

    fn each(&self, mut f: impl FnMut(&mut Hold)) {
        let live: Vec<Arc<HoldSlot>> = self
            .0
            .lock()
            .map(|all| all.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default();
        for slot in live {
            if let Ok(mut h) = slot.0.lock()
                && let Some(hold) = h.as_mut()
            {
                f(hold);
            }
        }
    }

    pub fn longest(&self) -> Option<LongestHold> {
        let mut longest: Option<LongestHold> = None;
        self.each(|h| {
            let held = h.since.elapsed();
            if longest.is_none_or(|l| held > l.held) {
                longest = Some(LongestHold { held, site: h.site });
            }
        });
        longest
    }

    /// Reports (once per hold) every connection held longer than `threshold`; returns how many
    /// were newly reported.
    pub fn report_leaks(&self, threshold: Duration) -> u64 {
        let mut found = 0;
        self.each(|h| {
            let held = h.since.elapsed();
            if !h.warned && held >= threshold {
                h.warned = true;
                found += 1;
                tracing::warn!(
                    target: "dbservice::leak",
                    held_ms = held.as_millis() as u64,
                    threshold_ms = threshold.as_millis() as u64,
                    at = %describe_site(h.site),
                    "connection held longer than leak_detection_threshold; not yet returned"
                );
            }
        });
        found
    }
}

/// A site for messages.
pub(crate) fn describe_site(site: Site) -> String {
    match site {
        Some(l) => format!("{}:{}:{}", l.file(), l.line(), l.column()),
        None => "a statement through db.conn()".to_owned(),
    }
}
