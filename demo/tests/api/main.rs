//! dbservice's integration tests: one binary, one module per behaviour, real databases.
//!
//! PostgreSQL runs in private throwaway clusters started here (see `support::pg_cluster`), or
//! on `TEST_DATABASE_URL`'s server for the ordinary tests; SQLite on temp files; MariaDB on
//! `TEST_MYSQL_URL` or the local server, skipped loudly when none answers.

mod support;

mod binary;
mod config;
mod credentials;
mod deploy;
mod faults;
mod hardening;
mod health;
mod ledger;
mod metrics;
mod migrate;
mod mysql;
mod openapi;
mod otel;
mod pgbouncer;
mod pool;
mod replicas;
mod startup;
mod tenancy;
