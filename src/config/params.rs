//! The pool parameters: one entry each (`name: Type = default, parser [, only BACKENDS]
//! [, url_alias "other"];`), grouped by concern. The field, its doc, its default, its key in the URL, the file and the
//! environment, its parser and bounds, its provenance and its display all come from here (see
//! [`super::table`]); adding a parameter is one entry here plus its line in
//! CONNECTION_POOLING.md and `.env.example`. Checks between parameters live in
//! [`super::validate`].

use std::time::Duration;

use serde::Serialize;

use super::duration;
use super::hosts::{self, LoadBalanceHosts, TargetSessionAttrs};
use super::parse;
use super::table::{NOT_SQLITE, POSTGRES, POSTGRES_PRIMARY, Param, optional, pool_params};

/// The default client-side statement deadline: long enough for any statement a web request
/// should run, short enough that a hung database frees the request well before a load
/// balancer's or a user's patience runs out.
const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Prisma's rule: available cores * 2 + 1.
fn default_connection_limit() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    u32::try_from(cores * 2 + 1).unwrap_or(u32::MAX)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pool_params! {
    /// The pool's size and the life of its connections: how many, how long a caller waits
    /// for one, how they are opened, checked, kept alive, retired, and how long one may be
    /// held.
    limits: PoolLimits {
        /// Maximum connections in the pool. Default: `available cores * 2 + 1` (Prisma's rule).
        connection_limit: u32 = default_connection_limit(), parse::count::<1>;
        /// Connections kept open while idle; maintained in the background. Default: 0.
        min_connections: u32 = 0, parse::count::<0>;
        /// Longest wait for a free connection before the caller gets a "pool timed out" error.
        /// `None` (written `0`) waits without limit. Default: 10 s.
        #[serde(with = "duration::human_opt")]
        pool_timeout: Option<Duration> = Some(secs(10)), parse::optional_duration;
        /// Bound on opening one connection: every connection the pool opens, each attempt of
        /// [`DbService::connect`](crate::DbService::connect), the readiness probe's own
        /// connection. Must be above zero. Default: 5 s.
        #[serde(with = "duration::human")]
        connect_timeout: Duration = secs(5), parse::positive;
        /// Total time the initial connect keeps retrying a database that is not reachable yet,
        /// with exponential backoff and jitter. `0` tries once. Default: 60 s.
        #[serde(with = "duration::human")]
        connect_retry_timeout: Duration = secs(60), parse::duration;
        /// Connections idle longer than this are closed (down to `min_connections`). `None`
        /// (written `0`) keeps them. Default: 10 min.
        #[serde(with = "duration::human_opt")]
        idle_timeout: Option<Duration> = Some(secs(600)), parse::optional_duration;
        /// Connections older than this are closed and replaced. `None` (written `0`) keeps them
        /// forever. Default: 30 min.
        #[serde(with = "duration::human_opt")]
        max_lifetime: Option<Duration> = Some(secs(1800)), parse::optional_duration;
        /// A connection is retired after serving this many checkouts (jittered per connection:
        /// somewhere in the last 20 %, so connections opened together do not retire together).
        /// `None` (written `0`) keeps it. Default: off.
        max_uses: Option<u64> = None, parse::optional_uses;
        /// A connection that has been idle at least this long is pinged before it is handed
        /// out; fresher ones are handed out without the extra round trip. `0` pings on every
        /// checkout (sqlx's default). Default: 10 s.
        #[serde(with = "duration::human")]
        ping_after_idle: Duration = secs(10), parse::duration;
        /// Keepalive on both sides of every connection (`keepalive_idle` sets when): the
        /// background task pings connections that have been quiet that long, so a connection a
        /// NAT, firewall or failover dropped silently is found and replaced while idle, not by
        /// the next request; and on PostgreSQL the server is asked for TCP keepalives on the
        /// session (`tcp_keepalives_idle`/`_interval`/`_count` in the startup packet), so it
        /// frees the backend of a client that vanished. Default: true.
        keepalive: bool = true, parse::switch;
        /// How long a connection may be quiet (idle, not pinged) before the keepalive pings it,
        /// and the server's `tcp_keepalives_idle`. Must be above zero. Default: 60 s.
        #[serde(with = "duration::human")]
        keepalive_idle: Duration = secs(60), parse::positive;
        /// Bound on every check of a pooled connection before it is handed out: the ping after
        /// `ping_after_idle`, and the round trip that proves a suspect connection (one whose
        /// statement was abandoned or whose transaction did not end cleanly) is outside a
        /// transaction. A connection that does not answer in time is closed without further
        /// I/O, so a dead socket cannot hold a pool slot (sqlx#4349). Also bounds a polite
        /// close and a ROLLBACK. Must be above zero. Default: 1 s.
        #[serde(with = "duration::human")]
        ping_timeout: Duration = secs(1), parse::positive;
        /// Bound on the readiness probe's database check. Must be above zero. Default: 1 s.
        #[serde(with = "duration::human")]
        health_check_timeout: Duration = secs(1), parse::positive;
        /// After this many failed connection attempts in a row the database counts as down:
        /// callers that find no idle connection get the cause at once instead of waiting
        /// `pool_timeout`, until a background probe (with backoff) connects again. `0` turns it
        /// off. Default: 3.
        fail_fast_after: u32 = 3, parse::count::<0>;
        /// A connection or transaction held longer than this logs one WARN with the caller's
        /// source location and counts in `dbservice_pool_connection_leaks_total`. `None`
        /// (written `0`) turns it off. Default: off.
        #[serde(with = "duration::human_opt")]
        leak_detection_threshold: Option<Duration> = None, parse::optional_duration;
    }

    /// How long a statement may run: the client's deadlines and the server's.
    deadlines: Deadlines {
        /// Client-side deadline of every statement run through [`DbConn`](crate::DbConn)
        /// (Prisma's `socket_timeout`, accepted as an alias in the URL). When it passes the
        /// caller gets a query-timeout error (HTTP 504 in the demo) and the connection is not
        /// handed out again until a bounded check proves it clean; a server that does not
        /// answer that check within `ping_timeout` has its connection closed. It is the
        /// backstop for a server that cannot answer at all (frozen, unreachable);
        /// `statement_timeout` (server side) should fire first, and must be below it. `None`
        /// (written `0`) waits without limit. Default: 30 s; `statement_timeout` + 1 s when
        /// that is set.
        #[serde(with = "duration::human_opt")]
        query_timeout: Option<Duration> = Some(DEFAULT_QUERY_TIMEOUT), parse::optional_duration,
            url_alias "socket_timeout";
        /// Longest time a row stream ([`StreamTrait`](sea_orm::StreamTrait) on
        /// [`DbConn`](crate::DbConn)) may hold its connection; the stream then ends with an
        /// error and the connection is checked before reuse. `None` (written `0`) waits without
        /// limit. Default: 60 s.
        #[serde(with = "duration::human_opt")]
        stream_timeout: Option<Duration> = Some(secs(60)), parse::optional_duration;
        /// PostgreSQL `statement_timeout` for every session, applied by the server. Default:
        /// none.
        #[serde(with = "duration::human_opt")]
        statement_timeout: Option<Duration> = None, parse::optional_duration, only POSTGRES;
        /// PostgreSQL `idle_in_transaction_session_timeout` for every session. Default: none.
        #[serde(with = "duration::human_opt")]
        idle_in_transaction_session_timeout: Option<Duration> = None,
            parse::optional_duration, only POSTGRES;
    }

    /// The defaults of [`DbService::tx_options`](crate::DbService::tx_options).
    transactions: TransactionDefaults {
        /// Default `max_wait`: longest wait for a connection and `BEGIN`. Must be above zero.
        /// Default: 2 s (Prisma's).
        #[serde(with = "duration::human")]
        transaction_max_wait: Duration = secs(2), parse::positive;
        /// Default `timeout`: longest time from `BEGIN` to `COMMIT`. Must be above zero.
        /// Default: 5 s (Prisma's).
        #[serde(with = "duration::human")]
        transaction_timeout: Duration = secs(5), parse::positive;
    }

    /// What is logged and when an alert is raised.
    monitoring: Monitoring {
        /// Statements taking at least this long are logged at WARN with their duration and SQL
        /// (placeholders, never the bound values). `None` (written `0`) turns it off.
        /// Default: 1 s.
        #[serde(with = "duration::human_opt")]
        slow_query_threshold: Option<Duration> = Some(secs(1)), parse::optional_duration;
        /// Logs every statement at INFO (target `dbservice::statements`) with its duration and
        /// whether it failed: the SQL text with placeholders, never the bound values. Default:
        /// false.
        log_statements: bool = false, parse::switch;
        /// `/health/db` reports `warn` when busy/max reaches this percentage. Default: 80.
        utilization_warn_percent: u32 = 80, parse::percent;
        /// `/health/db` reports `critical` when busy/max reaches this percentage. Default: 90.
        utilization_critical_percent: u32 = 90, parse::percent;
        /// The `waiting` alert is raised (a WARN line, `dbservice_alerts_total`) when more than
        /// this many callers wait for a connection; `0` turns it off. Default: 5.
        alert_waiting: u32 = 5, parse::count::<0>;
        /// The `errors` alert is raised when more than this many database errors (constraint
        /// violations excepted) happened in the last hour; `0` turns it off. Default: 10.
        alert_errors_per_hour: u32 = 10, parse::count::<0>;
        /// Interval of the periodic pool summary log line; `None` (written `0`) turns it off.
        /// Default: off.
        #[serde(with = "duration::human_opt")]
        stats_log_interval: Option<Duration> = None, parse::optional_duration;
    }

    /// What each session is told at connect: how statements travel (PgBouncer, the statement
    /// cache) and the session's settings.
    session: Session {
        /// PostgreSQL `search_path` for every session. Default: the server's.
        schema: Option<String> = None, parse::schema, only POSTGRES;
        /// `true` when connecting through PgBouncer (≤ 1.20, or without
        /// `max_prepared_statements`) in transaction mode: every statement is one
        /// simple-protocol message with its values inlined (no prepared statement, nothing
        /// split across server connections), and the session settings (`statement_timeout`,
        /// `idle_in_transaction_session_timeout`, `schema`) travel as `SET LOCAL` in each
        /// message instead of the startup packet. Default: false.
        pgbouncer: bool = false, parse::switch, only POSTGRES;
        /// Refuse, on the client, every statement, transaction, stream and batch run without a
        /// session context ([`DbService::with_context`](crate::DbService::with_context)), with
        /// an error naming it (and the caller's source location for transactions): row-level
        /// security that fails closed in the application too. The service's own statements
        /// (checks, position queries, migrations) are not refused. Default: false.
        require_context: bool = false, parse::switch, only POSTGRES;
        /// Prepared statements cached per connection. `None`: the driver's default (100).
        /// Alias in the URL: `statement-cache-capacity` (sqlx's spelling).
        statement_cache_size: Option<usize> = None, parse::cache_size, only NOT_SQLITE,
            url_alias "statement-cache-capacity";
        /// Name shown in PostgreSQL's `pg_stat_activity`. Default: `dbservice`.
        application_name: String = "dbservice".to_owned(), parse::application_name;
        /// Which session a new connection keeps when the URL lists several hosts (or one that
        /// may move): `any`, `read-write`, `read-only`, `primary`, `standby` or
        /// `prefer-standby`, as libpq 14+ defines them. Hosts are tried in turn, each within
        /// `connect_timeout`. Default: `any`.
        target_session_attrs: TargetSessionAttrs = TargetSessionAttrs::Any,
            hosts::target_session_attrs, only POSTGRES_PRIMARY;
        /// `random` shuffles the hosts for every new connection (libpq 16); `disable` tries
        /// them in the order written. Default: `disable`.
        load_balance_hosts: LoadBalanceHosts = LoadBalanceHosts::Disable,
            hosts::load_balance_hosts, only POSTGRES_PRIMARY;
    }
}

#[cfg(test)]
#[path = "tests/params.rs"]
mod tests;
