//! SeaORM entities of the ledger.

pub mod accounts;
pub mod transfers;
