//! What a PostgreSQL server is (primary or standby, writable or read-only), asked once per new
//! connection, and libpq's rules for which of them `target_session_attrs` keeps.

use std::time::Duration;

use sea_orm::sqlx::{self, Row};

use super::raw::{RawConn, SessionId};
use crate::config::TargetSessionAttrs;

/// One round trip that names the session (for cancels) and tells its server's role.
const SESSION_SQL: &str = "SELECT pid::int8, backend_start::text, pg_catalog.pg_is_in_recovery(), \
     pg_catalog.current_setting('transaction_read_only') = 'on' \
     FROM pg_catalog.pg_stat_activity WHERE pid = pg_catalog.pg_backend_pid()";

/// The role alone, for a connection that names no stable session (behind PgBouncer).
const ROLE_SQL: &str = "SELECT pg_catalog.pg_is_in_recovery(), \
     pg_catalog.current_setting('transaction_read_only') = 'on'";

/// What a server said about itself at connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Role {
    pub in_recovery: bool,
    pub read_only: bool,
}

/// What a session must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    Writable,
    ReadOnly,
    Primary,
    WritablePrimary,
    Standby,
}

impl Need {
    /// What a session must be under `attrs` (in `prefer-standby`'s second pass: anything),
    /// and writable too when `writable` (a host marked for refusing writes).
    pub(super) fn of(attrs: TargetSessionAttrs, second_pass: bool, writable: bool) -> Option<Self> {
        let by_attrs = match attrs {
            TargetSessionAttrs::Any => None,
            TargetSessionAttrs::ReadWrite => Some(Need::Writable),
            TargetSessionAttrs::ReadOnly => Some(Need::ReadOnly),
            TargetSessionAttrs::Primary => Some(Need::Primary),
            TargetSessionAttrs::Standby => Some(Need::Standby),
            TargetSessionAttrs::PreferStandby if second_pass => None,
            TargetSessionAttrs::PreferStandby => Some(Need::Standby),
        };
        if !writable {
            return by_attrs;
        }
        Some(match by_attrs {
            Some(Need::Primary) => Need::WritablePrimary,
            _ => Need::Writable,
        })
    }

    /// libpq's verdicts, in its words.
    pub(super) fn judge(self, role: Role) -> Result<(), String> {
        let fail = |why: &str| Err(why.to_owned());
        match self {
            Need::Writable | Need::WritablePrimary if role.in_recovery => {
                fail("is in hot standby mode")
            }
            Need::Writable | Need::WritablePrimary if role.read_only => fail("is read-only"),
            Need::Primary if role.in_recovery => fail("is in hot standby mode"),
            Need::ReadOnly if !role.read_only => fail("is not read-only"),
            Need::Standby if !role.in_recovery => fail("is not in hot standby mode"),
            _ => Ok(()),
        }
    }
}

/// The session's id and its server's role in one round trip within `bound`.
pub(super) async fn ask_session(
    raw: &mut RawConn,
    bound: Duration,
) -> (Option<SessionId>, Option<Role>) {
    #[allow(irrefutable_let_patterns)] // the only variant in a PostgreSQL-only build
    let RawConn::Postgres(c) = raw else {
        return (None, None);
    };
    let asked = sqlx::raw_sql(SESSION_SQL).fetch_one(&mut *c);
    let Ok(Ok(row)) = tokio::time::timeout(bound, asked).await else {
        return (None, None);
    };
    let session = match (row.try_get::<i64, _>(0), row.try_get::<String, _>(1)) {
        (Ok(id), Ok(proof)) => u64::try_from(id).ok().map(|id| SessionId { id, proof }),
        _ => None,
    };
    let role = match (row.try_get::<bool, _>(2), row.try_get::<bool, _>(3)) {
        (Ok(in_recovery), Ok(read_only)) => Some(Role {
            in_recovery,
            read_only,
        }),
        _ => None,
    };
    (session, role)
}

/// The server's role, or the driver's error (a check at readiness, where a failure is news).
pub(super) async fn role_of(raw: &mut RawConn) -> Result<Role, sqlx::Error> {
    #[allow(irrefutable_let_patterns)] // the only variant in a PostgreSQL-only build
    let RawConn::Postgres(c) = raw else {
        return Err(sqlx::Error::Configuration(
            "not a PostgreSQL connection".into(),
        ));
    };
    let row = sqlx::raw_sql(ROLE_SQL).fetch_one(&mut *c).await?;
    Ok(Role {
        in_recovery: row.try_get::<bool, _>(0)?,
        read_only: row.try_get::<bool, _>(1)?,
    })
}

/// The server's role alone, within `bound`.
pub(super) async fn ask_role(raw: &mut RawConn, bound: Duration) -> Option<Role> {
    #[allow(irrefutable_let_patterns)] // the only variant in a PostgreSQL-only build
    let RawConn::Postgres(c) = raw else {
        return None;
    };
    let asked = sqlx::raw_sql(ROLE_SQL).fetch_one(&mut *c);
    let row = tokio::time::timeout(bound, asked).await.ok()?.ok()?;
    Some(Role {
        in_recovery: row.try_get::<bool, _>(0).ok()?,
        read_only: row.try_get::<bool, _>(1).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: Role = Role {
        in_recovery: false,
        read_only: false,
    };
    const STANDBY: Role = Role {
        in_recovery: true,
        read_only: true,
    };
    const READ_ONLY_PRIMARY: Role = Role {
        in_recovery: false,
        read_only: true,
    };

    #[test]
    fn each_need_keeps_what_libpq_keeps() {
        assert!(Need::Writable.judge(PRIMARY).is_ok());
        assert!(Need::Writable.judge(STANDBY).is_err());
        assert!(Need::Writable.judge(READ_ONLY_PRIMARY).is_err());
        assert!(Need::Primary.judge(READ_ONLY_PRIMARY).is_ok());
        assert!(Need::Primary.judge(STANDBY).is_err());
        assert!(Need::WritablePrimary.judge(READ_ONLY_PRIMARY).is_err());
        assert!(Need::ReadOnly.judge(READ_ONLY_PRIMARY).is_ok());
        assert!(Need::ReadOnly.judge(PRIMARY).is_err());
        assert!(Need::Standby.judge(STANDBY).is_ok());
        assert!(Need::Standby.judge(READ_ONLY_PRIMARY).is_err());
    }
}
