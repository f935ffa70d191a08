//! The database's bad days, each test checking what a user would notice: errors only where
//! unavoidable, money invariants, clean connections, capacity. One module per place the fault
//! comes from; the drill helpers are in `support::drill`.

mod clients;
mod failover;
mod network;
mod server;
