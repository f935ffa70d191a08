//! Test support: the shared harness (`dbservice-testkit`: private PostgreSQL clusters, fresh
//! databases, MariaDB discovery, a fault-injecting proxy) and the demo app spawned on a random
//! port.

pub mod app;
pub mod drill;

pub use app::{TestApp, spawn_app, spawn_named_app};
pub use dbservice_testkit::*;
