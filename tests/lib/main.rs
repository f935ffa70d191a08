//! dbservice's library tests: the service, its pool, transactions and deadlines against real
//! databases, without HTTP (the demo's tests in `demo/tests/api` drive it over HTTP). One
//! binary, one module per behaviour.

mod support {
    pub use dbservice_testkit::*;
}

mod batch;
mod commit_outcome;
mod config;
mod context;
mod context_plans;
mod credentials;
mod deadlines;
mod environment;
mod failover;
mod handout;
mod inline;
mod migrate;
mod otel;
mod pgbouncer;
mod pool;
mod pools;
mod replicas;
mod server_full;
mod session;
mod spans;
mod stale_plans;
mod switchover_tx;
mod transactions;
