//! [`WalPosition`]: a point in the primary's write-ahead log, the token of read-your-writes.

use std::sync::atomic::{AtomicU64, Ordering};

/// A position in PostgreSQL's write-ahead log (a `pg_lsn`), written as PostgreSQL writes it:
/// `16/B374D848`. After a write commits, the primary's position is at or past it; a replica
/// that has replayed up to that position shows the write. Ordered; usable as an opaque token
/// a client returns on its next read (the demo's `Db-Position` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WalPosition(pub u64);

/// A text that is not a WAL position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a WAL position (expected two hexadecimal numbers, e.g. `16/B374D848`)")]
pub struct BadPosition {
    /// The rejected text (at most 40 characters of it).
    pub value: String,
}

impl std::fmt::Display for WalPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl std::str::FromStr for WalPosition {
    type Err = BadPosition;

    fn from_str(s: &str) -> Result<Self, BadPosition> {
        let bad = || BadPosition {
            value: s.chars().take(40).collect(),
        };
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let hex = |part: &str| {
            (!part.is_empty() && part.len() <= 8 && part.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| u64::from_str_radix(part, 16).ok())
                .flatten()
        };
        match (hex(hi), hex(lo)) {
            (Some(hi), Some(lo)) => Ok(WalPosition((hi << 32) | lo)),
            _ => Err(bad()),
        }
    }
}

impl serde::Serialize for WalPosition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The furthest position this instance's writes reached: read-your-writes for every read the
/// instance serves. Only moves forward.
#[derive(Debug, Default)]
pub(crate) struct HighWater(AtomicU64);

impl HighWater {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    pub fn advance(&self, to: u64) {
        self.0.fetch_max(to, Ordering::AcqRel);
    }
}

/// The primary's position after a write: sent right behind the write on its connection.
pub(crate) const CURRENT_POSITION_SQL: &str = "SELECT pg_current_wal_lsn()::text";

/// `COMMIT` and the position in one simple-protocol message: one round trip.
pub(crate) const COMMIT_WITH_POSITION_SQL: &str = "COMMIT; SELECT pg_current_wal_lsn()::text";

/// The position in the last row of `rows` (the `SELECT` after a write or `COMMIT`).
pub(crate) fn position_in(rows: &[sea_orm::QueryResult]) -> Option<WalPosition> {
    let text: String = rows.last()?.try_get_by_index(0).ok()?;
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_and_write_like_postgres() {
        let p = WalPosition((0x16 << 32) | 0xB374_D848);
        assert_eq!("16/B374D848".parse::<WalPosition>(), Ok(p));
        assert_eq!(p.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<WalPosition>(), Ok(WalPosition(0)));
        assert!(WalPosition(1) > WalPosition(0));
        assert_eq!(WalPosition(1u64 << 32).to_string(), "1/0");
        for bad in [
            "",
            "16",
            "/1",
            "1/",
            "x/1",
            "1/2/3",
            "123456789/0",
            "-1/0",
            "1 /2",
        ] {
            match bad.parse::<WalPosition>() {
                Err(err) => assert!(err.to_string().contains("not a WAL position"), "{err}"),
                Ok(p) => panic!("`{bad}` parsed as {p}"),
            }
        }
    }
}
