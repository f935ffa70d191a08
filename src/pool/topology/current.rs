//! Which host a topology's pool is on, and what follows it there: the one-connection SeaORM
//! pool behind `DbConn::raw()`, told each move and each newer login.

use std::sync::atomic::Ordering;
use std::time::Instant;

use sea_orm::sqlx::postgres::PgConnectOptions;

use super::super::host::Host;
use super::super::login::LoggedIn;
use super::{Follower, Topology};
use crate::config::LoadBalanceHosts;

impl Topology {
    /// The options of the host the pool is on (the first before any connection), with the
    /// credentials the last connection logged in with.
    pub fn preferred(&self) -> PgConnectOptions {
        let i = self.current().map_or(0, |(i, _)| i);
        self.hosts
            .get(i)
            .or(self.hosts.first())
            .map_or_else(PgConnectOptions::new_without_pgpass, |h| {
                self.login.current(&h.opts)
            })
    }

    /// Tells the follower the options in use now, as after a move: the one-connection SeaORM
    /// pool drops its connection at its next use and opens one with these (after a soft
    /// eviction).
    pub fn refollow(&self) {
        if let Some(follow) = self.follower.get() {
            follow(&self.preferred());
        }
    }

    /// Registers what to do when the pool moves to another host: the one-connection SeaORM
    /// pool behind `DbConn::raw()` follows it.
    pub fn follow(&self, f: Follower) {
        let _ = self.follower.set(f);
    }

    /// A connection was kept on `host`: note it, and say so when the pool moved. Returns
    /// false when the host was marked while the connection was being checked (then it is not
    /// kept).
    pub(super) fn kept(&self, i: usize, host: &Host, epoch: u64, logged_in: &LoggedIn) -> bool {
        if !host.keep(epoch) {
            return false;
        }
        let Ok(mut current) = self.current.lock() else {
            return true;
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
        // This connection's own host and credentials (never one host's options with another
        // host's passfile line).
        let newest = self.login.note(logged_in);
        if (moved || newest)
            && let Some(follow) = self.follower.get()
        {
            follow(&self.login.with(&host.opts, logged_in.used.as_ref()));
        }
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
        true
    }
}
